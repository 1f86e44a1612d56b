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
