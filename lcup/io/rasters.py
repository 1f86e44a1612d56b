"""Read label maps (any GDAL-readable file or URL) onto the Sentinel-2 grid, windowed, never whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from odc.geo.geom import box
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from ..errors import LabelError, ReadError


def read_on_geobox(path: str | Path, geobox: GeoBox, *, resampling: str = "nearest", band: int = 1, nodata: int | None = None) -> np.ndarray:
    """Reproject a raster onto ``geobox`` (nearest by default) through a GDAL warped VRT.

    Only the source blocks that cover the geobox are read, so a 36000×36000 tile costs a window.

    Returns
    -------
    numpy.ndarray
        ``(y, x)`` in the source dtype; 0 (or the source nodata) outside the source.

    Raises
    ------
    LabelError
        If the raster does not overlap the geobox.
    """
    try:
        src = rasterio.open(str(path))
    except rasterio.errors.RasterioIOError as e:
        raise ReadError(f"cannot open label map {path}: {e}; check the path or URL") from e
    with src:
        if src.crs is None:
            raise LabelError(f"label map {path} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:4326 {path})")
        src_extent = box(*src.bounds, crs=str(src.crs))
        if not src_extent.to_crs(geobox.crs).intersects(geobox.extent):
            raise LabelError(
                f"label map {path} (bounds {tuple(round(b, 4) for b in src.bounds)} in {src.crs}) does not overlap "
                f"the area {tuple(round(b, 1) for b in geobox.extent.boundingbox)} in {geobox.crs}"
            )
        nd = src.nodata if nodata is None else nodata
        with WarpedVRT(
            src,
            crs=str(geobox.crs),
            transform=geobox.transform,
            width=geobox.width,
            height=geobox.height,
            resampling=Resampling[resampling],
            src_nodata=nd,
            nodata=0 if nd is None else nd,
        ) as vrt:
            return vrt.read(band)
