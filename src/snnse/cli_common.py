"""Helpers shared by the ``snnse`` subcommands (kept apart from :mod:`snnse.cli` so that
modules defining subcommands can import them without a circular import)."""

from __future__ import annotations

import ast
from typing import Sequence


class UsageError(Exception):
    """A usage problem; reported as one line, exit status 2."""


def parse_value(text: str):
    """Parse a ``--set`` value: a Python literal (int, float, bool, ...) or a string.

    ``true``/``false``/``none`` (any case) are accepted as well.
    """
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_sets(items: Sequence[str] | None) -> dict:
    """Turn ``["k=v", ...]`` into keyword arguments.

    Raises:
        UsageError: If an item has no ``=`` or an empty key.
    """
    kwargs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--set expects key=value, got {item!r}")
        kwargs[key] = parse_value(value.strip())
    return kwargs


def load_model(path: str, device: str):
    """Load a checkpoint or a bundled model name with ``snnse.load``; UsageError on failure."""
    import snnse

    try:
        model = snnse.load(path)
    except FileNotFoundError as err:
        raise UsageError(f"{path}: model checkpoint not found ({err})") from None
    except ValueError as err:
        msg = " ".join(str(err).split())
        raise UsageError(msg if str(path) in msg else f"{path}: {msg}") from None
    except Exception as err:  # corrupt pickles, zip errors, ...
        raise UsageError(f"{path}: cannot load model ({type(err).__name__}: {err})") from None
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError, ValueError) as err:
        raise UsageError(f"cannot use device {device!r}: {err}") from None
    model.eval()
    return model
