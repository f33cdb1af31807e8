"""Export one streaming step of a model as a static ONNX graph, quantise it, and run it hop by hop.

The graph is ``model.step`` for one hop of one stream, with the whole state as explicit inputs
and outputs, so that any runtime can stream it with a loop::

    inputs:  audio [1, hop] float32, state_0, state_1, ...   (fixed shapes)
    outputs: enhanced [1, hop] float32, new_state_0, ...      (same order and shapes)

The state is the nested ``model.initial_state(1)`` flattened generically (:mod:`snnse.state`,
``torch.utils._pytree`` order); complex leaves (the S4D state) travel as real tensors ``[..., 2]``
(real, imaginary).
The initial state is all zeros (checked at export). ``enhanced`` lags ``audio`` by
``delay_samples = frame_length − hop`` samples, like :meth:`snnse.models.base.Enhancer.step`;
:class:`OnnxStreamer` drops that warm-up and pads the end exactly as
:class:`snnse.streaming.Streamer` does. The graph's ``metadata_props`` record ``sample_rate``,
``hop``, ``frame_length``, ``delay_samples``, ``latency_ms``, ``model``, ``snnse_version``,
``opset`` and the state names.

Only standard ONNX operators are used: spikes ``H(v − θ)`` become ``GreaterOrEqual`` + ``Cast``.
The S4D recurrence ``x ← dA·x + dB·u`` is written in real arithmetic with ``dA``, ``dB``, ``C``
precomputed from the parameters (constants of the graph), since ONNX has no complex tensors. The
STFT front-end's analysis and synthesis are ONNX ``DFT`` operators (opset 17), not the dense
Fourier matrices of the PyTorch module (2·(n_fft/2 + 1)·n_fft constants each).

References:
    ONNX operators, https://onnx.ai/onnx/operators/ ; ONNX Runtime quantisation (QDQ format),
    https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import types
import warnings
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .atomic import atomic_path
from .state import StateSpec, flatten_state

DEFAULT_OPSET = 17


# ---- state flattening (the order is snnse.state's) ---------------------------------------------
def state_names(state) -> list[str]:
    """``state_<i>_<path>`` names of the flattened leaves (e.g. ``state_3_masker_blocks_0_1_0``)."""
    return [f"state_{i}_" + "_".join(str(k) for k in path) for i, path in enumerate(StateSpec(state).paths)]


def to_real(t: torch.Tensor) -> torch.Tensor:
    """Complex → ``[..., 2]`` real (as exported); real tensors unchanged."""
    return torch.view_as_real(t).clone() if t.is_complex() else t


def from_real(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(t.contiguous()) if like.is_complex() else t


# ---- the exported step ---------------------------------------------------------------------------
def _s4d_real_forward(s4, u: torch.Tensor, state: torch.Tensor):
    """S4D on one frame in real arithmetic: ``u [B, 1, H]``, ``state [B, H, M, 2]``."""
    ar, ai, br, bi, cr, ci = s4._onnx_consts
    xr, xi = state[..., 0], state[..., 1]
    v = u[:, 0, :, None]
    nr = ar * xr - ai * xi + br * v
    ni = ar * xi + ai * xr + bi * v
    y = 2 * (nr * cr - ni * ci).sum(-1) + s4.D * u[:, 0]
    return y[:, None], torch.stack([nr, ni], -1)


class _RealDFT(torch.autograd.Function):
    """The STFT front-end's analysis ``frames [B, F, L] → [B, F, 2K]`` (real parts, then imaginary)
    as the ONNX ``DFT`` operator (one-sided, opset 17) instead of a dense ``[2K, L]`` matrix: the
    same numbers, without 2·K·L constant weights in the graph (1 MB each at n_fft 512)."""

    @staticmethod
    def forward(ctx, frames, weight, window):  # noqa: ARG004 - window is for the graph
        return frames @ weight.T

    @staticmethod
    def symbolic(g, frames, weight, window):  # noqa: ARG004 - the matrix is what the graph avoids
        x = g.op("Mul", frames, window)
        x = g.op("Unsqueeze", x, g.op("Constant", value_t=torch.tensor([-1], dtype=torch.int64)))
        spec = g.op("DFT", x, axis_i=2, inverse_i=0, onesided_i=1)  # [B, F, K, 2]
        spec = g.op("Transpose", spec, perm_i=[0, 1, 3, 2])
        return g.op("Reshape", spec, g.op("Constant", value_t=torch.tensor([0, 0, -1], dtype=torch.int64)))


class _RealIDFT(torch.autograd.Function):
    """The STFT front-end's synthesis ``[B, F, 2K] → frames [B, F, L]`` as an inverse ONNX ``DFT``:
    ``y[n] = Re(Σ_k c_k Z_k e^{+iωkn}) / L · out_window[n]`` with ``c_k = 2`` except at DC and
    Nyquist, i.e. the spectrum scaled by ``c``, zero-padded to ``L`` bins and inverted (ONNX's
    inverse DFT divides by ``L``)."""

    @staticmethod
    def forward(ctx, spec, weight, scale, out_window, n_fft):  # noqa: ARG004
        return spec @ weight

    @staticmethod
    def symbolic(g, spec, weight, scale, out_window, n_fft):  # noqa: ARG004
        k = n_fft // 2 + 1
        z = g.op("Reshape", spec, g.op("Constant", value_t=torch.tensor([0, 0, 2, -1], dtype=torch.int64)))
        z = g.op("Mul", g.op("Transpose", z, perm_i=[0, 1, 3, 2]), scale)  # [B, F, K, 2] · c
        pads = torch.tensor([0, 0, 0, 0, 0, 0, n_fft - k, 0], dtype=torch.int64)
        z = g.op("Pad", z, g.op("Constant", value_t=pads))
        y = g.op("DFT", z, axis_i=2, inverse_i=1, onesided_i=0)  # [B, F, L, 2]
        y = g.op("Gather", y, g.op("Constant", value_t=torch.tensor(0, dtype=torch.int64)), axis_i=3)
        return g.op("Mul", y, out_window)


def _stft_dft_consts(fe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(analysis window ``[L]``, ``c [K, 1]``, synthesis window ``[L]``) of an STFT front-end: the
    windows read off its Fourier matrices as the fast streaming path does
    (:class:`snnse.fast_plan.STFTFE`), ``c_k`` = 1 at DC and Nyquist, else 2."""
    from .fast_plan import STFTFE

    plan = STFTFE(fe)
    window = plan.window if plan.window is not None else torch.ones_like(plan.synth)
    c = torch.full((fe.n_features, 1), 2.0, dtype=plan.synth.dtype)
    c[0] = 1.0
    if fe.frame_length % 2 == 0:
        c[-1] = 1.0
    return window, c, plan.synth


def _stft_analyze_dft(fe, frames: torch.Tensor):
    spec = _RealDFT.apply(frames, fe.analysis_weight, fe._onnx_dft[0])
    re, im = spec.chunk(2, -1)
    return torch.sqrt(re**2 + im**2 + fe.eps), spec


def _stft_synthesize_dft(fe, mask: torch.Tensor, ctx: torch.Tensor):
    _, c, out = fe._onnx_dft
    return _RealIDFT.apply(ctx * torch.cat([mask, mask], -1), fe.synthesis_weight, c, out, fe.frame_length)


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
def onnx_friendly(model: nn.Module):
    """Within the block, S4D layers take and return real ``[..., 2]`` states (ONNX has no complex),
    front-ends frame and overlap-add with slices and ``cat``, and the neurons use their reference
    per-step code (no fused or compiled kernels)."""
    from .neurons import backend
    from .ssm import S4D

    from .frontends import Frontend, STFTFrontend

    patched = []
    for m in model.modules():
        if isinstance(m, S4D):
            patched.append((m, "forward"))
            with torch.no_grad():
                _, dA, dB, C = m._discretize()
            m._onnx_consts = tuple(t.detach().clone() for t in (dA.real, dA.imag, dB.real, dB.imag, C.real, C.imag))
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
            m.__dict__.pop("_onnx_dft", None)


class StepGraph(nn.Module):
    """``(audio [1, hop], *state) -> (enhanced [1, hop], *state)`` with flat real state tensors."""

    def __init__(self, model: nn.Module, spec):
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, audio, *flat):
        out, state = self.model.step(audio, self.spec.unflatten(flat))
        return (out, *flatten_state(state)[0])


def initial_flat_state(model: nn.Module) -> tuple[list[torch.Tensor], object, list[str]]:
    """The exported initial state (float32, complex as real pairs), its spec and names.

    Raises:
        ValueError: The initial state is not all zeros (the ONNX contract).
    """
    state = model.initial_state(1, torch.device("cpu"), torch.float32)
    leaves, spec = flatten_state(state)
    if any(bool(t.abs().max() > 0) for t in leaves if t.numel()):
        raise ValueError("model.initial_state(1) is not all zeros; the exported graph assumes it is")
    return [to_real(t) for t in leaves], spec, state_names(state)


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> dict:
    """Write one streaming step of ``model`` (float32, batch 1) to ``path`` as ONNX.

    Args:
        model: An :class:`~snnse.models.base.Enhancer` (``initial_state``, ``step``, ``hop``).
        path: Output ``.onnx`` file (written atomically).
        opset: ONNX opset (default 17: LayerNormalization is a standard op there).

    Returns:
        The metadata written into the graph (strings).

    Shape:
        audio ``[1, hop]`` → enhanced ``[1, hop]``; each state input and output has the shape of
        the matching leaf of ``model.initial_state(1)`` (complex leaves ``[..., 2]``).
    """
    import onnx

    from . import __version__

    model = model.float().eval().cpu()
    flat, spec, names = initial_flat_state(model)
    hop = int(model.hop)
    audio = torch.zeros(1, hop)
    meta = {
        "sample_rate": str(int(model.sample_rate)), "hop": str(hop),
        "frame_length": str(int(model.frame_length)),
        "delay_samples": str(int(model.frame_length) - hop),
        "latency_ms": f"{float(model.latency_ms):g}", "model": str(getattr(model, "name", None)),
        "model_kwargs": repr(getattr(model, "kwargs", {})), "snnse_version": __version__,
        "opset": str(opset), "state_names": ",".join(names),
        "state_complex": ",".join(str(int(t.is_complex())) for t in flatten_state(
            model.initial_state(1, torch.device("cpu"), torch.float32))[0]),
    }
    with onnx_friendly(model), atomic_path(path) as tmp, warnings.catch_warnings():
        # shape-dependent branches are constants for the one-hop graph (TracerWarning); the
        # TorchScript exporter is used on purpose (no onnxscript dependency; DeprecationWarning)
        warnings.simplefilter("ignore")
        graph = StepGraph(model, spec)
        torch.onnx.export(graph, (audio, *flat), str(tmp), dynamo=False, opset_version=opset,
                          input_names=["audio", *names], output_names=["enhanced", *[f"new_{n}" for n in names]],
                          do_constant_folding=True)
        proto = onnx.load(str(tmp))
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        proto.producer_name = "snnse"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return meta


def metadata(path_or_session) -> dict:
    """The ``metadata_props`` of an exported graph (a path or an onnxruntime session)."""
    if isinstance(path_or_session, (str, os.PathLike)):
        import onnx

        proto = onnx.load(str(path_or_session), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}
    return dict(path_or_session.get_modelmeta().custom_metadata_map)


def session(path: str | os.PathLike, threads: int = 1):
    """An onnxruntime session tuned for per-hop latency: one intra-op thread, sequential, no spinning."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OnnxStreamer:
    """Stream a mono signal through an exported step graph; same contract as
    :class:`snnse.streaming.Streamer` (warm-up dropped, end padded like the offline path).

    Args:
        sess: an onnxruntime session of a graph written by :func:`export_onnx`.

    Attributes:
        times: seconds spent in ``sess.run`` per hop (for latency figures).
    """

    def __init__(self, sess):
        self.sess = sess
        meta = metadata(sess)
        self.hop, self.frame_length = int(meta["hop"]), int(meta["frame_length"])
        self.sample_rate, self.delay = int(meta["sample_rate"]), int(meta["delay_samples"])
        self.inputs = [i.name for i in sess.get_inputs()]
        self.outputs = [o.name for o in sess.get_outputs()]
        self.zero = [np.zeros(i.shape, np.float32) for i in sess.get_inputs()[1:]]
        self.times: list[float] = []
        self.reset()

    def reset(self) -> None:
        """Start a new stream (zero state); :attr:`times` is kept."""
        self.state = [z.copy() for z in self.zero]
        self.pending = np.zeros(0, np.float32)
        self.total_in = self.total_out = 0
        self.to_skip = self.delay

    def step(self, hop: np.ndarray) -> np.ndarray:
        """One raw step: ``hop [hop]`` in, ``[hop]`` out (lagging by ``delay``), state carried."""
        t0 = time.perf_counter()
        res = self.sess.run(None, dict(zip(self.inputs, [hop.reshape(1, -1).astype(np.float32), *self.state])))
        self.times.append(time.perf_counter() - t0)
        self.state = res[1:]
        return res[0][0]

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = [self.step(x[i : i + self.hop]) for i in range(0, len(x), self.hop)]
        y = np.concatenate(out) if out else np.zeros(0, np.float32)
        drop = min(self.to_skip, len(y))
        self.to_skip -= drop
        return y[drop:]

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Add samples ``[n]``; return the output samples that are now final."""
        buf = np.concatenate([self.pending, np.asarray(x, np.float32)])
        self.total_in += len(x)
        n = len(buf) - len(buf) % self.hop
        self.pending = buf[n:]
        y = self._run(buf[:n])
        self.total_out += len(y)
        return y

    def flush(self) -> np.ndarray:
        """Pad as the offline path does, return the remaining samples and start a new stream."""
        y = np.zeros(0, np.float32)
        if self.total_in:
            n_frames = -(-(self.total_in + self.frame_length - self.hop) // self.hop)
            done = (self.total_in - len(self.pending)) // self.hop
            pad = (n_frames - done) * self.hop - len(self.pending)
            y = self._run(np.concatenate([self.pending, np.zeros(pad, np.float32)]))
            y = y[: self.total_in - self.total_out]
        self.reset()
        return y

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Stream a whole signal ``[n]`` (fresh state) and return ``[n]`` samples."""
        self.reset()
        return np.concatenate([self.feed(x), self.flush()])


# ---- quantisation ------------------------------------------------------------------------------
def calibration_inputs(float_path: str | os.PathLike, signals: Iterable[np.ndarray], max_hops: int = 2000
                       ) -> list[dict]:
    """Feeds (audio and the states reached) collected by running the float graph hop by hop."""
    sess = session(float_path)
    st = OnnxStreamer(sess)
    feeds: list[dict] = []
    per = max(1, max_hops // max(1, len(signals := list(signals))))
    for x in signals:
        st.reset()
        x = np.asarray(x, np.float32)
        for i in range(0, min(len(x) - len(x) % st.hop, per * st.hop), st.hop):
            hop = x[i : i + st.hop].reshape(1, -1)
            feeds.append(dict(zip(st.inputs, [hop, *[s.copy() for s in st.state]])))
            st.step(hop[0])
    return feeds


def quantize_int8(float_path: str | os.PathLike, out_path: str | os.PathLike, signals: Sequence[np.ndarray],
                  op_types: Sequence[str] = ("MatMul", "Gemm"), scope: str | None = "/masker/",
                  max_hops: int = 2000, calibrate: str = "minmax") -> dict:
    """Static int8 quantisation (QDQ, per-channel symmetric weights, uint8 activations).

    Only the weight-carrying ``op_types`` (matrix products: encoder, decoder, every linear map)
    are quantised; the neurons (comparisons with thresholds, membrane updates), the S4D
    recurrence, normalisation and the state stay float32, because a quantised membrane
    potential flips spikes and its error accumulates over time.

    Args:
        float_path: graph written by :func:`export_onnx`.
        out_path: int8 graph to write (atomically); metadata is copied, ``quantization`` added.
        signals: calibration audio (mono, at the model rate), real speech in noise.
        op_types: operator types to quantise.
        scope: quantise only nodes whose name starts with this (the masker; the front-end's
            analysis and synthesis see raw audio, whose 8-bit quantisation would cost ~20 dB),
            None for all nodes of ``op_types``; if no node matches, all nodes of ``op_types``.
        max_hops: calibration hops (spread over the signals).
        calibrate: ``"minmax"``, ``"entropy"`` or ``"percentile"`` (onnxruntime's methods).

    Returns:
        ``{"dequantize_nodes": n, "op_types": [...], "nodes": [quantised node names],
        "calibration_hops": n}``.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    feeds = calibration_inputs(float_path, signals, max_hops)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    proto = onnx.load(str(float_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    nodes = [n.name for n in proto.graph.node if n.op_type in op_types]
    chosen = [n for n in nodes if scope is None or n.startswith(scope)] or nodes
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibrate]
    logger = logging.getLogger()  # the quantiser warns on the root logger about optional pre-processing
    level = logger.level
    with atomic_path(out_path) as tmp, contextlib.ExitStack() as stack:
        logger.setLevel(logging.ERROR)
        stack.callback(logger.setLevel, level)
        quantize_static(str(float_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(op_types), nodes_to_quantize=chosen, per_channel=True,
                        calibrate_method=method,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        extra_options={"WeightSymmetric": True})
        q = onnx.load(str(tmp))
        del q.metadata_props[:]
        info = f"int8 static QDQ of {len(chosen)} {'/'.join(op_types)} nodes: {','.join(chosen)}"
        for k, v in {**meta, "quantization": info}.items():
            q.metadata_props.add(key=k, value=v)
        onnx.save(q, str(tmp))
    n = sum(1 for node in q.graph.node if node.op_type == "DequantizeLinear")
    return {"dequantize_nodes": n, "op_types": list(op_types), "nodes": chosen, "calibration_hops": len(feeds)}


__all__ = ["export_onnx", "quantize_int8", "OnnxStreamer", "session", "metadata", "flatten_state",
           "initial_flat_state", "onnx_friendly", "DEFAULT_OPSET"]
