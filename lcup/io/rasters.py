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


def pixel_size_m(path: str | Path) -> float:
    """Pixel size of a raster in metres (degrees converted at the raster's centre latitude)."""
    with rasterio.open(str(path)) as src:
        res = abs(src.res[1])
        if src.crs is not None and src.crs.is_geographic:
            return res * 111_320.0
        return res


#: Land-cover collections on STAC APIs: ``collection -> (asset key, legend)``.
LABEL_COLLECTIONS: dict[str, tuple[str, str]] = {
    "esa-worldcover": ("map", "esa-worldcover"),
    "io-lulc-annual-v02": ("data", "io-lulc"),
    "io-lulc-9-class": ("data", "io-lulc"),
}


def read_stac_on_geobox(
    catalog: str,
    collection: str,
    geobox: GeoBox,
    *,
    asset: str | None = None,
    start: str = "1900-01-01",
    end: str = "2100-12-31",
    sign: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Mosaic a land-cover collection's items onto ``geobox`` (nearest), newest item first.

    Each item's asset is read through :func:`read_on_geobox` (windowed); pixels still 0 after an
    item are filled from the next, so tiles that meet inside the AOI mosaic seamlessly.

    Returns
    -------
    codes, item_ids
        ``(y, x)`` codes in the collection's legend, and the ids of the items used.
    """
    from .stac import lonlat_bbox, search_items

    key = asset or LABEL_COLLECTIONS.get(collection, ("map", ""))[0]
    items = search_items(catalog, None, lonlat_bbox(geobox), start, end, collection=collection)
    items = sorted(items, key=lambda it: str(it.datetime or it.properties.get("start_datetime")), reverse=True)
    out: np.ndarray | None = None
    used = []
    for it in items:
        if key not in it.assets:
            raise LabelError(f"item {it.id} of {collection!r} has no asset {key!r} (it has {sorted(it.assets)}); set labels.stac.asset")
        href = it.assets[key].get_absolute_href() or it.assets[key].href
        if sign:
            import planetary_computer

            href = planetary_computer.sign(href)
        try:
            arr = read_on_geobox(href, geobox)
        except LabelError:
            continue  # the item's bbox overlaps, its raster does not
        used.append(it.id)
        if out is None:
            out = arr
        else:
            hole = out == 0
            out[hole] = arr[hole]
        if not (out == 0).any():
            break
    if out is None:
        raise LabelError(f"no {collection!r} item in {catalog} covers the area")
    return out, used
