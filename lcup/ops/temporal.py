"""Temporal gap filling and smoothing of ``(time, y, x)`` cubes on a regular time grid."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ChunkingError
from ._kernels import fused_mask_interp_smooth


def regular_grid(start, end, step_days: float) -> pd.DatetimeIndex:
    """Regular dates from ``start`` to ``end`` (inclusive where it falls on the grid), ``step_days`` apart."""
    return pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=pd.Timedelta(days=step_days))


def days_since_epoch(times) -> np.ndarray:
    t = pd.DatetimeIndex(np.asarray(times)).tz_localize(None) if getattr(times, "tz", None) else pd.DatetimeIndex(np.asarray(times))
    return ((t - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)


def interpolate_smooth(
    values: xr.DataArray,
    valid: xr.DataArray,
    grid: pd.DatetimeIndex,
    *,
    scale: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    window: int = 5,
    polyorder: int = 2,
    max_gap_days: float | None = None,
    hold_ends: bool = True,
) -> xr.DataArray:
    """Mask, scale to reflectance, linearly interpolate onto ``grid`` and Savitzky–Golay smooth.

    One compiled pass per chunk (:func:`lcup.ops._kernels.fused_mask_interp_smooth`).

    Parameters
    ----------
    values
        ``(time, y, x)`` DN (uint16, 0 = nodata) or float reflectance (NaN = nodata).
    valid
        ``(time, y, x)`` bool clear-observation mask.
    grid
        Output dates (regular).
    scale, offset
        ``(time,)`` DN→reflectance per date; default 1 and 0.
    window, polyorder
        Savitzky–Golay window in grid steps (odd) and order. Matches
        ``scipy.signal.savgol_filter(mode="interp")``: in the interior a centred window, at the ends a
        polynomial fitted to the first/last ``window`` samples.
    max_gap_days
        Gaps between clear observations longer than this are not bridged (NaN), nor are ends held
        further than this; None bridges everything.
    hold_ends
        Before the first and after the last clear observation, hold that value (True) or NaN.

    Returns
    -------
    xarray.DataArray
        ``(y, x, t)`` float32 with ``t`` the grid dates; NaN where a pixel has no clear observation.

    Raises
    ------
    ChunkingError
        If ``time`` is split across several dask chunks (call ``.chunk(time=-1)``).
    """
    for arr in (values, valid):
        if isinstance(arr.data, da.Array) and len(arr.chunks[arr.get_axis_num("time")]) > 1:
            raise ChunkingError(
                f"'time' of {arr.name or 'the input'} is split into {len(arr.chunks[arr.get_axis_num('time')])} chunks; "
                "the temporal kernel needs the whole series in one chunk: call .chunk(time=-1) first"
            )
    t_obs = days_since_epoch(values["time"].values)
    t_grid = days_since_epoch(grid)
    if np.any(np.diff(t_obs) < 0):
        raise ValueError("values must be sorted by time (call .sortby('time'))")
    gap = np.inf if max_gap_days is None else float(max_gap_days)

    def _kernel(v, m):
        return fused_mask_interp_smooth(v, m, t_obs, t_grid, scale=scale, offset=offset, window=window,
                                        polyorder=polyorder, max_gap=gap, hold_ends=hold_ends)

    out = xr.apply_ufunc(
        _kernel,
        values,
        valid,
        input_core_dims=[["time"], ["time"]],
        output_core_dims=[["t"]],
        exclude_dims={"time"},
        dask="parallelized",
        output_dtypes=[np.float32],
        dask_gufunc_kwargs={"output_sizes": {"t": len(grid)}},
    )
    return out.assign_coords(t=np.asarray(grid))
