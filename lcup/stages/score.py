"""Stage: figures about the map: class areas, classes lost, agreement with the coarse map, accuracy against a
10 m truth (:func:`score_run` for a run's written map)."""

from __future__ import annotations

import logging
import warnings
from typing import Mapping

import dask.array as da
import numpy as np
import xarray as xr

from ..cluster import Runner
from ..errors import EmptyClassWarning, LowCoverageWarning
from ..io.rasters import open_on_geobox, probe_raster
from ..legends import Legend, apply_crosswalk, compact, get_crosswalk
from ..ops.accuracy import confusion_blocks, report_from_confusion
from ..ops.area import stratified_estimates
from .area import inside_mask
from .plan import RunPlan

log = logging.getLogger("lcup")


def relabel(report: dict, to_code: np.ndarray) -> dict:
    """An accuracy report over internal class indices, keyed by the legend's codes."""
    code = {i: int(to_code[i]) for i in range(1, len(to_code))}
    out = dict(report)
    out["classes"] = [code[c] for c in report["classes"]]
    out["confusion_columns"] = [code.get(c, c) if isinstance(c, int) else c for c in report["confusion_columns"]]
    out["per_class"] = {code[c]: v for c, v in report["per_class"].items()}
    if "roc" in report:
        out["roc"] = {code[c]: v for c, v in report["roc"].items()}
    if "classes_missing" in report:
        out["classes_missing"] = [code[c] for c in report["classes_missing"]]
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


def truth_confusions(truth_path: str, truth_legend, geobox, cls: da.Array, coarse: da.Array, legend: Legend, *, chunk_px: int = 512,
                     inside: da.Array | None = None):
    """Lazy confusion counts of the map and of the coarse labels against a 10 m truth, chunk by chunk (inside the
    area's polygon only, with ``inside``).

    ``cls`` is in legend codes; ``coarse`` in class indices (:func:`lcup.stages.labels.labels`). Returns two
    ``dask.delayed`` counts for :func:`lcup.ops.accuracy.report_from_confusion`.
    """

    to_code = compact(legend)[1]
    truth = open_on_geobox(truth_path, geobox, chunks=chunk_px, what="truth map (truth.path)").map_blocks(
        apply_crosswalk, get_crosswalk(truth_legend, legend), dtype=to_code.dtype)
    if inside is not None:
        truth = da.where(inside, truth, to_code.dtype.type(0))
    coarse_codes = coarse.map_blocks(lambda b: to_code[b], dtype=to_code.dtype)
    return confusion_blocks(truth, cls, legend.codes), confusion_blocks(truth, coarse_codes, legend.codes)


def consistency(cls: da.Array, coarse: da.Array, legend: Legend):
    """Lazy counts comparing the 10 m map (legend codes) with the coarse map it learned from (class indices).

    The one figure a run has without a reference: compute it and pass it to :func:`consistency_figures`.
    """

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


def score_run(plan: RunPlan, result: xr.Dataset, lab: xr.Dataset | None, runner: Runner) -> dict:
    """The run's figures about its written map ``result``: pixels per class, no data and classes lost (warned),
    agreement with the coarse labels ``lab``, and with ``truth`` set the accuracy of the map and of the coarse map
    against the 10 m truth with area estimates. Chunk by chunk: the whole map is read only against a truth.
    """
    cfg, target, figures = plan.cfg, plan.target, {}
    inside = inside_mask(plan.area, plan.geobox, cfg.load.chunk_px)
    counts, n_px = runner.compute([class_counts(result["class"].data, target),
                                   inside.sum() if inside is not None else da.asarray(plan.geobox.shape[0] * plan.geobox.shape[1])],
                                  "class counts", progress=False)
    n_px = int(n_px)
    figures["predicted_class_px"] = {int(c): int(n) for c, n in enumerate(counts) if n}
    if inside is not None:  # the polygon's pixels only: outside is no data by design, not a gap
        figures["area_px"] = n_px
        counts = counts.copy()
        counts[0] -= plan.geobox.shape[0] * plan.geobox.shape[1] - n_px
    figures.update(_gaps(counts, n_px, plan, lab.attrs["figures"] if lab is not None else None, figures["predicted_class_px"]))
    if lab is not None:  # the upsampling consistency: the one figure a run without a reference has
        cons = consistency_figures(runner.compute(consistency(result["class"].data, lab["label"].data, target),
                                                  "consistency", progress=False), target)
        figures["consistency"] = cons
        log.info("  the 10 m map agrees with the coarse map on %.1f %% of its labelled pixels", 100 * (cons["agreement"] or 0))
    if cfg.truth is not None:
        figures.update(_truth_figures(plan, result, lab, runner))
    return figures


def _truth_figures(plan: RunPlan, result: xr.Dataset, lab: xr.Dataset | None, runner: Runner) -> dict:
    """Accuracy of the map (and of the coarse map) against ``truth``, and area estimates from a sample of it."""
    cfg, target = plan.cfg, plan.target
    coarse = lab["label"].data if lab is not None else da.zeros_like(result["class"].data, dtype=np.uint8)
    cm_pred, cm_coarse = runner.compute(list(truth_confusions(cfg.truth.path, cfg.truth.legend, plan.geobox, result["class"].data,
                                                              coarse, target, chunk_px=cfg.load.chunk_px,
                                                              inside=inside_mask(plan.area, plan.geobox, cfg.load.chunk_px))),
                                        "accuracy against the truth", progress=False)
    pred_rep = report_from_confusion(cm_pred, target.codes, target.names())
    truth = {"prediction_10m": pred_rep}
    log.info("  against the 10 m truth: prediction OA %.3f (kappa %.3f)", pred_rep["overall_accuracy"], pred_rep["kappa"])
    area = sample_area_estimates(pred_rep, pixel_ha=plan.pixel_ha, seed=cfg.model.seed, n_per_class=cfg.truth.area_sample_per_class)
    if lab is not None:
        coarse_rep = report_from_confusion(cm_coarse, target.codes, target.names())
        truth.update(coarse_map_upsampled=coarse_rep, oa_gain_points=100 * (pred_rep["overall_accuracy"] - coarse_rep["overall_accuracy"]))
        log.info("  coarse map OA %.3f (kappa %.3f) | gain %+.1f points", coarse_rep["overall_accuracy"],
                 coarse_rep["kappa"], truth["oa_gain_points"])
    return {"truth": truth, "area": area}


def _gaps(counts: np.ndarray, n_px: int, plan: RunPlan, label_figures: Mapping | None, map_px: dict) -> dict:
    """Warn about pixels without a prediction (of the ``n_px`` mapped) and about coarse classes (nearly) missing
    from the map; their figures."""
    n_nodata = int(counts[0])
    figures: dict = {"nodata_px": n_nodata}
    if n_nodata > 0.01 * n_px:
        warnings.warn(f"{n_nodata} of {n_px} pixels ({100 * n_nodata / n_px:.1f} %) have no prediction: no clear, finite "
                      "observation (NaN, inf and nodata values count as missing) on the kept dates, or outside the imagery; "
                      "widen the period or lower clean.min_valid_fraction", LowCoverageWarning, stacklevel=4)
    if label_figures is None:
        return figures
    lost = vanished_classes(label_figures["class_px"], map_px)
    if lost:
        figures["vanished_classes"] = lost
        names = plan.target.names()
        warnings.warn("classes of the coarse map nearly missing from the 10 m map: " + "; ".join(
            f"{c} {names.get(int(c), '')!r}: {v['map_px']} px against {v['coarse_px']} px in the coarse map" for c, v in lost.items())
            + "; check their training samples (summary.json: samples, labels) or raise labels.n_per_class",
            EmptyClassWarning, stacklevel=4)
    return figures


def probe_inputs(cfg, geobox) -> None:
    """Check every raster the run reads besides the imagery (label map, the other label maps, truth map) opens and
    meets ``geobox`` now, before the heavy work (:func:`lcup.io.rasters.probe_raster`); ``lcup validate`` runs it
    on the area's grid.

    Raises
    ------
    ReadError, LabelError
        Naming the setting (``labels.path``, ``truth.path`` ...) and the fix.
    """
    if cfg.labels is not None and cfg.labels.stac is None:
        probe_raster(cfg.labels.path, geobox, "label map (labels.path)")
    for i, other in enumerate(cfg.labels.others if cfg.labels is not None else []):
        probe_raster(other.path, geobox, f"label map (labels.others[{i}].path)")
    if cfg.truth is not None:
        probe_raster(cfg.truth.path, geobox, "truth map (truth.path)")
