"""Stage: the tiles of a Sentinel-2-tiled run as one product: a mosaic COG in a CRS the user chooses, a GDAL VRT of
the tiles of each UTM zone, a STAC Collection with one item per tile, and class areas without double counting.

**Which tile a point takes its value from** (the overlap rule): among the tiles whose map covers the point, the
tile whose Sentinel-2 centre is nearest, measured in that tile's own UTM coordinates; ties go to the first tile
id in sorted order. Within a zone this splits every overlap down its middle; across a zone boundary it runs close
to the bisector of the two tiles' centres (each distance is measured in its own tile's projection). The same rule decides the mosaic's pixels and which tile's pixels count in the
areas (:func:`tile_areas`), so the areas read on the tiles' own grids count every place once.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import dask
import dask.array as da
import numpy as np
import pystac
import rasterio
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import BoundingBox
from pyproj import CRS, Proj, Transformer
from rasterio.windows import Window

from ..io.rasters import open_on_geobox
from ..io.vector import to_crs
from ..io.write import _output_item, _slug, write_cog_from_dask, write_vrt
from ..legends import Legend
from ..ops.change import row_area_m2
from ..ops.s2grid import tile as s2tile

__all__ = ["TileMap", "tile_maps", "owner", "mosaic", "tile_areas", "overlap_agreement", "zone_vrts", "write_collection"]

log = logging.getLogger("lcup")


@dataclass(frozen=True)
class TileMap:
    """One tile's written class map: its Sentinel-2 tile id, the COG and the COG's grid (its own UTM CRS)."""

    id: str
    path: str
    crs: str
    transform: tuple
    shape: tuple[int, int]

    @property
    def centre(self) -> tuple[float, float]:
        """The Sentinel-2 tile's centre in its own CRS (not the mapped part's): the overlap rule's anchor."""
        return s2tile(self.id).centre

    @property
    def geobox(self) -> GeoBox:
        return GeoBox(self.shape, Affine(*self.transform[:6]), self.crs)


def tile_maps(paths: dict[str, str | Path]) -> list[TileMap]:
    """:class:`TileMap` of each tile's class COG (``{tile id: path}``), sorted by tile id."""
    maps = []
    for tid in sorted(paths):
        with rasterio.open(paths[tid]) as src:
            maps.append(TileMap(tid, str(paths[tid]), src.crs.to_string(), tuple(src.transform)[:6], (src.height, src.width)))
    return maps


@lru_cache(maxsize=256)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def _in_tile(tm: TileMap, x: np.ndarray, y: np.ndarray, crs: str):
    """Rows, columns of the points ``(x, y)`` (in ``crs``) on tile ``tm``'s grid, whether its map covers them,
    and their distance to its centre (m)."""
    tx, ty = _transformer(crs, tm.crs).transform(x, y)
    a, _, c, _, e, f = tm.transform
    col = np.floor((tx - c) / a).astype(np.int64)
    row = np.floor((ty - f) / e).astype(np.int64)
    inside = (row >= 0) & (row < tm.shape[0]) & (col >= 0) & (col < tm.shape[1]) & np.isfinite(tx)
    cx, cy = tm.centre
    return row, col, inside, np.hypot(tx - cx, ty - cy)


def owner(tiles: Sequence[TileMap], x: np.ndarray, y: np.ndarray, crs: str) -> np.ndarray:
    """The index in ``tiles`` of the tile each point ``(x, y)`` (in ``crs``) takes its value from (the module's
    overlap rule), -1 where no tile covers it.

    Examples
    --------
    >>> owner(maps, np.array([x]), np.array([y]), "EPSG:3035")  # doctest: +SKIP
    array([1])
    """
    best = np.full(np.shape(x), -1, np.int64)
    dist = np.full(np.shape(x), np.inf)
    for k, tm in enumerate(tiles):
        _, _, inside, d = _in_tile(tm, x, y, crs)
        closer = inside & (d < dist)
        best[closer], dist[closer] = k, d[closer]
    return best


def _read_at(tm: TileMap, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """The tile's class at the given pixels (all inside it): one windowed read of their bounding rows/columns."""
    if row.size == 0:
        return np.zeros(0, np.uint8)
    r0, r1, c0, c1 = int(row.min()), int(row.max()) + 1, int(col.min()), int(col.max()) + 1
    with rasterio.open(tm.path) as src:
        block = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    return block[row - r0, col - c0]


def _centres(geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    h, w = geobox.shape
    a, _, c, _, e, f = tuple(geobox.transform)[:6]
    xs = c + a * (np.arange(w) + 0.5)
    ys = f + e * (np.arange(h) + 0.5)
    return np.meshgrid(xs, ys)


def _touching(tiles: tuple, gb: GeoBox) -> tuple:
    """The tiles whose map meets the block ``gb`` (their footprints tested in the block's CRS): a block of a sparse
    area's mosaic (sites far apart) that meets none is no data at once."""
    bb = gb.extent.boundingbox
    block = shapely.box(bb.left, bb.bottom, bb.right, bb.top)
    return tuple(t for t in tiles if _footprint(t, str(gb.crs)).intersects(block))


@lru_cache(maxsize=1024)
def _footprint(tm: TileMap, crs: str):
    bb = tm.geobox.extent.boundingbox
    ring = shapely.segmentize(shapely.box(bb.left, bb.bottom, bb.right, bb.top), max(bb.right - bb.left, bb.top - bb.bottom) / 16)
    return to_crs(ring, tm.crs, crs)


#: Rows a block's owner and values are worked out in at once: the points' coordinates in every tile's CRS are
#: float64 arrays, so a 1024 px block at once held ~75 MiB more per worker thread (benchmarks/bench_tiles.py).
STRIP_ROWS = 128


def _mosaic_block(tiles: tuple, geobox: GeoBox, dtype, block_info=None) -> np.ndarray:
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    gb = geobox[y0:y1, x0:x1]
    out = np.zeros(gb.shape, dtype)
    tiles = _touching(tiles, gb)
    for r in range(0, gb.shape[0], STRIP_ROWS) if tiles else ():
        sub = gb[r:min(r + STRIP_ROWS, gb.shape[0]), :]  # a GeoBox slice is not clipped to the box
        x, y = _centres(sub)
        crs = str(sub.crs)
        own = owner(tiles, x, y, crs)
        part = out[r:r + STRIP_ROWS]
        for k, tm in enumerate(tiles):
            m = own == k
            if m.any():
                row, col, _, _ = _in_tile(tm, x[m], y[m], crs)
                part[m] = _read_at(tm, row, col)
    return out


def mosaic_geobox(area_lonlat, crs: str, resolution_m: float) -> GeoBox:
    """The mosaic's grid: the area's bounds in ``crs`` at ``resolution_m`` (metres; in degrees of latitude for a
    geographic CRS, 1° = 111 320 m), pixel edges on multiples of the resolution."""
    res = resolution_m / 111_320.0 if CRS.from_user_input(crs).is_geographic else resolution_m
    b = to_crs(shapely.segmentize(area_lonlat, 0.01), "EPSG:4326", crs).bounds
    return GeoBox.from_bbox(BoundingBox(*b), crs=crs, resolution=res)


def mosaic(tiles: Sequence[TileMap], area_lonlat, path: str | Path, *, crs: str, resolution_m: float, legend: Legend,
           chunk_px: int = 1024) -> tuple[Path, GeoBox]:
    """Write the mosaic of the tiles' class maps as a COG in ``crs``, chunk by chunk (each chunk reads the windows
    of the tiles it needs, in whichever process computes it: a cluster's workers when a client is active), with
    nearest-neighbour overviews; pixels outside the area are no data (0). Returns the path and the grid."""
    gb = mosaic_geobox(area_lonlat, crs, resolution_m)
    dtype = np.uint8 if max(legend.codes, default=0) <= 255 else np.uint16
    chunks = da.core.normalize_chunks((chunk_px, chunk_px), gb.shape)
    # no second polygon mask here: the tiles' maps are no data outside the area already, and masking twice
    # (pixel centres inside on both grids) would lose half the boundary's pixels
    arr = da.map_blocks(_mosaic_block, tuple(tiles), gb, dtype, chunks=chunks, dtype=dtype, meta=np.empty((0, 0), dtype))
    import xarray as xr

    write_cog_from_dask(xr.DataArray(arr, dims=("y", "x")), path, gb, nodata=0, legend=legend, band_names=["land cover class"])
    return Path(path), gb


def _pixel_area_m2(gb: GeoBox) -> np.ndarray:
    """True area (m²) of the pixels of ``gb`` per row ``(y, 1)``: exact ellipsoidal rows for a geographic CRS
    (:func:`lcup.ops.change.row_area_m2`); for a projected one the nominal area over the projection's areal scale
    at the block's centre (UTM's is 0.9992–1.0005 inside a zone and its overlaps)."""
    h, w = gb.shape
    a, _, c, _, e, f = tuple(gb.transform)[:6]
    if gb.crs.geographic:
        return row_area_m2((a, 0, c, 0, e, f), h, geographic=True)[:, None]
    lon, lat = _transformer(str(gb.crs), "EPSG:4326").transform(c + a * w / 2, f + e * h / 2)
    scale = Proj(CRS.from_user_input(str(gb.crs))).get_factors(lon, lat).areal_scale
    return np.full((h, 1), abs(a * e) / scale)


def _area_block(cls: np.ndarray, tiles: tuple, k: int, gb: GeoBox, n: int, block_info=None) -> np.ndarray:
    (y0, y1), (x0, x1) = block_info[0]["array-location"]
    total = np.zeros(n)
    for r in range(0, cls.shape[0], STRIP_ROWS):
        sub, c = gb[y0 + r:min(y1, y0 + r + STRIP_ROWS), x0:x1], cls[r:r + STRIP_ROWS]
        x, y = _centres(sub)
        mine = owner(tiles, x, y, str(sub.crs)) == k if len(tiles) > 1 else np.ones(c.shape, bool)
        px = np.broadcast_to(_pixel_area_m2(sub), c.shape)
        total += np.bincount(c[mine].astype(np.int64), weights=px[mine], minlength=n)[:n]
    return total[None, None, :]


def tile_areas(tiles: Sequence[TileMap], legend: Legend, chunk_px: int = 1024) -> dict[int, float]:
    """Hectares per class code of the tiles' maps read on their own grids, each place counted once (the overlap
    rule), with each projection's areal scale."""
    n = max(legend.codes) + 1
    total = np.zeros(n)
    parts = []
    for k, tm in enumerate(tiles):
        cls = open_on_geobox(tm.path, tm.geobox, chunks=chunk_px)
        parts.append(da.map_blocks(_area_block, cls, tuple(tiles), k, tm.geobox, n, new_axis=2, chunks=(1, 1, n),
                                   dtype=np.float64).sum(axis=(0, 1)))
    for p in dask.compute(*parts):
        total += p
    return {c: round(float(total[c]) / 1e4, 4) for c in legend.codes if total[c] > 0}


def mosaic_areas(path: str | Path, legend: Legend, chunk_px: int = 1024) -> dict[int, float]:
    """Hectares per class code of a single-grid map (the mosaic), with its projection's areal scale."""
    with rasterio.open(path) as src:
        gb = GeoBox((src.height, src.width), src.transform, src.crs.to_string())
    cls = open_on_geobox(str(path), gb, chunks=chunk_px)
    n = max(legend.codes) + 1
    total = da.map_blocks(_area_block, cls, (), 0, gb, n, new_axis=2, chunks=(1, 1, n), dtype=np.float64).sum(axis=(0, 1)).compute()
    return {c: round(float(total[c]) / 1e4, 4) for c in legend.codes if total[c] > 0}


def _agree_window(tiles: tuple, gb: GeoBox) -> np.ndarray:
    tiles = _touching(tiles, gb)
    counts = np.zeros(2, np.int64)
    for r in range(0, gb.shape[0], STRIP_ROWS) if len(tiles) > 1 else ():
        sub = gb[r:min(r + STRIP_ROWS, gb.shape[0]), :]  # a GeoBox slice is not clipped to the box
        x, y = _centres(sub)
        crs = str(sub.crs)
        vals = np.zeros((len(tiles),) + sub.shape, np.int32)
        for k, tm in enumerate(tiles):
            row, col, inside, _ = _in_tile(tm, x, y, crs)
            vals[k][inside] = _read_at(tm, row[inside], col[inside])
        valid = vals > 0
        several = valid.sum(0) >= 2
        first = np.where(valid, vals, np.iinfo(np.int32).max).min(0)
        agree = several & np.all(~valid | (vals == first), axis=0)
        counts += [several.sum(), agree.sum()]
    return counts


def overlap_agreement(tiles: Sequence[TileMap], geobox: GeoBox, chunk_px: int = 1024) -> dict:
    """Where two or more tiles map the same place (on ``geobox``, e.g. the mosaic's grid): how many pixels, and
    the share where they give the same class."""
    if len(tiles) < 2:
        return {"overlap_px": 0, "agreement": None}
    h, w = geobox.shape
    parts = [dask.delayed(_agree_window)(tuple(tiles), geobox[y0:y0 + chunk_px, x0:x0 + chunk_px])
             for y0 in range(0, h, chunk_px) for x0 in range(0, w, chunk_px)]
    n, same = (int(v) for v in np.sum(dask.compute(*parts), axis=0))
    return {"overlap_px": n, "agreement": round(same / n, 4) if n else None}


def zone_vrts(tiles: Sequence[TileMap], out_dir: str | Path) -> list[Path]:
    """A GDAL VRT of the tiles' class COGs per UTM zone (``tiles_<EPSG>.vrt``; a VRT holds one CRS and one
    resolution: the tiles of a zone share both, on the Sentinel-2 lattice), paths relative to the VRT."""
    out_dir = Path(out_dir)
    return [write_vrt([t.path for t in tiles if t.crs == crs], out_dir / f"tiles_{CRS.from_user_input(crs).to_epsg()}.vrt")
            for crs in sorted({t.crs for t in tiles})]


def write_collection(out_dir: str | Path, *, collection_id: str, tiles: list[dict], legend: Legend, start, end,
                     description: str = "", assets: dict[str, str] | None = None) -> Path:
    """``collection.json``: a STAC Collection of the tiles (one item per Sentinel-2 tile, on its own grid, with
    ``grid:code``), its spatial and temporal extent and the classification summary; ``assets`` (paths inside
    ``out_dir``: the mosaic, the VRTs, the model) as collection assets. Relative links: the folder can move.

    Each entry of ``tiles``: ``{"tile", "geobox", "assets": {key: path inside out_dir}, "properties"}``.
    """
    out_dir = Path(out_dir).resolve()
    items = []
    for t in tiles:
        item = _output_item(item_id=f"{collection_id}-{t['tile']}", geobox=t["geobox"], legend=legend, start=start, end=end,
                            assets={k: str(out_dir / v) for k, v in t["assets"].items()},
                            properties={"grid:code": f"MGRS-{t['tile']}", "lcup:tile": t["tile"], **t.get("properties", {})})
        item.stac_extensions.append("https://stac-extensions.github.io/grid/v1.1.0/schema.json")
        items.append(item)
    bboxes = [it.bbox for it in items]
    spatial = [[min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)], *bboxes]
    coll = pystac.Collection(
        id=collection_id, description=description or f"lcup land cover, {len(tiles)} Sentinel-2 tiles",
        extent=pystac.Extent(pystac.SpatialExtent(spatial), pystac.TemporalExtent([[
            dt.datetime.combine(start, dt.time(0), dt.timezone.utc), dt.datetime.combine(end, dt.time(23, 59, 59), dt.timezone.utc)]])),
        license="other", stac_extensions=["https://stac-extensions.github.io/classification/v2.0.0/schema.json"],
        summaries=pystac.Summaries({"classification:classes": [{"value": int(c), "name": _slug(n), "title": n}
                                                               for c, n in legend.names().items()],
                                    "grid:code": [f"MGRS-{t['tile']}" for t in tiles]}))
    media = {"mosaic": pystac.MediaType.COG, "model": "application/octet-stream", "summary": pystac.MediaType.JSON}
    for key, rel in (assets or {}).items():
        coll.add_asset(key, pystac.Asset(href=str(out_dir / rel), media_type=media.get(key, "application/xml" if rel.endswith(".vrt") else None),
                                         roles=["data"] if key == "mosaic" or rel.endswith(".vrt") else ["metadata"]))
    for item in items:
        coll.add_item(item)
    coll.normalize_hrefs(str(out_dir), strategy=pystac.layout.TemplateLayoutStrategy(item_template="tiles/${lcup:tile}"))
    coll.make_all_asset_hrefs_relative()
    coll.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, dest_href=str(out_dir))
    return out_dir / "collection.json"
