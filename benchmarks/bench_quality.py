"""Upsampling quality on real data: techniques × development sets → OA, kappa, per-class F1, against the coarse map.

Every technique goes through lcup's public stages (``lcup.features``, ``lcup.labels``, ``lcup.sample``,
``lcup.train``, ``lcup.predict``), the functions ``lcup run`` is made of. The sets (``../shared/data``):

* ``slovenia``: the eo-learn patch (real Sentinel-2 NDVI, 68 dates 2015-2017, real cloud masks; 10 m land-use
  reference; the coarse map is its 100 m majority). Only NDVI exists, so it is the one "band".
* ``flanders-a``, ``flanders-b``: two WorldCereal patches (real L2A, 10 bands + SCL, 118 and 72 dates; Flemish
  parcel register at 10 m: crops / grassland / other; 100 m majority as the coarse map; 99 = unlabelled).
* ``slovenia-5mo``, ``flanders-a-4b5m``, ``flanders-b-4b5m``: weaker views (five months; four 10 m bands), as real
  catalogs give them; ``demo-hard``: lcup's hard synthetic scene (``SceneSpec(difficulty="hard")``, 320², generated).

Flanders runs over the calendar year of its parcel register. Scores count reference pixels only. The defaults were
chosen on these sets (never worse than the coarse map on any, then the best mean): their rows measure how the
techniques compare here and guard against regressions; they do not say how lcup does on a scene it has not seen.
``ceiling`` trains the same recipe on the reference itself.

    python benchmarks/bench_quality.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FLANDERS = {"flanders-a": "00002806639B424A_32631_2017-08-01_2018-11-30",
            "flanders-b": "0000280849BAC91C_32631_2018-08-01_2019-11-30"}
FLANDERS_LEGEND = {"name": "lpis-flanders", "classes": {11: {"name": "temporary crops", "color": "#f0c341"},
                                                        13: {"name": "grassland", "color": "#b5e36c"},
                                                        60: {"name": "other", "color": "#808080"}}}


def majority(lab: np.ndarray, f: int, nodata: int = 0) -> np.ndarray:
    """``f × f`` block majority of a class map (ignoring ``nodata``), at full resolution again."""
    h, w = lab.shape[0] // f * f, lab.shape[1] // f * f
    b = lab[:h, :w].reshape(h // f, f, w // f, f).transpose(0, 2, 1, 3).reshape(h // f, w // f, -1)
    codes = [c for c in np.unique(b) if c != nodata]
    counts = np.stack([(b == c).sum(-1) for c in codes], -1)
    out = np.asarray(codes)[counts.argmax(-1)]
    out[counts.max(-1) == 0] = nodata
    full = np.full(lab.shape, nodata, lab.dtype)
    full[:h, :w] = np.kron(out, np.ones((f, f), lab.dtype))
    return full


def _geobox(x: np.ndarray, y: np.ndarray, crs: str):
    from odc.geo.geobox import GeoBox
    from rasterio.transform import Affine

    rx, ry = float(x[1] - x[0]), float(y[1] - y[0])
    return GeoBox((len(y), len(x)), Affine(rx, 0, float(x[0]) - rx / 2, 0, ry, float(y[0]) - ry / 2), crs)


def _write_tif(path: Path, arr: np.ndarray, geobox, factor: int = 1, nodata: int = 0) -> Path:
    """``arr`` (on ``geobox``) as a GeoTIFF with ``factor × factor`` coarser cells (values from the block's corner)."""
    import rasterio

    a = arr[::factor, ::factor]
    t = geobox.transform * __import__("rasterio").transform.Affine.scale(factor)
    with rasterio.open(path, "w", driver="GTiff", width=a.shape[1], height=a.shape[0], count=1, dtype=str(a.dtype),
                       crs=str(geobox.crs), transform=t, nodata=nodata) as dst:
        dst.write(a, 1)
    return path


#: Weaker views of the same sets, as real catalogs give them (the issue's unseen scene had four bands over five
#: months): a model with less to go on, where the coarse map must keep it from doing worse than the input.
VARIANTS = {"slovenia-5mo": ("slovenia", None, ("2016-04-01", "2016-08-31")),
            "flanders-a-4b5m": ("flanders-a", ["blue", "green", "red", "nir"], ("2018-04-01", "2018-08-31")),
            "flanders-b-4b5m": ("flanders-b", ["blue", "green", "red", "nir"], ("2019-04-01", "2019-08-31"))}
#: The sets the defaults are chosen on, in the order of the table.
SETS = ["slovenia", "flanders-a", "flanders-b", *VARIANTS, "demo-hard"]


def load_set(name: str, tmp: Path) -> dict:
    """A development set as lcup's stages take it: cube (Dataset), grid, period, truth, coarse map file, legend."""
    if name in VARIANTS:
        base, bands, period = VARIANTS[name]
        s = load_set(base, tmp)
        if bands is not None:
            s["cube"] = s["cube"][[*bands, "scl"]]
            s["features"] = {"indices": ["ndvi", "evi", "ndwi", "savi"], "series": ["ndvi"]}  # what 4 bands allow
        s["cube"] = s["cube"].sel(time=slice(*period))
        s["period"] = period
        return s
    offset = 0.0
    if name == "demo-hard":  # lcup's own hard scene (SceneSpec.difficulty="hard"), generated in memory
        from lcup.providers import REFLECTANCE_BANDS
        from lcup.synthetic import TRUTH_TO_CGLS, SceneSpec, coarse_map, generate

        spec = SceneSpec(size=(320, 320), difficulty="hard")
        gen = generate(spec)
        _, land = next(gen)
        steps = list(gen)
        times = pd.DatetimeIndex([d for d, _, _ in steps])
        dn = np.stack([a for _, a, _ in steps])  # (time, band, y, x)
        bands = {b: dn[:, i] for i, b in enumerate(REFLECTANCE_BANDS)}
        scl = np.stack([c for _, _, c in steps])
        truth = land.truth
        inv = np.zeros(256, np.uint8)
        for k, v in TRUTH_TO_CGLS.items():
            inv[v] = k
        coarse_cells = inv[coarse_map(truth, spec.coarse_factor, spec.label_noise, np.random.default_rng([spec.seed, 10_000]),
                                      systematic=True)]
        h, w = truth.shape
        x = spec.origin[0] + 10 * (np.arange(w) + 0.5)
        y = spec.origin[1] - 10 * (np.arange(h) + 0.5)
        crs, legend, factor, period = f"EPSG:{spec.crs_epsg}", "lcup7", spec.coarse_factor, (f"{spec.year}-01-01", f"{spec.year}-12-31")
        features, offset = {}, -0.1
    elif name == "slovenia":
        root = SHARED / "eolearn-slovenia" / "TestEOPatch"
        ndvi = np.load(root / "data" / "NDVI.npy")[..., 0]
        valid = ~np.load(root / "mask" / "CLM.npy")[..., 0].astype(bool) & np.load(root / "mask" / "IS_VALID.npy")[..., 0].astype(bool)
        truth = np.load(root / "mask_timeless" / "LULC.npy")[..., 0].astype(np.uint8)
        times = pd.to_datetime(json.loads((root / "timestamps.json").read_text()))
        times = times.tz_localize(None) if times.tz else times
        h, w = truth.shape
        x0, y1, x1, y0 = 465181.05, 5080254.63, 466180.53, 5079244.89
        x = x0 + (np.arange(w) + 0.5) * (x1 - x0) / w
        y = y1 - (np.arange(h) + 0.5) * (y1 - y0) / h
        bands = {"ndvi": ndvi.astype(np.float32)}
        scl = np.where(valid, 4, 9).astype(np.uint8)
        # the patch's s2cloudless probability too, in % as a catalog's probability asset holds it (255: no data)
        is_valid = np.load(root / "mask" / "IS_VALID.npy")[..., 0].astype(bool)
        prob = np.where(is_valid, np.round(100 * np.load(root / "data" / "CLP.npy")[..., 0]), 255).astype(np.uint8)
        crs, legend, factor, period = "EPSG:32633", "eolearn-lulc", 10, ("2016-01-01", "2016-12-31")
        features = {"indices": [], "series": ["ndvi"], "series_every": 2}
    else:
        d = SHARED / "worldcereal-flanders-lpis"
        tag = FLANDERS[name]
        d10 = xr.open_dataset(d / f"S2_L2A_10m_{tag}.nc", engine="h5netcdf", mask_and_scale=False)
        d20 = xr.open_dataset(d / f"S2_L2A_20m_{tag}.nc", engine="h5netcdf", mask_and_scale=False)
        ref = xr.open_dataset(d / f"OUTPUT_POLY-110_10m_{tag}.nc", engine="h5netcdf", mask_and_scale=False)
        names = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B05": "rededge1", "B06": "rededge2",
                 "B07": "rededge3", "B8A": "nir08", "B11": "swir16", "B12": "swir22"}
        up = lambda a: np.repeat(np.repeat(a, 2, -2), 2, -1)  # noqa: E731 - nested 20 m → 10 m grids
        bands = {n: (d10[b].values if b in d10 else up(d20[b].values)).astype(np.uint16) for b, n in names.items()}
        scl = up(d20["SCL"].values).astype(np.uint8)
        lc = ref["LC"].values.astype(np.uint8)
        truth = np.where(lc == 99, 0, lc).astype(np.uint8)
        x, y, times = d10.x.values, d10.y.values, pd.DatetimeIndex(d10.timestamp.values)
        crs, legend, factor = "EPSG:32631", FLANDERS_LEGEND, 10
        year = times[-1].year  # the parcel register's year (2018, 2019): the season it describes
        period = (f"{year}-01-01", f"{year}-12-31")
        features = {}
    # whole coarse cells only (a 100 m map has no partial cells): crop to multiples of the factor
    h, w = truth.shape[0] // factor * factor, truth.shape[1] // factor * factor
    truth, scl, x, y = truth[:h, :w], scl[:, :h, :w], x[:w], y[:h]
    bands = {n: a[:, :h, :w] for n, a in bands.items()}
    gb = _geobox(x, y, crs)
    dims = ("time", "y", "x")
    ds = xr.Dataset({n: (dims, a) for n, a in bands.items()}, coords={"time": times, "y": y, "x": x})
    ds["scl"] = (dims, scl)
    if name == "slovenia":
        ds["cloud_probability"] = (dims, prob[:, :h, :w])
    scale = 1.0 if name == "slovenia" else 1e-4
    ds = ds.assign_coords({f"{k}_{b}": ("time", np.full(len(times), v)) for b in bands for k, v in (("scale", scale), ("offset", offset))})
    coarse = np.kron(coarse_cells, np.ones((factor, factor), np.uint8))[:h, :w] if name == "demo-hard" else majority(truth, factor)
    # cover-fraction layers as a coarse product would give them (CGLS-LC100's), here exact: the reference's share of
    # each class per coarse cell (for the hard demo from the same misregistered truth as its coarse map), in %
    src = np.roll(truth, (factor // 2, factor // 2), (0, 1)) if name == "demo-hard" else truth
    cells = src.reshape(h // factor, factor, w // factor, factor)
    fractions = {}
    for c in (int(c) for c in np.unique(truth) if c):
        share = np.round(100 * (cells == c).mean((1, 3))).astype(np.uint8)
        fractions[c] = str(_write_tif(tmp / f"{name}-fraction-{c}.tif", np.kron(share, np.ones((factor, factor), np.uint8)),
                                      gb, factor, nodata=255))
    return {"cube": ds.chunk({"time": -1, "y": 64, "x": 64}), "geobox": gb, "truth": truth, "period": period, "fractions": fractions,
            "coarse_path": _write_tif(tmp / f"{name}-coarse.tif", coarse, gb, factor), "coarse": coarse, "legend": legend,
            "truth_path": _write_tif(tmp / f"{name}-truth.tif", truth, gb),
            "features": features}


#: Chunks the segments are cut in (``load.chunk_px``'s default): every development set is smaller, one chunk.
SEGMENT_CHUNK_PX = 512

#: Techniques: label-stage and model settings over lcup's defaults.
TECHNIQUES = {
    "defaults": {},
    "no erosion": {"labels": {"erosion_m": 0}},
    "erosion 10 m (previous default)": {"labels": {"erosion_m": 10}},
    "erosion 30 m": {"labels": {"erosion_m": 30}},
    "confidence weights": {"labels": {"confidence_weights": True}},
    "confidence weights, no coarse prior, erosion 20 m (session-4 defaults)": {
        "labels": {"confidence_weights": True}, "model": {"coarse_prior": 0.0, "class_weight": None, "smooth_px": 1}},
    "fraction layers: purity weights": {"labels": {"fractions": "reference", "confidence_weights": True}},
    "fraction layers: confidence ≥ 0.3": {"labels": {"fractions": "reference", "min_confidence": 0.3}},
    "label cleaning": {"model": {"clean_labels": True}},
    "unweighted classes": {"model": {"class_weight": None}},
    "no coarse prior": {"model": {"coarse_prior": 0.0}},
    "no coarse prior, erosion 10 m (session-5 defaults)": {"labels": {"erosion_m": 10}, "model": {"coarse_prior": 0.0}},
    "coarse prior 0.25": {"model": {"coarse_prior": 0.25}},
    "coarse prior 1": {"model": {"coarse_prior": 1.0}},
    "coarse prior 2": {"model": {"coarse_prior": 2.0}},
    "coarse prior 0.5": {"model": {"coarse_prior": 0.5}},
    "coarse prior 0.5 over 3 × 3 cells": {"model": {"coarse_prior": 0.5, "coarse_prior_cells": 3}},
    "coarse prior 1 over 3 × 3 cells": {"model": {"coarse_prior": 1.0, "coarse_prior_cells": 3}},
    "learned prior": {"model": {"coarse_prior": 0.0}, "prior": "learned"},
    "refine labels (2 rounds, 0.6)": {"model": {"refine_rounds": 2, "refine_threshold": 0.6}},
    "refine labels (1 round, 0.8)": {"model": {"refine_rounds": 1, "refine_threshold": 0.8}},
    "segments slic 30 px": {"model": {"segments": "slic", "segment_px": 30, "segment_mix": 1.0}},
    "segments slic 80 px": {"model": {"segments": "slic", "segment_px": 80, "segment_mix": 1.0}},
    "segments felzenszwalb 50": {"model": {"segments": "felzenszwalb", "segment_px": 50, "segment_mix": 1.0}},
    "segments slic 30 px, half": {"model": {"segments": "slic", "segment_px": 30, "segment_mix": 0.5}},
    "neighbourhood 30 m mean": {"features": {"neighbourhood_m": [30], "neighbourhood_stats": ["mean"]}},
    "neighbourhood 30+50 m mean, std": {"features": {"neighbourhood_m": [30, 50], "neighbourhood_stats": ["mean", "std"]}},
    "lightgbm (defaults: 300 trees, 63 leaves)": {"model": {"kind": "lightgbm"}},
    "lightgbm 300 trees, 31 leaves": {"model": {"kind": "lightgbm", "params": {"num_leaves": 31}}},
    "cloud mask from the s2cloudless probability ≤ 40 % (Slovenia only)": {
        "clean": {"mask": "probability", "probability_asset": "CLP", "max_probability": 40}},
    "no smoothing": {"model": {"smooth_px": 1}},
    "ceiling: trained on the 10 m reference": {"ceiling": True},
    "smooth 5 px": {"model": {"smooth_px": 5}},
    "fcn: network over the feature cube, pixel + coarse-cell aggregate loss (lcup[deep])": {"model": {"kind": "fcn"}},
    "fcn, pixel loss only": {"model": {"kind": "fcn", "nn_aggregate_loss": 0.0}},
    "fcn, aggregate loss 3": {"model": {"kind": "fcn", "nn_aggregate_loss": 3.0}},
    "fcn: U-Net on resnet18 (2 stages, random start: no pretrained weights here)": {
        "model": {"kind": "fcn", "nn_encoder": "resnet18", "nn_depth": 2}},
    "tempcnn: per-pixel temporal network (lcup[deep])": {"model": {"kind": "tempcnn"}},
    "tempcnn, no coarse prior": {"model": {"kind": "tempcnn", "coarse_prior": 0.0}},
    "tempcnn, its own pseudo-labels (refinement by the network, 2 rounds)": {"model": {"kind": "tempcnn", "refine_rounds": 2}},
    "forest + tempcnn, probabilities averaged": {"model": {"kind": "random_forest"}, "ensemble": "tempcnn"},
    "forest + tempcnn, averaged, coarse prior 1": {"model": {"kind": "random_forest", "coarse_prior": 1.0}, "ensemble": "tempcnn"},
}


def learn_prior_strength(clf, X, smp, coarse, window, cell, grid=(0.0, 0.25, 0.5, 1.0, 2.0)) -> float:
    """The prior strength that best predicts the coarse labels of the validation blocks from the model and the
    coarse map of the *neighbouring* cells only (the pixel's own coarse cell left out, so copying it is no help)."""
    from lcup.ops.fusion import coarse_prior, fuse

    val = smp.validation & np.isfinite(X).all(1)
    if val.sum() < 20:
        return 0.0
    classes = list(clf.classes_)
    full = coarse_prior(coarse, classes, window, floor=0.0)
    own = coarse_prior(coarse, classes, cell, floor=0.0)
    nb = np.clip(full * window**2 - own * cell**2, 0, None) / max(1, window**2 - cell**2)  # neighbours' shares
    nb = 0.05 + (1 - 0.05 * len(classes)) * nb / np.maximum(nb.sum(0, keepdims=True), 1e-9)
    p = clf.predict_proba(X[val]).T[:, :, None]  # (class, n, 1)
    pri = nb[:, smp.iy[val], smp.ix[val]][:, :, None]
    y = smp.label[val]
    scores = [(np.asarray(classes)[fuse(p, pri, g)[:, :, 0].argmax(0)] == y).mean() for g in grid]
    return float(grid[int(np.argmax(scores))])


def run_technique(s: dict, technique: dict, seed: int = 0) -> dict:
    """One technique on one set through the stages; OA, kappa and F1 of the 10 m map against the truth."""
    import lcup
    from lcup.config import ModelConfig, fcn_context_px
    from lcup.legends import compact, get_legend
    from lcup.ops.accuracy import accuracy_report

    legend = get_legend(s["legend"])
    r_extra: dict = {}
    labels_cfg = {"path": str(s["coarse_path"]), "legend": s["legend"], "target_legend": s["legend"], "block_m": 200,
                  "n_per_class": 1000, "min_per_class": 5, "seed": seed, **technique.get("labels", {})}
    if labels_cfg.get("fractions") == "reference":
        labels_cfg["fractions"] = s["fractions"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cube, clean = s["cube"], technique.get("clean", {})
        if clean.get("mask") == "probability":  # the probability layer in the mask slot, as lcup.load puts it there
            if "cloud_probability" not in cube:
                return None
            cube = cube.drop_vars("scl").rename(cloud_probability="scl")
        cube = cube.drop_vars("cloud_probability", errors="ignore")
        feats = lcup.features(cube, s["period"], features={**s["features"], **technique.get("features", {})},
                              clean=clean).persist()
        coarse_lab = lab = lcup.labels(s["geobox"], labels_cfg, chunk_px=64)
        if technique.get("ceiling"):  # an upper bound: the same recipe trained on the reference itself
            ceil_cfg = {**labels_cfg, "path": str(s["truth_path"])}
            lab = lcup.labels(s["geobox"], ceil_cfg, chunk_px=64)
            lab.attrs["figures"]["coarse_cell_px"] = coarse_lab.attrs["figures"]["coarse_cell_px"]
        smp = lcup.sample(lab, labels_cfg)
        X = feats.data.vindex[smp.iy, smp.ix].compute()
        mc = ModelConfig.model_validate({"seed": seed, **technique.get("model", {})})
        if mc.refine_rounds:  # the pipeline's stage: relabels training samples only
            from lcup.stages.train import refine

            smp, r_extra["refined"] = refine(X, smp, coarse_lab, model=mc, names=list(feats.feature.values))
        context = 0
        if mc.kind == "fcn":  # the network learns from windows of the cube (here the whole set, one window)
            context = fcn_context_px(mc)
            wins = lcup.windows_of(feats, lab, smp, window_px=max(feats.sizes["y"], feats.sizes["x"]), ring=context)
            clf, figures = lcup.train_network(wins, smp, legend=compact(legend)[0], model=mc)
            r_extra["epochs"] = figures["model"]["epochs"]
        else:
            clf, figures = lcup.train(X, smp, names=list(feats.feature.values), legend=compact(legend)[0],
                                      model={"n_estimators": 100, "seed": seed, **technique.get("model", {})})
        if technique.get("ensemble"):  # a second model beside the first, their probabilities averaged
            from lcup.ops.model import Averaged

            other, _ = lcup.train(X, smp, names=list(feats.feature.values), legend=compact(legend)[0],
                                  model={"seed": seed, "kind": technique["ensemble"]})
            clf = Averaged([clf, other])
        window = max(1, int(round(mc.coarse_prior_cells * lab.attrs["figures"]["coarse_cell_px"])))
        prior = lcup.coarse_prior_array(coarse_lab["label"].data, list(clf.classes_), window)
        out = lcup.predict(clf, feats, legend=legend, geobox=s["geobox"], output={"dir": ".", "probabilities": "float16"},
                           smooth_px=mc.smooth_px, prior=prior, prior_strength=mc.coarse_prior, segments=mc.segments,
                           segment_px=mc.segment_px, segment_mix=mc.segment_mix, chunk_px=SEGMENT_CHUNK_PX,
                           context_px=context)
        pred = out["class"].values
        prob = out["probability"].values.astype(np.float32)
        if "prior" in technique:
            from lcup.ops.fusion import coarse_prior, fuse

            internal, to_code = compact(legend)
            cell = lab.attrs["figures"]["coarse_cell_px"]
            w = int(round(3 * cell))
            prior = coarse_prior(coarse_lab["label"].values, list(clf.classes_), w)
            strength = technique["prior"]
            if strength == "learned":
                strength = learn_prior_strength(clf, X, smp, coarse_lab["label"].values, w, int(round(cell)))
                r_extra["learned_strength"] = strength
            post = fuse(prob, prior, strength)
            fused = to_code[np.asarray(clf.classes_)[np.nan_to_num(post, nan=-1).argmax(0)]]
            pred = np.where(pred > 0, fused, 0)
    ref = s["truth"]
    classes = [c for c in legend.codes if (ref == c).any()]
    rep = accuracy_report(ref, pred, classes, legend.names())
    crep = accuracy_report(ref, s["coarse"], classes, legend.names())
    val = figures.get("validation", {})
    return {"oa": rep["overall_accuracy"], "kappa": rep["kappa"], "coarse_oa": crep["overall_accuracy"],
            "validation_oa": val.get("overall_accuracy"), "validation_kappa": val.get("kappa"),
            "coarse_kappa": crep["kappa"],
            "disagreement_cut": 1 - (1 - rep["overall_accuracy"]) / max(1e-9, 1 - crep["overall_accuracy"]), **r_extra,
            "f1": {legend.names()[c]: round(rep["per_class"][c]["f1"], 3) for c in classes}}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="*", default=SETS)
    p.add_argument("--techniques", nargs="*", default=list(TECHNIQUES))
    p.add_argument("--json")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    res: dict = {}
    for name in a.sets:
        s = load_set(name, tmp)
        for t in a.techniques:
            t0 = time.perf_counter()
            r = run_technique(s, TECHNIQUES[t])
            if r is None:  # the technique needs something this set lacks
                continue
            res.setdefault(name, {})[t] = r
            print(f"{name:>11} | {t:<22} | OA {r['oa']:.3f} kappa {r['kappa']:.3f} | coarse OA {r['coarse_oa']:.3f} | "
                  f"disagreement cut {100 * r['disagreement_cut']:+.0f} % | val OA {r['validation_oa'] or float('nan'):.3f} | F1 {r['f1']} | {time.perf_counter() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
