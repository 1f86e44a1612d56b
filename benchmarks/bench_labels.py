"""Label strategies against a 10 m truth: does erosion / confidence / noise cleaning help?

Two scenes, each with its coarse map's own accuracy as the reference line:

* the real eo-learn Slovenia patch (../shared/data/eolearn-slovenia; real Sentinel-2 NDVI series, real
  cloud masks, 10 m land-use reference; coarse map = 100 m majority of that reference);
* the synthetic demo scene (``lcup.synthetic``; 10 bands, SCL; coarse map = 100 m CGLS-coded majority with
  3 % label noise), generated at ``--size``.

Features are computed once per scene; every strategy then samples, trains (same forest settings, same
seed) and predicts. Nothing here is tuned to either scene: the settings are lcup's defaults.

    python benchmarks/bench_labels.py --size 512
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from lcup.ops.accuracy import accuracy_report
from lcup.ops.features import temporal_features
from lcup.ops.labels import erode_classes, label_confidence, stratified_sample
from lcup.ops.model import confident_learning_filter, predict_block, train_random_forest
from lcup.ops.temporal import interpolate_smooth, regular_grid

STRATEGIES = {
    "plain (no erosion)": dict(erosion_px=0),
    "erosion 2 px": dict(erosion_px=2),
    "erosion + confidence weights": dict(erosion_px=2, weights=True),
    "erosion + min confidence 0.5": dict(erosion_px=2, min_conf=0.5),
    "erosion + noise cleaning": dict(erosion_px=2, clean=True),
    "all three": dict(erosion_px=2, weights=True, min_conf=0.5, clean=True),
}


def evaluate(feats: np.ndarray, coarse_up: np.ndarray, truth: np.ndarray, classes, cell_px: float, *, n_per_class=1500,
             block_px=50, seed=0) -> dict:
    conf = label_confidence(coarse_up, cell_px)
    out = {"coarse map": accuracy_report(truth, coarse_up, classes)["overall_accuracy"]}
    for name, st in STRATEGIES.items():
        usable = erode_classes(coarse_up, st["erosion_px"])
        if st.get("min_conf"):
            usable = np.where(conf >= st["min_conf"], usable, 0).astype(usable.dtype)
        s = stratified_sample(usable, n_per_class, np.random.default_rng(seed), min_per_class=5, block_px=block_px,
                              validation_fraction=0.0, small_class_policy="warn")
        X, y = feats[s.iy, s.ix], s.label
        w = conf[s.iy, s.ix] if st.get("weights") else None
        if st.get("clean"):
            ok = np.isfinite(X).all(1)
            keep, _ = confident_learning_filter(X[ok], y[ok], seed=seed)
            X, y = X[ok][keep], y[ok][keep]
            w = None if w is None else w[ok][keep]
        t0 = time.perf_counter()
        model, _ = train_random_forest(X, y, params={"n_estimators": 100, "n_jobs": -1}, seed=seed, sample_weight=w)
        pred = predict_block(feats, model)[0]
        out[name] = accuracy_report(truth, pred, classes)["overall_accuracy"]
        out[name + " (s)"] = round(time.perf_counter() - t0, 1)
    return out


def slovenia(shared: Path) -> dict:
    root = shared / "eolearn-slovenia" / "TestEOPatch"
    ndvi = np.load(root / "data" / "NDVI.npy")[..., 0]
    valid = ~np.load(root / "mask" / "CLM.npy")[..., 0].astype(bool) & np.load(root / "mask" / "IS_VALID.npy")[..., 0].astype(bool)
    lulc = np.load(root / "mask_timeless" / "LULC.npy")[..., 0].astype(np.uint8)
    times = pd.to_datetime(json.loads((root / "timestamps.json").read_text()))
    times = times.tz_localize(None) if times.tz else times
    dims = ("time", "y", "x")
    v = xr.DataArray(ndvi, dims=dims, coords={"time": times})
    m = xr.DataArray(valid, dims=dims, coords={"time": times})
    series = {"ndvi": interpolate_smooth(v, m, regular_grid("2016-01-01", "2016-12-31", 16))}
    feats = temporal_features(series, series_vars=["ndvi"]).values
    f = 10
    h, w = lulc.shape[0] // f, lulc.shape[1] // f
    b = lulc[: h * f, : w * f].reshape(h, f, w, f).transpose(0, 2, 1, 3).reshape(h, w, -1)
    counts = np.stack([(b == c).sum(-1) for c in range(11)], -1)
    counts[..., 0] = 0
    coarse = counts.argmax(-1).astype(np.uint8)
    up = np.zeros_like(lulc)
    up[: h * f, : w * f] = np.kron(coarse, np.ones((f, f), np.uint8))
    classes = [c for c in range(1, 11) if (lulc == c).any()]
    return evaluate(feats, up, lulc, classes, f, n_per_class=400, block_px=25)


def demo(size: int) -> dict:
    import warnings

    from lcup.config import load_config
    from lcup.io.rasters import read_on_geobox
    from lcup.pipeline import find_items
    from lcup.stages import features, labels, load
    from lcup.synthetic import SceneSpec, write_demo

    tmp = Path(tempfile.mkdtemp())
    spec = SceneSpec(size=(size, size))
    cat = write_demo(tmp, spec, progress=False)
    x0, y0 = spec.origin
    cfg = load_config({
        "source": {"catalog": str(cat)}, "aoi": {"bbox": [x0, y0 - 10 * size, x0 + 10 * size, y0], "crs": "EPSG:32633"},
        "year": spec.year, "clean": {"dilation_m": 20}, "load": {"chunk_px": 256},
        "labels": {"path": str(tmp / "coarse_cgls_100m.tif"), "legend": "cgls-lc100", "erosion_m": 0},
        "output": {"dir": str(tmp / "out")}, "cluster": {"kind": "none"},
    })
    gb, items = find_items(cfg)
    cube = load(items, gb, load=cfg.load)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feats = features(cube, cfg.period, clean=cfg.clean, features=cfg.features).compute().values
    lab = labels(gb, cfg.labels, chunk_px=cfg.load.chunk_px)["label"].values
    truth = read_on_geobox(tmp / "truth_10m.tif", gb)
    return evaluate(feats, lab, truth, list(range(1, 8)), 10, n_per_class=2000, block_px=100)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--json")
    a = p.parse_args(argv)
    res = {}
    if (Path(a.shared) / "eolearn-slovenia").exists():
        res["slovenia (real)"] = slovenia(Path(a.shared))
    res[f"demo {a.size}²"] = demo(a.size)
    names = ["coarse map"] + list(STRATEGIES)
    print(f"{'OA at 10 m vs truth':34s}" + "".join(f"{k:>18s}" for k in res))
    for n in names:
        print(f"{n:34s}" + "".join(f"{r[n]:18.3f}" for r in res.values()))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
