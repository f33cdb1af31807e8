"""``snnse finetune``: the command line."""

from __future__ import annotations

from .data import MIN_SPEECH_S, MIN_VALID_FILES, VALID_SHARE, FinetuneError
from .judge import markdown_table
from .procedure import SNR_RANGE, finetune


def add_parser(sub) -> None:
    """Register ``snnse finetune``."""
    p = sub.add_parser(
        "finetune", help="fine-tune a trained model on your own recordings, safely",
        description="Adapt a bundled or trained model to your recordings with the recipe it was trained "
                    "with; a part of your files is held out, and the result is kept only if it is better "
                    "there than the start (else the start is kept). Clean speech + noise (mixed on the "
                    "fly) or noisy/clean pairs. Any key of the training configuration can be "
                    "overridden as in snnse fit: --section.key VALUE.", allow_abbrev=False)
    p.add_argument("start", metavar="NAME|MODEL", help="bundled model name, model file (.pt) or snnse fit checkpoint (.ckpt)")
    p.add_argument("--clean", required=True, metavar="DIR", help="folder of clean speech")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--noise", metavar="DIR", help="folder of noise recordings (mixed with the speech on the fly)")
    g.add_argument("--noisy", metavar="DIR", help="folder of noisy recordings paired with --clean by relative path")
    p.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="model file to write")
    p.add_argument("--max-steps", type=int, default=None, help="step budget (default 500 without --max-minutes)")
    p.add_argument("--max-minutes", type=float, default=None, help="time budget for the training")
    p.add_argument("--eval-every", type=int, default=100, help="steps between held-out validations (default 100)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the recipe's)")
    p.add_argument("--recipe", metavar="YAML", help="training recipe, for a start whose file does not name one")
    p.add_argument("--snr", type=float, nargs=2, default=list(SNR_RANGE), metavar=("LO", "HI"),
                   help=f"SNR range (dB) of the held-out mixtures (default {SNR_RANGE[0]:g} {SNR_RANGE[1]:g}; "
                        "the training mixes at the recipe's range); clean + noise only")
    p.add_argument("--rir", metavar="DIR", help="room impulse responses to reverberate the speech with")
    p.add_argument("--valid-share", type=float, default=VALID_SHARE,
                   help=f"share of the files held out (default {VALID_SHARE}, at least {MIN_VALID_FILES} files)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the mixtures and the training")
    p.add_argument("--min-speech", type=float, default=MIN_SPEECH_S, metavar="SECONDS",
                   help=f"least training speech accepted (default {MIN_SPEECH_S:g} s)")
    p.add_argument("--work", metavar="DIR", help="work folder (default: OUT without .pt, plus .finetune)")
    p.add_argument("--resume", action="store_true", help="continue the fine-tune in the work folder")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the recipe's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, takes_overrides=True)


def run(args) -> int:
    """``snnse finetune``: 0 when a model was written (accepted or not), 2 for bad input."""
    from snnse.cli_common import UsageError

    if args.max_steps is None and args.max_minutes is None:
        args.max_steps = 500
    for k in ("max_steps", "eval_every", "batch_size", "threads"):
        v = getattr(args, k)
        if v is not None and v < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be at least 1")
    try:
        res = finetune(args.start, clean=args.clean, noise=args.noise, noisy=args.noisy, out=args.output,
                       work=args.work, rir=args.rir, snr=args.snr, recipe=args.recipe, max_steps=args.max_steps,
                       max_minutes=args.max_minutes, eval_every=args.eval_every, lr=args.lr,
                       batch_size=args.batch_size, valid_share=args.valid_share, seed=args.seed,
                       min_speech_s=args.min_speech, resume=args.resume, threads=args.threads,
                       overrides=getattr(args, "overrides", ()), progress=not args.quiet)
    except FinetuneError as err:
        raise UsageError(str(err)) from None
    print(markdown_table(res["table"]))
    for c in res["meta"]["finetune"]["candidates"]:
        print(f"step {c['step']}: held-out SI-SNR {c['heldout_sisnr']:.2f} dB, "
              + ("passes the rule" if c["accepted"] else "fails: " + "; ".join(c["why_not"])))
    if res["accepted"]:
        print(f"fine-tune ACCEPTED: wrote {res['out']} (step {res['best_step']} of {res['steps']}); "
              f"report in {res['work']}")
    else:
        print(f"fine-tune REJECTED, the start model is kept: {'; '.join(res['why_not'])}.\n"
              f"wrote {res['out']} with the start's weights and this table; the fine-tuned weights are "
              f"in {res['work'] / 'run' / 'snapshots'}")
    return 0
