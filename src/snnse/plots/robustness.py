"""The figure and the Markdown tables of ``snnse evaluate --robustness`` (:mod:`snnse.robustness`).

:func:`figure` draws one PNG with four panels, in the conventions of :mod:`snnse.plots` (Agg
canvas, its style and Okabe–Ito colours, atomic write): (a) output SI-SNR against input SNR,
(b) SI-SNR gain against level, (c) SI-SNR per window of the long stream against time, (d) the
clean-input scores with the target lines. The input is always the dashed grey line.
:func:`markdown` gives the tables to paste in a model card: one per part with one row per system,
then the targets with pass/fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .style import _STYLE, OKABE_ITO, _figure, _save

INPUT = "input"
INPUT_STYLE = {"color": "#555555", "linestyle": (0, (4, 2)), "linewidth": 1.1}
TARGET_COLOR = "#D55E00"


def _colors(systems, model: str | None) -> dict:
    """The model in the blue of ``enhanced`` in :mod:`snnse.plots`, baselines in the other colours."""
    spare = iter(c for c in OKABE_ITO[2:] + OKABE_ITO[1:2] if c != TARGET_COLOR)
    return {s: OKABE_ITO[0] if s == model else next(spare, "#777777") for s in systems if s != INPUT}


def _num(v, digits: int = 2, sign: bool = False) -> str:
    if v is None:
        return "–"
    if abs(v) > 99:
        return "> 99" if v > 0 else "< −99"
    return (f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}").replace("-", "−")


def _fmt(metric: str, v) -> str:
    return _num(v, 3 if metric == "stoi" else 2)


def markdown(report: dict) -> str:
    """The Markdown tables of a suite report (the content of ``robustness.md``)."""
    parts, systems = report["parts"], report["systems"]
    st, s = parts["stream"], report["settings"]
    model = report.get("model") or {}
    head = (f"model `{model.get('path') or model.get('name')}` ({model.get('mode')} mode), "
            if model else "") + (f"baselines {', '.join(report['baselines'])}, " if report["baselines"] else "")
    lines = ["# Robustness suite", "",
             f"{head}seed {report['seed']}, {report['suite']} suite: "
             f"{len(report['inputs']['utterances'])} utterances of `{report['inputs']['clean']}`, noise "
             f"`{report['inputs']['noise']}`; snnse {report['snnse_version']}. Means over the items "
             "scored in every system; `input` is the unprocessed input.", "",
             f"**Clean input** (alone, {s['level_range'][0]:g}..{s['level_range'][1]:g} dBFS; output "
             "scored against the input itself)", "",
             "| system | SI-SNR (dB) | PESQ-WB | STOI |", "|---|---|---|---|"]
    for sy in systems:
        m = parts["clean"]["means"][sy]
        lines.append(f"| {sy} | " + " | ".join(_fmt(k, m[k]) for k in ("sisnr", "pesq_wb", "stoi")) + " |")
    bins = parts["snr"]["bins"]
    lines += ["", "**SNR sweep**: output SI-SNR (dB) / PESQ-WB / STOI per input SNR", "",
              "| system | " + " | ".join(f"{b['snr_db']:g} dB".replace("-", "−") for b in bins) + " |",
              "|---" * (len(bins) + 1) + "|"]
    for sy in systems:
        lines.append(f"| {sy} | " + " | ".join(
            " / ".join(_fmt(k, b["means"][sy][k]) for k in ("sisnr", "pesq_wb", "stoi")) for b in bins) + " |")
    lbins = parts["level"]["bins"]
    lines += ["", f"**Level sweep** ({s['level_snr']:g} dB SNR): output SI-SNR (dB) and its gain over the "
              "input per mixture level", "",
              "| system | " + " | ".join(f"{b['level_db']:g} dBFS".replace("-", "−") for b in lbins) + " |",
              "|---" * (len(lbins) + 1) + "|"]
    for sy in systems:
        cells = [_num(b["means"][sy]["sisnr"]) if sy == INPUT else
                 f"{_num(b['means'][sy]['sisnr'])} ({_num(b['means'][sy]['sisnr_gain'], sign=True)})" for b in lbins]
        lines.append(f"| {sy} | " + " | ".join(cells) + " |")
    n_win = sum(1 for w in st["windows"] if not w.get("skipped"))
    lines += ["", f"**Long stream** ({st['duration_s']:g} s in one go, {len(st['segments'])} noise segments, "
              f"{n_win} windows of {st['window_s']:g} s scored): window means, and the mean SI-SNR gain in "
              f"the first and last {st['head_s']:.0f} s", "",
              "| system | SI-SNR (dB) | PESQ-WB | STOI | gain, first (dB) | gain, last (dB) |",
              "|---|---|---|---|---|---|"]
    for sy in systems:
        m = st["means"][sy]
        lines.append(f"| {sy} | " + " | ".join(_fmt(k, m[k]) for k in ("sisnr", "pesq_wb", "stoi"))
                     + f" | {_num(st['head'][sy]['sisnr_gain'], sign=True)} | "
                       f"{_num(st['tail'][sy]['sisnr_gain'], sign=True)} |")
    tg = report["targets"]
    lines += ["", "**Targets** (worst case of each; margins are output minus input)", "",
              "| target | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for k, chk in enumerate(tg[systems[0]]["checks"]):
        cells = []
        for sy in systems:
            c = tg[sy]["checks"][k]
            where = f" at {c['where']}".replace("-", "−") if c["where"] and c["id"] != "level_spread" else ""
            value = _num(c["value"], 3 if "stoi" in c["id"] else 2)
            cells.append(f"{'pass' if c['pass'] else '**FAIL**'} ({value}{where})")
        target = chk["target"].replace(">=", "≥").replace("<=", "≤")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    verdicts = ("pass" if tg[sy]["pass"] else "**FAIL**" for sy in systems)
    lines.append("| **all targets** | " + " | ".join(verdicts) + " |")
    return "\n".join(lines) + "\n"


def figure(report: dict, path: str | os.PathLike, dpi: int = 200) -> Path:
    """The four-panel PNG of a suite report, written atomically to ``path``."""
    import matplotlib

    parts, systems = report["parts"], report["systems"]
    colors = _colors(systems, (report.get("model") or {}).get("system"))
    others = [s for s in systems if s != INPUT]
    with matplotlib.rc_context(_STYLE):
        fig = _figure(7.2, 6.6)
        (sf_a, sf_b), (sf_c, sf_d) = fig.subfigures(2, 2, hspace=0.04, wspace=0.04)
        ax_a, ax_b, ax_c = sf_a.subplots(), sf_b.subplots(), sf_c.subplots()
        ax_d = sf_d.subplots(1, 3)

        def line(ax, x, y, sy):
            y = np.array([np.nan if v is None else v for v in y], dtype=float)
            style = INPUT_STYLE if sy == INPUT else {"color": colors[sy], "linewidth": 1.3}
            return ax.plot(x, y, marker="" if sy == INPUT else "o", markersize=3, label=sy, **style)[0]

        bins = parts["snr"]["bins"]
        x = [b["snr_db"] for b in bins]
        handles = [line(ax_a, x, [b["means"][sy]["sisnr"] for b in bins], sy) for sy in systems]
        tdef = report["targets_definition"]
        floor, lo = tdef["floor"]["sisnr"], tdef["floor_min_snr"]
        if max(x) >= lo:  # the floor holds from floor_min_snr up
            ax_a.plot([lo - 2, max(x) + 2], [floor] * 2, color=TARGET_COLOR, linewidth=1.0, linestyle=":")
            ax_a.annotate(f"target \u2265 {floor:g} dB\nat {lo:g} dB and up", (max(x) + 2, floor),
                          xytext=(0, -3), textcoords="offset points", color=TARGET_COLOR, fontsize=6,
                          ha="right", va="top")
        ax_a.set(xlabel="input SNR (dB)", ylabel="output SI-SNR (dB)", xticks=x)
        sf_a.suptitle("(a) SNR sweep: output SI-SNR against input SNR", x=0.02, ha="left")

        lb = parts["level"]["bins"]
        x = [b["level_db"] for b in lb]
        for sy in systems:
            line(ax_b, x, [b["means"][sy]["sisnr_gain"] for b in lb], sy)
        lim = report["targets_definition"]["level_max_db"]
        ax_b.axvspan(lim, max(x) + 3, color="#eeeeee", zorder=0)
        ax_b.text(lim + 0.5, 0.02, "not in the\nspread target", transform=ax_b.get_xaxis_transform(),
                  fontsize=5.5, color="#777777")
        ax_b.set(xlabel="mixture level (dBFS)", ylabel="SI-SNR gain over the input (dB)", xticks=x,
                 xlim=(min(x) - 3, max(x) + 3))
        sf_b.suptitle(f"(b) Level sweep ({report['settings']['level_snr']:g} dB SNR): SI-SNR gain",
                      x=0.02, ha="left")

        st = parts["stream"]
        mids = [(w["start_s"] + w["end_s"]) / 2 for w in st["windows"]]
        scale, unit = (60.0, "min") if st["duration_s"] > 180 else (1.0, "s")
        for g in st["segments"][1:]:
            ax_c.axvline(g["start_s"] / scale, color="#bbbbbb", linewidth=0.6, zorder=0)
        for sy in systems:
            line(ax_c, [m / scale for m in mids],
                 [(w["scores"].get(sy) or {}).get("sisnr") for w in st["windows"]], sy)
        for g in st["segments"]:
            ax_c.text((g["start_s"] + g["end_s"]) / 2 / scale, 0.99, f"{g['snr_db']:g}",
                      transform=ax_c.get_xaxis_transform(), fontsize=5.5, ha="center", va="top",
                      color="#777777")
        ax_c.set(xlabel=f"time ({unit}); grey lines: noise changes, its SNR (dB) on top",
                 ylabel="SI-SNR (dB)", xlim=(0, st["duration_s"] / scale))
        sf_c.suptitle(f"(c) Long stream: SI-SNR per {st['window_s']:g} s window", x=0.02, ha="left")

        cm, tdef = parts["clean"]["means"], report["targets_definition"]["floor"]
        for ax, (key, label) in zip(ax_d, (("sisnr", "SI-SNR (dB)"), ("stoi", "STOI"), ("pesq_wb", "PESQ-WB"))):
            vals = [cm[sy][key] for sy in others]
            got = [v for v in vals if v is not None]
            base = {"sisnr": 0.0, "stoi": min([0.5] + [np.floor(v * 10) / 10 for v in got]),
                    "pesq_wb": 1.0}[key]
            top = {"sisnr": max([tdef[key]] + got) * 1.2 + 1, "stoi": 1.0, "pesq_wb": 4.64}[key]
            low = min([base] + got)  # SI-SNR bars may go below 0
            lo = low - 0.08 * (top - low) if low < base else base
            ax.bar(range(len(others)), [(v if v is not None else base) - base for v in vals], bottom=base,
                   color=[colors[s] for s in others], width=0.7, zorder=2)
            ax.axhline(tdef[key], color=TARGET_COLOR, linewidth=0.9, linestyle="--", zorder=3)
            ax.set_ylim(lo, top)
            for k, v in enumerate(vals):
                if v is not None:
                    ax.text(k, max(v, base), _fmt(key, v), ha="center", va="bottom", fontsize=5.5,
                            rotation=90 if len(others) > 2 else 0, zorder=4)
            ax.set_xticks([])
            ax.set_xlabel(label)
            ax.grid(axis="y", color="#dddddd", linewidth=0.5, zorder=0)
        sf_d.suptitle("(d) Clean input (dashed: the targets)", x=0.02, ha="left")
        for ax in (ax_a, ax_b, ax_c):  # (c): no vertical grid, its vertical lines are the noise changes
            ax.grid(axis="y" if ax is ax_c else "both", color="#e5e5e5", linewidth=0.5, zorder=0)
        fig.legend(handles, [f"{s} (unprocessed)" if s == INPUT else s for s in systems],
                   loc="outside lower center", ncols=len(systems), frameon=False)
        return _save(fig, path, dpi)
