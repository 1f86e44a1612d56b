"""End to end: ``lcup run`` against a straightforward pangeo notebook pipeline, same scene, same machine, interleaved.

The notebook route is what a user writes without lcup (issue 16): ``odc.stac.load`` → ``where(SCL)`` →
``interpolate_na`` / ``interp`` onto a 10-day grid → scipy ``savgol_filter`` through ``apply_ufunc`` → NDVI,
NDWI, MNDWI, NDBI → mean, std and 10/50/90 % quantiles per band and index → random forest (100 trees) on a
stratified sample of the coarse labels → ``apply_ufunc`` predict → COG; on a ``distributed`` LocalCluster of one
worker with every core, as ``lcup run``'s default. Both read the same generated scene (``lcup demo``: COGs and a
static STAC catalog) and are scored against its 10 m truth.

Each route runs in its own process (``lcup run`` and ``bench_e2e.py --notebook``), in turn, round after round;
measured per run: wall time, CPU seconds of the process tree, cores used (CPU / wall), peak RSS of the largest
process, pixel-timesteps (pixels × dates × bands) per second per core, OA against the truth, and the stage
shares (and lcup's cores used per stage, from its summary); then lcup / notebook ratios (median and min–max over rounds) and the projected Sentinel-2 tile-year
(10980² px, 73 dates, 10 bands) on 2 cores at lcup's rate.

    python benchmarks/bench_e2e.py --sizes 1024 2048 --rounds 2 --json e2e.json   # ~40 min on 2 cores
    python benchmarks/bench_e2e.py --short --min-speedup 1.5                      # CI: 256 px, one round, ~1.5 min
    python benchmarks/bench_e2e.py --sizes 1024 --routes lcup --per-tile          # the tile-year path, lcup alone

The tile-year is projected twice: at the whole run's rate (start-up, search, training... included: pessimistic)
and area-scaled (those fixed costs once, the stages that grow with the area scaled to 10980²). Cores used are given
for the whole process and for the stages that grow with the area (from the run's ``summary.json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import cores, spread  # noqa: E402

BANDS = ["blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "swir16", "swir22"]
TILE_YEAR_PX_T = 10980 * 10980 * 73 * 10


def _children_usage():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


def _run_measured(cmd: list[str], cwd: Path) -> dict:
    """Run ``cmd`` to its end; wall, CPU of the whole process tree (reaped children) and peak RSS."""
    cpu0, _ = _children_usage()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu1, rss = _children_usage()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{p.stderr[-3000:]}")
    return {"wall_s": wall, "cpu_s": cpu1 - cpu0, "cores_used": (cpu1 - cpu0) / wall, "peak_rss_mb_max_so_far": rss,
            "stdout": p.stdout}


def make_scene(size: int, folder: Path, blocksize: int = 1024) -> dict:
    """The generated scene of ``size``² px (reused when ``folder`` holds one of the same size and block layout)."""
    from lcup.synthetic import SceneSpec, write_demo

    spec = SceneSpec(size=(size, size), blocksize=blocksize)
    stamp, want = folder / "scene.json", json.dumps({"size": size, "blocksize": blocksize})
    cat = folder / "catalog.json"
    if not (cat.exists() and stamp.exists() and stamp.read_text() == want):
        cat = write_demo(folder, spec, overwrite=True, progress=False)
        stamp.write_text(want)
    return {"dir": folder, "catalog": cat, "size": size, "dates": len(spec.dates), "origin": spec.origin}


def lcup_pipeline(scene: dict, out: Path, chunk: int, per_tile: bool = False, sets: list | None = None) -> Path:
    import yaml

    x0, y0 = scene["origin"]
    n = scene["size"]
    cfg = {"name": f"bench-{n}", "source": {"catalog": str(scene["catalog"]), "provider": "earth-search"},
           "aoi": {"bbox": [x0, y0 - 10 * n, x0 + 10 * n, y0], "crs": "EPSG:32633", "resolution": 10}, "year": 2024,
           "load": {"chunk_px": chunk},
           "clean": {"dilation_m": 20, "min_valid_fraction": 0.05, "step_days": 10},
           "labels": {"path": str(scene["dir"] / "coarse_cgls_100m.tif"), "legend": "cgls-lc100", "target_legend": "lcup7",
                      "n_per_class": 2000},
           "truth": {"path": str(scene["dir"] / "truth_10m.tif"), "legend": "lcup7"},
           "output": {"dir": str(out), "overwrite": True, "report": False}, "cluster": {"kind": "local", "dashboard": None}}
    if per_tile:  # as on a tile-year: a graph per tile (four tiles), nothing persisted, the sample gathered tile by tile
        cfg["output"]["tile_px"] = max(chunk, n // 2 // chunk * chunk)
        cfg["features"] = {"persist": "never"}
    for kv in sets or []:  # --set section.key=value (YAML value)
        key, _, value = kv.partition("=")
        *path, last = key.split(".")
        node = cfg
        for k in path:
            node = node.setdefault(k, {})
        node[last] = yaml.safe_load(value)
    p = out.parent / f"{out.name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


#: Stages whose time grows with the area; the others (start-up, search, scene filter on a capped grid, training on
#: a sample of fixed size, scoring) are paid once per run.
AREA_STAGES = ("clean+features (graph)", "labels", "predict+write")


def run_lcup(scene: dict, work: Path, chunk: int, per_tile: bool = False, sets: list | None = None) -> dict:
    out = work / f"lcup-{scene['size']}"
    r = _run_measured([sys.executable, "-m", "lcup.cli", "run", str(lcup_pipeline(scene, out, chunk, per_tile, sets)), "-q"],
                      cwd=work)
    s = json.loads((out / "summary.json").read_text())
    t = s["timings"]
    stages = {k: v / t["total"] for k, v in t.items() if k != "total"}
    area_s = sum(t.get(k, 0.0) for k in AREA_STAGES)
    cores = s["figures"].get("cores_used", {})
    # cores used over the stages that grow with the area: what a tile-year is made of (the fixed ~1-core phases
    # — start-up, search, training's set-up, scoring — weigh less the larger the area)
    ran = [k for k in AREA_STAGES if k in t]
    area_cores = (sum(t[k] * cores[k] for k in ran) / area_s
                  if area_s and all(cores.get(k) is not None for k in ran) else None)
    r.update(oa=s["figures"]["truth"]["prediction_10m"]["overall_accuracy"], stages=stages,
             stage_cores=cores, area_cores_used=area_cores,
             dates=s["figures"]["dates_found"], area_s=area_s, fixed_s=r["wall_s"] - area_s)
    return r


def run_notebook(scene: dict, work: Path, chunk: int) -> dict:
    out = work / f"notebook-{scene['size']}"
    out.mkdir(exist_ok=True)
    r = _run_measured([sys.executable, __file__, "--notebook", str(scene["dir"]), str(out), "--chunk", str(chunk)], cwd=work)
    res = json.loads((out / "result.json").read_text())
    r.update(oa=res["oa"], stages=res["stages"], dates=res["dates"])
    return r


def notebook(scene_dir: Path, out: Path, chunk: int) -> None:
    """The notebook pipeline (run in its own process by ``--notebook``); writes ``result.json``."""
    import warnings

    import numpy as np
    import odc.stac
    import pandas as pd
    import pystac
    import rasterio
    import xarray as xr
    from distributed import Client, LocalCluster
    from odc.geo.geobox import GeoBox
    from rasterio.warp import Resampling, reproject
    from scipy.signal import savgol_filter
    from sklearn.ensemble import RandomForestClassifier

    from lcup.legends import CGLS_LC100, LCUP7, apply_crosswalk, get_crosswalk

    warnings.filterwarnings("ignore")
    stages: dict[str, float] = {}
    t_all = time.perf_counter()

    def mark(name, t0):
        stages[name] = time.perf_counter() - t0
        return time.perf_counter()

    with LocalCluster(n_workers=1, threads_per_worker=cores(), dashboard_address=None) as cluster, Client(cluster):
        t = time.perf_counter()
        with rasterio.open(scene_dir / "truth_10m.tif") as src:
            gbox = GeoBox(src.shape, src.transform, src.crs)
            truth = src.read(1)
        items = list(pystac.Catalog.from_file(str(scene_dir / "catalog.json")).get_items(recursive=True))
        ds = odc.stac.load(items, bands=[*BANDS, "scl"], geobox=gbox, chunks={"x": chunk, "y": chunk}, groupby="solar_day")
        clear = ds.scl.isin([4, 5, 6])
        refl = xr.Dataset({b: ds[b].where(clear & (ds[b] > 0)) * 1e-4 - 0.1 for b in BANDS})
        grid = pd.date_range("2024-01-01", "2024-12-31", freq="10D")
        refl = refl.chunk(time=-1).interpolate_na("time", method="linear", fill_value="extrapolate").interp(time=grid)
        smooth = xr.apply_ufunc(savgol_filter, refl.fillna(0), kwargs={"window_length": 5, "polyorder": 2, "axis": -1},
                                input_core_dims=[["time"]], output_core_dims=[["time"]], dask="parallelized",
                                output_dtypes=[np.float32])
        for name, (a, b) in {"ndvi": ("nir", "red"), "ndwi": ("green", "nir"), "mndwi": ("green", "swir16"),
                             "ndbi": ("swir16", "nir")}.items():
            smooth[name] = (smooth[a] - smooth[b]) / (smooth[a] + smooth[b] + 1e-6)
        q = smooth.quantile([0.1, 0.5, 0.9], dim="time", skipna=False)  # no NaN left after fillna: the fast np.quantile
        parts = [smooth.mean("time"), smooth.std("time")] + [q.sel(quantile=v, drop=True) for v in (0.1, 0.5, 0.9)]
        parts = [p.drop_vars("spatial_ref", errors="ignore").to_array("var") for p in parts]
        feats = xr.concat(parts, dim="stat", coords="minimal").stack(feature=("stat", "var")).transpose("feature", "y", "x")
        feats = feats.astype(np.float32).drop_vars(["feature", "stat", "var"], errors="ignore").chunk(feature=-1).persist()
        from distributed import wait

        wait(feats.data)
        t = mark("load+clean+features", t)
        with rasterio.open(scene_dir / "coarse_cgls_100m.tif") as src:
            coarse = np.zeros(gbox.shape, np.uint8)
            reproject(rasterio.band(src, 1), coarse, dst_transform=gbox.transform, dst_crs=gbox.crs, resampling=Resampling.nearest)
        labels = apply_crosswalk(coarse, get_crosswalk(CGLS_LC100, LCUP7), nodata=0)
        rng = np.random.default_rng(0)
        iy, ix, y = [], [], []
        for c in np.unique(labels[labels > 0]):
            yy, xx = np.nonzero(labels == c)
            k = rng.choice(len(yy), min(2000, len(yy)), replace=False)
            iy.append(yy[k])
            ix.append(xx[k])
            y.append(np.full(len(k), c))
        iy, ix, y = map(np.concatenate, (iy, ix, y))
        X = np.nan_to_num(feats.data.vindex[:, iy, ix].compute())  # (sample, feature): vindex puts the points first
        t = mark("labels+sample", t)
        model = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=0).fit(X, y)
        model.set_params(n_jobs=1)
        t = mark("train", t)

        def predict(block):
            flat = block.reshape(-1, block.shape[-1])
            return model.predict(np.nan_to_num(flat)).reshape(block.shape[:-1]).astype(np.uint8)

        pred = xr.apply_ufunc(predict, feats, input_core_dims=[["feature"]], dask="parallelized", output_dtypes=[np.uint8])
        cls = pred.values
        prof = {"driver": "COG", "height": cls.shape[0], "width": cls.shape[1], "count": 1, "dtype": "uint8", "crs": gbox.crs,
                "transform": gbox.transform, "nodata": 0, "compress": "DEFLATE"}
        with rasterio.open(out / "class.tif", "w", **prof) as dst:
            dst.write(cls, 1)
        t = mark("predict+write", t)
    total = time.perf_counter() - t_all
    ok = truth > 0
    (out / "result.json").write_text(json.dumps({"oa": float((cls[ok] == truth[ok]).mean()), "dates": len(items),
                                                 "stages": {k: v / total for k, v in stages.items()}}))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--short", action="store_true", help="CI: one 256 px scene, one round")
    p.add_argument("--routes", nargs="+", default=["lcup", "notebook"], choices=["lcup", "notebook"],
                   help="lcup alone for the tile-year projection at larger sizes (no ratios then)")
    p.add_argument("--per-tile", action="store_true",
                   help="lcup on the per-tile path as on a tile-year (four tiles, features not persisted)")
    p.add_argument("--blocksize", type=int, default=1024,
                   help="COG block side of the generated scenes (1024: Earth Search's Sentinel-2 layout)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a pipeline setting of the lcup route, e.g. load.block_cache_mb=0 (repeatable)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--min-speedup", type=float, help="exit 1 if lcup is less than this many times faster (wall and CPU) than "
                   "the notebook route, or less accurate, at any size: CI's regression check on ratios, never on seconds")
    p.add_argument("--work", help="folder for scenes and outputs (default: a temporary one)")
    p.add_argument("--notebook", nargs=2, metavar=("SCENE", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.min_speedup is not None and len(a.routes) < 2:
        p.error("--min-speedup compares both routes: leave --routes at its default")
    if a.notebook:
        notebook(Path(a.notebook[0]), Path(a.notebook[1]), a.chunk)
        return {}
    if a.short:
        a.sizes, a.rounds, a.chunk = [256], 1, 256
    n_cores = cores()
    results: dict = {"cores": n_cores, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for size in a.sizes:
            scene = make_scene(size, work / f"scene-{size}", a.blocksize)
            runs: dict[str, list[dict]] = {route: [] for route in a.routes}
            for r in range(a.rounds):  # interleaved, the order swapped every round
                order = list(runs) if r % 2 == 0 else list(runs)[::-1]
                for route in order:
                    runs[route].append(run_lcup(scene, work, a.chunk, a.per_tile, a.sets) if route == "lcup"
                                       else run_notebook(scene, work, a.chunk))
                    print(f"  {size}² round {r + 1} {route}: {runs[route][-1]['wall_s']:.1f} s wall, "
                          f"{runs[route][-1]['cpu_s']:.1f} CPU-s, OA {runs[route][-1]['oa']:.3f}", flush=True)
            px_t = size * size * scene["dates"] * len(BANDS)
            row: dict = {"px_t": px_t}
            for route, rs in runs.items():
                row[route] = {"wall_s": spread([x["wall_s"] for x in rs]), "cpu_s": spread([x["cpu_s"] for x in rs]),
                              "cores_used": spread([x["cores_used"] for x in rs]),
                              "px_t_per_s_per_core": spread([px_t / x["wall_s"] / n_cores for x in rs]),
                              "oa": rs[-1]["oa"], "stages": rs[-1]["stages"],
                              **({"stage_cores": rs[-1]["stage_cores"]} if "stage_cores" in rs[-1] else {})}
            row["peak_rss_mb_largest_process"] = max(x["peak_rss_mb_max_so_far"] for rs in runs.values() for x in rs)
            results["sizes"][size] = row
            line = f"{size}²"
            if "lcup" in runs:
                rate = row["lcup"]["px_t_per_s_per_core"]["median"]
                # whole run at this rate (fixed costs included: pessimistic) and, closer to a tile-year, the fixed
                # costs once plus the stages that grow with the area scaled to it
                row["projected_tile_year_h_on_2_cores"] = TILE_YEAR_PX_T / (rate * 2) / 3600
                area = spread([x["area_s"] for x in runs["lcup"]])["median"]
                fixed = spread([x["fixed_s"] for x in runs["lcup"]])["median"]
                row["lcup"].update(area_stages_s=area, fixed_s=fixed)
                ac = [x["area_cores_used"] for x in runs["lcup"] if x.get("area_cores_used") is not None]
                if ac:
                    row["lcup"]["area_cores_used"] = spread(ac)
                row["projected_tile_year_h_area_scaled"] = (fixed + area * TILE_YEAR_PX_T / px_t * n_cores / 2) / 3600
                line += (f": lcup {row['lcup']['wall_s']['median']:.1f} s ({rate / 1e6:.2f} M px·t/s/core, "
                         f"{row['lcup']['cores_used']['median']:.2f} cores, OA {row['lcup']['oa']:.3f}; area stages "
                         f"{area:.1f} s at {row['lcup'].get('area_cores_used', {}).get('median', float('nan')):.2f} cores, "
                         f"fixed {fixed:.1f} s) | tile-year ≈ {row['projected_tile_year_h_on_2_cores']:.1f} h "
                         f"at the whole run's rate, {row['projected_tile_year_h_area_scaled']:.2f} h area-scaled, on 2 cores")
            if "notebook" in runs:
                line += (f" | notebook {row['notebook']['wall_s']['median']:.1f} s "
                         f"({row['notebook']['cores_used']['median']:.2f} cores, OA {row['notebook']['oa']:.3f})")
            if len(runs) == 2:
                row["speedup_wall"] = spread([n["wall_s"] / lc["wall_s"] for lc, n in zip(runs["lcup"], runs["notebook"])])
                row["cpu_ratio"] = spread([n["cpu_s"] / lc["cpu_s"] for lc, n in zip(runs["lcup"], runs["notebook"])])
                line += (f" | speed-up {row['speedup_wall']['median']:.2f}× ({row['speedup_wall']['min']:.2f}–"
                         f"{row['speedup_wall']['max']:.2f}), CPU {row['cpu_ratio']['median']:.2f}× less")
            print(line, flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    if a.min_speedup is not None:
        bad = [f"{size}²: speed-up {row['speedup_wall']['median']:.2f}×, CPU {row['cpu_ratio']['median']:.2f}×, OA "
               f"{row['lcup']['oa']:.3f} vs {row['notebook']['oa']:.3f}" for size, row in results["sizes"].items()
               if min(row["speedup_wall"]["median"], row["cpu_ratio"]["median"]) < a.min_speedup
               or row["lcup"]["oa"] < row["notebook"]["oa"] - 0.005]
        if bad:
            print(f"REGRESSION against the notebook pipeline (wanted ≥ {a.min_speedup}× and no loss of accuracy): {bad}")
            sys.exit(1)
        print(f"ratios hold: lcup ≥ {a.min_speedup}× the notebook pipeline in wall time and CPU, at equal or better OA")
    return results


if __name__ == "__main__":
    main()
