"""Moved to :mod:`snnse.plots.robustness` (the figure and Markdown tables of ``snnse evaluate
--robustness``); this module re-exports its names for code that imports them from here.
"""

from snnse.plots.robustness import INPUT, INPUT_STYLE, TARGET_COLOR, figure, markdown

__all__ = ["INPUT", "INPUT_STYLE", "TARGET_COLOR", "figure", "markdown"]
