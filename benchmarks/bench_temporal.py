"""Benchmark: mask → interpolate → Savitzky–Golay on one cube, four ways, in one process and one run.

(a) lcup's fused numba kernel (one thread, then on Dask with all cores);
(b) the naive xarray route: ``where`` + ``interpolate_na(dim="time")`` + ``interp`` + ``savgol_filter`` via
    ``apply_ufunc``;
(c) eo-learn's own ``LinearInterpolationTask`` (``pip install eo-learn``, i.e. ``lcup[bench]``; its numba
    per-pixel ``np.interp``) on an EOPatch, followed by the same ``savgol_filter``; skipped with a note
    if eo-learn is not installed;
(d) the floor: one streaming numpy pass that reads the input once and writes an output of the grid's size.

Throughput is in pixel-timesteps per second per core (input timesteps × pixels / s / cores used) and
every figure is also given as a ratio to (b), (c) and (d) measured in the same run.
Slow routes run on a spatial crop of the same cube (throughput is per pixel, so it compares).

    python benchmarks/bench_temporal.py --size 1024 --dates 72 --bands 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import pandas as pd
import xarray as xr
from scipy.signal import savgol_filter

from lcup.ops._kernels import fused_mask_interp_smooth
from lcup.ops.temporal import _days, interpolate_smooth, regular_grid
from lcup.synthetic import smooth_field


def make_cube(size: int, dates: int, seed: int = 0):
    """uint16 DN ``(y, x, time)`` and a clear mask with ~40 % clouds in contiguous patches."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-03", periods=dates, freq=pd.Timedelta(days=365 / dates))
    doy = times.day_of_year.to_numpy()
    base = 0.25 + 0.3 * np.exp(-0.5 * ((doy - 190) / 50.0) ** 2)
    field = smooth_field(rng, (size, size), 64)
    dn = ((base[None, None, :] * (1 + 0.2 * field[..., None]) + 0.1) * 1e4).astype(np.uint16)
    valid = np.empty((size, size, dates), bool)
    for t in range(dates):
        cover = np.clip(rng.normal(0.4, 0.3), 0, 0.98)
        f = smooth_field(rng, (size, size), 48)
        valid[..., t] = f < np.quantile(f, 1 - cover) if cover > 0 else True
    return dn, valid, times


def timeit(fn, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def naive_xarray(dn, valid, times, grid, window, poly):
    da_ = xr.DataArray(dn.astype(np.float32) * 1e-4 - 0.1, dims=("y", "x", "time"), coords={"time": times})
    m = xr.DataArray(valid, dims=("y", "x", "time"), coords={"time": times})
    x = da_.where(m & (da_ > -0.1))
    x = x.interpolate_na(dim="time", method="linear", fill_value="extrapolate")
    x = x.interp(time=grid).fillna(0.0)  # savgol_filter rejects NaN (pixels never clear)
    return xr.apply_ufunc(savgol_filter, x, kwargs={"window_length": window, "polyorder": poly, "axis": -1, "mode": "interp"},
                          input_core_dims=[["time"]], output_core_dims=[["time"]]).values


def eolearn_task(dn, valid, times, grid_start, grid_end, step, window, poly):
    """eo-learn's LinearInterpolationTask on an EOPatch, then savgol_filter (as a user would chain them)."""
    from eolearn.core import EOPatch, FeatureType
    from eolearn.features.extra.interpolation import LinearInterpolationTask
    from sentinelhub import CRS, BBox

    data = np.moveaxis(dn.astype(np.float32) * 1e-4 - 0.1, -1, 0)[..., None]
    mask = np.moveaxis(valid & (dn > 0), -1, 0)[..., None]
    patch = EOPatch(bbox=BBox((0, 0, 1, 1), CRS.WGS84), timestamps=list(times.to_pydatetime()),
                    data={"BANDS": data}, mask={"IS_VALID": mask})
    task = LinearInterpolationTask((FeatureType.DATA, "BANDS"), mask_feature=(FeatureType.MASK, "IS_VALID"),
                                   resample_range=(grid_start, grid_end, int(step)))
    out = task.execute(patch).data["BANDS"][..., 0]
    return savgol_filter(np.nan_to_num(out), window, poly, axis=0, mode="interp")


def floor_pass(dn, out):
    """Read every input byte once, write the output once: a lower bound on any kernel's time."""
    s = dn.reshape(-1, dn.shape[-1])
    o = out.reshape(-1, out.shape[-1])
    k = o.shape[1]
    np.multiply(s[:, :k], np.float32(1e-4), out=o, casting="unsafe")


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--dates", type=int, default=72)
    p.add_argument("--bands", type=int, default=10, help="the kernel is run once per band")
    p.add_argument("--crop", type=int, default=96, help="side of the crop for the slow routes")
    p.add_argument("--step", type=float, default=10.0)
    p.add_argument("--json", help="write results here")
    a = p.parse_args(argv)
    window, poly = 5, 2
    dn, valid, times = make_cube(a.size, a.dates)
    grid = regular_grid("2024-01-01", "2024-12-31", a.step)
    t_obs, t_grid = _days(times), _days(grid)
    cores = os.cpu_count() or 1
    pts = a.size * a.size * a.dates
    res = {}

    fused_mask_interp_smooth(dn[:4, :4], valid[:4, :4], t_obs, t_grid)  # compile
    sec = timeit(lambda: [fused_mask_interp_smooth(dn, valid, t_obs, t_grid, scale=np.full(a.dates, 1e-4),
                                                   offset=np.full(a.dates, -0.1), window=window, polyorder=poly)
                          for _ in range(a.bands)], repeat=2)
    res["lcup kernel, 1 thread"] = pts * a.bands / sec

    import dask

    dv = xr.DataArray(np.moveaxis(dn, -1, 0), dims=("time", "y", "x"), coords={"time": times}).chunk({"time": -1, "y": 256, "x": 256})
    dm = xr.DataArray(np.moveaxis(valid, -1, 0), dims=("time", "y", "x"), coords={"time": times}).chunk({"time": -1, "y": 256, "x": 256})
    dv, dm = dv.persist(), dm.persist()
    with dask.config.set(scheduler="threads", num_workers=cores):
        # persist: the chunks stay where they are computed, as in the pipeline (no gather into one array)
        sec = timeit(lambda: interpolate_smooth(dv, dm, grid, scale=np.full(a.dates, 1e-4), offset=np.full(a.dates, -0.1),
                                                window=window, polyorder=poly).data.persist(), repeat=3)
    res[f"lcup on dask, {cores} threads (per core)"] = pts / sec / cores

    c = a.crop
    cpts = c * c * a.dates
    sec = timeit(lambda: naive_xarray(dn[:c, :c], valid[:c, :c], times, grid, window, poly), repeat=1)
    res["naive xarray"] = cpts / sec
    try:
        eolearn_task(dn[:8, :8], valid[:8, :8], times, "2024-01-01", "2024-12-31", a.step, window, poly)  # compile
        sec = timeit(lambda: eolearn_task(dn[:c * 2, :c * 2], valid[:c * 2, :c * 2], times, "2024-01-01", "2024-12-31",
                                          a.step, window, poly), repeat=2)
        res["eo-learn LinearInterpolationTask"] = 4 * cpts / sec
    except ImportError as e:
        print(f"eo-learn not installed ({e}); route (c) left out: pip install 'lcup[bench]'")
    out = np.empty(dn.shape[:2] + (len(grid),), np.float32)
    sec = timeit(lambda: floor_pass(dn, out), repeat=3)
    res["streaming floor"] = pts / sec

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cube: {a.size}² px × {a.dates} dates × {a.bands} bands, grid {len(grid)} steps, "
          f"{(~valid).mean():.0%} masked; slow routes on {c}² px; peak RSS {peak_mb:.0f} MB")
    eol = res.get("eo-learn LinearInterpolationTask", np.nan)
    print(f"{'route':40s} {'M px·t/s/core':>14s} {'× naive':>9s} {'× eo-learn':>11s} {'× floor':>9s}")
    for k, v in res.items():
        print(f"{k:40s} {v / 1e6:14.2f} {v / res['naive xarray']:9.1f} {v / eol:11.2f} {v / res['streaming floor']:9.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"throughput_px_t_per_s_per_core": res, "peak_rss_mb": peak_mb, "args": vars(a)}, f, indent=1)
    return res


if __name__ == "__main__":
    main()
