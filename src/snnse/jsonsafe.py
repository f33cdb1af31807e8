"""Plain JSON data from nested results: the one sanitiser for the JSON (and YAML) that snnse writes."""

from __future__ import annotations

import math


def json_safe(obj):
    """``obj`` as plain data that ``json.dumps`` writes as standard JSON.

    Dict keys become strings, tuples (and lists) lists, non-finite floats (NaN, ±inf: not JSON)
    ``None``; ``None``, strings, ints, floats and bools stay; any other object becomes ``str(obj)``.
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


__all__ = ["json_safe"]
