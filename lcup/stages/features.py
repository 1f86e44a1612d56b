"""Stage: clean the cube (mask, interpolate, smooth) and turn it into per-pixel features."""

from __future__ import annotations

import datetime as dt
from typing import Mapping, Sequence

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..config import CleanConfig, FeaturesConfig
from ..ops.blocks import map_blocks_across
from ..ops.cloud import probability_mask, scl_valid_mask
from ..ops.features import chunk_features, neighbourhood_features, neighbourhood_names
from ..ops.features import feature_names as names
from ..ops.features import feature_names as names_of
from ..ops.indices import compute_indices, formula_index
from ..ops.temporal import days_since_epoch, regular_grid
from ..units import grid_step, metres_to_px
from . import section
from ._halo import map_with_halo
from .load import on_dates


def feature_names(bands: Sequence[str], period: tuple[dt.date, dt.date], *, clean: CleanConfig | Mapping | None = None,
                  features: FeaturesConfig | Mapping | None = None) -> list[str]:
    """The names of the features :func:`features` makes, in order, without building anything."""
    cc, fc = section(CleanConfig, clean), section(FeaturesConfig, features)

    n_grid = len(regular_grid(*period, cc.step_days))
    base = names(list(bands) + list(fc.indices) + list(fc.custom_indices), fc.stats, fc.series,
                 range(0, n_grid, max(1, fc.series_every)))
    return base + neighbourhood_names(base, fc.neighbourhood_m, fc.neighbourhood_stats)


def neighbourhood_px(features: FeaturesConfig | Mapping | None, resolution_m: float) -> list[int]:
    """The window sides of ``features.neighbourhood_m`` in pixels: odd, at least 3 (30 m → 3 px at 10 m)."""
    fc = section(FeaturesConfig, features)
    out = []
    for m in fc.neighbourhood_m:
        n = max(3, metres_to_px(m, resolution_m))
        out.append(n + 1 - n % 2)
    return out


def neighbourhood_halo_px(features: FeaturesConfig | Mapping | None, resolution_m: float) -> int:
    """Pixels a tile's cube must reach beyond the tile for seamless neighbourhood features (0 when off)."""
    return max(neighbourhood_px(features, resolution_m), default=1) // 2


def features(cube: xr.Dataset, period: tuple[dt.date, dt.date], *, clean: CleanConfig | Mapping | None = None,
             features: FeaturesConfig | Mapping | None = None, dates=None,
             at: tuple[np.ndarray, np.ndarray] | None = None) -> xr.DataArray | None:
    """Mask clouds, interpolate onto a regular time grid, smooth, add indices and summarise: lazy features.

    Parameters
    ----------
    cube
        From :func:`lcup.stages.load.load`: DN bands, ``scl`` (possibly with a halo) and per-date scale/offset.
    period
        First and last day of the regular time grid.
    clean
        :class:`~lcup.config.CleanConfig`: SCL classes masked, dilation (m), grid step (days), Savitzky–Golay.
    features
        :class:`~lcup.config.FeaturesConfig`: indices, statistics, series kept.
    dates
        The dates to use (:func:`lcup.stages.load.scene_filter`); None: every date of the cube.
    at
        ``(rows, columns)`` of pixels of the cube: only their features, ``(sample, feature)``. Each chunk holding
        some is read and masked whole, but interpolated, smoothed and summarised only at them (the training
        sample's features at a fraction of the chunks' cost); the values equal those of the whole cube's features.

    Returns
    -------
    xarray.DataArray or None
        ``(y, x, feature)`` float32, chunked like the cube, NaN where a pixel has no clear observation (``at``:
        ``(sample, feature)``); None if the cube has none of ``dates``.

    Examples
    --------
    >>> feats = lcup.features(cube, ("2024-01-01", "2024-12-31"), clean={"dilation_m": 20})  # doctest: +SKIP
    >>> feats.sel(feature="ndvi_p90").plot()  # doctest: +SKIP
    """
    cc, fc = section(CleanConfig, clean), section(FeaturesConfig, features)
    bands = [v for v in cube.data_vars if v != "scl"]
    res = grid_step(cube)
    idx = np.arange(cube.sizes["time"]) if dates is None else np.nonzero(on_dates(cube.time.values, dates))[0]
    if len(idx) == 0:
        return None
    if len(idx) == cube.sizes["time"]:  # every date kept (the pipeline loads only those): no copy of the cube
        idx = slice(None)
    h = int(cube["scl"].attrs.get("halo_px", 0)) if "scl" in cube else 0
    if cc.mask == "none" or "scl" not in cube:  # only no-data values (0, NaN) are missing: the kernel skips them
        valid = xr.ones_like(cube[bands[0]].isel(time=idx), dtype=bool)
    else:  # the mask slot holds SCL, or the cloud-probability layer (clean.mask: probability)
        scl = cube["scl"].isel(time=idx)
        scl = scl.rename(scl_y="y", scl_x="x") if h else scl
        r = metres_to_px(cc.dilation_m, res)
        valid = (probability_mask(scl, cc.max_probability, r) if cc.mask == "probability"
                 else scl_valid_mask(scl, cc.invalid_scl, r))
    if h:
        valid = valid.isel(y=slice(h, -h), x=slice(h, -h)).chunk({"y": cube.chunks["y"], "x": cube.chunks["x"]})
        valid = valid.assign_coords(y=cube.y, x=cube.x)
    grid = regular_grid(period[0], period[1], cc.step_days)
    if at is not None and not fc.neighbourhood_m:  # per-pixel features: only the pixels asked for
        return _fused_features(cube, bands, idx, valid, grid, cc, fc, at=at)
    feats = _fused_features(cube, bands, idx, valid, grid, cc, fc)
    if fc.neighbourhood_m:
        feats = with_neighbourhood(feats, fc.neighbourhood_m, fc.neighbourhood_stats, res)
    if at is not None:  # neighbourhood features need the windows around the pixels: whole chunks
        iy, ix = (np.asarray(a) for a in at)
        return xr.DataArray(feats.data.vindex[iy, ix], dims=("sample", "feature"), coords={"feature": feats.feature.values},
                            name="features")
    return feats


def _fused_features(cube: xr.Dataset, bands: list[str], idx: np.ndarray, valid: xr.DataArray, grid, cc: CleanConfig,
                    fc: FeaturesConfig, at: tuple[np.ndarray, np.ndarray] | None = None) -> xr.DataArray:
    """One task per spatial chunk from the DN bands and the clear mask to the chunk's features
    (:func:`lcup.ops.features.chunk_features`); with ``at``, one task per chunk holding some of those pixels,
    computing theirs only."""
    # what the tasks would find missing, found now: indices on one pixel of ones (MissingBandError names the band)
    one = {b: xr.DataArray(np.ones((1, 1, 1), np.float32), dims=("y", "x", "t")) for b in bands}
    compute_indices(one, fc.indices)
    for name, expr in fc.custom_indices.items():
        formula_index(one, name, expr)
    variables = bands + list(fc.indices) + list(fc.custom_indices)
    stray = [v for v in fc.series if v not in variables]
    if stray:
        raise ValueError(f"features.series {stray} are not among the computed variables {variables}; add them to "
                         "load.bands or features.indices, or drop them from features.series")
    dn = [cube[b].isel(time=idx).chunk({"time": -1}).data for b in bands]
    ok = valid.transpose("time", "y", "x").chunk({"time": -1}).data.rechunk(dn[0].chunks)
    series_idx = range(0, len(grid), max(1, fc.series_every))
    names = names_of(variables, fc.stats, fc.series, series_idx)
    times = cube.time.values[idx]
    kw = dict(t_obs=days_since_epoch(times), t_grid=days_since_epoch(grid), doy=pd.DatetimeIndex(grid).day_of_year.to_numpy(np.float64),
              scale={b: np.asarray(cube[f"scale_{b}"].values[idx], np.float64) for b in bands},
              offset={b: np.asarray(cube[f"offset_{b}"].values[idx], np.float64) for b in bands},
              window=cc.savgol_window, polyorder=cc.savgol_polyorder,
              max_gap=np.inf if cc.max_gap_days is None else float(cc.max_gap_days), hold_ends=cc.hold_ends,
              indices=list(fc.indices), custom_indices=dict(fc.custom_indices), stats=list(fc.stats),
              series_vars=list(fc.series), series_every=fc.series_every)

    def block(*blocks):
        return chunk_features(dict(zip(bands, blocks[:-1])), blocks[-1], **kw)

    if at is not None:
        return _features_at(block, dn, ok, at, names)

    # the blocks themselves (no copy to concatenate time), under a tokenised key: tiles in flight never share one
    data = map_blocks_across(block, *dn, ok, drop_axis=0, new_axis=2, new_size=len(names), dtype=np.float32)
    coords = {k: v for k, v in cube[bands[0]].coords.items() if "time" not in v.dims}
    return xr.DataArray(data, dims=("y", "x", "feature"), coords={**coords, "feature": names}, name="features")


def _points_block(block, *blocks_and_positions):
    *blocks, (ly, lx) = blocks_and_positions
    # the pixels as a (time, 1, n) strip: every per-pixel kernel gives them what it gives them in the whole chunk
    return block(*(b[:, ly, lx][:, None, :] for b in blocks))[0]


def _features_at(block, dn: list, ok, at: tuple[np.ndarray, np.ndarray], names: list[str]) -> xr.DataArray:
    """``(sample, feature)`` features of the pixels ``at`` (rows, columns of the cube), chunk by chunk."""
    iy, ix = (np.asarray(a, np.int64) for a in at)
    starts = [np.cumsum((0,) + c[:-1]) for c in ok.chunks[1:]]
    ci, cj = np.searchsorted(starts[0], iy, side="right") - 1, np.searchsorted(starts[1], ix, side="right") - 1
    blocks = [a.to_delayed() for a in dn] + [ok.to_delayed()]
    order, parts = [], []
    for i, j in sorted(set(zip(ci.tolist(), cj.tolist()))):
        sel = np.nonzero((ci == i) & (cj == j))[0]
        pos = (iy[sel] - starts[0][i], ix[sel] - starts[1][j])
        task = dask.delayed(_points_block)(block, *(b[0, i, j] for b in blocks), pos)
        parts.append(da.from_delayed(task, (len(sel), len(names)), dtype=np.float32))
        order.append(sel)
    data = da.concatenate(parts) if parts else da.zeros((0, len(names)), np.float32)
    inverse = np.empty(len(iy), np.int64)
    inverse[np.concatenate(order) if order else []] = np.arange(len(iy))
    return xr.DataArray(data[inverse], dims=("sample", "feature"), coords={"feature": names}, name="features")


def with_neighbourhood(feats: xr.DataArray, sizes_m: Sequence[float], stats: Sequence[str], resolution_m: float) -> xr.DataArray:
    """``feats`` ``(y, x, feature)`` followed by the local mean/std of every feature in windows of ``sizes_m``
    metres (:func:`lcup.ops.features.neighbourhood_features`), chunk by chunk with a halo: the same values
    however the array is chunked. Within ``max(window) // 2`` px of the array's edge the windows hold only what
    is there; :func:`lcup.stages.tiles.tile_features` loads that much more around a tile and crops it."""
    px = neighbourhood_px({"neighbourhood_m": list(sizes_m)}, resolution_m)
    feats = feats if feats.chunks is not None else feats.chunk({"feature": -1})
    names = list(feats.feature.values)
    n_out = len(names) * (1 + len(px) * len([k for k in ("mean", "std") if k in stats]))

    def block(b):
        return np.concatenate([b, neighbourhood_features(b, px, stats)], -1)

    data = map_with_halo(block, feats.data, max(px) // 2, out_chunks=feats.data.chunks[:2] + ((n_out,),), dtype=np.float32)
    names += neighbourhood_names(names, sorted(sizes_m), stats)
    return xr.DataArray(data, dims=feats.dims, coords={**{k: v for k, v in feats.coords.items() if k != "feature"},
                                                       "feature": names}, name=feats.name, attrs=feats.attrs)
