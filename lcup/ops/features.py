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


def neighbourhood_names(names: Sequence[str], sizes_m: Sequence[float], stats: Sequence[str]) -> list[str]:
    """Names of :func:`neighbourhood_features`' outputs: ``{feature}_{stat}{side}m``, window by window."""
    return [f"{n}_{k}{m:g}m" for m in sizes_m for k in _ordered(stats) for n in names]


def _ordered(stats: Sequence[str]) -> list[str]:
    return [k for k in ("mean", "std") if k in stats]


def _box_sum(a: np.ndarray, side: int) -> np.ndarray:
    """Sum of ``a`` ``(y, x, ...)`` over the ``side × side`` window centred on each pixel, zero beyond the edge."""
    r = int(side) // 2
    h, w = a.shape[:2]
    p = np.pad(a, ((r, r), (r, r)) + ((0, 0),) * (a.ndim - 2))
    col = np.zeros((h,) + p.shape[1:], a.dtype)
    for d in range(2 * r + 1):
        col += p[d:d + h]
    out = np.zeros(a.shape, a.dtype)
    for d in range(2 * r + 1):
        out += col[:, d:d + w]
    return out


def neighbourhood_features(feats: np.ndarray, sizes: Sequence[int] = (3, 5), stats: Sequence[str] = ("mean", "std")) -> np.ndarray:
    """Local statistics of every feature around each pixel (spatial context at 10 m).

    Parameters
    ----------
    feats
        ``(y, x, feature)`` float features; NaN pixels count as missing in the windows.
    sizes
        Window sides in pixels (3 → 30 m at 10 m).
    stats
        ``mean`` and/or ``std`` per window.

    Returns
    -------
    numpy.ndarray
        ``(y, x, feature × len(sizes) × len(stats))`` float32, window by window, statistic by statistic (names:
        :func:`neighbourhood_names`); NaN where a window holds no valid pixel. At the array's edge the window
        holds what is there: give a halo of ``max(sizes) // 2`` for seamless chunks.

    Examples
    --------
    >>> f = np.arange(9, dtype=np.float32).reshape(3, 3, 1)
    >>> float(neighbourhood_features(f, sizes=(3,), stats=("mean",))[1, 1, 0])
    4.0
    """
    x = feats.astype(np.float64)
    ok = np.isfinite(x)
    x0 = np.where(ok, x, 0.0)
    out = []
    for s in sizes:
        # sums of valid pixels in a fixed order per pixel (no running sums): the same bits however the array is cut
        n = _box_sum(ok.astype(np.float64), s)
        m = _box_sum(x0, s) / np.maximum(n, 1)
        for k in _ordered(stats):
            if k == "mean":
                out.append(np.where(n > 0, m, np.nan))
            else:
                m2 = _box_sum(x0 * x0, s) / np.maximum(n, 1)
                out.append(np.where(n > 0, np.sqrt(np.maximum(m2 - m * m, 0)), np.nan))
    if not out:
        return np.zeros(x.shape[:2] + (0,), np.float32)
    return np.concatenate(out, -1).astype(np.float32)
