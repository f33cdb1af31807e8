"""Efficiency profile of an snnse model, and the ``snnse profile`` subcommand.

This module gathers the names of the modules that hold them, so that the command line (which
registers ``snnse profile`` through this module's :func:`add_parser`) and existing imports keep
working:

* :mod:`snnse.metrics.profiling` — :func:`profile`, every figure of it defined in
  :data:`DEFINITIONS`, :func:`parameter_stats`, :func:`flop_count`;
* :mod:`snnse.metrics.timing` — :func:`measure_latency` (compute per hop, real-time factors);
* :mod:`snnse.metrics.board` — the N-DNS metricsboard row (:func:`metricsboard`);
* :mod:`snnse.metrics.profile_table` — the text table of a report (:func:`format_table`);
* :mod:`snnse.metrics.efficiency_cli` — ``snnse profile``: :func:`add_parser`, :func:`run`,
  :func:`parse_rates`;
* :mod:`snnse.metrics.opcount` — the operation graph, firing rates, SynOps and energy.

References:
    Timcheck et al., "The Intel neuromorphic DNS challenge", Neuromorphic Computing and
    Engineering 3(3) 034005, 2023.
    Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014.
    Sun & Bohté, "DPSNN", Neuromorphic Computing and Engineering 4(4) 044008, 2024.
"""

from __future__ import annotations

from .board import QUALITY_METRICS as QUALITY_METRICS
from .board import metricsboard
from .efficiency_cli import _load as _load
from .efficiency_cli import add_parser, parse_rates, run
from .opcount import ACCOUNTINGS as ACCOUNTINGS
from .opcount import E_AC_PJ, E_MAC_PJ, firing_rates, op_graph
from .profile_table import _f as _f
from .profile_table import _m as _m
from .profile_table import format_table
from .profiling import BYTES_PER_PARAM as BYTES_PER_PARAM
from .profiling import DEFINITIONS
from .profiling import FORMAT as FORMAT
from .profiling import FORMAT_VERSION as FORMAT_VERSION
from .profiling import _first_signal as _first_signal
from .profiling import flop_count, parameter_stats, profile
from .timing import _signal as _signal
from .timing import _sync as _sync
from .timing import measure_latency

__all__ = ["profile", "parameter_stats", "flop_count", "measure_latency", "metricsboard", "format_table",
           "add_parser", "run", "parse_rates", "DEFINITIONS", "E_AC_PJ", "E_MAC_PJ", "op_graph", "firing_rates"]
