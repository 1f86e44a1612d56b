"""Benchmark: mask → interpolate → Savitzky–Golay, from the ``(time, y, x)`` chunk the pipeline receives, four ways.

Every route starts from the layout a user (and lcup's pipeline) has: a ``(time, y, x)`` uint16 DN chunk and a
``(time, y, x)`` clear mask, as odc-stac loads them; any transposition a route needs is part of its time.

(a) lcup: :func:`lcup.ops.temporal.interpolate_smooth` — what the pipeline runs per chunk — on one thread, and
    on Dask with every core (the cube in ``--chunk`` px chunks, persisted);
(b) the naive xarray route: ``where`` + ``interpolate_na(dim="time")`` + ``interp`` + ``savgol_filter`` through
    ``apply_ufunc`` (time as the core dimension);
(c) eo-learn's ``LinearInterpolationTask`` on an EOPatch (``(time, h, w, band)``, its own layout: a move of the
    band axis), then ``savgol_filter`` along time (axis 0, where it is) — ``pip install "lcup[bench]"``;
(d) the floor: one numpy pass that reads every input date once and writes the output grid once.

Routes are timed in turn, round after round (interleaved, the order reversed every other round), and compared by
the median of the per-round ratios, with the min–max; throughput is pixel-timesteps (input dates) per second per
core. Every one-thread route (lcup, naive xarray, eo-learn, the floor) works on the same ``--crop`` px square, so
each ratio compares the same work; lcup on Dask runs on the whole cube and is reported beside them, in no ratio.

    python benchmarks/bench_temporal.py --size 1024 --dates 72
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy.signal import savgol_filter

sys.path.insert(0, str(Path(__file__).parent))
from _common import cores, interleave, peak_rss_mb, ratio_spread, spread  # noqa: E402

from lcup.ops.temporal import interpolate_smooth, regular_grid  # noqa: E402
from lcup.synthetic import smooth_field  # noqa: E402


def make_cube(size: int, dates: int, seed: int = 0):
    """uint16 DN ``(time, y, x)`` and a clear mask with ~40 % clouds in contiguous patches."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-03", periods=dates, freq=pd.Timedelta(days=365 / dates))
    doy = times.day_of_year.to_numpy()
    base = 0.25 + 0.3 * np.exp(-0.5 * ((doy - 190) / 50.0) ** 2)
    field = smooth_field(rng, (size, size), 64)
    dn = ((base[:, None, None] * (1 + 0.2 * field[None]) + 0.1) * 1e4).astype(np.uint16)
    valid = np.empty((dates, size, size), bool)
    for t in range(dates):
        cover = np.clip(rng.normal(0.4, 0.3), 0, 0.98)
        f = smooth_field(rng, (size, size), 48)
        valid[t] = f < np.quantile(f, 1 - cover) if cover > 0 else True
    return dn, valid, times


def lcup_chunk(dn, valid, times, grid, window, poly):
    """What the pipeline runs on one chunk: interpolate_smooth on numpy-backed (time, y, x) arrays."""
    v = xr.DataArray(dn, dims=("time", "y", "x"), coords={"time": times})
    m = xr.DataArray(valid, dims=("time", "y", "x"), coords={"time": times})
    n = len(times)
    return interpolate_smooth(v, m, grid, scale=np.full(n, 1e-4, np.float32), offset=np.full(n, -0.1, np.float32),
                              window=window, polyorder=poly).values


def naive_xarray(dn, valid, times, grid, window, poly):
    x = xr.DataArray(dn.astype(np.float32) * 1e-4 - 0.1, dims=("time", "y", "x"), coords={"time": times})
    m = xr.DataArray(valid, dims=("time", "y", "x"), coords={"time": times})
    x = x.where(m & (x > -0.1))
    x = x.interpolate_na(dim="time", method="linear", fill_value="extrapolate")
    x = x.interp(time=grid).fillna(0.0)  # savgol_filter rejects NaN (pixels never clear)
    return xr.apply_ufunc(savgol_filter, x, kwargs={"window_length": window, "polyorder": poly, "axis": -1, "mode": "interp"},
                          input_core_dims=[["time"]], output_core_dims=[["time"]]).values


def eolearn_task(dn, valid, times, grid_start, grid_end, step, window, poly):
    """eo-learn's LinearInterpolationTask on an EOPatch, then savgol_filter along time (axis 0 in its layout)."""
    from eolearn.core import EOPatch, FeatureType
    from eolearn.features.extra.interpolation import LinearInterpolationTask
    from sentinelhub import CRS, BBox

    data = (dn.astype(np.float32) * 1e-4 - 0.1)[..., None]
    mask = (valid & (dn > 0))[..., None]
    patch = EOPatch(bbox=BBox((0, 0, 1, 1), CRS.WGS84), timestamps=list(times.to_pydatetime()),
                    data={"BANDS": data}, mask={"IS_VALID": mask})
    task = LinearInterpolationTask((FeatureType.DATA, "BANDS"), mask_feature=(FeatureType.MASK, "IS_VALID"),
                                   resample_range=(grid_start, grid_end, int(step)))
    out = task.execute(patch).data["BANDS"][..., 0]
    return savgol_filter(np.nan_to_num(out), window, poly, axis=0, mode="interp")


def floor_pass(dn, out):
    """Read every input date once and write the output grid once (``(time, pixel)``): no kernel can do less."""
    s = dn.reshape(dn.shape[0], -1)
    o = out.reshape(out.shape[0], -1)
    k, t = o.shape[0], s.shape[0]
    np.multiply(s[:k], np.float32(1e-4), out=o, casting="unsafe")
    if t > k:  # the dates beyond the grid's length are read too
        for i in range(0, t - k, k):
            o[: min(k, t - k - i)] += s[k + i : k + i + min(k, t - k - i)] * np.float32(1e-4)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--dates", type=int, default=72)
    p.add_argument("--chunk", type=int, default=512, help="pipeline chunk (load.chunk_px)")
    p.add_argument("--crop", type=int, default=128, help="side of the square every one-thread route works on")
    p.add_argument("--step", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="write results here")
    a = p.parse_args(argv)
    window, poly = 5, 2
    dn, valid, times = make_cube(a.size, a.dates)
    grid = regular_grid("2024-01-01", "2024-12-31", a.step)
    n_cores = cores()
    ch, c = a.chunk, a.crop
    px_t = {"cube": a.size * a.size * a.dates, "crop": c * c * a.dates}

    import dask

    dv = xr.DataArray(dn, dims=("time", "y", "x"), coords={"time": times}).chunk({"time": -1, "y": ch, "x": ch}).persist()
    dm = xr.DataArray(valid, dims=("time", "y", "x"), coords={"time": times}).chunk({"time": -1, "y": ch, "x": ch}).persist()
    out = np.empty((len(grid), a.size, a.size), np.float32)

    def on_dask():
        with dask.config.set(scheduler="threads", num_workers=n_cores):
            interpolate_smooth(dv, dm, grid, scale=np.full(a.dates, 1e-4, np.float32), offset=np.full(a.dates, -0.1, np.float32),
                               window=window, polyorder=poly).data.persist()

    routes = {
        "lcup, 1 thread": (lambda: lcup_chunk(dn[:, :c, :c], valid[:, :c, :c], times, grid, window, poly), "crop", 1),
        f"lcup on dask, {n_cores} threads": (on_dask, "cube", n_cores),
        "naive xarray": (lambda: naive_xarray(dn[:, :c, :c], valid[:, :c, :c], times, grid, window, poly), "crop", 1),
        "streaming floor": (lambda: floor_pass(dn[:, :c, :c], out[:, :c, :c]), "crop", 1),
    }
    try:
        eolearn_task(dn[:, :8, :8], valid[:, :8, :8], times, "2024-01-01", "2024-12-31", a.step, window, poly)
        routes["eo-learn LinearInterpolationTask"] = (
            lambda: eolearn_task(dn[:, :c, :c], valid[:, :c, :c], times, "2024-01-01", "2024-12-31", a.step, window, poly), "crop", 1)
    except ImportError as e:
        print(f"eo-learn not installed ({e}); route (c) left out: pip install 'lcup[bench]'")
    times_s = interleave({k: v[0] for k, v in routes.items()}, rounds=a.rounds)
    per_core = {k: [px_t[routes[k][1]] / s / routes[k][2] for s in times_s[k]] for k in routes}  # px·t/s/core per round
    res = {k: spread(v) for k, v in per_core.items()}
    one = "lcup, 1 thread"
    ratios = {f"{one} / {k}": ratio_spread(per_core[one], per_core[k]) for k in routes if k != one and routes[k][1] == "crop"}
    print(f"cube: {a.size}² px × {a.dates} dates, chunk {ch}², grid {len(grid)} steps, {(~valid).mean():.0%} masked; "
          f"one-thread routes on {c}² px; {a.rounds} interleaved rounds; peak RSS {peak_rss_mb():.0f} MB")
    print(f"{'route':36s} {'M px·t/s/core: median':>22s} {'(min–max)':>14s}")
    for k, v in res.items():
        lo, hi = v["min"] / 1e6, v["max"] / 1e6
        print(f"{k:36s} {v['median'] / 1e6:22.2f} {f'({lo:.2f}–{hi:.2f})':>14s}")
    for k, v in ratios.items():
        print(f"{k:70s} {v['median']:7.2f}× ({v['min']:.2f}–{v['max']:.2f})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"px_t_per_s_per_core": res, "ratios": ratios, "peak_rss_mb": peak_rss_mb(), "args": vars(a)}, f, indent=1)
    return res, ratios


if __name__ == "__main__":
    main()
