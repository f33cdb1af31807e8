"""Model registry: ``snnse.models.get(name, **kwargs)``; ``available()`` lists the names."""

from . import dpsnn, spiking_s4  # noqa: F401  (register the builders)
from .base import Enhancer, available, count_parameters, get, load, register

__all__ = ["Enhancer", "available", "count_parameters", "get", "load", "register"]
