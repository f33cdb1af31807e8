"""Run an exported step graph (:mod:`snnse.export`): its metadata, an onnxruntime session, and
:class:`OnnxStreamer`, which streams a signal hop by hop like :class:`snnse.streaming.Streamer`.

Per-call overhead, measured with onnxruntime 1.32 on one thread (``benchmarks/RESULTS.md``,
"A faster ONNX step"): ``session.run`` with a feed dict costs about 3 µs plus about 1.3 µs per
input and output tensor (conversion from and to numpy, a new output array each call), i.e.
about 20 µs with the twelve state tensors of the unpacked layout. For a packed graph
:class:`OnnxStreamer` binds once (``IOBinding``) an audio buffer, an output buffer and two state
buffers that swap roles every hop (the new state is written into the buffer the next hop reads),
so a call copies one hop in and out and nothing else: about 1–2 µs. ``run_with_iobinding`` is
called without ``RunOptions`` on purpose: with them, onnxruntime 1.32's Python wrapper looks up a
run option that is not set, which raises and catches an exception inside (about 25 µs).
"""

from __future__ import annotations

import ast
import json
import os
import time

import numpy as np

_INTS = ("sample_rate", "hop", "frame_length", "delay_samples", "opset", "state_size")


def metadata(path_or_session) -> dict:
    """The ``metadata_props`` of an exported graph (a path or an onnxruntime session), as strings."""
    if isinstance(path_or_session, (str, os.PathLike)):
        import onnx

        proto = onnx.load(str(path_or_session), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}
    return dict(path_or_session.get_modelmeta().custom_metadata_map)


def metadata_json(path_or_session) -> dict:
    """:func:`metadata` with types, JSON-serialisable (what a web page ships beside the graph):
    integers (``sample_rate``, ``hop``, ``frame_length``, ``delay_samples``, ``opset``,
    ``state_size``), ``latency_ms`` a float, ``state_layout`` a list of dicts, ``state_names``
    a list, ``state_complex`` a list of 0/1, ``model_kwargs`` a dict where it is one, other
    keys strings. A graph written before packing existed gets ``state_format: "unpacked"``."""
    meta = metadata(path_or_session)
    out: dict = dict(meta)
    for k in _INTS:
        if k in meta:
            out[k] = int(meta[k])
    if "latency_ms" in meta:
        out["latency_ms"] = float(meta["latency_ms"])
    if "state_names" in meta:
        out["state_names"] = meta["state_names"].split(",") if meta["state_names"] else []
    if "state_complex" in meta:
        out["state_complex"] = [int(c) for c in meta["state_complex"].split(",") if c]
    if "state_layout" in meta:
        out["state_layout"] = json.loads(meta["state_layout"])
    out.setdefault("state_format", "unpacked")
    try:
        kwargs = ast.literal_eval(meta.get("model_kwargs", ""))
        json.dumps(kwargs)
        out["model_kwargs"] = kwargs
    except (ValueError, SyntaxError, TypeError):
        pass  # not a literal (or not JSON): kept as the string
    return out


def unpack_state(flat: np.ndarray, layout: list[dict]) -> list[np.ndarray]:
    """A packed state ``[1, S]`` (or ``[S]``) → its leaves, each ``flat[offset:offset+size]`` in
    its stored shape (complex leaves ``[..., 2]``); copies."""
    v = np.asarray(flat, np.float32).reshape(-1)
    return [v[e["offset"] : e["offset"] + e["size"]].reshape(e["shape"]).copy() for e in layout]


def pack_state(leaves, layout: list[dict]) -> np.ndarray:
    """The leaves (stored shapes, complex as ``[..., 2]``) → one packed state ``[1, S]`` float32."""
    out = np.zeros((1, sum(e["size"] for e in layout)), np.float32)
    for t, e in zip(leaves, layout):
        out[0, e["offset"] : e["offset"] + e["size"]] = np.asarray(t, np.float32).reshape(-1)
    return out


def session(path: str | os.PathLike, threads: int = 1):
    """An onnxruntime session tuned for per-hop latency: one intra-op thread, sequential, all graph
    optimisations, no spinning (a spinning idle thread would take a core from the audio
    application between hops; with one intra-op thread it changes nothing per call)."""
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
        sess: an onnxruntime session of a graph written by :func:`snnse.export.export_onnx`,
            packed or not (``state_format`` in its metadata).

    Attributes:
        times: seconds spent in the onnxruntime call per hop (for latency figures).
        packed: whether the graph takes one flat state tensor.
    """

    def __init__(self, sess):
        self.sess = sess
        meta = metadata(sess)
        self.hop, self.frame_length = int(meta["hop"]), int(meta["frame_length"])
        self.sample_rate, self.delay = int(meta["sample_rate"]), int(meta["delay_samples"])
        self.inputs = [i.name for i in sess.get_inputs()]
        self.outputs = [o.name for o in sess.get_outputs()]
        self.packed = meta.get("state_format") == "packed"
        self.times: list[float] = []
        if self.packed:
            self._bind_buffers(int(meta["state_size"]))
        else:
            self.zero = [np.zeros(i.shape, np.float32) for i in sess.get_inputs()[1:]]
        self.reset()

    def _bind_buffers(self, size: int) -> None:
        import onnxruntime as ort

        self._audio = np.zeros((1, self.hop), np.float32)
        self._out = np.zeros((1, self.hop), np.float32)
        self._states = [np.zeros((1, size), np.float32) for _ in range(2)]
        values = [ort.OrtValue.ortvalue_from_numpy(a) for a in (self._audio, self._out, *self._states)]
        self._values = values  # keep the OrtValues (they wrap the numpy buffers) alive
        self._bindings = []
        for i in range(2):  # hop with state in buffer i writes the new state into buffer 1 − i
            b = self.sess.io_binding()
            b.bind_ortvalue_input(self.inputs[0], values[0])
            b.bind_ortvalue_input(self.inputs[1], values[2 + i])
            b.bind_ortvalue_output(self.outputs[0], values[1])
            b.bind_ortvalue_output(self.outputs[1], values[3 - i])
            self._bindings.append(b)
        self._cur = 0

    @property
    def state(self) -> list[np.ndarray]:
        """The current state tensors (packed: one ``[1, S]`` array), as the next hop reads them."""
        return [self._states[self._cur]] if self.packed else self._state

    def reset(self) -> None:
        """Start a new stream (zero state); :attr:`times` is kept."""
        if self.packed:
            self._states[self._cur][:] = 0
        else:
            self._state = [z.copy() for z in self.zero]
        self.pending = np.zeros(0, np.float32)
        self.total_in = self.total_out = 0
        self.to_skip = self.delay

    def step(self, hop: np.ndarray) -> np.ndarray:
        """One raw step: ``hop [hop]`` in, ``[hop]`` out (lagging by ``delay``), state carried."""
        if self.packed:
            self._audio[0] = hop
            t0 = time.perf_counter()
            self.sess.run_with_iobinding(self._bindings[self._cur])
            self.times.append(time.perf_counter() - t0)
            self._cur = 1 - self._cur
            return self._out[0].copy()
        t0 = time.perf_counter()
        res = self.sess.run(None, dict(zip(self.inputs, [hop.reshape(1, -1).astype(np.float32), *self._state])))
        self.times.append(time.perf_counter() - t0)
        self._state = res[1:]
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


__all__ = ["metadata", "metadata_json", "unpack_state", "pack_state", "session", "OnnxStreamer"]
