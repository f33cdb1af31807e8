"""The browser demo: ``snnse web`` serves a page that runs a model's exported ONNX step in the browser.

The page (``static/``) runs the same step graph as :class:`snnse.export.OnnxStreamer`, hop by hop,
with onnxruntime-web (WASM, ``vendor/``, pinned by ``vendor/VERSION.json`` and refreshed by
``scripts/refresh_ort_web.py``) inside a Worker, on a dropped file or live on the microphone; an
AudioWorklet only moves audio between the sound card and the Worker. Nothing is uploaded.

Modules:
    site: the models the page offers, their graphs exported on the fly and cached, and the static
        folder of ``snnse web --export DIR``.
    server: the local HTTP server of ``snnse web`` (127.0.0.1; cross-origin isolation on request).
    command: the ``snnse web`` command.

The page itself: ``static/index.html`` (layout), ``app.js`` (the page: models, file and live
paths, results), ``worker.js`` (onnxruntime-web session and the stepping, the one place that runs
the model), ``worklet.js`` (the AudioWorklet: microphone blocks to the Worker, enhanced hops to the
loudspeaker, dropouts counted), ``dsp.js`` (WAV encoding, spectrograms, the streaming resampler).
"""

from .command import add_parser, run

__all__ = ["add_parser", "run"]
