"""Prediction throughput: lcup vs dask-ml ParallelPostFit vs in-memory scikit-learn, one forest, one run.

* reference: ``RandomForestClassifier.predict_proba`` on an in-memory array, ``n_jobs=1``: alone on
  one core, and in one plain process per core at once (the no-overhead reference at the same
  concurrency as the Dask runs: small VMs do not scale perfectly across cores);
* lcup: :func:`lcup.stages.predict.predict` — ``map_blocks`` over a chunked ``(y, x, feature)`` cube with
  the model scattered once to every worker (``broadcast=True``), ``n_jobs=1`` inside tasks;
* dask-ml ``ParallelPostFit(model).predict_proba`` on the same cube flattened to ``(pixel, feature)``
  (``pip install "lcup[bench]"``); it ships the model with the graph (dask-ml#842).

Both routes ship the model inside the timer, every round: lcup's scatter to every worker is timed with its
prediction, as dask-ml's graph carries the model in its timed submission.

The Dask routes are compared on the same workers, interleaved (round after round, the order swapped every
round), by the median of the per-round ratios with their min–max: once on workers tuned by
:func:`lcup.cluster.tune_workers` (as ``lcup run`` does), once on distributed's defaults. A ratio between the two
clusters would compare runs minutes apart on a noisy machine (0.6–2.1× was seen): it is not reported.

The workers' peak memory and the workers the nanny restarted (memory) are reported per cluster.

Then the cost per km² of prediction + tiled Zarr write for 1, 4 and 16 tiles, and the peak memory of the
workers in each case (RSS high-water mark, read from each worker process). The per-km² cube is not
persisted: each chunk is generated inside the tile's computation, as features are in a real run, so the
memory figure is that of the prediction and write, not of a cube held in memory.

    python benchmarks/bench_predict.py --features 60 --trees 100 --depth 20   # ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import dask.array as da
import numpy as np
import xarray as xr
from sklearn.ensemble import RandomForestClassifier

sys.path.insert(0, str(Path(__file__).parent))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_model(n_features: int, trees: int, depth: int, seed: int = 0, samples: int = 20000):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (7, n_features))
    y = rng.integers(0, 7, samples)
    X = (centres[y] + rng.normal(0, 1.2, (samples, n_features))).astype(np.float32)
    model = RandomForestClassifier(n_estimators=trees, max_depth=depth, n_jobs=-1, random_state=seed).fit(X, y + 1)
    model.set_params(n_jobs=1)
    return model, centres


def make_cube(centres, side: int, chunk: int, seed: int = 1) -> xr.DataArray:
    """A lazy ``(y, x, feature)`` cube generated chunk by chunk on the workers (nothing big in the graph)."""
    nf = centres.shape[1]

    def block(block_info=None):
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        rng = np.random.default_rng([seed, y0, x0])
        lab = rng.integers(0, len(centres), (y1 - y0, x1 - x0))
        return (centres[lab] + rng.normal(0, 1.2, (y1 - y0, x1 - x0, nf))).astype(np.float32)

    ch = tuple(min(chunk, side - i) for i in range(0, side, chunk))
    arr = da.map_blocks(block, chunks=(ch, ch, (nf,)), dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    return xr.DataArray(arr, dims=("y", "x", "feature"))


def _reference_worker(args):
    model, X = args
    t0 = time.perf_counter()
    model.predict_proba(X)
    return len(X) / (time.perf_counter() - t0)


def _grid(side: int):
    from odc.geo.geobox import GeoBox

    return GeoBox.from_bbox((0, 0, 10 * side, 10 * side), "EPSG:32633", resolution=10)


def _predict(cube, ref, model, cfg):
    """lcup's lazy outputs for ``cube`` on a square 10 m grid of its size: the forest's class, confidence and
    probabilities per pixel, with the 3 × 3 smoothing off (``smooth_px=1``) so that it does the work
    ``ParallelPostFit.predict_proba`` does."""
    from lcup.legends import LCUP7
    from lcup.stages import predict

    return predict(ref, cube, legend=LCUP7, output=cfg.output, classes=list(model.classes_), geobox=_grid(cube.sizes["y"]),
                   smooth_px=1)


def _interleaved_rates(client, a, routes: dict) -> dict[str, list[float]]:
    """px/s/core of each route, round after round, the routes in turn (their order swapped every round), on the
    same workers: ``routes[name](r)`` persists round r's inputs (fresh keys: nothing is reused) and returns what
    to time: a callable that ships the model and returns the lazy output."""
    from distributed import wait

    cores = sum(client.nthreads().values())
    rates: dict[str, list[float]] = {k: [] for k in routes}
    names = list(routes)
    for r in range(a.repeat):
        for name in names if r % 2 == 0 else names[::-1]:
            timed = routes[name](r)
            t0 = time.perf_counter()
            out = timed().persist()
            wait(out)
            rates[name].append(a.side**2 / (time.perf_counter() - t0) / cores)
            del out, timed
    return rates


def _persisted(x):
    from distributed import wait

    x = x.persist()
    wait(x.data if hasattr(x, "dims") else x)
    return x


def _lcup_route(client, model, centres, a, cfg):
    """lcup's prediction on a persisted cube (warm-up first, on other keys): the route for :func:`_interleaved_rates`.
    The model is scattered inside the timed call, every round, as dask-ml's route ships it in its graph."""
    from distributed import wait

    wait(_predict(make_cube(centres, a.chunk, a.chunk, seed=99), client.scatter(model, broadcast=True), model, cfg).persist())

    def route(r):
        cube = _persisted(make_cube(centres, a.side, a.chunk, seed=1 + r))
        return lambda: _predict(cube, client.scatter(model, broadcast=True, hash=False), model, cfg)

    return route


def _workers_peak_rss(client) -> float:
    """The highest RSS high-water mark among the workers, MB."""
    return max(client.run(_peak_rss_mb).values())


@contextmanager
def _client(cores: int, tuned: bool):
    """A Client on a fresh LocalCluster of ``cores`` one-thread workers, malloc-tuned as ``lcup run`` does if ``tuned``."""
    from distributed import Client, LocalCluster

    from lcup.cluster import tune_workers

    with LocalCluster(n_workers=cores, threads_per_worker=1, dashboard_address=None, memory_limit="6GiB") as cluster, Client(cluster) as client:
        if tuned:
            tune_workers(client)
        yield client


def _workers(client) -> set:
    return set(client.scheduler_info()["workers"])


def _ppf_route(client, model, centres, a):
    """dask-ml's ParallelPostFit on the same cube flattened (warm-up first), or None without dask-ml."""
    from distributed import wait

    try:
        from dask_ml.wrappers import ParallelPostFit
    except ImportError:
        print("dask-ml not installed: pip install 'lcup[bench]'")
        return None
    ppf = ParallelPostFit(model)

    def flat(side, seed):
        return make_cube(centres, side, a.chunk, seed=seed).data.reshape(-1, a.features).rechunk((a.chunk * a.chunk, -1))

    wait(ppf.predict_proba(flat(a.chunk, 98)).persist())

    def route(r):
        cube = _persisted(flat(a.side, 1 + r))
        return lambda: ppf.predict_proba(cube)  # the model travels in the submitted graph

    return route


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--features", type=int, default=60)
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--train-samples", type=int, default=400000,
                   help="more samples, bigger trees; the default pickles to ~260 MB, the size the issue measured (~300 MB); 20000: 27 MB")
    p.add_argument("--side", type=int, default=2048, help="cube side, pixels, for the throughput runs")
    p.add_argument("--chunk", type=int, default=512, help="chunk side, pixels (lcup's load.chunk_px default)")
    p.add_argument("--tile", type=int, default=1024, help="tile side for the per-km² runs")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians and min–max are reported (noisy machines)")
    p.add_argument("--no-tiles", action="store_true", help="skip the per-km² runs")
    p.add_argument("--json")
    a = p.parse_args(argv)

    from lcup.io.write import write_tiles_zarr

    model, centres = make_model(a.features, a.trees, a.depth, samples=a.train_samples)
    cores = os.cpu_count() or 1
    res: dict = {"model pickle (MB)": len(pickle.dumps(model)) / 1e6}

    X = make_cube(centres, a.chunk, a.chunk).values.reshape(-1, a.features)
    model.predict_proba(X[:1000])
    res["sklearn in-memory, 1 core alone (px/s/core)"] = max(_reference_worker((model, X)) for _ in range(a.repeat))
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(cores) as pool:
        pool.map(_reference_worker, [(model, X[:1000])] * cores)  # start-up and imports outside the timing
        rates = max(float(np.mean(pool.map(_reference_worker, [(model, X)] * cores))) for _ in range(a.repeat))
    res[f"sklearn in-memory, {cores} processes at once (px/s/core)"] = rates

    from lcup.config import OutputConfig

    cfg = SimpleNamespace(output=OutputConfig(dir="x"))  # the output encoding settings are all _predict reads
    from _common import ratio_spread, spread

    for label, tuned in (("untuned workers", False), ("tuned workers", True)):
        with _client(cores, tuned) as client:
            before = _workers(client)
            routes = {"lcup map_blocks": _lcup_route(client, model, centres, a, cfg)}
            ppf = _ppf_route(client, model, centres, a)
            if ppf is not None:
                routes["dask-ml ParallelPostFit"] = ppf
            rates = _interleaved_rates(client, a, routes)
            for k, v in rates.items():
                res[f"{k}, {label} (px/s/core)"] = spread(v)["median"]
                res[f"{k}, {label} (px/s/core, min–max)"] = [min(v), max(v)]
            if ppf is not None:
                res[f"lcup / ParallelPostFit, {label}"] = ratio_spread(rates["lcup map_blocks"], rates["dask-ml ParallelPostFit"])
            res[f"{label}: peak worker RSS (MB)"] = _workers_peak_rss(client)
            res[f"{label}: workers restarted (memory)"] = len(before - _workers(client))

    per_km2 = {}
    for n in () if a.no_tiles else (1, 4, 16):
        side = int(a.tile * np.sqrt(n))
        with _client(cores, tuned=True) as client:
            ref = client.scatter(model, broadcast=True)
            with tempfile.TemporaryDirectory() as tmp:
                # warm-up write on other keys (worker start-up, first calls, zarr codecs are not per-km² costs),
                # then the best of a.repeat runs
                write_tiles_zarr(_predict(make_cube(centres, a.chunk, a.chunk, seed=96), ref, model, cfg),
                                 Path(tmp) / "w.zarr", tile_px=a.tile, attrs={}, overwrite=True, resume=False,
                                 compute=lambda obj, label: client.compute(obj).result())
                sec = np.inf
                for r in range(a.repeat):
                    # lazy, made chunk by chunk inside each tile's computation: stands in for the feature graph
                    ds = _predict(make_cube(centres, side, a.chunk, seed=1 + r), ref, model, cfg)
                    t0 = time.perf_counter()
                    write_tiles_zarr(ds, Path(tmp) / f"o{r}.zarr", tile_px=a.tile, attrs={}, overwrite=True, resume=False,
                                     compute=lambda obj, label: client.compute(obj).result())
                    sec = min(sec, time.perf_counter() - t0)
            km2 = side * side * 100 / 1e6
            per_km2[n] = {"s_per_km2": sec / km2, "seconds": sec, "km2": km2, "peak_worker_rss_mb": _workers_peak_rss(client)}
    res["per_km2"] = per_km2

    ref1 = res["sklearn in-memory, 1 core alone (px/s/core)"]
    refn = res[f"sklearn in-memory, {cores} processes at once (px/s/core)"]
    print(f"forest: {a.trees} trees, depth {a.depth}, {a.features} features, {a.train_samples} training samples, "
          f"pickle {res['model pickle (MB)']:.0f} MB; cube {a.side}² px, chunks {a.chunk}², {cores} workers")
    for k, v in res.items():
        if isinstance(v, float) and "px/s" in k:
            print(f"  {k:62s} {v:10,.0f}   × 1-core ref {v / ref1:5.2f}   × same-concurrency ref {v / refn:5.2f}")
    for k, v in res.items():
        if "RSS" in k or "restarted" in k:
            print(f"  {k:62s} {v:10,.0f}")
    for label in ("untuned workers", "tuned workers"):
        r = res.get(f"lcup / ParallelPostFit, {label}")
        if r:
            print(f"  lcup / ParallelPostFit on the same {label}, interleaved: {r['median']:.2f}× (rounds {r['min']:.2f}–{r['max']:.2f})")
    if per_km2:
        base = per_km2[1]["s_per_km2"]
        for n, d in per_km2.items():
            print(f"  {n:2d} tile(s): {d['km2']:6.0f} km² in {d['seconds']:6.1f} s = {d['s_per_km2']:.4f} s/km² "
                  f"({d['s_per_km2'] / base:.2f}× 1 tile), peak worker RSS {d['peak_worker_rss_mb']:.0f} MB")
        km2 = np.array([d["km2"] for d in per_km2.values()])
        sec = np.array([d["seconds"] for d in per_km2.values()])
        slope, fixed = np.polyfit(km2, sec, 1)
        res["linear fit"] = {"s_per_km2": slope, "fixed_s": fixed}
        print(f"  linear fit: {slope:.4f} s/km² + {fixed:.2f} s fixed")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    main()
