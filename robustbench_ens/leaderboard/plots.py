"""The two plots, rendered with matplotlib's Agg canvas to PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` and ``FigureCanvasAgg`` directly, so
nothing here touches pyplot or the process-wide backend.
"""
from __future__ import annotations

import io
import math
import textwrap

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib import colormaps

from .format import eps_255, fmt_eps, is_missing
from .page import n_text, norm_text, seeds_text
from .tables import CLEAN, Leaderboard
from .worst_case import THREAT_TITLES

MAX_PANELS = 3  # more budgets than this: the heatmap shows the headline eps only
CMAP = "viridis"


def plain(text: object, width: int | None = None) -> str:
    """Label text shown literally: no mathtext (``$``), optionally wrapped."""
    s = str(text).replace("$", r"\$")
    return "\n".join(textwrap.wrap(s, width, break_long_words=True)) if width and len(s) > width else s


def setting_line(lb: Leaderboard, setting: dict) -> str:
    kinds_text = "/".join(dict.fromkeys(lb.kinds.values())) or "transfer"
    return (f"{lb.suite}: first {n_text(lb, setting)} test points, {norm_text(setting)} "
            f"{kinds_text} attacks, {seeds_text(lb, setting)}")


def suptitle(fig: Figure, text: str, fontsize: int = 11) -> None:
    """``text`` as the figure's title, each line wrapped to the figure's width (a one-panel heatmap is narrower than
    its setting line, which was clipped on both sides)."""
    chars = max(30, int(fig.get_figwidth() * 72 / (0.6 * fontsize)) - 4)  # an average glyph: 0.6 em wide
    fig.suptitle("\n".join(plain(line, chars) for line in text.split("\n")), fontsize=fontsize)


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def heatmap_png(lb: Leaderboard, setting: dict) -> bytes:
    """Annotated robust-accuracy heatmap (rows: clean + attacks, columns: defenses), one panel per eps."""
    eps = lb.eps_list if len(lb.eps_list) <= MAX_PANELS else [lb.headline_eps]
    eps = [e for e in eps if e is not None]
    defs = lb.defenses
    n_def = max(len(defs), 1)
    n_rows = max((len(lb.matrix_rows(e)) for e in eps), default=1)
    longest = max((len(d) for d in defs), default=0)
    rotate = longest > 10 or n_def > 6
    side = n_def * len(eps) <= 14
    ncols, nrows = (max(len(eps), 1), 1) if side else (1, len(eps))
    pw = max(3.6, 0.95 * n_def + 1.6)
    ph = max(2.4, 0.5 * n_rows + (1.3 if rotate else 0.7))
    row_label_w = 0.075 * max((len(a) for e in eps for a in lb.matrix_rows(e)), default=8) + 0.4
    fig = Figure(figsize=(ncols * pw + row_label_w + 1.2, nrows * ph + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    cmap = colormaps[CMAP].with_extremes(bad="#d9d9d9")
    norm = Normalize(0, 100)
    image = None
    if not eps:
        axes[0].text(0.5, 0.5, "no attack results", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, e in zip(axes, eps):
        rows = lb.matrix_rows(e)
        m = np.full((len(rows), len(defs)), np.nan)
        for i, a in enumerate(rows):
            for j, d in enumerate(defs):
                s = lb.matrix_stat(e, a, d)
                if s.has_value:
                    m[i, j] = 100 * s.mean
        image = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, norm=norm, aspect="auto")
        fs = 8 if n_def > 5 else 9
        for i, a in enumerate(rows):
            for j, d in enumerate(defs):
                s = lb.matrix_stat(e, a, d)
                if s.status == "failed":
                    ax.add_patch(_hatch(j, i))
                    txt, color = "failed", "#a40e26"
                elif not s.has_value:
                    txt, color = ("n/a" if s.status == "n/a" else "—"), "#444444"
                else:
                    txt = f"{100 * s.mean:.1f}"
                    if not is_missing(s.std):
                        txt += f"\n±{100 * s.std:.1f}"
                    if s.status == "partial":
                        txt += "*"
                    color = "white" if m[i, j] < 60 else "black"
                box = dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="none") \
                    if s.status == "failed" else None
                ax.text(j, i, txt, ha="center", va="center", fontsize=fs, color=color, bbox=box,
                        fontweight="bold" if s.status == "failed" else "normal")
        ax.set_xticks(range(len(defs)))
        ax.set_xticklabels([plain(d, 18) for d in defs], rotation=30 if rotate else 0,
                           ha="right" if rotate else "center", rotation_mode="anchor", fontsize=9)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(["clean (no attack)" if a == CLEAN else plain(a, 28) for a in rows], fontsize=9)
        ax.set_xticks(np.arange(-0.5, len(defs)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
        ax.axhline(0.5, color="white", linewidth=4)  # separate the clean row
        head = " (headline)" if e == lb.headline_eps else ""
        ax.set_title(f"ε = {fmt_eps(e)}{head}", fontsize=11)
    for ax in axes[len(eps):] if eps else []:
        ax.set_axis_off()
    statuses = {lb.matrix_stat(e, a, d).status for e in eps for a in lb.matrix_rows(e) for d in defs}
    notes = (["* mean over the seeds that did not fail"] if "partial" in statuses else []) + \
        (["hatched: every seed failed"] if "failed" in statuses else [])
    if notes:
        fig.supxlabel(";  ".join(notes), fontsize=8, color="#444444")
    if image is not None:
        cb = fig.colorbar(image, ax=list(axes[:max(len(eps), 1)]), shrink=0.9, pad=0.02)
        cb.set_label("robust accuracy (%)")
    suptitle(fig, "Robust accuracy (%) - " + setting_line(lb, setting))
    return _png(fig)


def _hatch(x: float, y: float) -> Rectangle:
    return Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor="#f4d6d6", edgecolor="#a40e26",
                     hatch="//", linewidth=0, alpha=0.9)


def robust_vs_eps_png(lb: Leaderboard, setting: dict, threat: str = "overall") -> bytes:
    """Per-example worst-case robust accuracy over the attacks of one threat model (at each eps and below) versus eps,
    one line per defense (eps 0 = clean), each line labelled at its end: no legend to look up."""
    ranking = lb.rankings.get(threat, [])
    fig = Figure(figsize=(9.4, max(4.8, 0.24 * len(ranking) + 1.8)), layout="constrained")
    ax = fig.subplots()
    xs = [0.0] + list(lb.eps_list)
    all_255 = all(eps_255(x) is not None for x in xs)
    to_x = (lambda e: 255.0 * e) if all_255 else (lambda e: e)
    values = [to_x(v) for v in xs]
    uneven = len(xs) > 2 and min(np.diff(values)) < 0.1 * (values[-1] - values[0])
    if uneven:  # e.g. L2's 0.25, 0.5, 1, 4: evenly spaced, labelled with their values
        to_x = dict(zip(xs, range(len(xs)))).__getitem__
    cmap = colormaps["tab10" if len(ranking) <= 10 else "tab20"]
    markers = "osD^vP*Xh<>p"
    any_incomplete = False
    span = (to_x(max(xs)) - to_x(min(xs))) or 1.0
    dodge = 0.006 * span if len(ranking) > 1 else 0.0
    ends = []  # (y, x, label, colour) of each line's last point, for the direct labels
    for k, r in enumerate(ranking):
        d = r["defense"]
        c = lb.clean_acc.get(d)
        ys = [100 * c.mean if c is not None and c.has_value else math.nan]
        err = [100 * c.std if c is not None and not is_missing(c.std) else 0.0]
        complete = [True]
        bare = [threat == "overall" and lb.transfer_only(e, d) for e in lb.eps_list]
        for e, transfer_only in zip(lb.eps_list, bare):
            w = r["by_eps"][fmt_eps(e)]
            ys.append(100 * w["robust_acc"] if not is_missing(w["robust_acc"]) and w.get("evaluated", True)
                      else math.nan)
            err.append(100 * w["robust_acc_std"] if not is_missing(w["robust_acc_std"]) else 0.0)
            complete.append(w["complete"] and not transfer_only)
        # dodge the lines a little so that overlapping error bars stay apart
        x = np.array([to_x(v) for v in xs]) + dodge * (k - (len(ranking) - 1) / 2)
        y = np.array(ys)
        color = cmap(k % cmap.N)
        mk = markers[k % len(markers)]
        holes = [i for i, ok in enumerate(complete) if not ok and not math.isnan(y[i])]
        filled = [i for i in range(len(x)) if i not in holes]
        # a transfer-only worst case is not joined to the white-box ones: the line would rise where attacks are fewer
        joined = np.array([y[0]] + [math.nan if b else v for b, v in zip(bare, y[1:])])
        ax.errorbar(x, joined, yerr=np.array(err), color=color, marker=mk, markersize=6, capsize=3,
                    linewidth=1.8, markevery=filled)
        if holes:
            any_incomplete = True
            ax.plot(x[holes], y[holes], linestyle="none", marker=mk, markersize=8, zorder=3,
                    markerfacecolor="white", markeredgecolor=color, markeredgewidth=1.8)
        last = max((i for i in range(len(y)) if not math.isnan(y[i])), default=None)
        if last is not None:
            rank = "" if r["rank"] is None else f"#{r['rank']} "
            ends.append((float(y[last]), float(x[last]), rank + plain(d, 30), color))
    ticks = [to_x(v) for v in xs]
    labels = [fmt_eps(v) for v in xs]
    gaps = np.diff(sorted(ticks)) if len(ticks) > 1 else np.array([1.0])
    crowded = bool(gaps.min() < 0.1 * span)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, rotation=45 if crowded else 0, ha="right" if crowded else "center",
                       rotation_mode="anchor")
    ax.set_xlabel("ε (" + norm_text(setting) + ")" + ("; ε = 0: clean accuracy") +
                  ("; evenly spaced" if uneven else "") +
                  ("\nhollow markers: some attacks failed, did not run or lack per-example outcomes, or transfer "
                   "attacks only (upper bounds)" if any_incomplete else ""))
    ax.set_ylabel("worst-case robust accuracy (%), per example")
    ax.set_ylim(0, 100)
    if ticks:
        ax.set_xlim(min(ticks) - 0.04 * span, max(ticks) + 0.04 * span)
    ax.grid(True, alpha=0.35)
    _label_line_ends(ax, fig, ends, max(ticks, default=0.0) + 0.06 * span)
    title = "Per-example worst case over " + THREAT_TITLES[threat] + " vs ε"
    suptitle(fig, title + "\n" + setting_line(lb, setting))
    return _png(fig)


def _label_line_ends(ax, fig: Figure, ends: list[tuple[float, float, str, object]], x_text: float) -> None:
    """Each line's name at the right of the axes, at the height of its last point, spread so that no two overlap,
    with a thin leader from the point."""
    if not ends:
        return
    height_in = fig.get_figheight() * 0.8
    gap = 100 * (9 * 1.3 / 72) / height_in  # one 9-point line of text, in the axes' percent units
    order = sorted(range(len(ends)), key=lambda i: ends[i][0])
    placed = [0.0] * len(ends)
    floor = -math.inf
    for i in order:
        placed[i] = max(ends[i][0], floor + gap)
        floor = placed[i]
    ceiling = 100 + gap  # then down from the top, where the upward pass went over it
    for i in order[::-1]:
        placed[i] = min(placed[i], ceiling - gap)
        ceiling = placed[i]
    for (y, x, text, color), at in zip(ends, placed):
        ax.annotate(text, xy=(x, y), xytext=(x_text, at), textcoords="data", annotation_clip=False, fontsize=9,
                    color=color, va="center", ha="left",
                    arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.6, "alpha": 0.7})
