"""Write rasters: COGs (small arrays in memory, large ones windowed) and Zarr stores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.transform import Affine

if TYPE_CHECKING:
    from ..legends import Legend


def _profile(arr: np.ndarray, transform, epsg_or_crs, nodata) -> dict:
    crs = f"EPSG:{epsg_or_crs}" if isinstance(epsg_or_crs, int) else epsg_or_crs
    return {
        "driver": "COG",
        "height": arr.shape[-2],
        "width": arr.shape[-1],
        "count": 1 if arr.ndim == 2 else arr.shape[0],
        "dtype": arr.dtype.name,
        "crs": crs,
        "transform": transform if isinstance(transform, Affine) else Affine(*transform[:6]),
        "nodata": nodata,
        "compress": "DEFLATE",
        "predictor": 2 if arr.dtype.kind in "ui" else 3,
        "blocksize": 256,
        "overview_resampling": "nearest",
    }


def write_cog_array(
    path: str | Path,
    arr: np.ndarray,
    transform,
    crs: int | str,
    nodata: float | int | None = 0,
    legend: "Legend | None" = None,
) -> Path:
    """Write an in-memory ``(y, x)`` or ``(band, y, x)`` array as a Cloud-Optimized GeoTIFF.

    For categorical maps give ``legend``: it embeds a colour table and class names (GDAL metadata
    ``CLASS_<code>=<name>``), and overviews use nearest resampling.
    """
    path = Path(path)
    prof = _profile(arr, transform, crs, nodata)
    if legend is not None:
        prof["overview_resampling"] = "nearest"
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr if arr.ndim == 3 else arr[None])
        if legend is not None and arr.dtype == np.uint8:
            dst.write_colormap(1, {0: (0, 0, 0, 0), **legend.colours()})
            dst.update_tags(1, **{f"CLASS_{c}": n for c, n in legend.names().items()}, LEGEND=legend.name)
    return path
