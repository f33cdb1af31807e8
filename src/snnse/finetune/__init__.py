"""``snnse finetune``: adapt a trained model to your own recordings, and keep it only if it is better.

A pretrained denoiser is adapted with the recipe it was trained with (``meta["recipe"]`` of its
checkpoint, :func:`snnse.training.recipe_of`: learning rate, loss, augmentation, crop length,
carried-state streams), not with a from-scratch recipe, whose learning rate destroys it in a
few dozen steps. The user's data is either clean speech and noise, mixed on the fly as in
training (``clean`` + ``noise``), or paired recordings (``noisy`` + ``clean``, paired by relative
path). The steps:

1. *Scan*: every file is read once; unreadable, empty, silent or NaN files are skipped and named.
2. *Split by file* (:func:`split_by_file`): a file is held out when a hash of its relative path
   and the seed falls below ``valid_share`` (at least :data:`MIN_VALID_FILES`), so the split is
   reproducible and adding files never moves the others. Clean speech and noise are split
   separately; a voice or noise file is never on both sides.
3. *Held-out pairs*: with clean + noise, each held-out utterance is mixed once with a held-out
   noise (SNR drawn from ``snr``, :data:`SNR_RANGE` by default, and level from ``valid_level``;
   seeded), written to the work folder; with pairs, the held-out pairs themselves.
4. *Train* with :func:`snnse.training.fit` from the start's weights (``model.init``), validating
   every ``eval_every`` steps on the held-out pairs, within a step and/or time budget, resumable
   (``resume``) from the work folder's ``last.ckpt``. The level control of the start is taken
   off for training (carried-state training needs that, as for the bundled models) and put back.
5. *Judge* (:func:`heldout_table`): the start and the candidates (the weights of the
   :data:`CANDIDATES` best validations by held-out SI-SNR, kept during training) run as
   ``snnse enhance`` runs them, scored with SI-SNR, PESQ-WB and STOI on the held-out pairs, on the
   held-out utterances fed clean, and mixed at 30 and 40 dB (the quick robustness check).
   :func:`is_better` accepts a candidate only if the held-out SI-SNR rises and no other figure of
   the table falls (:data:`RULE`); of those accepted, the one with the best held-out SI-SNR is
   kept. When none is, the start is kept: ``out`` gets the start's weights, and the table says why
   (for the best-validated candidate). The held-out files both choose the candidates and judge
   them: with three candidates the verdict is slightly optimistic; a user who needs an unbiased
   figure scores the result on files that took no part (``snnse evaluate``).

``out`` is written atomically, with ``meta["finetune"]`` (what it started from, data amounts,
skipped files, budget, steps, time, the table, the verdict) and ``meta["recipe"]`` (so that it can
be fine-tuned again); ``snnse models --card OUT`` prints it. The work folder (default
``OUT`` without suffix + ``.finetune``) keeps the split, the held-out mixtures, the training run
and ``report.json``/``report.md``.

Modules: :mod:`~snnse.finetune.data` (the start and its recipe, scanning, the split, held-out
pairs), :mod:`~snnse.finetune.judge` (the table and the rule), :mod:`~snnse.finetune.procedure`
(training configuration, snapshots, progress, :func:`finetune`), :mod:`~snnse.finetune.card`
(``snnse models --card FILE``), :mod:`~snnse.finetune.cli` (``snnse finetune``).

Python use::

    from snnse.finetune import finetune
    result = finetune("dpsnn-demo", clean="my/clean", noise="my/noise", out="mine.pt", max_steps=300)
    result["accepted"], result["table"]
"""

from __future__ import annotations

from .card import file_card
from .cli import add_parser, run
from .data import (MIN_SPEECH_S, MIN_VALID_FILES, VALID_SHARE, Data, FinetuneError, scan_audio,
                   split_by_file, start_model)
from .judge import (CHECK_SNRS, METRICS, PARTS, RULE, TOLERANCE, heldout_table, is_better,
                    markdown_table)
from .procedure import CANDIDATES, LR_WARN_FACTOR, SNR_RANGE, default_work, finetune

__all__ = ["CANDIDATES", "CHECK_SNRS", "Data", "FinetuneError", "LR_WARN_FACTOR", "METRICS",
           "MIN_SPEECH_S", "MIN_VALID_FILES", "PARTS", "RULE", "SNR_RANGE", "TOLERANCE", "VALID_SHARE",
           "add_parser", "default_work", "file_card", "finetune", "heldout_table", "is_better",
           "markdown_table", "run", "scan_audio", "split_by_file", "start_model"]
