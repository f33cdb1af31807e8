"""The ``snnse plot`` subcommand (``spectrogram``, ``raster``, ``metrics``): its parser, reading
mono audio, running a model checkpoint on it, and calling the figure writers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from snnse.cli_common import UsageError

from .bars import metric_bars
from .raster import format_rate, spike_raster
from .spectrogram import spectrograms
from .style import DEFAULT_DPI


def add_parser(sub) -> None:
    """Register ``snnse plot`` with its ``spectrogram``, ``raster`` and ``metrics`` figures."""
    p = sub.add_parser("plot", help="draw figures (spectrograms, spike rasters, metric bars) as PNG",
                       description="Draw publication-quality PNG figures.")
    psub = p.add_subparsers(dest="plot_command", metavar="FIGURE")

    def common(q, func) -> None:
        q.add_argument("-o", "--output", required=True, metavar="OUT.png", help="PNG file to write")
        q.add_argument("--title", default=None, help="figure title")
        q.add_argument("--dpi", type=int, default=DEFAULT_DPI, help=f"resolution (default {DEFAULT_DPI}, >= 150)")
        q.set_defaults(plot_func=func)

    q = psub.add_parser("spectrogram", help="noisy / enhanced / clean spectrograms",
                        description="Stacked log-magnitude spectrograms on one colour scale; with "
                                    "--clean, the titles give each signal's SI-SNR against it.")
    q.add_argument("--noisy", required=True, metavar="F", help="noisy audio file")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--enhanced", metavar="F", help="enhanced audio file")
    g.add_argument("--model", metavar="CKPT", help="model checkpoint: enhance --noisy with it first")
    q.add_argument("--clean", metavar="F", help="clean reference audio file")
    q.add_argument("--downmix", action="store_true", help="average multi-channel files to mono")
    q.add_argument("--device", default="cpu", help="torch device for --model (default cpu)")
    common(q, _cmd_spectrogram)

    q = psub.add_parser("raster", help="spike raster of a model's layers on one file",
                        description="Run a TRAINED model checkpoint on (the start of) an audio file "
                                    "and draw each layer's spikes with its firing rate. An untrained "
                                    "model (snnse create) barely fires, so its raster is nearly empty.")
    q.add_argument("--model", required=True, metavar="CKPT", help="model checkpoint (trained)")
    q.add_argument("--audio", required=True, metavar="F", help="audio file")
    q.add_argument("--max-neurons", type=int, default=64, metavar="N",
                   help="most units drawn per layer, evenly spaced (default 64)")
    q.add_argument("--seconds", type=float, default=2.0, metavar="S",
                   help="use the first S seconds of the audio (default 2)")
    q.add_argument("--downmix", action="store_true", help="average a multi-channel file to mono")
    q.add_argument("--device", default="cpu", help="torch device (default cpu)")
    common(q, _cmd_raster)

    q = psub.add_parser("metrics", help="metric bar chart from an evaluation summary",
                        description="Noisy vs enhanced metric means with 95 %% CIs from the "
                                    "summary.json of snnse evaluate.")
    q.add_argument("source", metavar="RUN_DIR|summary.json", help="evaluation folder or its summary.json")
    common(q, _cmd_metrics)
    p.set_defaults(func=run)


def run(args) -> int:
    """Run ``snnse plot FIGURE``; usage errors raise :class:`UsageError`."""
    func = getattr(args, "plot_func", None)
    if func is None:
        raise UsageError("snnse plot: name a figure: spectrogram, raster or metrics")
    if args.dpi < 150:
        raise UsageError(f"--dpi must be >= 150, got {args.dpi}")
    try:
        return func(args)
    except OSError as err:  # e.g. the output folder is not writable
        raise UsageError(f"{args.output}: cannot write the figure ({err.strerror or err})") from None


def _check_output(out: str, inputs: list[str | None]) -> Path:
    """The output path; UsageError unless it is a .png that is none of the inputs."""
    o = Path(out)
    for p in (Path(i) for i in inputs if i is not None):
        if o.resolve() == p.resolve() or (o.exists() and p.exists() and os.path.samefile(o, p)):
            raise UsageError(f"{o}: output would overwrite input {p}; choose another -o")
    if o.suffix.lower() != ".png" or o.is_dir():
        raise UsageError(f"{o}: output must be a .png file name")
    return o


def _read_mono(path: str, downmix: bool, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 (resampled to ``sample_rate`` if given); UsageError on problems."""
    from snnse.audio import AudioError, read_audio, resample

    try:
        x, sr = read_audio(path)
    except AudioError as err:
        raise UsageError(str(err)) from None
    if x.shape[0] > 1 and not downmix:
        raise UsageError(f"{path}: {x.shape[0]} channels; plots need mono (pass --downmix to average them)")
    x = x.mean(axis=0)
    if sample_rate is not None and sr != sample_rate:
        x, sr = resample(x, sr, sample_rate), sample_rate
    return x, sr


def _forward(model, x: np.ndarray, device: str, name: str):
    """Run ``model`` offline on mono ``x``: ``(enhanced, aux)``; UsageError if it fails."""
    import torch

    try:
        with torch.inference_mode():
            y, aux = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device), return_aux=True)
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"{name}: model failed on this audio ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:200]})") from None
    y = y.detach().cpu().numpy().astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise UsageError(f"{name}: the model produced NaN or Inf samples")
    return y, aux


def _cmd_spectrogram(args) -> int:
    from snnse.cli_common import load_model

    out = _check_output(args.output, [args.noisy, args.enhanced, args.clean, args.model])
    model = load_model(args.model, args.device) if args.model else None
    noisy, sr = _read_mono(args.noisy, args.downmix, int(model.sample_rate) if model else None)
    enhanced = _read_mono(args.enhanced, args.downmix, sr)[0] if args.enhanced else None
    clean = _read_mono(args.clean, args.downmix, sr)[0] if args.clean else None
    if model is not None:
        enhanced = _forward(model, noisy, args.device, args.noisy)[0]
    title = args.title if args.title is not None else Path(args.noisy).stem + (f" ({model.name})" if model else "")
    spectrograms(noisy, enhanced, clean, sr, out, title=title, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


def _cmd_raster(args) -> int:
    from snnse.cli_common import load_model

    out = _check_output(args.output, [args.audio, args.model])
    if args.max_neurons < 1:
        raise UsageError(f"--max-neurons must be >= 1, got {args.max_neurons}")
    if not args.seconds > 0:
        raise UsageError(f"--seconds must be positive, got {args.seconds}")
    model = load_model(args.model, args.device)
    x, sr = _read_mono(args.audio, args.downmix, int(model.sample_rate))
    record = _forward(model, x[: max(1, int(round(args.seconds * sr)))], args.device, args.audio)[1]["record"]
    if not record:
        raise UsageError(f"{args.model}: model {model.name!r} records no layer activity to plot")
    title = args.title if args.title is not None else f"{model.name} — {Path(args.audio).name}"
    rates = spike_raster(record, model.hop, sr, out, max_neurons=args.max_neurons, title=title, dpi=args.dpi)[1]
    print(f"wrote {out} (firing rates: " + ", ".join(f"{k} {format_rate(v)} %" for k, v in rates.items()) + ")")
    return 0


def _cmd_metrics(args) -> int:
    src = Path(args.source)
    if src.is_dir():  # a run folder: its summary.json, else the only one below it
        found = [src / "summary.json"] if (src / "summary.json").is_file() else sorted(src.rglob("summary.json"))
        if len(found) != 1:
            raise UsageError(f"{src}: " + ("no summary.json in this folder" if not found else
                                           f"several summary.json files ({found[0]}, {found[1]}, ...); name one"))
        src = found[0]
    elif not src.is_file():
        raise UsageError(f"{src}: file not found")
    out = _check_output(args.output, [str(src)])
    try:
        summary = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UsageError(f"{src}: not a readable JSON summary ({type(err).__name__}: {err})") from None
    try:
        metric_bars(summary, out, title=args.title, dpi=args.dpi)
    except ValueError as err:
        raise UsageError(f"{src}: {err}") from None
    print(f"wrote {out}")
    return 0
