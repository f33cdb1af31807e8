"""Static int8 quantisation of an exported step graph (:mod:`snnse.export`), packed or not.

The quantiser (onnxruntime's ``quantize_static``, QDQ format) is calibrated on the feeds of the
float graph run hop by hop over real speech in noise; only the masker's matrix products are
quantised, so the graph's inputs and outputs, the state included (one ``[1, S]`` tensor in a
packed graph), stay float32.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterable, Sequence

import numpy as np

from .atomic import atomic_path
from .export_runtime import OnnxStreamer, session


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



__all__ = ["calibration_inputs", "quantize_int8"]
