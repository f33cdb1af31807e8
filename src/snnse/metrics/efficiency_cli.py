"""The ``snnse profile`` subcommand: its parser (:func:`add_parser`), the ``--rates`` syntax
(:func:`parse_rates`), loading the model (checkpoint, bundled or registered name) and :func:`run`,
which prints the table and writes the JSON report and the metricsboard YAML atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from .board import metricsboard
from .opcount import ACCOUNTINGS
from .profile_table import format_table
from .profiling import profile
from snnse.atomic import atomic_write_text


def add_parser(subparsers) -> None:
    """Register ``snnse profile``."""
    p = subparsers.add_parser(
        "profile", help="efficiency profile: params, SynOps, power proxy, latency, energy",
        description="Profile a model: parameters and size, dense MACs (FlopCounterMode and the per-step "
                    "graph), firing rates on audio, N-DNS SynOps/NeuronOps/power proxy/PDP, latency and "
                    "real-time factor, energy estimate.")
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="model checkpoint, a bundled model (dpsnn-demo, spiking-s4-demo), or a registered "
                        "model name (untrained weights) for a quick look")
    p.add_argument("--audio", metavar="DIR", help="audio folder (or file) to measure firing rates and time on")
    p.add_argument("--rates", metavar="K=V,...", help="event rates, e.g. proj=0.463,scnn=0.169,srnn=0.138,"
                                                      "readout=0.079 (override measured ones)")
    p.add_argument("--accounting", choices=ACCOUNTINGS, default="ndns",
                   help="ndns (default) or dpsnn-paper (the DPSNN authors' convention, for comparison)")
    p.add_argument("--eval", metavar="SUMMARY", help="summary.json of 'snnse evaluate' for the metricsboard")
    p.add_argument("--json", metavar="OUT.json", help="write the full report as JSON")
    p.add_argument("--yaml", metavar="OUT.yaml", help="write the N-DNS metricsboard entry (quality fields from --eval) as YAML")
    p.add_argument("--no-timing", action="store_true", help="skip latency/RTF measurement")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=run)


def parse_rates(text: str | None) -> dict[str, float]:
    """``"proj=0.463,scnn=0.169"`` → ``{"proj": 0.463, "scnn": 0.169}``.

    Raises:
        UsageError: On a malformed item or a value that is not a number.
    """
    from ..cli_common import UsageError

    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise UsageError(f"--rates expects key=number[,key=number...], got {item.strip()!r}")
    return out


def _load(spec: str, device: str):
    import snnse.models as models
    from ..cli_common import UsageError, load_model

    from .. import pretrained

    if Path(spec).exists() or pretrained.is_name(spec) or spec not in models.available():
        if not Path(spec).exists() and not pretrained.is_name(spec):
            raise UsageError(f"{spec}: model checkpoint not found, not a bundled model "
                             f"({', '.join(pretrained.CATALOGUE)}) and not a registered model name "
                             f"({', '.join(models.available())})")
        return load_model(spec, device), False
    try:
        model = models.get(spec).to(device)
    except (RuntimeError, AssertionError, ValueError) as err:
        raise UsageError(f"cannot build {spec!r} on device {device!r}: {err}") from None
    return model.eval(), True


def run(args) -> int:
    """``snnse profile``: print the table; write JSON/YAML atomically; exit 1 if audio files were skipped."""
    import yaml

    from ..audio import find_audio_files
    from ..cli_common import UsageError
    from ..messages import eprint

    rates = parse_rates(args.rates)
    quality = None
    if args.eval:
        try:
            quality = json.loads(Path(args.eval).read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"{args.eval}: cannot read evaluation summary ({err})") from None
        if not isinstance(quality, dict):
            raise UsageError(f"{args.eval}: not an 'snnse evaluate' summary (expected a JSON object)")
    files = None
    if args.audio:
        if not Path(args.audio).exists():
            raise UsageError(f"{args.audio}: audio folder not found")
        files = find_audio_files([args.audio])
        if not files:
            raise UsageError(f"{args.audio}: no audio files (.wav/.flac) found")
    model, untrained = _load(args.model, args.device)
    if untrained:
        eprint(f"notice: {args.model!r} built with random weights (UNTRAINED); rates and quality are not "
               "those of a trained model")
    skipped: list[str] = []

    def on_error(msg: str) -> None:
        skipped.append(msg)
        eprint(f"error: {msg}")

    try:
        report = profile(model, files, rates, args.accounting, measure_time=not args.no_timing,
                         on_error=on_error, source=str(args.model), untrained=untrained)
    except (TypeError, ValueError) as err:
        raise UsageError(" ".join(str(err).split())) from None
    if quality is not None:
        report["metricsboard"] = metricsboard(report, quality)
        report["metricsboard_quality_source"] = str(args.eval)
    print(format_table(report))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if args.yaml:
        entry = {"entry": f"{report['model']['name']} ({report['model']['source']})",
                 "snnse_version": report["snnse_version"], **report["metricsboard"]}
        atomic_write_text(Path(args.yaml), yaml.safe_dump(entry, sort_keys=False, allow_unicode=True))
    if skipped:
        eprint(f"{len(skipped)} of {len(files)} audio files skipped")
    return 1 if skipped else 0
