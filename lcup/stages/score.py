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
    if "roc" in report:
        out["roc"] = {code[c]: v for c, v in report["roc"].items()}
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


def sample_area_estimates(report: Mapping, *, pixel_ha: float, n_per_class: int = 100, seed: int = 0) -> dict:
    """Class areas with 95 % confidence intervals from a stratified random reference sample drawn from a truth map.

    The strata are the map's classes over the pixels the truth labels; ``n_per_class`` pixels are drawn at random
    (without replacement) in each stratum and their truth class read — drawn here from the confusion counts of
    ``report`` (:func:`lcup.ops.accuracy.report_from_confusion`, rows truth, columns map), which is the same
    random draw as picking pixels. Estimates follow Olofsson et al. (2014) (:func:`lcup.ops.area.stratified_estimates`);
    each class also gets its census area (every truth pixel) and whether the interval covers it: what a user
    with a few hundred reference points would get, checked against the whole truth.

    Returns
    -------
    dict
        ``n_per_class``, ``overall_accuracy`` (± ``_ci``), ``classes``: ``{code: {name, map_ha, area_ha, area_ci_ha,
        census_ha, covered, user_accuracy, producer_accuracy (± _ci)}}``.
    """
    from ..ops.area import stratified_estimates

    codes = list(report["classes"])
    k = len(codes)
    cm = np.asarray(report["confusion_matrix"], np.int64)[:, :k]  # truth × map
    strata = cm.sum(0)
    rng = np.random.default_rng([seed, 7])
    counts = np.zeros((k, k), np.int64)  # map × truth
    for h in range(k):
        if strata[h]:
            counts[h] = rng.multivariate_hypergeometric(cm[:, h], min(n_per_class, int(strata[h])))
    est = stratified_estimates(counts, strata * pixel_ha, classes=codes)
    census = cm.sum(1) * pixel_ha
    out = {}
    for j, c in enumerate(est["classes"]):
        out[int(codes[j])] = {"name": report["per_class"][codes[j]]["name"], "map_ha": c["map_area"], "area_ha": c["area"],
                              "area_ci_ha": c["area_ci"], "census_ha": float(census[j]),
                              "covered": bool(abs(c["area"] - census[j]) <= c["area_ci"]),
                              "user_accuracy": c["user_accuracy"], "user_accuracy_ci": 1.96 * c["user_accuracy_se"],
                              "producer_accuracy": c["producer_accuracy"], "producer_accuracy_ci": 1.96 * c["producer_accuracy_se"]}
    return {"n_per_class": n_per_class, "n": int(counts.sum()), "overall_accuracy": est["overall_accuracy"],
            "overall_accuracy_ci": 1.96 * est["overall_accuracy_se"], "classes": out}


def class_profiles(X: np.ndarray, label: np.ndarray, names: list[str], to_code: np.ndarray, variables: list[str],
                   dates: list[str]) -> dict:
    """Median and quartiles of each series variable (e.g. NDVI) per class through the year, from the sample.

    ``X`` ``(sample, feature)`` with feature ``names`` such as ``ndvi_t04`` (grid step 4 of ``dates``); ``label``
    the samples' class indices (``to_code`` gives codes). Returns ``{var: {"dates": [...], "classes": {code:
    {"p25", "p50", "p75"}}}}`` for the variables present.
    """
    out: dict = {}
    for var in variables:
        cols = [(i, int(n.rsplit("_t", 1)[1])) for i, n in enumerate(names) if n.startswith(f"{var}_t") and n.rsplit("_t", 1)[1].isdigit()]
        if not cols:
            continue
        idx = [i for i, _ in cols]
        prof = {"dates": [dates[t] if t < len(dates) else str(t) for _, t in cols], "classes": {}}
        for c in np.unique(label):
            v = X[label == c][:, idx]
            v = v[np.isfinite(v).all(1)]
            if len(v) >= 5:
                q = np.percentile(v, [25, 50, 75], axis=0)
                prof["classes"][int(to_code[c])] = {"p25": q[0].round(4).tolist(), "p50": q[1].round(4).tolist(),
                                                    "p75": q[2].round(4).tolist()}
        out[var] = prof
    return out
