"""Read label maps (any GDAL-readable file or URL) onto the Sentinel-2 grid, windowed, never whole.

:func:`open_on_geobox` and :func:`open_stac_on_geobox` are lazy: one Dask task per chunk of the
grid, each reading only its own window through a GDAL warped VRT, so a label map for a continent is
never held in memory. :func:`read_on_geobox` reads one (small) grid at once.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
from dask.base import tokenize
from odc.geo.geobox import GeoBox
from odc.geo.geom import box
from pyproj import Geod
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import from_bounds
from shapely.ops import nearest_points

from ..errors import LabelError, ReadError
from ..legends import LEGENDS, Legend
from ..optional import require
from .stac import lonlat_bbox, search_items

#: GDAL settings for label maps read over HTTP: retries, and no directory listing of the URL's folder
_REMOTE_ENV = {"GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "0.5", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def _env(href: str | Path):
    """:data:`_REMOTE_ENV` for a URL; nothing for a local file (which keeps its side-car files)."""
    h = str(href)
    return rasterio.Env(**_REMOTE_ENV) if "://" in h or h.startswith("/vsi") else nullcontext()


def _open(path: str | Path, geobox: GeoBox, what: str = "label map"):
    """Open a raster (``what`` names it in errors) and check it has a CRS and meets ``geobox``: the dataset, open."""
    try:
        src = rasterio.open(str(path))
    except rasterio.errors.RasterioIOError as e:
        raise ReadError(f"cannot open {what} {path}: {e}; check the path or URL") from e
    if src.crs is None:
        src.close()
        raise LabelError(f"{what} {path} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:4326 {path})")
    if not _meets(src, geobox):
        src.close()
        raise LabelError(
            f"{what} {path} (bounds {tuple(round(b, 4) for b in src.bounds)} in {src.crs}) does not overlap "
            f"the area {tuple(round(b, 1) for b in geobox.extent.boundingbox)} in {geobox.crs}: they are "
            f"{_km_apart(src, geobox):,.0f} km apart; check aoi.bbox (order [west, south, east, north], in aoi.crs) "
            f"and that {path} is the map of this area"
        )
    return src


def _km_apart(src, geobox: GeoBox) -> float:
    """The geodesic distance between the nearest points of ``src``'s footprint and ``geobox``'s, km (WGS 84)."""
    a = _extent(src).to_crs("EPSG:4326").geom
    b = geobox.extent.to_crs("EPSG:4326").geom
    pa, pb = nearest_points(a, b)
    return Geod(ellps="WGS84").inv(pa.x, pa.y, pb.x, pb.y)[2] / 1000


def _extent(src):
    return box(*src.bounds, crs=str(src.crs))


def _meets(src, geobox: GeoBox) -> bool:
    return _extent(src).to_crs(geobox.crs).intersects(geobox.extent)


def _warp(src, geobox: GeoBox, resampling: str, band: int, nodata) -> np.ndarray:
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
        # GDAL's default 0.125 px approximation of the transform depends on the window, so nearest picks
        # would differ between a chunk and the whole grid in rare pixels; 1e-6 px is exact in practice
        # (rasterio refuses 0)
        tolerance=1e-6,
    ) as vrt:
        return vrt.read(band)


def read_on_geobox(path: str | Path, geobox: GeoBox, *, resampling: str = "nearest", band: int = 1, nodata: int | None = None) -> np.ndarray:
    """Reproject a raster onto ``geobox`` (nearest by default) through a GDAL warped VRT.

    Only the source blocks that cover the geobox are read, so a 36000×36000 tile costs a window.
    This is :func:`open_on_geobox` as one chunk; for a large grid use that, which reads chunk by chunk.

    Returns
    -------
    numpy.ndarray
        ``(y, x)`` in the source dtype; 0 (or the source nodata) outside the source.

    Raises
    ------
    LabelError
        If the raster does not overlap the geobox.
    """
    whole = open_on_geobox(path, geobox, chunks=max(geobox.shape), resampling=resampling, band=band, nodata=nodata)
    return whole.compute(scheduler="synchronous")


def _read_block(hrefs: list[str], geobox: GeoBox, resampling: str, band: int, nodata, block_info=None) -> np.ndarray:
    """One chunk of :func:`open_on_geobox`: the rasters ``hrefs`` in order, each filling what is still 0."""
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    gb = geobox[y0:y1, x0:x1]
    out = None
    for href in hrefs:
        with _env(href):
            arr = _read_window(href, gb, resampling, band, nodata, (y0, y1, x0, x1))
        if arr is None:
            continue
        if out is None:
            out = arr
        else:
            hole = out == 0
            out[hole] = arr[hole]
        if not (out == 0).any():
            break
    return out if out is not None else np.zeros(gb.shape, block_info[None]["dtype"])


def _read_window(href: str, gb: GeoBox, resampling: str, band: int, nodata, where) -> np.ndarray | None:
    """``href`` warped onto the chunk ``gb`` (None if it does not meet it); ``where``: the chunk's rows and columns."""
    y0, y1, x0, x1 = where
    try:
        src = rasterio.open(href)
    except rasterio.errors.RasterioIOError as e:
        raise ReadError(f"cannot read label map {href} for rows {y0}:{y1}, columns {x0}:{x1}: {e}") from e
    with src:
        if not _meets(src, gb):
            return None
        try:
            return _warp(src, gb, resampling, band, nodata)
        except rasterio.errors.RasterioError as e:
            raise ReadError(f"cannot read label map {href} for rows {y0}:{y1}, columns {x0}:{x1}: {e}; "
                            "the file may be corrupt or truncated") from e


def _lazy(hrefs: list[str], dtype, geobox: GeoBox, chunks: int, resampling: str, band: int, nodata) -> da.Array:
    ch = tuple(tuple(min(chunks, n - i) for i in range(0, n, chunks)) for n in geobox.shape)
    return da.map_blocks(_read_block, hrefs, geobox, resampling, band, nodata, chunks=ch, dtype=dtype,
                         meta=np.empty((0, 0), dtype), name=f"labels-{tokenize(hrefs, geobox, resampling, band, nodata, ch)}")


def probe_raster(path: str | Path, geobox: GeoBox, what: str) -> None:
    """Open ``path`` as :func:`open_on_geobox` will (no pixel read) and close it: an input the run needs at its end
    (a truth map) is found missing, unreadable or elsewhere before the heavy work.

    Raises
    ------
    ReadError, LabelError
        Naming ``what`` (e.g. ``"truth map (truth.path)"``).
    """
    with _env(path), _open(path, geobox, what):
        pass


def open_on_geobox(path: str | Path, geobox: GeoBox, *, chunks: int = 512, resampling: str = "nearest", band: int = 1,
                   nodata: int | None = None, what: str = "label map") -> da.Array:
    """Lazy :func:`read_on_geobox`: a ``(y, x)`` Dask array whose chunks each read their own window.

    The raster is opened once here to check it (CRS, overlap, band); nothing is read until computed.

    Parameters
    ----------
    chunks
        Chunk side, pixels (use the feature cube's, ``load.chunk_px``, so the two line up).

    Raises
    ------
    ReadError, LabelError
        As :func:`read_on_geobox`, before any pixel is read.
    """
    with _env(path), _open(path, geobox, what) as src:
        if not 1 <= band <= src.count:
            raise LabelError(f"{what} {path} has {src.count} band(s); band {band} does not exist")
        dtype = np.dtype(src.dtypes[band - 1])
    return _lazy([str(path)], dtype, geobox, chunks, resampling, band, nodata)


def pixel_size_m(path: str | Path) -> float:
    """Pixel size of a raster in metres (degrees converted at the raster's centre latitude)."""
    with _env(path), rasterio.open(str(path)) as src:
        res = abs(src.res[1])
        if src.crs is not None and src.crs.is_geographic:
            return res * 111_320.0
        return res


def cell_origin_px(path: str | Path, geobox: GeoBox) -> tuple[int, int]:
    """Where the raster's cell edges fall on ``geobox``: ``(row, column)`` of one cell corner, in output pixels.

    (0, 0) when the raster is in another CRS or rotated (its cells then do not fall on whole pixels).
    """
    with _env(path), rasterio.open(str(path)) as src:
        if src.crs is None or src.crs != rasterio.crs.CRS.from_user_input(str(geobox.crs)) or src.transform.b or src.transform.d:
            return (0, 0)
        t = geobox.transform
        return (int(round((src.transform.f - t.f) / t.e)), int(round((src.transform.c - t.c) / t.a)))


#: Land-cover collections on STAC APIs: ``collection -> (asset key, legend)``.
LABEL_COLLECTIONS: dict[str, tuple[str, str]] = {
    "esa-worldcover": ("map", "esa-worldcover"),
    "io-lulc-annual-v02": ("data", "io-lulc"),
    "io-lulc-9-class": ("data", "io-lulc"),
}


def open_stac_on_geobox(
    catalog: str,
    collection: str,
    geobox: GeoBox,
    *,
    chunks: int = 512,
    asset: str | None = None,
    start: str = "1900-01-01",
    end: str = "2100-12-31",
    sign: bool = False,
) -> tuple[da.Array, list[str]]:
    """Mosaic a land-cover collection's items onto ``geobox`` (nearest), newest item first, lazily.

    The items are searched and their headers read here; the newest are kept until their rasters
    cover the area (so an older year is not used where a newer one exists). Each chunk then reads
    its window from the kept items that meet it, newest first, each filling what is still 0, so
    tiles that meet inside the area mosaic seamlessly.

    Returns
    -------
    codes, item_ids
        Lazy ``(y, x)`` codes in the collection's legend, and the ids of the items used.
    """
    key = asset or LABEL_COLLECTIONS.get(collection, ("map", ""))[0]
    items = search_items(catalog, None, lonlat_bbox(geobox), start, end, collection=collection)
    items = sorted(items, key=lambda it: str(it.datetime or it.properties.get("start_datetime")), reverse=True)
    hrefs, used, dtype, covered = [], [], None, None
    for it in items:
        if key not in it.assets:
            raise LabelError(f"item {it.id} of {collection!r} has no asset {key!r} (it has {sorted(it.assets)}); set labels.stac.asset")
        href = it.assets[key].get_absolute_href() or it.assets[key].href
        if sign:
            href = require("planetary_computer", "signing Planetary Computer's hrefs").sign(href)
        try:
            with _env(href):
                src = _open(href, geobox)
        except LabelError:
            continue  # the item's bbox overlaps, its raster does not
        with src:
            dtype = np.dtype(src.dtypes[0]) if dtype is None else dtype
            fp = _extent(src).to_crs(geobox.crs)
        hrefs.append(href)
        used.append(it.id)
        covered = fp if covered is None else covered.union(fp)
        if covered.contains(geobox.extent):
            break
    if not hrefs:
        raise LabelError(f"no {collection!r} item in {catalog} covers the area")
    return _lazy(hrefs, dtype, geobox, chunks, "nearest", 1, None), used


def read_stac_on_geobox(catalog: str, collection: str, geobox: GeoBox, **kw) -> tuple[np.ndarray, list[str]]:
    """:func:`open_stac_on_geobox`, read at once (for small grids)."""
    codes, used = open_stac_on_geobox(catalog, collection, geobox, **kw)
    return codes.compute(scheduler="threads"), used


def _tag_legend(src):
    """The legend a class map carries: a built-in name in its ``LEGEND`` tag, else its ``CLASS_<code>`` tags (and
    colour table), as lcup writes them (change maps among them); None if it has neither."""
    tags = src.tags()
    name = tags.get("LEGEND")
    if name in LEGENDS:
        return LEGENDS[name]
    classes = {int(k[6:]): v for k, v in tags.items() if k.startswith("CLASS_") and k[6:].isdigit() and int(k[6:]) > 0}
    if not classes:
        return None
    try:
        cmap = src.colormap(1)
    except ValueError:
        cmap = {}
    return Legend(name or Path(src.name).stem, {c: (n, "#{:02x}{:02x}{:02x}".format(*cmap.get(c, (128, 128, 128))[:3]))
                                                for c, n in sorted(classes.items())})


def map_geobox(path: str | Path, bbox: tuple[float, float, float, float] | None = None):
    """A class map's own grid (cut to ``bbox``, in the map's CRS, when given) and the legend it carries
    (:class:`~lcup.legends.Legend`: lcup's ``LEGEND``/``CLASS_<code>`` tags), or None.

    Raises
    ------
    ReadError, LabelError
        The file does not open, has no CRS, or ``bbox`` misses it.
    """
    try:
        src = rasterio.open(str(path))
    except rasterio.errors.RasterioIOError as e:
        raise ReadError(f"cannot open map {path}: {e}; check the path or URL") from e
    with _env(path), src:
        if src.crs is None:
            raise LabelError(f"map {path} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:4326 {path})")
        gb = GeoBox((src.height, src.width), src.transform, str(src.crs))
        legend = _tag_legend(src)
        if bbox is not None:
            w = from_bounds(*bbox, transform=src.transform)  # fractional: every pixel the bbox touches is kept
            r0, c0 = max(0, int(np.floor(w.row_off))), max(0, int(np.floor(w.col_off)))
            r1 = min(src.height, int(np.ceil(w.row_off + w.height)))
            c1 = min(src.width, int(np.ceil(w.col_off + w.width)))
            if r1 <= r0 or c1 <= c0:
                raise LabelError(f"bbox {tuple(bbox)} does not meet map {path} (bounds {tuple(round(b, 4) for b in src.bounds)} "
                                 f"in {src.crs}); give the bbox in the map's CRS")
            gb = gb[r0:r1, c0:c1]
    return gb, legend


def map_codes(path: str | Path, side_px: int = 512) -> np.ndarray:
    """The values of a class map, read from a decimated view of at most ``side_px`` pixels a side (its overviews
    where it has them): enough to tell its legend, without reading it whole."""
    with _env(path), rasterio.open(str(path)) as src:
        f = max(1, -(-max(src.height, src.width) // side_px))
        a = src.read(1, out_shape=(max(1, src.height // f), max(1, src.width // f)), resampling=Resampling.nearest)
    return np.unique(a)
