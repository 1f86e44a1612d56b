"""Temporal features per band/index from smoothed series on a regular grid."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

#: Summary statistics available per variable.
STATS = ("mean", "std", "min", "max", "p10", "p50", "p90", "amplitude", "doy_max")


def _stats_np(x: np.ndarray, stats: Sequence[str], doy: np.ndarray) -> list[np.ndarray]:
    """x: (..., t) float32 → list of (...) arrays, NaN where the series is all-NaN."""
    out = []
    allnan = np.isnan(x).all(-1)
    need_pct = [s for s in stats if s in ("p10", "p50", "p90", "amplitude")]
    pct = {}
    if need_pct:
        with np.errstate(invalid="ignore"):
            q = np.percentile(x, [10, 50, 90], axis=-1)  # NaN propagates for gappy pixels
        pct = {"p10": q[0], "p50": q[1], "p90": q[2]}
    for s in stats:
        if s == "mean":
            out.append(x.mean(-1))
        elif s == "std":
            out.append(x.std(-1))
        elif s == "min":
            out.append(x.min(-1))
        elif s == "max":
            out.append(x.max(-1))
        elif s in pct:
            out.append(pct[s])
        elif s == "amplitude":
            out.append(pct["p90"] - pct["p10"])
        elif s == "doy_max":
            arg = np.argmax(np.where(np.isnan(x), -np.inf, x), axis=-1)
            out.append(np.where(allnan, np.nan, doy[arg]))
        else:
            raise ValueError(f"unknown statistic {s!r}; available: {STATS}")
    return out


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
    """Stack summary statistics and selected series into one feature array.

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
        clear observation.
    """
    variables = list(series)
    missing = [v for v in series_vars if v not in series]
    if missing:
        raise ValueError(f"series_vars {missing} are not among the computed variables {variables}")
    first = series[variables[0]]
    doy = pd.DatetimeIndex(first["t"].values).dayofyear.to_numpy().astype(np.float32)
    idx = list(range(0, first.sizes["t"], max(1, int(series_every))))
    names = feature_names(variables, stats, series_vars, idx)
    order = variables + list(series_vars)
    stacked = xr.concat([series[v] for v in order], dim="var", coords="minimal", compat="override")
    if stacked.chunks is not None:
        stacked = stacked.chunk({"var": -1, "t": -1})
    nvar, nser = len(variables), len(series_vars)
    stats = tuple(stats)

    def _block(x: np.ndarray) -> np.ndarray:  # x: (y, x, var, t)
        parts = []
        for i in range(nvar):
            parts.extend(_stats_np(x[..., i, :], stats, doy))
        for j in range(nser):
            s = x[..., nvar + j, :]
            parts.extend(s[..., k] for k in idx)
        return np.stack(parts, -1).astype(np.float32)

    out = xr.apply_ufunc(
        _block,
        stacked,
        input_core_dims=[["var", "t"]],
        output_core_dims=[["feature"]],
        dask="parallelized",
        output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {"feature": len(names)}},
    )
    return out.transpose("y", "x", "feature").assign_coords(feature=names).rename("features")
