"""The ONNX-friendly forms of the modules that :func:`snnse.export.export_onnx` traces.

Within :func:`onnx_friendly`, a model's modules compute the same numbers with operators that
export to a short, standard ONNX graph (short matters: at batch 1 onnxruntime spends most of a
step dispatching kernels, see :mod:`snnse.export_simplify`):

* **S4D** takes and returns its complex state as real tensors (ONNX has no complex tensors):
  ``[..., 2, M]`` (a real plane, then an imaginary plane: the packed graph's layout) or
  ``[..., M, 2]`` (interleaved pairs: the unpacked graph's, as ``torch.view_as_real`` gives, turned
  into planes and back by a ``Transpose`` each way, about 5 µs each per layer on a 256 × 32 state).
  On planes the update is ``x ← x·[ar; ar] + swap(x)·[−ai; ai] + u·[br; bi]``: per element
  exactly the products and sums of ``dA·x + dB·u`` written out in real arithmetic (``a − b`` as
  ``a + (−b)``, the same float), six operators on the whole state; the swap of the two planes is
  a ``Gather`` of blocks of ``M`` floats (a swap inside interleaved pairs costs about 30 times as
  much in onnxruntime: ``Slice`` with step −1 or ``Gather`` per element). The output
  ``y = 2 Re Σ C x + D u`` is one product with ``[2cr; −2ci]`` and one reduction.
  Tried and slower (``spiking-s4-demo``, the step alone, 3 × 3,000 hops, one process,
  alternating; the output bit-identical in all three): the update as one broadcast ``Mul`` of
  ``x [B, H, 2, 1, M]`` with pre-stacked ``[H, 2, 2, M]`` constants and a ``ReduceSum`` over the
  input-plane axis (four operators instead of six, fewer bytes moved; 295 → 405 µs: onnxruntime's
  reduction over a middle axis is slow), the readout as one batched ``MatMul`` ``[H, 1, 2M] ×
  [H, 2M, 1]`` (295 → 470 µs: 256 tiny matrix products), both together 560 µs. Updating the four
  layers' states as one ``[4, H, 2, M]`` block is possible only for the state-only half
  (``dA·x``: ``u`` of a layer is the previous layer's output) and would need the four states
  contiguous in the packed layout, a cross-layer rewrite of the masker and a reordered readout
  sum (different rounding), for at most ~30 fewer kernel calls (~0.3 µs each; the bytes moved
  stay the same): not done, and measured slower besides: in onnxruntime a chain of six
  elementwise operators on one ``[4, 256, 2, 32]`` block takes 82–88 µs, the same work as four
  chains on ``[256, 2, 32]`` 60–62 µs and as sixteen chains on ``[64, 2, 32]`` 85 µs (16,384-float
  tensors are the sweet spot; one thread, 2 MB L2). Also slower: ``[ar; ar]`` stored once as a
  broadcast ``[H, 1, M]`` (half its bytes; bit-identical output): 264–272 → 285–289 µs per step,
  as onnxruntime's broadcasting ``Mul`` loops over the middle axis.
* **STFT front-ends** analyse and synthesise with ONNX ``DFT`` operators (opset 17), not the
  dense Fourier matrices of the PyTorch module (2·(n_fft/2 + 1)·n_fft constants each), and keep
  the spectrum as ``[..., K, 2]`` pairs between the two (what ``DFT`` gives and takes), like the
  fast streaming path (:class:`snnse.fast_plan.STFTFE`): ``|X| = sqrt(Σ r² + eps)``.
* **front-ends** frame and overlap-add one hop with slices and ``cat`` (no ``unfold``, no
  in-place slice update).
* the neurons use their reference per-step code (no fused or compiled kernels) and the fast
  streaming path is off.
"""

from __future__ import annotations

import contextlib
import types

import torch
from torch import nn


# ---- S4D ------------------------------------------------------------------------------------------
def _s4d_real_forward(s4, u: torch.Tensor, state: torch.Tensor):
    """S4D on one frame in real arithmetic: ``u [B, 1, H]``, ``state [B, H, 2, M]`` (planes) or
    ``[B, H, M, 2]`` (pairs)."""
    a_same, a_swap, b_pair, c_pair = s4._onnx_consts
    planes = s4._onnx_planes
    x = state if planes else state.transpose(-1, -2)  # [B, H, 2, M]: real plane, imaginary plane
    swapped = torch.index_select(x, 2, torch.tensor([1, 0]))  # imaginary plane, real plane
    x = x * a_same + swapped * a_swap + u[:, 0, :, None, None] * b_pair  # (ar·xr − ai·xi + br·u, ar·xi + ai·xr + bi·u)
    y = (x * c_pair).sum((-2, -1)) + s4.D * u[:, 0]  # 2·Σ (xr·cr − xi·ci) + D·u
    return y[:, None], x if planes else x.transpose(-1, -2)


def _s4d_consts(s4) -> tuple[torch.Tensor, ...]:
    """``([ar; ar], [−ai; ai], [br; bi], [2cr; −2ci])``, each ``[H, 2, M]`` (real plane, imaginary
    plane), from the discretised ``dA``, ``dB`` and ``C`` (constants of the graph)."""
    with torch.no_grad():
        _, dA, dB, C = s4._discretize()
    planes = lambda a, b: torch.stack([a, b], -2).detach().clone()  # noqa: E731
    return (planes(dA.real, dA.real), planes(-dA.imag, dA.imag), planes(dB.real, dB.imag),
            planes(2 * C.real, -2 * C.imag))


# ---- STFT front-end -------------------------------------------------------------------------------
class _RealDFT(torch.autograd.Function):
    """The STFT front-end's analysis ``frames [B, F, L] → [B, F, K, 2]`` (real, imaginary) as the
    ONNX ``DFT`` operator (one-sided, opset 17) instead of a dense ``[2K, L]`` matrix: the same
    numbers, without 2·K·L constant weights in the graph (1 MB each at n_fft 512)."""

    @staticmethod
    def forward(ctx, frames, weight, window):  # noqa: ARG004 - window is for the graph
        spec = frames @ weight.T  # [B, F, 2K]: real parts, then imaginary
        return spec.unflatten(-1, (2, -1)).transpose(-1, -2).contiguous()

    @staticmethod
    def symbolic(g, frames, weight, window):  # noqa: ARG004 - the matrix is what the graph avoids
        x = frames if window is None else g.op("Mul", frames, window)
        x = g.op("Unsqueeze", x, g.op("Constant", value_t=torch.tensor([-1], dtype=torch.int64)))
        return g.op("DFT", x, axis_i=2, inverse_i=0, onesided_i=1)  # [B, F, K, 2]


class _RealIDFT(torch.autograd.Function):
    """The STFT front-end's synthesis ``[B, F, K, 2] → frames [B, F, L]`` as an inverse ONNX
    ``DFT``: ``y[n] = Re(Σ_k c_k Z_k e^{+iωkn}) / L · out_window[n]`` with ``c_k = 2`` except at
    DC and Nyquist, i.e. the spectrum scaled by ``c``, zero-padded to ``L`` bins and inverted
    (ONNX's inverse DFT divides by ``L``)."""

    @staticmethod
    def forward(ctx, spec, weight, scale, out_window, n_fft):  # noqa: ARG004
        return spec.transpose(-1, -2).flatten(-2) @ weight

    @staticmethod
    def symbolic(g, spec, weight, scale, out_window, n_fft):  # noqa: ARG004
        k = n_fft // 2 + 1
        z = g.op("Mul", spec, scale)  # [B, F, K, 2] · c
        pads = torch.tensor([0, 0, 0, 0, 0, 0, n_fft - k, 0], dtype=torch.int64)
        z = g.op("Pad", z, g.op("Constant", value_t=pads))
        y = g.op("DFT", z, axis_i=2, inverse_i=1, onesided_i=0)  # [B, F, L, 2]
        y = g.op("Gather", y, g.op("Constant", value_t=torch.tensor(0, dtype=torch.int64)), axis_i=3)
        return g.op("Mul", y, out_window)


def _stft_dft_consts(fe) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(analysis window ``[L]`` or None for a rectangular one, ``c [K, 1]``, synthesis window
    ``[L]``) of an STFT front-end: the windows read off its Fourier matrices as the fast
    streaming path does (:class:`snnse.fast_plan.STFTFE`), ``c_k`` = 1 at DC and Nyquist, else 2."""
    from .fast_plan import STFTFE

    plan = STFTFE(fe)
    c = torch.full((fe.n_features, 1), 2.0, dtype=plan.synth.dtype)
    c[0] = 1.0
    if fe.frame_length % 2 == 0:
        c[-1] = 1.0
    return plan.window, c, plan.synth


def _stft_analyze_dft(fe, frames: torch.Tensor):
    spec = _RealDFT.apply(frames, fe.analysis_weight, fe._onnx_dft[0])
    return torch.sqrt((spec * spec).sum(-1) + fe.eps), spec


def _stft_synthesize_dft(fe, mask: torch.Tensor, spec: torch.Tensor):
    _, c, out = fe._onnx_dft
    return _RealIDFT.apply(spec * mask[..., None], fe.synthesis_weight, c, out, fe.frame_length)


# ---- framing and overlap-add of one hop -----------------------------------------------------------
def _frames_step_slices(fe, chunk: torch.Tensor, history: torch.Tensor):
    """:meth:`~snnse.frontends.Frontend.frames_step` with slices instead of ``unfold`` (whose
    TorchScript export mis-shapes a negative dimension)."""
    buf = torch.cat([history, chunk], -1)
    k = chunk.shape[-1] // fe.hop
    frames = torch.stack([buf[:, i * fe.hop : i * fe.hop + fe.frame_length] for i in range(k)], 1)
    return frames, buf[:, buf.shape[-1] - fe.overlap :]


def _overlap_add_cat(fe, frames: torch.Tensor, pending: torch.Tensor):
    """:meth:`~snnse.frontends.Frontend.overlap_add_step` for one frame with ``cat`` instead of an
    in-place slice update (which exports as ScatterND and a dozen shape operators)."""
    if frames.shape[1] != 1:
        return type(fe).overlap_add_step(fe, frames, pending)
    y = frames[:, 0]
    y = torch.cat([y[:, : fe.overlap] + pending, y[:, fe.overlap :]], -1)
    return fe.finalize(y[:, : fe.hop]), y[:, fe.hop :]


@contextlib.contextmanager
def onnx_friendly(model: nn.Module, planes: bool = False):
    """Within the block, ``model``'s modules take the forms of the module docstring (patched on
    the instances, restored on exit), under ``torch.no_grad()``; ``planes``: S4D states as
    ``[..., 2, M]`` planes, else ``[..., M, 2]`` pairs."""
    from .frontends import Frontend, STFTFrontend
    from .neurons import backend
    from .ssm import S4D

    patched = []
    for m in model.modules():
        if isinstance(m, S4D):
            patched.append((m, "forward"))
            m._onnx_consts, m._onnx_planes = _s4d_consts(m), planes
            m.forward = types.MethodType(_s4d_real_forward, m)
        elif isinstance(m, Frontend):
            patched += [(m, "frames_step"), (m, "overlap_add_step")]
            m.frames_step = types.MethodType(_frames_step_slices, m)
            m.overlap_add_step = types.MethodType(_overlap_add_cat, m)
            if isinstance(m, STFTFrontend):  # ONNX DFT operators instead of dense Fourier matrices
                patched += [(m, "analyze"), (m, "synthesize")]
                m._onnx_dft = _stft_dft_consts(m)
                m.analyze = types.MethodType(_stft_analyze_dft, m)
                m.synthesize = types.MethodType(_stft_synthesize_dft, m)
    try:  # the fast streaming path of snnse.fast_step (if present) skips traced calls anyway
        from .fast_step import disabled as fast_off
    except ImportError:  # pragma: no cover
        fast_off = contextlib.nullcontext
    try:
        with backend("autograd"), fast_off(), torch.no_grad():
            yield
    finally:
        for m, attr in patched:
            delattr(m, attr)
            m.__dict__.pop("_onnx_consts", None)
            m.__dict__.pop("_onnx_planes", None)
            m.__dict__.pop("_onnx_dft", None)


__all__ = ["onnx_friendly"]
