"""Messages for people: one-line stderr output that does not break progress bars, problem lists."""

from __future__ import annotations

import sys
from typing import Sequence

from tqdm import tqdm


def eprint(msg: str) -> None:
    """Print one line to stderr without breaking a tqdm progress bar."""
    tqdm.write(msg, file=sys.stderr)


def listing(problems: Sequence[str], show: int = 5) -> str:
    """The first ``show`` problems, one indented line each, and how many more there are."""
    lines = [f"  {p}" for p in problems[:show]]
    if len(problems) > show:
        lines.append(f"  ... and {len(problems) - show} more")
    return "\n".join(lines)
