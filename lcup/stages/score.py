"""Stage: figures about the map: class areas, classes lost, accuracy against a 10 m truth."""

from __future__ import annotations

from typing import Mapping

import dask.array as da
import numpy as np

from ..legends import Legend, apply_crosswalk, compact, get_crosswalk


def relabel(report: dict, to_code: np.ndarray) -> dict:
    """An accuracy report over internal class indices, keyed by the legend's codes."""
    code = {i: int(to_code[i]) for i in range(1, len(to_code))}
    out = dict(report)
    out["classes"] = [code[c] for c in report["classes"]]
    out["confusion_columns"] = [code.get(c, c) if isinstance(c, int) else c for c in report["confusion_columns"]]
    out["per_class"] = {code[c]: v for c, v in report["per_class"].items()}
    return out


def vanished_classes(coarse_px: Mapping, map_px: Mapping, ratio: float = 0.1) -> dict:
    """Classes of the coarse map missing from the 10 m map or under ``ratio`` of their coarse area.

    ``{code: {"coarse_px": n, "map_px": m}}`` for each such class (pixel counts on the output grid).

    Examples
    --------
    >>> vanished_classes({1: 1000, 2: 400}, {1: 900, 2: 39})
    {2: {'coarse_px': 400, 'map_px': 39}}
    """
    return {int(c): {"coarse_px": int(n), "map_px": int(map_px.get(int(c), 0))}
            for c, n in coarse_px.items() if int(c) and map_px.get(int(c), 0) < ratio * n}


def class_counts(cls: da.Array, legend: Legend):
    """Pixels per class code of a ``(y, x)`` class map (0 = no data): a lazy array of length max code + 1."""
    return da.bincount(cls.ravel(), minlength=int(compact(legend)[1].max()) + 1)


def truth_confusions(truth_path: str, truth_legend, geobox, cls: da.Array, coarse: da.Array, legend: Legend, *, chunk_px: int = 512):
    """Lazy confusion counts of the map and of the coarse labels against a 10 m truth, chunk by chunk.

    ``cls`` is in legend codes; ``coarse`` in class indices (:func:`lcup.stages.labels.labels`). Returns two
    ``dask.delayed`` counts for :func:`lcup.ops.accuracy.report_from_confusion`.
    """
    from ..io.rasters import open_on_geobox
    from ..ops.accuracy import confusion_blocks

    to_code = compact(legend)[1]
    truth = open_on_geobox(truth_path, geobox, chunks=chunk_px).map_blocks(
        apply_crosswalk, get_crosswalk(truth_legend, legend), dtype=to_code.dtype)
    coarse_codes = coarse.map_blocks(lambda b: to_code[b], dtype=to_code.dtype)
    return confusion_blocks(truth, cls, legend.codes), confusion_blocks(truth, coarse_codes, legend.codes)


def consistency(cls: da.Array, coarse: da.Array, legend: Legend):
    """Lazy counts comparing the 10 m map (legend codes) with the coarse map it learned from (class indices).

    The one figure a run has without a reference: compute it and pass it to :func:`consistency_figures`.
    """
    from ..ops.accuracy import confusion_blocks

    to_code = compact(legend)[1]
    return confusion_blocks(coarse.map_blocks(lambda b: to_code[b], dtype=to_code.dtype), cls, legend.codes)


def consistency_figures(counts: np.ndarray, legend: Legend) -> dict:
    """Agreement of the map with the coarse map (over the coarse map's labelled pixels) and each class's area
    share in both: ``{"agreement", "classes": {code: {"name", "coarse_share", "map_share"}}}``."""
    k = len(legend.codes)
    c = np.asarray(counts)[:k, : k + 1].astype(np.float64)
    n = c.sum()
    names = legend.names()
    rows, cols = c.sum(1), c[:, :k].sum(0)
    return {"agreement": float(np.trace(c[:, :k]) / n) if n else None,
            "classes": {int(code): {"name": names[code], "coarse_share": float(rows[i] / n) if n else 0.0,
                                    "map_share": float(cols[i] / n) if n else 0.0}
                        for i, code in enumerate(legend.codes) if rows[i] or cols[i]}}
