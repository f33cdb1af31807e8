"""The one loader of snnse's C++ extensions: compiles the sources in ``csrc/`` on first use.

The C++ lives in real source files in ``snnse/kernels/csrc/`` (installed with the package as
package data)::

    common.h        headers, ``Tensor``, the restrict macro ``R``: shared by both extensions
    fused.h         snnse_fused (snnse.kernels): the operators' declarations
    neurons.cpp     LIF/PLIF, linear scan, leaky integrator, ALIF loops (forward and backward)
    misc.cpp        the depthwise convolution's backward, the surrogate derivatives
    fused_ops.cpp   registration as torch.ops.snnse_fused.*
    step.h          snnse_step (snnse.fast_cpp): lerp, axpy_gemv, the shared declarations
    real_fft.h      the real FFT of power-of-two lengths
    step_dpsnn.cpp  one DPSNN hop
    step_s4.cpp     the Spiking-S4 masker and STFT hop
    step_ops.cpp    the level control, the Hop class, registration as torch.ops.snnse_step.*

Each ``.cpp`` is its own translation unit. :func:`load_extension` builds a list of them with
``torch.utils.cpp_extension.load`` (g++, the light ATen headers the files include and nothing
else, no Python bindings: the operators register themselves, :func:`torch.ops.load_library`
loads the library). The build goes to ``~/.cache/torch_extensions`` (or
``$TORCH_EXTENSIONS_DIR``) under a name that carries :func:`cache_key`: a hash of the sources and
of every local header they include, the compiler flags and the CPU (:func:`cpu_id`: a
``-march=native`` build must not be shared between CPU types). An edited file therefore builds
afresh, and an unchanged one loads the cached library in well under a second.

:func:`load_once` is the callers' shared fallback: it tries a build once per process and, if
that raises (no compiler, a failed build, a failed self-check), warns once and returns None, so
that the caller uses its PyTorch implementation.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CSRC = Path(__file__).resolve().parent / "csrc"

_LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.MULTILINE)


def cpu_id() -> str:
    """The CPU's model and flags: ``-march=native`` builds must not be shared between CPU types."""
    try:
        with open("/proc/cpuinfo") as f:
            return "".join(sorted({ln for ln in f if ln.startswith(("model name", "flags"))}))
    except OSError:
        import platform

        return platform.processor() or platform.machine()


def dependencies(sources: Sequence[str], root: Path = CSRC) -> list[Path]:
    """The files of ``sources`` (names in ``root``) and, recursively, every ``#include "..."`` of
    theirs, each once, in the order first met; raises FileNotFoundError if one is missing."""
    found: list[Path] = []
    todo = [root / s for s in sources]
    while todo:
        path = todo.pop(0)
        if path in found:
            continue
        text = path.read_text()  # FileNotFoundError for a missing source or header
        found.append(path)
        todo += [path.parent / inc for inc in _LOCAL_INCLUDE.findall(text)]
    return found


def cache_key(files: Sequence[Path], flags: Sequence[str]) -> str:
    """12 hex digits of the SHA-256 of the files (names and contents), the flags and :func:`cpu_id`."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(" ".join(flags).encode() + b"\0" + cpu_id().encode())
    return h.hexdigest()[:12]


def extension_name(name_prefix: str, sources: Sequence[str], flags: Sequence[str], root: Path = CSRC) -> str:
    """The build's name: ``name_prefix`` and the :func:`cache_key` of the sources and their headers."""
    return name_prefix + cache_key(dependencies(sources, root), flags)


def name_getattr(module: str, name_prefix: str, sources: Sequence[str], flags: Sequence[str]):
    """A module-level ``__getattr__`` for an extension's module: ``NAME``, the build's name
    (prefix + cache key), read from the sources when first asked for, not at import."""
    def __getattr__(name: str):
        if name == "NAME":
            return extension_name(name_prefix, sources, flags)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def load_extension(name_prefix: str, sources: Sequence[str], flags: Sequence[str], root: Path = CSRC) -> str:
    """Compile ``sources`` (file names in ``root``, by default the package's ``csrc/``) into one
    library with the compiler ``flags``, or load the cached build, and load it into the process
    (its ``TORCH_LIBRARY`` operators and classes register themselves). Returns the build's name;
    raises whatever the build raises."""
    from torch.utils import cpp_extension

    name = extension_name(name_prefix, sources, flags, root)
    cpp_extension.load(name=name, sources=[str(root / s) for s in sources], extra_cflags=list(flags),
                       is_python_module=False, verbose=False)
    return name


def error_line(e: BaseException) -> str:
    """A build error in one line: its type and the compiler's message, at most 300 characters: the
    first line with a diagnostic (``error:``), else the first that says "error" (torch's "Error
    building extension ...", which is followed by the compile command), else the last line."""
    lines = [ln.strip() for ln in str(e).strip().splitlines()] or [""]
    line = next((ln for ln in lines if "error:" in ln.lower()), None)
    line = line or next((ln for ln in lines if "error" in ln.lower()), lines[-1])
    return f"{type(e).__name__}: {line[:300]}"


def load_once(state: dict, build: Callable[[], Any], message: Callable[[str], str],
              category: type[Warning] = RuntimeWarning) -> Any:
    """``state["ops"]``, from ``build()`` the first time (``state["tried"]`` is then set). If
    ``build`` raises, warns once with ``message(error_line(e))`` (the line also goes to
    ``state["error"]``) and leaves None: the caller falls back to PyTorch. Never tries again."""
    if not state["tried"]:
        state["tried"] = True
        try:
            state["ops"] = build()
        except Exception as e:  # no compiler, failed build, wrong arithmetic: fall back
            state["error"] = error_line(e)
            warnings.warn(message(state["error"]), category, stacklevel=3)  # at the caller's caller
    return state["ops"]


__all__ = ["CSRC", "cache_key", "cpu_id", "dependencies", "error_line", "extension_name", "load_extension",
           "load_once"]
