"""Temporal features per band/index from smoothed series on a regular grid."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ._kernels import STAT_CODES, series_stats

#: Summary statistics available per variable.
STATS = tuple(STAT_CODES)


def feature_names(variables: Sequence[str], stats: Sequence[str], series_vars: Sequence[str], series_idx: Sequence[int]) -> list[str]:
    """Names of the features :func:`temporal_features` makes, in order."""
    names = [f"{v}_{s}" for v in variables for s in stats]
    names += [f"{v}_t{i:02d}" for v in series_vars for i in series_idx]
    return names


def temporal_features(
    series: Mapping[str, xr.DataArray],
    *,
    stats: Sequence[str] = ("mean", "std", "p10", "p50", "p90", "amplitude", "doy_max"),
    series_vars: Sequence[str] = ("ndvi",),
    series_every: int = 1,
) -> xr.DataArray:
    """Summary statistics of every variable and selected series, as one feature array.

    Parameters
    ----------
    series
        ``{name: (y, x, t)}`` smoothed reflectance bands and indices on one regular grid.
    stats
        Statistics per variable (see :data:`STATS`); ``doy_max`` is the day of year of the maximum.
    series_vars
        Variables whose smoothed series itself is a feature (every ``series_every``-th grid step).

    Returns
    -------
    xarray.DataArray
        ``(y, x, feature)`` float32 with a ``feature`` coordinate of names; NaN where a pixel has no
        clear observation (or an unbridged gap).
    """
    variables = list(series)
    missing = [v for v in series_vars if v not in series]
    if missing:
        raise ValueError(f"series_vars {missing} are not among the computed variables {variables}")
    bad = [s for s in stats if s not in STAT_CODES]
    if bad:
        raise ValueError(f"unknown statistics {bad}; available: {STATS}")
    first = series[variables[0]]
    doy = pd.DatetimeIndex(first["t"].values).dayofyear.to_numpy().astype(np.float64)
    idx = list(range(0, first.sizes["t"], max(1, int(series_every))))
    names = feature_names(variables, stats, series_vars, idx)
    parts = []
    if stats:
        for v in variables:
            parts.append(
                xr.apply_ufunc(
                    series_stats, series[v], kwargs={"stats": tuple(stats), "doy": doy},
                    input_core_dims=[["t"]], output_core_dims=[["feature"]], dask="parallelized",
                    output_dtypes=[np.float32], dask_gufunc_kwargs={"output_sizes": {"feature": len(stats)}},
                )
            )
    for v in series_vars:
        parts.append(series[v].isel(t=idx).rename(t="feature").drop_vars("feature", errors="ignore"))
    out = xr.concat(parts, dim="feature", coords="minimal", compat="override", join="override")
    return out.transpose("y", "x", "feature").assign_coords(feature=names).astype(np.float32).rename("features")


def neighbourhood_features(feats: np.ndarray, sizes=(3, 5), stats=("mean", "std")) -> np.ndarray:
    """Local statistics of every feature around each pixel: ``(y, x, feature)`` → ``(y, x, feature × (1 +
    len(sizes) × len(stats)))``, the input first, then for each window side in ``sizes`` (pixels: 3 → 30 m at
    10 m) its ``mean`` and/or ``std``. NaN pixels count as missing in the windows. One block; the pipeline would
    give it a halo of ``max(sizes) // 2``.
    """
    from scipy import ndimage

    x = feats.astype(np.float32)
    ok = np.isfinite(x)
    x0 = np.where(ok, x, 0)
    out = [x]
    for s in sizes:
        n = ndimage.uniform_filter(ok.astype(np.float32), size=(s, s, 1), mode="nearest")
        m = ndimage.uniform_filter(x0, size=(s, s, 1), mode="nearest") / np.maximum(n, 1e-6)
        if "mean" in stats:
            out.append(np.where(n > 0, m, np.nan))
        if "std" in stats:
            m2 = ndimage.uniform_filter(x0 * x0, size=(s, s, 1), mode="nearest") / np.maximum(n, 1e-6)
            out.append(np.where(n > 0, np.sqrt(np.maximum(m2 - m * m, 0)), np.nan))
    return np.concatenate(out, -1).astype(np.float32)
