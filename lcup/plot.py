"""Figures in the legend's own colours and names (matplotlib, installed with lcup: the run's report draws them)."""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.patches import Patch, PathPatch, Rectangle
from matplotlib.path import Path as MPath

from .legends import Legend


def class_map(cls, legend: Legend, *, ax=None, title: str | None = None, legend_loc: str = "center left"):
    """Show a ``(y, x)`` class map (legend codes, 0 = no data) in the legend's colours, with a key of the classes present.

    Parameters
    ----------
    cls
        ``xarray.DataArray`` or ``numpy`` array of class codes.
    legend
        The map's legend (:func:`lcup.legends.get_legend`).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> lcup.plot.class_map(out["class"], get_legend("lcup7"))  # doctest: +SKIP
    """

    a = np.asarray(cls)
    codes = [0, *legend.codes]
    colours = [(0, 0, 0, 0)] + [tuple(v / 255 for v in legend.colours()[c]) for c in legend.codes]
    index = np.zeros(int(max(codes)) + 1, np.int64)
    index[codes] = np.arange(len(codes))
    ax = ax or plt.subplots(figsize=(6, 6))[1]
    ax.imshow(index[np.clip(a, 0, len(index) - 1)], cmap=ListedColormap(colours),
              norm=BoundaryNorm(np.arange(len(codes) + 1) - 0.5, len(codes)), interpolation="nearest")
    present = set(np.unique(a).tolist())
    names = legend.names()
    ax.legend(handles=[Patch(color=colours[i + 1], label=f"{c} {names[c]}") for i, c in enumerate(legend.codes) if c in present],
              loc=legend_loc, bbox_to_anchor=(1.02, 0.5), frameon=False)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def confusion_matrix(report: Mapping, *, ax=None, normalise: bool = True, title: str | None = None):
    """Heat map of an accuracy report's confusion matrix (rows: reference; columns: predicted, then no data).

    ``normalise`` divides each row by its total (producer's view). Returns the ``Axes``.

    Examples
    --------
    >>> lcup.plot.confusion_matrix(summary.figures["truth"]["prediction_10m"])  # doctest: +SKIP
    """
    cm = np.asarray(report["confusion_matrix"], float)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalise else cm
    rows = [report["per_class"][c]["name"] if c in report["per_class"] else str(c) for c in report["classes"]]
    cols = rows + ["no data"] if cm.shape[1] > len(rows) else rows
    ax = ax or plt.subplots(figsize=(1 + 0.6 * len(cols), 1 + 0.6 * len(rows)))[1]
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    for i in range(shown.shape[0]):
        for j in range(shown.shape[1]):
            ax.text(j, i, f"{shown[i, j]:.2f}" if normalise else f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if shown[i, j] > 0.6 * shown.max() else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title or f"OA {report['overall_accuracy']:.3f}, kappa {report['kappa']:.3f}")
    return ax


def sankey(matrix, legend: Legend, *, labels: tuple[str, str] = ("before", "after"), ax=None, min_share: float = 0.001,
           title: str | None = None):
    """Sankey (alluvial) diagram of a transition matrix: classes of the first map stacked on the left, of the second
    on the right, a ribbon per transition as wide as its area.

    ``matrix`` is ``(K + 1, K + 1)`` with index 0 no data (left out) and rows/columns in ``legend.codes`` order, as
    :func:`lcup.ops.change.transitions` gives; transitions under ``min_share`` of the total are not drawn.
    Returns the ``Axes``.

    Examples
    --------
    >>> lcup.plot.sankey(np.array(result["pairs"][0]["matrix_hectares"]), get_legend("esa-worldcover"))  # doctest: +SKIP
    """

    m = np.asarray(matrix, float)[1:, 1:]
    total = m.sum()
    ax = ax or plt.subplots(figsize=(8, 6))[1]
    if total <= 0:
        ax.text(0.5, 0.5, "no pixel with data in both maps", ha="center")
        ax.set_axis_off()
        return ax
    m = m / total
    codes, names, cols = legend.codes, legend.names(), legend.colours()
    gap = 0.02
    keep_l = [i for i in range(len(codes)) if m[i].sum() >= min_share]
    keep_r = [j for j in range(len(codes)) if m[:, j].sum() >= min_share]
    scale = 1 - gap * max(len(keep_l), len(keep_r))

    def stack(idx, sums):
        pos, y = {}, 1.0
        for i in idx:
            pos[i] = y
            y -= sums[i] * scale + gap
        return pos

    top_l, top_r = stack(keep_l, m.sum(1)), stack(keep_r, m.sum(0))
    x0, x1, w = 0.0, 1.0, 0.06
    off_l, off_r = dict(top_l), dict(top_r)
    for i in keep_l:
        for j in keep_r:
            h = m[i, j] * scale
            if m[i, j] < min_share:
                continue
            yl, yr = off_l[i], off_r[j]
            verts = [(x0 + w, yl), (0.5, yl), (0.5, yr), (x1 - w, yr), (x1 - w, yr - h), (0.5, yr - h), (0.5, yl - h),
                     (x0 + w, yl - h), (x0 + w, yl)]
            codes_p = [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.LINETO, MPath.CURVE4, MPath.CURVE4,
                       MPath.CURVE4, MPath.CLOSEPOLY]
            ax.add_patch(PathPatch(MPath(verts, codes_p), facecolor=tuple(v / 255 for v in cols[codes[i]][:3]), alpha=0.45, lw=0))
            off_l[i] -= h
            off_r[j] -= h
    for side, idx, tops, sums, x, ha in (("l", keep_l, top_l, m.sum(1), x0, "right"), ("r", keep_r, top_r, m.sum(0), x1 - w, "left")):
        for i in idx:
            h = sums[i] * scale
            ax.add_patch(Rectangle((x, tops[i] - h), w, h, facecolor=tuple(v / 255 for v in cols[codes[i]][:3]), edgecolor="k", lw=0.3))
            tx = x - 0.01 if side == "l" else x + w + 0.01
            ax.text(tx, tops[i] - h / 2, f"{names[codes[i]]} {100 * sums[i]:.1f} %", ha=ha, va="center", fontsize=8)
    ax.text(x0 + w / 2, 1.03, labels[0], ha="center", fontweight="bold")
    ax.text(x1 - w / 2, 1.03, labels[1], ha="center", fontweight="bold")
    ax.set_xlim(-0.35, 1.35)
    ax.set_ylim(min(min(t - m.sum(1)[i] * scale for i, t in top_l.items()), min(t - m.sum(0)[j] * scale for j, t in top_r.items())) - 0.02, 1.07)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax
