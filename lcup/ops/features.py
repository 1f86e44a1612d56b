"""Temporal features per band/index from smoothed series on a regular grid."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from ..vocab import formula_bands, index_bands
from ._kernels import STAT_CODES, fused_mask_interp_smooth, series_stats, time_last
from .indices import compute_indices, formula_index

#: Summary statistics available per variable.
STATS = tuple(STAT_CODES)


def feature_names(variables: Sequence[str], stats: Sequence[str], series_vars: Sequence[str], series_idx: Sequence[int]) -> list[str]:
    """Names of the features :func:`chunk_features` makes, in order."""
    names = [f"{v}_{s}" for v in variables for s in stats]
    names += [f"{v}_t{i:02d}" for v in series_vars for i in series_idx]
    return names


def chunk_features(
    dn: Mapping[str, np.ndarray],
    valid: np.ndarray,
    *,
    t_obs: np.ndarray,
    t_grid: np.ndarray,
    doy: np.ndarray,
    scale: Mapping[str, np.ndarray],
    offset: Mapping[str, np.ndarray],
    window: int = 5,
    polyorder: int = 2,
    max_gap: float = np.inf,
    hold_ends: bool = True,
    indices: Sequence[str] = (),
    custom_indices: Mapping[str, str] | None = None,
    stats: Sequence[str] = ("mean",),
    series_vars: Sequence[str] = (),
    series_every: int = 1,
) -> np.ndarray:
    """Every feature of one spatial chunk in one pass: mask, scale, interpolate and smooth each band
    (:func:`lcup.ops._kernels.fused_mask_interp_smooth`), indices, statistics and series, written straight into
    the feature array (no per-variable intermediate arrays to concatenate).

    Parameters
    ----------
    dn
        ``{band: (time, y, x)}`` DN (0 = no data) or float reflectance.
    valid
        ``(time, y, x)`` bool clear-observation mask.
    t_obs, t_grid
        Observation and grid times, days.
    doy
        Day of year of each grid step (``doy_max``).
    scale, offset
        ``{band: (time,)}`` DN → reflectance.
    window, polyorder, max_gap, hold_ends
        As :func:`lcup.ops.temporal.interpolate_smooth`.
    indices, custom_indices, stats, series_vars, series_every
        Index names (:func:`lcup.ops.indices.compute_indices`), custom index formulas, statistics per variable
        (:data:`STATS`; ``doy_max`` is the day of year of the maximum), the variables whose smoothed series are
        features themselves (every ``series_every``-th grid step).

    Returns
    -------
    numpy.ndarray
        ``(y, x, feature)`` float32 in the order of :func:`feature_names` (bands, indices, custom indices).
    """
    custom_indices = dict(custom_indices or {})
    bands = list(dn)
    variables = bands + list(indices) + list(custom_indices)
    step = max(1, int(series_every))
    ns, nser = len(stats), len(range(0, len(t_grid), step))
    ny, nx = valid.shape[1:]
    out = np.empty((ny, nx, len(variables) * ns + len(series_vars) * nser), np.float32)
    doy = np.asarray(doy, np.float64)
    # the bands the indices read: their series are kept for them
    need: set[str] = set()
    for name in indices:
        need.update(index_bands(name, dict.fromkeys(bands))[0])
    if custom_indices:
        for expr in custom_indices.values():
            need.update(formula_bands(expr))
    m = time_last(np.asarray(valid, np.bool_).transpose(1, 2, 0))  # (y, x, time), once for every band
    kept: dict[str, xr.DataArray] = {}

    def emit(k: int, name: str, series: np.ndarray) -> None:
        if ns:
            out[..., k * ns:(k + 1) * ns] = series_stats(series, tuple(stats), doy)
        if name in series_vars:
            j = len(variables) * ns + list(series_vars).index(name) * nser
            out[..., j:j + nser] = series[..., ::step]  # a strided view: no gather

    for k, b in enumerate(bands):
        sm = fused_mask_interp_smooth(dn[b].transpose(1, 2, 0), m, t_obs, t_grid, scale=scale[b], offset=offset[b],
                                      window=window, polyorder=polyorder, max_gap=max_gap, hold_ends=hold_ends)
        emit(k, b, sm)
        if b in need:
            kept[b] = xr.DataArray(sm, dims=("y", "x", "t"))
    made = compute_indices(kept, list(indices)) if indices else {}
    made.update({name: formula_index(kept, name, expr) for name, expr in custom_indices.items()})
    for k, name in enumerate(list(indices) + list(custom_indices), start=len(bands)):
        emit(k, name, np.asarray(made.pop(name).values, np.float32))
    return out


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
