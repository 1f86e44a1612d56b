"""Stage: train the classifier on the sample's training blocks and report on its validation blocks."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score, roc_curve

from ..config import ModelConfig
from ..errors import EmptyClassWarning, LabelError, ModelError
from ..io.models import load_model, model_file, save_model
from ..legends import Legend
from ..ops.accuracy import accuracy_report, calibration, temperature_scaling, with_temperature
from ..ops.model import confident_learning_filter, train_model
from ..ops.nn import train_fcn, train_pixelnet
from ..ops.refine import near_classes, refine_labels
from ..ops.sampling import Sample
from ..ops.temporal import regular_grid
from ..progress import ticking
from ..vocab import INDEX_BANDS
from . import section
from ._halo import map_with_halo
from .plan import RunPlan, check_resume
from .score import class_profiles, relabel

log = logging.getLogger("lcup")


def train(X: np.ndarray, sample, *, names: Sequence[str], legend: Legend, model: ModelConfig | Mapping | None = None,
          flagged_out: list | None = None):
    """Fit the classifier on the training samples; score it on the validation blocks (against the coarse labels).

    Parameters
    ----------
    X
        ``(sample, feature)`` float32 features of ``sample`` (rows with NaN are left out).
    sample
        :class:`lcup.ops.sampling.Sample` (:func:`lcup.stages.labels.sample`); its ``value`` weights the samples.
    names
        Feature names, for the importance figures.
    legend
        The legend of ``sample.label`` (class indices: :func:`lcup.legends.compact`).
    model
        :class:`~lcup.config.ModelConfig`: kind, trees, depth, class weights, seed, label cleaning.

    Returns
    -------
    model
        A scikit-learn style classifier with ``n_jobs=1`` (Dask runs one task per core).
    figures : dict
        ``model`` (training figures), ``feature_importance_top``, ``validation`` (OA, kappa, per class; or the
        reason it was skipped), optionally ``label_cleaning`` and ``permutation_importance_top``.

    Examples
    --------
    >>> clf, figures = lcup.train(X, s, names=names, legend=get_legend("lcup7"), model={"n_estimators": 200})  # doctest: +SKIP
    """
    mc = section(ModelConfig, model)
    figures: dict = {}
    tr = ~sample.validation
    weights = sample.value
    if mc.clean_labels:
        ok = np.isfinite(X).all(1)
        keep = np.ones(len(X), bool)
        sel = tr & ok
        k, cinfo = confident_learning_filter(X[sel], sample.label[sel], seed=mc.seed)
        keep[np.nonzero(sel)[0][~k]] = False
        if flagged_out is not None:  # which samples: for the run's list of doubtful coarse labels
            flagged_out.append(~keep)
        figures["label_cleaning"] = cinfo
        log.info("  confident learning flagged %d of %d training samples", cinfo["n_flagged"], int(sel.sum()))
        tr = tr & keep
    if mc.kind == "tempcnn":  # a per-pixel temporal network: early stopping on the validation sample
        va = sample.validation
        clf, minfo = train_pixelnet(X[tr], sample.label[tr], names, X_val=X[va], y_val=sample.label[va],
                                    sample_weight=None if weights is None else weights[tr], width=mc.nn_width,
                                    epochs=mc.nn_epochs, patience=mc.nn_patience, seed=mc.seed, device=mc.device,
                                    calibrate=mc.calibrate != "none")
        figures["training_curve"] = minfo.pop("history")
        minfo["kind"] = "tempcnn"
    else:
        if mc.kind == "random_forest":
            params = {"n_estimators": mc.n_estimators, "max_depth": mc.max_depth, "min_samples_leaf": mc.min_samples_leaf,
                      "max_features": mc.max_features, "class_weight": mc.class_weight, **mc.params}
        else:
            params = {"class_weight": mc.class_weight, "max_depth": mc.max_depth, **mc.params}
        clf, minfo = train_model(X[tr], sample.label[tr], kind=mc.kind, params=params, seed=mc.seed,
                                 sample_weight=None if weights is None else weights[tr])
        imp = np.asarray(clf.feature_importances_, float)
        imp = imp / imp.sum() if imp.sum() > 0 else imp
        figures["feature_importance_top"] = dict(sorted(zip(names, map(float, imp)), key=lambda kv: -kv[1])[:15])
    figures["model"] = minfo
    n_val_classes = len(np.unique(sample.label[sample.validation]))
    if n_val_classes < 2:
        why = ("the area holds a single validation block or none" if not sample.validation.any() else
               f"the validation blocks hold {n_val_classes} class only")
        figures["validation"] = {"skipped": f"no spatial validation: {why}; make labels.block_m smaller than the "
                                            "area (several blocks of several classes) or score against a truth map"}
        warnings.warn(figures["validation"]["skipped"], EmptyClassWarning, stacklevel=2)
    else:
        Xv = X[sample.validation]
        ok = np.isfinite(Xv).all(1)
        pv = np.zeros(len(Xv), np.uint8)
        if ok.any():
            pv[ok] = clf.predict(Xv[ok])
        figures["validation"] = accuracy_report(sample.label[sample.validation], pv, legend.codes, legend.names())
        if ok.any():
            pva = clf.predict_proba(Xv[ok])
            if mc.calibrate == "temperature" and mc.kind in ("random_forest", "lightgbm"):
                figures["model"]["calibration"] = cal = temperature_scaling(pva, sample.label[sample.validation][ok], clf.classes_)
                clf.lcup_temperature_ = cal["temperature"]  # saved with the model; applied by predict_block
                pva = with_temperature(pva, cal["temperature"])
            figures["validation"]["roc"] = roc_curves(sample.label[sample.validation][ok], pva, clf.classes_)
            figures["validation"]["calibration"] = calibration(sample.label[sample.validation][ok], pva, clf.classes_)
        missing = sorted(set(np.unique(sample.label[~sample.validation]).tolist()) - set(np.unique(sample.label[sample.validation]).tolist()))
        if missing:  # rare classes the spatial split kept whole in the training blocks, so that they can be learnt
            figures["validation"]["classes_missing"] = [int(c) for c in missing]
        if mc.permutation_importance and ok.sum() > 10:
            n = min(2000, int(ok.sum()))
            pi = permutation_importance(clf, Xv[ok][:n], sample.label[sample.validation][ok][:n], n_repeats=3,
                                        random_state=mc.seed, n_jobs=1)
            figures["permutation_importance_top"] = dict(
                sorted(zip(names, map(float, pi.importances_mean)), key=lambda kv: -kv[1])[:15])
        log.info("  spatial-block validation (against the coarse labels): OA %.3f kappa %.3f",
                 figures["validation"]["overall_accuracy"], figures["validation"]["kappa"])
    if hasattr(clf, "set_params"):  # networks predict on one thread already
        clf.set_params(n_jobs=1)  # one thread per task: Dask already runs one task per core
    return clf, figures


def roc_curves(label: np.ndarray, proba: np.ndarray, classes, max_points: int = 101) -> dict:
    """One-vs-rest ROC curve and AUC of each class: ``{class: {"auc", "fpr", "tpr"}}`` (curves thinned to
    ``max_points``); classes absent from ``label`` (or alone in it) have none.

    Examples
    --------
    >>> r = roc_curves(np.array([1, 1, 2, 2]), np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]]), [1, 2])
    >>> r[1]["auc"], r[2]["auc"]
    (1.0, 1.0)
    """
    out = {}
    for k, c in enumerate(classes):
        y = label == c
        if y.any() and (~y).any():
            fpr, tpr, _ = roc_curve(y, proba[:, k])
            keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
            out[int(c)] = {"auc": float(roc_auc_score(y, proba[:, k])), "fpr": fpr[keep].round(4).tolist(),
                           "tpr": tpr[keep].round(4).tolist()}
    return out


def refine(X: np.ndarray, sample, lab, *, model: ModelConfig | Mapping | None = None, names: Sequence[str] | None = None,
           plausible: np.ndarray | None = None, cell_px: int | None = None):
    """Iterative label refinement with coarse-cell constraints (``model.refine_rounds``): the sample with some
    training labels changed, and what changed round by round.

    Only training samples move; the validation blocks keep the coarse labels (their scores stay comparable). A
    sample may become a class the coarse map holds within one coarse cell of it (:func:`plausible_at`); the
    cross-fitting groups are blocks of 3 × 3 coarse cells (:func:`lcup.ops.refine.refine_labels`). With
    ``model.kind: tempcnn`` (and the feature ``names``) the per-pixel network vouches for the labels it learns from,
    cross-fitted as the forests are (the network's own pseudo-labels, as Paraformer's); else forests.

    Parameters
    ----------
    X
        ``(sample, feature)`` features of ``sample``.
    sample
        :class:`lcup.ops.sampling.Sample`.
    lab
        :func:`lcup.stages.labels.labels`' dataset (its ``label`` and ``figures["coarse_cell_px"]``).
    plausible, cell_px
        Instead of ``lab`` (a sample pooled from several grids): the ``(training sample, class)`` plausibility of
        :func:`plausible_at` for the training samples' classes, and the coarse cell in pixels.

    Returns
    -------
    sample, info
        A new :class:`~lcup.ops.sampling.Sample` and ``{"rounds": [{"relabelled", "to"}, ...], "changed"}``.

    Examples
    --------
    >>> smp2, info = lcup.stages.train.refine(X, smp, lab, model={"refine_rounds": 2})  # doctest: +SKIP
    """
    mc = section(ModelConfig, model)
    if mc.refine_rounds == 0:
        return sample, {"rounds": [], "changed": 0}
    cell = max(1, int(round(lab.attrs["figures"]["coarse_cell_px"] if cell_px is None else cell_px)))
    tr = ~sample.validation
    classes = np.unique(sample.label[tr])
    plaus = plausible if plausible is not None else plausible_at(lab["label"].data, sample.iy[tr], sample.ix[tr], classes, cell)
    groups = (sample.iy[tr] // (3 * cell)) * 10_000_019 + sample.ix[tr] // (3 * cell)
    fit_proba = None
    if mc.kind == "tempcnn" and names is not None:
        def fit_proba(Xa, ya, Xb, seed):  # the network that will learn from the labels vouches for them
            net, _ = train_pixelnet(Xa, ya, names, width=mc.nn_width, epochs=min(mc.nn_epochs, 20), seed=seed,
                                    device=mc.device)
            return net.predict_proba(Xb)
    new, info = refine_labels(X[tr], sample.label[tr], groups, plaus, rounds=mc.refine_rounds,
                              threshold=mc.refine_threshold, seed=mc.seed, fit_proba=fit_proba)
    info["by"] = "tempcnn" if fit_proba is not None else "random_forest"
    for k, r in enumerate(info["rounds"], 1):
        log.info("  label refinement round %d: %d training samples relabelled %s", k, r["relabelled"], r["to"])
    label = sample.label.copy()
    label[tr] = new
    return dataclasses.replace(sample, label=label), info


def plausible_at(label, iy: np.ndarray, ix: np.ndarray, classes, radius_px: int) -> np.ndarray:
    """``(sample, class)`` bool: whether each class occurs in the lazy label map ``label`` ``(y, x)`` within
    ``radius_px`` of each position (a square window), computed chunk by chunk with a halo; only the chunks
    holding positions are read."""
    classes = np.asarray(classes)
    near = map_with_halo(lambda b: near_classes(b, classes, radius_px), label, int(radius_px),
                         out_chunks=label.chunks + ((len(classes),),), dtype=bool)
    return np.asarray(near.vindex[np.asarray(iy), np.asarray(ix)].compute())



def saved_model(plan: RunPlan) -> tuple[object | None, str | None]:
    """The model a run uses without training, and where it comes from: ``model.path`` (train once, apply
    anywhere; checked against this run's features and resolution), or on ``--resume`` the run's own
    model file (``model.skops`` or ``model.npz``; the store's digest checked first). ``(None, None)`` when the run trains.

    Raises
    ------
    OutputExistsError
        If the store to resume was written with other settings or data.
    ModelError
        If ``model.path`` does not fit this run.
    """
    cfg = plan.cfg
    model, source = None, None
    if cfg.output.resume and plan.zarr_path.exists():
        check_resume(plan.zarr_path, plan.digest)
        saved = model_file(plan.out)
        if saved is not None:
            model, _ = load_model(saved)
            source = str(saved)
    if cfg.model.path is not None:
        model, meta = load_model(cfg.model.path, expected_features=list(plan.names))
        res = meta.get("resolution")
        if res is not None and abs(float(res) - cfg.aoi.resolution) > 1e-9:
            raise ModelError(f"model {cfg.model.path} was trained at {res} m, this grid is {cfg.aoi.resolution} m; set "
                             f"aoi.resolution: {res} or train a model at {cfg.aoi.resolution} m")
        source = cfg.model.path
    return model, source


def fit(plan: RunPlan, X: np.ndarray, smp, lab, *, windows: list | None = None, progress: bool = False,
        plausible: np.ndarray | None = None, cell_px: int | None = None) -> tuple[object, dict]:
    """The run's model, trained on the sample ``smp`` (features ``X``) after the optional label refinement, or with
    ``model.kind: fcn`` on the training ``windows`` (:func:`lcup.stages.tiles.training_windows`), and saved in the
    output folder (``model.skops``, a network ``model.npz``); returns ``(model, figures)``: the training and
    validation figures (legend codes), the refinement's and the classes' profiles through the year. ``plausible`` and
    ``cell_px``: for a sample pooled from several grids (``lab`` None), as :func:`refine` takes them."""
    cfg, figures = plan.cfg, {}
    train_smp, flagged = smp, []
    if cfg.model.refine_rounds:
        with ticking(f"refining the training labels ({cfg.model.refine_rounds} rounds)", enabled=progress):
            train_smp, refinement = refine(X, smp, lab, model=cfg.model, names=list(plan.names), plausible=plausible,
                                           cell_px=cell_px)
        rounds = [{"relabelled": r["relabelled"], "to": {int(plan.to_code[int(c)]): n for c, n in r["to"].items()}}
                  for r in refinement.get("rounds", [])]
        figures["refinement"] = {**refinement, "rounds": rounds}
    if cfg.model.kind == "fcn":
        with ticking(f"training a network on {len(windows)} window(s)", enabled=progress):
            model, trained = train_network(windows, train_smp, legend=plan.internal, model=cfg.model)
    else:
        with ticking(f"training a {cfg.model.kind.replace('_', ' ')} on {len(smp.label):,} samples", enabled=progress):
            model, trained = train(X, train_smp, names=list(plan.names), legend=plan.internal, model=cfg.model,
                                   flagged_out=flagged)
    if "classes" in trained.get("validation", {}) and plan.internal is not plan.target:
        trained["validation"] = relabel(trained["validation"], plan.to_code)
    figures.update(trained)
    swir = [v for v in cfg.features.series if v != "ndvi" and any(b.startswith("swir") for b in INDEX_BANDS.get(v, ()))]
    grid_dates = [str(d.date()) for d in regular_grid(cfg.period[0], cfg.period[1], cfg.clean.step_days)]
    figures["profiles"] = class_profiles(X, smp.label, list(plan.names), plan.to_code, ["ndvi", *swir[:1]], grid_dates)
    if lab is not None and (train_smp is not smp or flagged):  # the coarse labels the training doubted, where
        figures["doubtful_labels"] = write_doubtful_labels(plan, smp, train_smp, flagged[0] if flagged else None,
                                                           plan.out / "doubtful_labels.csv")
    save_model(model, plan.out / "model.skops", feature_names=list(plan.names), legend=plan.target.to_dict(),
               resolution=cfg.aoi.resolution, bands=list(cfg.load.bands), period=[str(d) for d in cfg.period])
    return model, figures


def write_doubtful_labels(plan: RunPlan, smp, refined, flagged: np.ndarray | None, path) -> dict:
    """``doubtful_labels.csv`` (and ``.gpkg`` with the vector extra): the training samples whose coarse label the
    training doubted, one row each: ``x``, ``y`` (pixel centre, grid CRS), ``lon``, ``lat``, ``coarse_class`` (the
    coarse map's code), ``refined_class`` (the label refinement's, = coarse when it kept it) and ``by``
    (``refinement`` and/or ``confident learning``). Returns ``{"path", "relabelled", "flagged"}``."""
    import pandas as pd
    from pyproj import Transformer

    moved = refined.label != smp.label
    flag = np.zeros(len(smp.label), bool) if flagged is None else np.asarray(flagged, bool)
    rows = np.nonzero(moved | flag)[0]
    a, _, c, _, e, f = tuple(plan.geobox.transform)[:6]
    x, y = c + a * (smp.ix[rows] + 0.5), f + e * (smp.iy[rows] + 0.5)
    lon, lat = Transformer.from_crs(str(plan.geobox.crs), "EPSG:4326", always_xy=True).transform(x, y)
    by = np.where(moved[rows] & flag[rows], "refinement; confident learning",
                  np.where(moved[rows], "refinement", "confident learning"))
    df = pd.DataFrame({"x": x, "y": y, "lon": lon, "lat": lat, "coarse_class": plan.to_code[smp.label[rows]],
                       "refined_class": plan.to_code[refined.label[rows]], "by": by})
    df.to_csv(path, index=False)
    out = {"path": str(path), "relabelled": int(moved.sum()), "flagged": int(flag.sum())}
    try:
        import geopandas as gpd
    except ImportError:  # the vector extra: the CSV holds the same (x, y in the grid's CRS)
        return out
    gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df.x, df.y), crs=str(plan.geobox.crs)).to_file(
        Path(path).with_suffix(".gpkg"), layer="doubtful_labels")
    out["gpkg"] = str(Path(path).with_suffix(".gpkg"))
    return out


def fit_pooled(parts: Sequence, out_plan: RunPlan, *, progress: bool = False) -> tuple[object, dict]:
    """One model from the training samples of several grids (the tiles of a Sentinel-2-tiled run): their samples
    and features pooled, the label refinement's plausibility read on each tile's own coarse labels, saved in
    ``out_plan``'s output folder; as :func:`fit` returns.

    ``parts``: per tile, ``(plan, smp, X, lab, windows)`` (:func:`lcup.pipeline.run_pipeline` with
    ``sample_only``). Positions are moved apart per tile so that the cross-fitting groups never join two tiles.
    """
    cfg = out_plan.cfg
    parts = [p for p in parts if p[1] is not None and len(p[1].label)]
    if not parts:
        raise LabelError("no tile of the area holds a training sample; check the label map over the area")
    names = [tuple(p[0].names) for p in parts]
    if len(set(names)) != 1:
        raise RuntimeError(f"the tiles' features differ: {set(names)}")
    span = 10_000_000  # more pixels than any grid has a side: positions of different tiles never share a group
    smp = Sample(iy=np.concatenate([p[1].iy for p in parts]), ix=np.concatenate([p[1].ix + k * span for k, p in enumerate(parts)]),
                 label=np.concatenate([p[1].label for p in parts]), validation=np.concatenate([p[1].validation for p in parts]),
                 value=None if any(p[1].value is None for p in parts) else np.concatenate([p[1].value for p in parts]))
    X = np.concatenate([p[2] for p in parts])
    windows = [w for p in parts for w in (p[4] or [])] if cfg.model.kind == "fcn" else None
    plausible, cell = None, None
    if cfg.model.refine_rounds:
        classes = np.unique(smp.label[~smp.validation])
        cell = max(1, int(round(parts[0][3].attrs["figures"]["coarse_cell_px"])))
        plausible = np.concatenate([plausible_at(p[3]["label"].data, p[1].iy[~p[1].validation], p[1].ix[~p[1].validation],
                                                 classes, cell) for p in parts])
    return fit(out_plan, X, smp, None, windows=windows, progress=progress, plausible=plausible, cell_px=cell)


def train_network(windows: list, sample, *, legend: Legend, model: ModelConfig | Mapping | None = None):
    """Train the fully convolutional network (:func:`lcup.ops.nn.train_fcn`) on ``windows`` of the feature cube and
    score it on the validation blocks' sampled pixels, as :func:`train` scores a forest.

    Returns
    -------
    model, figures
        :class:`lcup.ops.nn.FCNModel`; ``model`` (epochs, best epoch, device), ``training_curve`` (loss and
        validation accuracy per epoch) and ``validation`` (against the coarse labels).
    """
    mc = section(ModelConfig, model)
    classes = np.unique(sample.label[~sample.validation])
    net, info = train_fcn(windows, classes, width=mc.nn_width, dilations=mc.nn_dilations, epochs=mc.nn_epochs,
                          patience=mc.nn_patience, aggregate_weight=mc.nn_aggregate_loss, seed=mc.seed, device=mc.device,
                          encoder=mc.nn_encoder, depth=mc.nn_depth, weights=mc.nn_weights, calibrate=mc.calibrate != "none")
    truth, pred = [], []
    for w in windows:  # the validation pixels of the usable labels: what early stopping read
        m = w.validation & w.usable & np.isfinite(w.x).all(-1) & np.isin(w.label, classes)
        if m.any():
            p = net.predict_proba_image(w.x)
            truth.append(w.label[m])
            pred.append(np.asarray(net.classes_)[p[m].argmax(-1)])
    figures: dict = {"model": {"kind": "fcn", "epochs": info["epochs"], "best_epoch": info["best_epoch"],
                               "device": info["device"], "windows": len(windows), "context_px": net.context_px,
                               "encoder": net.encoder, **({"depth": net.depth, "weights": mc.nn_weights} if net.encoder != "none" else {}),
                               "calibration": info["calibration"]},
                     "training_curve": info["history"]}
    if truth:
        figures["validation"] = accuracy_report(np.concatenate(truth), np.concatenate(pred), legend.codes, legend.names())
    else:
        figures["validation"] = {"skipped": "no validation pixel in the training windows"}
    return net, figures
