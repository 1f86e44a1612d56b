"""Figures in the legend's own colours and names (``pip install "lcup[plot]"`` for matplotlib)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .legends import Legend


def _plt():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('lcup.plot needs matplotlib: pip install "lcup[plot]"') from None
    return plt


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
    plt = _plt()
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

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
    plt = _plt()
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
