"""snnse: speech enhancement with spiking neural networks (DPSNN, Spiking-S4, ANN twins)."""

__version__ = "0.1.0"

from .models import available, get, load  # noqa: E402

__all__ = ["__version__", "available", "get", "load"]
