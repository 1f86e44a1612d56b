"""Cloud/shadow masks from the Sen2Cor scene classification (SCL) or a cloud-probability layer, and the
valid-coverage scene filter."""

from __future__ import annotations

from typing import Sequence

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from ..vocab import CLOUD_SHADOW_SCL, DEFAULT_INVALID_SCL  # noqa: F401 - re-exported


def disk(radius_px: int) -> np.ndarray:
    """Disk structuring element: offsets with ``dy² + dx² <= radius²`` (radius 1 → 3×3 cross)."""
    r = int(radius_px)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy**2 + xx**2) <= r * r


def _dilate_invalid_np(valid: np.ndarray, radius_px: int) -> np.ndarray:
    """``valid`` (..., y, x) bool → valid with the invalid area grown by ``radius_px``."""
    st = disk(radius_px)
    out = np.empty_like(valid)
    flat_in = valid.reshape((-1,) + valid.shape[-2:])
    flat_out = out.reshape(flat_in.shape)
    for i in range(flat_in.shape[0]):
        flat_out[i] = ~ndimage.binary_dilation(~flat_in[i], structure=st)
    return out


def scl_valid_mask(
    scl: xr.DataArray,
    invalid_classes: Sequence[int] = DEFAULT_INVALID_SCL,
    dilation_px: int = 0,
) -> xr.DataArray:
    """Clear-observation mask from an SCL band.

    Parameters
    ----------
    scl
        ``(time, y, x)`` scene classification codes (numpy or dask backed).
    invalid_classes
        SCL codes to mask (default: 0, 1, 3, 8, 9, 10).
    dilation_px
        Grow the cloud and shadow area (SCL 3, 8, 9, 10 among ``invalid_classes``) by this many pixels
        (disk); no data and defective pixels are masked but not grown. On dask input it is done with
        ``map_overlap`` so chunk edges are seamless.

    Returns
    -------
    xarray.DataArray
        ``(time, y, x)`` bool, True where the observation is clear.
    """
    valid = _not_in(scl, invalid_classes)
    grow = [c for c in invalid_classes if c in CLOUD_SHADOW_SCL]
    if dilation_px and dilation_px > 0 and grow:
        # only clouds and shadows are grown: no data (swath edge) and defective pixels stay as they are
        valid = _grown(valid, _not_in(scl, grow), int(dilation_px))
    valid.name = "valid"
    return valid


def _lut_not_in(a: np.ndarray, codes: tuple) -> np.ndarray:
    if a.dtype == np.uint8:  # a 256-entry table: one gather per pixel (np.isin sorts and searches)
        lut = np.ones(256, bool)
        lut[[c for c in codes if 0 <= c < 256]] = False
        return lut[a]
    return ~np.isin(a, codes)


def _not_in(scl: xr.DataArray, codes: Sequence[int]) -> xr.DataArray:
    """``~scl.isin(codes)``, by table lookup for uint8 codes."""
    codes = tuple(int(c) for c in codes)
    if isinstance(scl.data, da.Array):
        return scl.copy(data=scl.data.map_blocks(_lut_not_in, codes, dtype=bool))
    return scl.copy(data=_lut_not_in(np.asarray(scl.values), codes))


def _grown(valid: xr.DataArray, clear: xr.DataArray, r: int) -> xr.DataArray:
    """``valid`` and ``clear`` with the not-clear area grown by ``r`` px (``map_overlap`` on dask: seamless)."""
    if isinstance(clear.data, da.Array):
        depth = {clear.get_axis_num("y"): r, clear.get_axis_num("x"): r}
        data = clear.data.map_overlap(_dilate_invalid_np, depth=depth, boundary=True, radius_px=r, dtype=bool)
    else:
        data = _dilate_invalid_np(clear.transpose(..., "y", "x").values, r)
        clear, valid = clear.transpose(..., "y", "x"), valid.transpose(..., "y", "x")
    return valid & clear.copy(data=data)


def probability_mask(prob: xr.DataArray, max_percent: float = 40.0, dilation_px: int = 0) -> xr.DataArray:
    """Clear-observation mask from a cloud-probability layer in percent (0–100; above 100, e.g. 255: no data).

    Parameters
    ----------
    prob
        ``(time, y, x)`` cloud probability, % (the L2A ``MSK_CLDPRB`` layer, s2cloudless...).
    max_percent
        Observations up to this probability are clear.
    dilation_px
        Grow the cloudy area (not the no-data area) by this many pixels, as :func:`scl_valid_mask` does.

    Returns
    -------
    xarray.DataArray
        ``(time, y, x)`` bool, True where the observation is clear.

    Examples
    --------
    >>> p = xr.DataArray(np.array([[[0, 39, 41, 255]]], np.uint8), dims=("time", "y", "x"))
    >>> probability_mask(p, 40).values.ravel().tolist()
    [True, True, False, False]
    """
    valid = prob <= max_percent
    if dilation_px and dilation_px > 0:
        valid = _grown(valid, (prob <= max_percent) | (prob > 100), int(dilation_px))
    valid.name = "valid"
    return valid


def probability_valid_mask(prob: xr.DataArray, threshold: float = 0.4, *, units: str = "percent") -> xr.DataArray:
    """Clear-observation mask from a cloud-probability band: valid where the probability is below ``threshold``.

    Parameters
    ----------
    prob
        ``(time, y, x)`` cloud probability; NaN = no data.
    threshold
        Probability (0–1) from which an observation counts as cloudy.
    units
        What ``prob`` holds: ``"percent"`` (0–100, as Sentinel-2 L2A ``CLD`` / s2cloudless on most
        catalogs), ``"fraction"`` (0–1) or ``"byte"`` (0–255). Decided once for the band, never per
        pixel: a pixel at 1 % must not read as 100 %.

    Returns
    -------
    xarray.DataArray
        ``(time, y, x)`` bool, True where the observation is clear.
    """
    scales = {"fraction": 1.0, "percent": 100.0, "byte": 255.0}
    if units not in scales:
        raise ValueError(f"units must be one of {sorted(scales)}, got {units!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold is a probability between 0 and 1, got {threshold}")
    p = prob.astype("float32") / np.float32(scales[units])
    return (p < threshold) & p.notnull()


def valid_fraction(valid: xr.DataArray) -> xr.DataArray:
    """Fraction of clear pixels per date, ``(time,)`` float, lazy on dask input."""
    return valid.mean(dim=[d for d in valid.dims if d != "time"])


def keep_dates(fraction: np.ndarray, min_valid_fraction: float) -> np.ndarray:
    """Boolean ``(time,)`` selection of the dates whose valid fraction is at least the threshold."""
    return np.asarray(fraction) >= float(min_valid_fraction)
