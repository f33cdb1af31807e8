"""Fetching the demo corpus' Debian packages: download, unpack, decode G.722.

:func:`fetch_debs` finds the ``.deb`` files in a cache folder, downloading the missing ones with
``apt-get download``; :func:`_unpack` extracts them with ``dpkg -x`` into a folder kept between
builds; :func:`decode_g722` decodes the Asterisk prompts (64 kbit/s G.722). :class:`DemoError` is
the error of the demo corpus build. :mod:`snnse.data.demo` builds the corpus (and re-exports these
names); :mod:`snnse.data.demo_sources` picks the recordings of the extra packages.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SR = 16000             # the rate of the G.722 prompts (wideband)


class DemoError(Exception):
    """The demo corpus cannot be built; ``str(err)`` is one line."""


def fetch_debs(names: list[str], debs: Path) -> dict[str, Path]:
    """Return the ``.deb`` file of every package; missing ones come from ``apt-get download``.

    Raises:
        DemoError: A package is neither in ``debs`` nor downloadable.
    """
    debs.mkdir(parents=True, exist_ok=True)
    missing = [n for n in names if not list(debs.glob(f"{n}_*.deb"))]
    if missing:
        try:
            res = subprocess.run(["apt-get", "download", *missing], cwd=debs,
                                 capture_output=True, text=True)
            reason = (res.stderr.strip().splitlines() or ["apt-get failed"])[-1]
        except OSError as err:
            reason = f"cannot run apt-get: {err}"
        still = [n for n in missing if not list(debs.glob(f"{n}_*.deb"))]
        if still:
            raise DemoError(f"cannot download {' '.join(still)} ({reason}); fetch them by hand "
                            f"(`apt-get download NAME` on a Debian/Ubuntu machine, or "
                            f"https://packages.debian.org/NAME) and put the .deb files in {debs}")
    return {n: sorted(debs.glob(f"{n}_*.deb"))[-1] for n in names}


def _unpack(debs: dict[str, Path], root: Path) -> None:
    """``dpkg -x`` every package into ``root/NAME``, unless done already for that ``.deb``.

    ``root`` is kept between builds (beside the ``.deb`` cache): a rebuild or a second corpus
    reads the files unpacked before. A package is unpacked into a temporary folder first and
    renamed, so an interrupted build leaves no half-unpacked package behind.
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, deb in debs.items():
        done = root / name / ".deb"
        if done.is_file() and done.read_text() == deb.name:
            continue
        part = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        try:
            subprocess.run(["dpkg", "-x", str(deb), str(part)], capture_output=True,
                           text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            shutil.rmtree(part, ignore_errors=True)
            reason = ((getattr(err, "stderr", None) or str(err)).strip().splitlines() or ["?"])[-1]
            raise DemoError(f"cannot unpack {deb} ({reason}); delete it to download it afresh") \
                from None
        (part / ".deb").write_text(deb.name)
        if (root / name).exists():
            shutil.rmtree(root / name)
        part.rename(root / name)


def decode_g722(path: Path) -> np.ndarray:
    """Decode a 64 kbit/s G.722 file to 16 kHz float32 in [-1, 1)."""
    try:
        import G722
    except ImportError:
        raise DemoError("the demo corpus needs the G.722 decoder: pip install G722") from None
    pcm = G722.G722(SR, 64000).decode(path.read_bytes())
    return np.asarray(pcm, dtype=np.float32) / 32768.0
