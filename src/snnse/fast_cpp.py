"""Compiled one-hop steps: the DPSNN plan (:mod:`snnse.fast_dpsnn`) and the Spiking-S4 masker
(:mod:`snnse.fast_s4`, LIF/PLIF units), each as one C++ call; and the input level control of
:mod:`snnse.level_control` for one chunk.

The C++ is in ``snnse/kernels/csrc/``: ``step_dpsnn.cpp`` (the DPSNN hop), ``step_s4.cpp`` (the
Spiking-S4 masker and STFT hop), ``step_ops.cpp`` (the level control, the ``Hop`` class and the
registration), with the headers ``step.h`` (``lerp``, ``axpy_gemv``, the shared declarations),
``real_fft.h`` and ``common.h``. Optional, with the PyTorch plan as the fallback: :func:`load`
compiles them on first use with the package's one loader, :mod:`snnse.kernels.build` (light ATen
headers, cached under ``~/.cache/torch_extensions`` like :mod:`snnse.kernels`, but a separate
extension with its own flags, so that a failure here never changes the training kernels),
registers ``torch.ops.snnse_step.dpsnn_step``, ``s4_stft_step``, ``s4_masker``, ``level_step``
and ``torch.classes.snnse_step.Hop``, and returns None (with one warning) if the build fails.

One DPSNN call does a whole hop of the learned front-end and the masker for every batch row: the
matrix-vector products in ``axpy`` form over the transposed weights, skipping zero inputs (binary
spikes, the ReLU zeros of the encoder output, the suppressed readout), and every element-wise
step in one pass over the channels. Same formulas as the modules (``torch.lerp``'s two-sided
form, ``H(x − θ) = x >= θ``, hard and soft resets); sums are accumulated in another order than
MKL's, so the outputs equal the module path up to float rounding. The Spiking-S4 call runs the
masker (encoder, the S4D recurrences in real pairs, emission, LIF, residual, layer norm, decoder),
and with the STFT front-end the whole hop (framing, the real FFT, the magnitude, the masking, the
inverse FFT and the overlap-add) in the same call. For a power-of-two frame length the transforms are
the source's own (``RealFFT``: a radix-2 complex FFT of half the length, twiddles computed in
double), because ``at::fft_rfft``/``at::fft_irfft`` redo their set-up (descriptors, twiddle
tables, allocations, dispatch) on every call, which at these sizes costs many times the transform
itself; other lengths use ATen's.

``torch.classes.snnse_step.Hop`` runs either whole hop for one stream (:mod:`snnse.streaming`): it
takes the weights once and keeps the state, updated in place, so that a hop is one call with one
tensor in and one out. The Spiking-S4 constants are laid out as unit-stride rows (``[D, 6, M]``:
Re/Im of ``dA``, ``dB`` and ``2C`` per channel, for the module path's interleaved complex state),
and the Hop keeps its S4D state mode-major (``[B, 2, M, D]``, constants ``[6, M, D]``): the
recurrence is then vectorised over the channels, unit-stride, with no horizontal sums (the
interleaved per-channel loop with its horizontal sums took most of a Spiking-S4 hop).
:meth:`Hop.get_state` converts back to the module path's complex state. A Spiking-S4 Hop with a
power-of-two frame runs without any ATen call but its output's allocation (scratch memory kept in
the object, the level control in place on its state), and the Streamer calls the Hop's bound
``step``. Measured: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import torch

from .kernels.build import load_extension, load_once, name_getattr

SOURCES = ("step_dpsnn.cpp", "step_s4.cpp", "step_ops.cpp")  # in snnse/kernels/csrc/, with their headers
FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fno-math-errno", "-fopenmp-simd"]
PREFIX = "snnse_step_"
_state: dict = {"tried": False, "ops": None}


__getattr__ = name_getattr(__name__, PREFIX, SOURCES, FLAGS)  # NAME: the build's name, when asked for


def _build():
    """Compile (or load the cached build of) the extension; returns the operator namespace."""
    load_extension(PREFIX, SOURCES, FLAGS)
    return torch.ops.snnse_step


def load():
    """The compiled operators (``torch.ops.snnse_step``), or None if they cannot be built; decided
    once per process, with one warning on failure."""
    return load_once(_state, _build,
                     lambda err: f"snnse: compiled streaming step unavailable, using the PyTorch plan ({err})",
                     UserWarning)
