"""``snnse`` command line tool.

Each subcommand is a pair of functions: ``add_<name>_parser(subparsers)``
registers its arguments and sets ``func`` to ``cmd_<name>(args) -> int``. New
subcommands are added by writing such a pair and listing the ``add_`` function
in :data:`SUBCOMMANDS`.

Exit status: 0 on success, 1 if some input files failed (each reported as one
``error: <file>: <reason>`` line on stderr), 2 for usage errors (bad
arguments, unknown model, unusable checkpoint, no inputs, an output that would
overwrite an input).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from snnse.audio import (AtomicAudioWriter, AudioError, StreamResampler, iter_blocks,
                         open_audio, plan_outputs, truncation_message, wav_truncation)
from snnse.cli_common import UsageError, load_model, parse_sets, parse_value  # noqa: F401 (re-exported)
from snnse.messages import eprint


# ---------------------------------------------------------------- create

def add_create_parser(sub) -> None:
    """Register ``snnse create``."""
    p = sub.add_parser("create", help="create an untrained model and save it",
                       description="Build a model with random (untrained) weights and save it.")
    p.add_argument("name", help="model name, e.g. dpsnn or spiking_s4")
    p.add_argument("-o", "--output", required=True, help="checkpoint path to write")
    p.add_argument("--seed", type=int, default=None, help="random seed for the initial weights")
    p.add_argument("--set", dest="set", action="append", default=[], metavar="KEY=VALUE",
                   help="model configuration value (repeatable), e.g. --set N=16")
    p.set_defaults(func=cmd_create)


def cmd_create(args: argparse.Namespace) -> int:
    """Build an untrained model with ``snnse.models.get`` and save it."""
    import torch
    import snnse.models as models

    kwargs = parse_sets(args.set)
    names = list(models.available())
    if args.name not in names:
        raise UsageError(f"unknown model {args.name!r}; available: {', '.join(names)}")
    if args.seed is not None:
        torch.manual_seed(args.seed)
    try:
        model = models.get(args.name, **kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise UsageError(f"cannot build {args.name} with {kwargs}: {err}") from None
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    n_params = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None
    size = f", {n_params} parameters" if n_params is not None else ""
    print(f"saved UNTRAINED model {args.name!r} to {out} (random weights, not trained{size})")
    return 0


# ---------------------------------------------------------------- enhance

def add_enhance_parser(sub) -> None:
    """Register ``snnse enhance``."""
    p = sub.add_parser("enhance", help="enhance audio files with a model",
                       description="Enhance WAV/FLAC files (or folders of them) with a saved "
                                   "model, streaming in bounded memory.")
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder (or output file for a single .wav/.flac input)")
    p.add_argument("--model", metavar="MODEL",
                   help="checkpoint path or bundled model name (default: the bundled dpsnn-demo; "
                        "see 'snnse models')")
    p.add_argument("--downmix", action="store_true",
                   help="average channels to mono and write mono (default: each channel separately)")
    p.add_argument("--chunk-seconds", type=float, default=1.0,
                   help="block length read and processed at a time (default 1.0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no notices (warnings and errors are still printed)")
    p.set_defaults(func=cmd_enhance)


def enhance_file(model, src: Path, dst: Path, *, downmix: bool = False,
                 chunk_seconds: float = 1.0, device: str = "cpu",
                 notice: Callable[[str], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
    """Enhance one file block by block and write ``dst`` atomically.

    The input is read in blocks of ``chunk_seconds``, resampled to the model
    rate if needed (streaming soxr), fed to a :class:`snnse.streaming.Streamer`
    with channels as the batch, resampled back and written to a temp file that
    replaces ``dst`` at the end. The output has the input's length, rate,
    channel count (1 with ``downmix``), format and subtype.

    A truncated WAV file (:func:`snnse.audio.wav_truncation`: the header
    declares more frames than the file holds) is enhanced from the frames that
    are there, the output has their length, and ``warn`` gets one line saying
    which file and how much of it is missing.

    Raises:
        AudioError: On any problem with the input or the output; no partial
            output is left behind.
    """
    import torch
    from snnse.streaming import Streamer

    with open_audio(src) as snd:
        cut = wav_truncation(src)
        sr, target = snd.samplerate, snd.frames
        chans = 1 if downmix else snd.channels
        msr = int(model.sample_rate)
        if sr != msr and notice is not None:
            notice(f"notice: {src}: resampled {sr} Hz -> {msr} Hz for the model, "
                   f"output resampled back to {sr} Hz")
        down, up = StreamResampler(sr, msr, chans), StreamResampler(msr, sr, chans)
        streamer = Streamer(model, batch=chans)
        written = 0

        def run(x: np.ndarray | None, final: bool) -> np.ndarray:
            parts = []
            if x is not None and x.shape[1]:
                t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
                parts.append(streamer.feed(t))
            if final:
                parts.append(streamer.flush())
            y = (torch.cat(parts, dim=-1) if parts else torch.zeros(chans, 0))
            y = y.detach().to("cpu", torch.float32).reshape(chans, -1).numpy()
            if not np.isfinite(y).all():
                raise AudioError(f"{src}: model produced NaN or Inf samples")
            return y

        with AtomicAudioWriter(dst, sr, chans, subtype=snd.subtype, format=snd.format) as out:
            def emit(y: np.ndarray) -> None:
                nonlocal written
                y = y[:, :max(0, target - written)]
                out.write(y)
                written += y.shape[1]

            n_read = 0
            block = max(1, int(round(chunk_seconds * sr)))
            with torch.inference_mode():
                for x in iter_blocks(snd, block, src):
                    n_read += x.shape[1]
                    if downmix:
                        x = x.mean(axis=0, keepdims=True)
                    emit(up.process(run(down.process(x), final=False)))
                emit(up.process(run(down.flush(), final=True), last=True))
            if n_read == 0:
                raise AudioError(f"{src}: empty audio file (no samples)")
            target = n_read
            if written < target:  # pad the last few samples lost to rounding
                emit(np.zeros((chans, target - written), np.float32))
        if out.clipped and notice is not None:
            notice(f"notice: {dst}: {out.clipped} samples clipped to [-1, 1] for {out.subtype}")
    if cut is not None and warn is not None:
        warn(f"warning: {truncation_message(src, *cut, sr)}; enhanced the {n_read / sr:.2f} s "
             f"that are there into {dst}")


def cmd_enhance(args: argparse.Namespace) -> int:
    """Enhance every input file; exit 1 if any failed."""
    from tqdm import tqdm

    if not args.chunk_seconds > 0:
        raise UsageError("--chunk-seconds must be positive")
    try:
        pairs = plan_outputs(args.inputs, args.output)
    except AudioError as err:
        raise UsageError(str(err)) from None
    notice = None if args.quiet else eprint
    if args.model is None:
        from snnse import pretrained
        args.model = pretrained.DEFAULT
        if notice:
            notice(f"snnse enhance: no --model given; using the bundled {args.model} "
                   f"({pretrained.CATALOGUE[args.model]})")
    model = load_model(args.model, args.device)
    failed = 0
    show = not args.quiet and sys.stderr.isatty()
    for src, dst in tqdm(pairs, desc="enhance", unit="file", file=sys.stderr, disable=not show):
        try:
            enhance_file(model, src, dst, downmix=args.downmix, chunk_seconds=args.chunk_seconds,
                         device=args.device, notice=notice, warn=eprint)
        except AudioError as err:
            failed += 1
            eprint(f"error: {err}")
        except (RuntimeError, ValueError) as err:  # model failure on this input
            failed += 1
            eprint(f"error: {src}: processing failed ({type(err).__name__}: "
                    f"{' '.join(str(err).split())[:200]})")
    if failed and not args.quiet:
        eprint(f"{failed} of {len(pairs)} files failed")
    return 1 if failed else 0


# ---------------------------------------------------------------- models

def add_models_parser(sub) -> None:
    """Register ``snnse models``."""
    p = sub.add_parser("models", help="list bundled pretrained models and model architectures",
                       description="List the bundled pretrained models (usable as --model NAME "
                                   "everywhere a checkpoint is accepted) and the architectures "
                                   "that 'snnse create' and the recipes can build.")
    p.add_argument("--card", metavar="NAME|FILE",
                   help="print the model card of a bundled model, or the card-like metadata of a model file")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    """Print the bundled models (with their demo-test scores) and the registry."""
    import json

    import snnse
    from snnse import pretrained
    from snnse.models import count_parameters

    if args.card and not pretrained.is_name(args.card) and Path(args.card).is_file():
        from snnse.finetune import file_card

        load_model(args.card, "cpu")  # a clear error for a file that is no model
        print(file_card(args.card), end="")
        return 0
    if args.card:
        try:
            text = pretrained.card(args.card)
        except (KeyError, FileNotFoundError) as err:
            raise UsageError(str(err).strip("'\"")) from None
        print(text or f"{args.card}: no model card")
        return 0
    print("bundled pretrained models (--model NAME):")
    for name, what in pretrained.CATALOGUE.items():
        if name not in pretrained.bundled():
            print(f"  {name:<16} not installed in this copy ({what})")
            continue
        model = snnse.load(name)
        line = (f"  {name:<16} {model.name}, {count_parameters(model):,} params, "
                f"{model.latency_ms:g} ms latency, hop {1000 * model.hop / model.sample_rate:g} ms")
        meta = pretrained.folder() / f"{name}.json"
        if meta.is_file():
            m = json.loads(meta.read_text())
            scores = m.get("demo_test", {})
            if scores:
                fmt = {"sisnr": ".2f", "pesq_wb": ".3f", "stoi": ".3f"}  # STOI differences are small
                line += "; demo test: " + ", ".join(
                    f"{k} {v['noisy']:{fmt.get(k, '.2f')}} -> {v['model']:{fmt.get(k, '.2f')}}"
                    for k, v in scores.items())
        print(line + ("  [default]" if name == pretrained.DEFAULT else ""))
        print(f"  {'':<16} {what}")
    print("architectures (snnse create NAME, model.name in recipes): " + ", ".join(snnse.available()))
    return 0


# ---------------------------------------------------------------- main

def add_fit_parser(sub) -> None:
    p = sub.add_parser(
        "fit", help="train a model from a recipe", allow_abbrev=False,
        description="Train with PyTorch Lightning. Every configuration key can be overridden "
                    "with --section.key VALUE (e.g. --trainer.max_steps 50 --optim.lr 3e-4 "
                    "--trainer.devices 2 --trainer.strategy ddp).")
    p.add_argument("--config", help="recipe YAML (configs/*.yaml)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue the run from its last.ckpt (or from CKPT)")
    p.add_argument("--print-config", "--print_config", dest="print_config", action="store_true",
                   help="print the resolved configuration and exit (--print_config: LightningCLI's spelling)")
    p.set_defaults(func=cmd_fit)


def cmd_fit(args: argparse.Namespace) -> int:
    from snnse.config import ConfigError, dump_config, load_config
    from snnse.data.manifest import ManifestError
    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            print(dump_config(cfg), end="")
            return 0
        from snnse.training import fit
        run_dir = fit(cfg, resume=args.resume)
    except (ConfigError, ManifestError, AudioError, ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    if run_dir is not None:  # global rank 0
        print(f"run folder: {run_dir}")
    return 0


def add_data_parser(sub) -> None:
    p = sub.add_parser("data", help="prepare corpora (voicebank, ndns, synthesize, demo)",
                       description="Prepare training and evaluation corpora.")
    dsub = p.add_subparsers(dest="data_command", metavar="CORPUS")
    from snnse.data import demo, ndns, voicebank
    for module in (voicebank, ndns, demo):
        module.add_parser(dsub)

    def usage(args) -> int:
        p.print_usage(sys.stderr)
        print("snnse data: error: name a corpus", file=sys.stderr)
        return 2

    p.set_defaults(func=usage)


def _external(module: str) -> Callable:
    """A subcommand defined in another module as ``add_parser(subparsers)``.

    Such modules keep heavy imports (onnxruntime, matplotlib) inside their functions, so that
    building the parser stays fast.
    """

    def add(sub) -> None:
        import importlib

        importlib.import_module(module).add_parser(sub)

    add.__name__ = f"add_parser[{module}]"
    return add


SUBCOMMANDS: list[Callable] = [
    add_create_parser, add_enhance_parser, add_models_parser, add_fit_parser, add_data_parser,
    _external("snnse.evaluate"), _external("snnse.metrics.efficiency"), _external("snnse.plots"),
    _external("snnse.demo_command"), _external("snnse.deploy_commands"), _external("snnse.finetune"),
    _external("snnse.web"),
]


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with all subcommands."""
    from snnse import __version__

    parser = argparse.ArgumentParser(
        prog="snnse", description="Speech enhancement with spiking neural networks.")
    parser.add_argument("--version", action="version", version=f"snnse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``snnse`` command line tool and return its exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if getattr(args, "func", None) is cmd_fit or getattr(args, "takes_overrides", False):
            args.overrides = extra
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse: --help (0) or usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "func", None) is None:
        parser.print_usage(sys.stderr)
        print("snnse: error: a command is required", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
