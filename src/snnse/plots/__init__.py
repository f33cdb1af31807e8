"""Publication-quality figures (PNG): spectrograms, spike rasters and metric bar charts.

* :func:`spectrograms` — noisy / enhanced / clean log-magnitude spectrograms on one colour scale
  (:mod:`snnse.plots.spectrogram`).
* :func:`spike_raster` — per-layer spike rasters of a model's recorded activity, with firing rates
  (:mod:`snnse.plots.raster`).
* :func:`metric_bars` — noisy vs enhanced means with 95 % CIs from ``snnse evaluate``'s summary
  (:mod:`snnse.plots.bars`).
* the figure and tables of ``snnse evaluate --robustness`` (:mod:`snnse.plots.robustness`).

Every writer renders with matplotlib's Agg canvas (no pyplot, no window), writes the PNG
atomically (temporary file in the target folder, then :func:`os.replace`) and returns its path.
Colours come from the Okabe–Ito colour-blind-safe palette; spectrograms use ``magma``
(:mod:`snnse.plots.style`). matplotlib is imported inside the functions, so ``import snnse.plots``
stays fast. The ``snnse plot`` subcommand (``spectrogram``, ``raster``, ``metrics``) is in
:mod:`snnse.plots.cli`; its :func:`add_parser` and :func:`run` are re-exported here, where the
command line registers them.
"""

from __future__ import annotations

from .bars import METRIC_GROUPS as METRIC_GROUPS
from .bars import SYSTEM_COLORS as SYSTEM_COLORS
from .bars import _offset as _offset
from .bars import _place_values as _place_values
from .bars import _stat as _stat
from .bars import metric_bars
from .cli import _check_output as _check_output
from .cli import _cmd_metrics as _cmd_metrics
from .cli import _cmd_raster as _cmd_raster
from .cli import _cmd_spectrogram as _cmd_spectrogram
from .cli import _forward as _forward
from .cli import _read_mono as _read_mono
from .cli import add_parser, run
from .raster import firing_rates, format_rate, select_units, spike_raster
from .spectrogram import log_spectrogram, spectrograms
from .style import _STYLE as _STYLE
from .style import _VALUE_FONT as _VALUE_FONT
from .style import DEFAULT_DPI as DEFAULT_DPI
from .style import OKABE_ITO as OKABE_ITO
from .style import _figure as _figure
from .style import _mono as _mono
from .style import _numpy as _numpy
from .style import _save as _save

__all__ = ["spectrograms", "spike_raster", "metric_bars", "log_spectrogram", "firing_rates",
           "format_rate", "select_units", "add_parser", "run"]
