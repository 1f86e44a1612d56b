"""Stage: the area of a run: its polygon, its extent, whether it is cut into Sentinel-2 tiles, and each tile's
own settings.

An area is a bounding box, a polygon (``aoi.geometry``) or Sentinel-2 tiles (``aoi.tiles``). One UTM zone: one
grid. Several zones (or ``aoi.grid: s2-tiles``): the area is cut into the Sentinel-2 tiles meeting it, each computed
on its own UTM grid at 10 m, where its imagery is (:func:`tile_config`); :func:`lcup.pipeline.run_tiles` runs them
with one model and mosaics them (:mod:`lcup.stages.mosaic`).
"""

from __future__ import annotations

import logging

import dask.array as da
import shapely
from shapely.geometry.base import BaseGeometry

from ..config import AOIConfig, PipelineConfig
from ..errors import ConfigError
from ..io.vector import read_area, to_crs
from ..ops.s2grid import S2Tile, tile, tiles_covering, utm_zone
from .zonal import zone_raster

__all__ = ["area_of", "aoi_extent", "s2_tiles", "tile_config", "area_in", "inside_mask", "chunk_touches", "tile_share", "area_lonlat",
           "default_mosaic_crs"]

log = logging.getLogger("lcup")


def area_of(aoi: AOIConfig) -> BaseGeometry | None:
    """The area's polygon in longitude/latitude (``aoi.geometry``, cut to ``aoi.bbox`` when both are given), or
    None for a plain bounding box or tiles (:func:`area_lonlat`: always a polygon)."""
    if aoi.geometry is None:
        return None
    geom = read_area(aoi.geometry, layer=aoi.layer, where=aoi.where, crs=aoi.geometry_crs)
    if aoi.bbox is not None:
        geom = geom.intersection(to_crs(shapely.box(*aoi.bbox), aoi.crs, "EPSG:4326"))
        if geom.is_empty:
            raise ConfigError(f"aoi.geometry and aoi.bbox {list(aoi.bbox)} do not overlap; give one, or a bbox inside the polygon")
    return geom


def aoi_extent(aoi: AOIConfig) -> tuple[tuple[float, float, float, float], str]:
    """``(bbox, crs)`` of the area: ``aoi.bbox``; else the bounds of the polygon (EPSG:4326); else of the tile(s)."""
    if aoi.bbox is not None:
        return tuple(aoi.bbox), aoi.crs
    geom = area_of(aoi)
    if geom is not None:
        return tuple(geom.bounds), "EPSG:4326"
    if aoi.tile is not None:
        return tile(aoi.tile).bounds, tile(aoi.tile).crs
    return tuple(shapely.union_all([tile(t).lonlat_polygon() for t in aoi.tiles]).bounds), "EPSG:4326"


def area_lonlat(aoi: AOIConfig) -> BaseGeometry:
    """The area in longitude/latitude: the polygon, else the bbox or the tiles' footprints."""
    if aoi.geometry is None and aoi.bbox is None and aoi.tiles is not None:
        return shapely.union_all([tile(t).lonlat_polygon() for t in aoi.tiles])
    geom = area_of(aoi)
    if geom is not None:
        return geom
    bbox, crs = aoi_extent(aoi)
    return to_crs(shapely.segmentize(shapely.box(*bbox), max(bbox[2] - bbox[0], bbox[3] - bbox[1]) / 16), crs, "EPSG:4326")


def s2_tiles(cfg: PipelineConfig) -> list[S2Tile] | None:
    """The Sentinel-2 tiles a run is cut into, or None for a run on one grid.

    ``aoi.tiles`` as given (each cut to the polygon or bbox when one is given); ``aoi.grid: s2-tiles``: the tiles
    meeting the area; ``auto``: the same once the area spans more than one UTM zone (and no ``grid_crs`` is set).

    Raises
    ------
    ConfigError
        If a given tile does not meet the polygon or bbox.
    """
    aoi = cfg.aoi
    if aoi.tile is not None or aoi.grid == "single":
        return None
    if aoi.tiles is not None:
        tiles = [tile(t) for t in aoi.tiles]
        if aoi.geometry is not None or aoi.bbox is not None:
            area = area_lonlat(aoi)
            off = [t.id for t in tiles if not t.lonlat_polygon().intersects(area)]
            if off:
                raise ConfigError(f"aoi.tiles {off} do not meet the area (aoi.geometry / aoi.bbox); drop them, or the area")
        return tiles
    area = area_lonlat(aoi)
    if aoi.grid == "auto":
        if aoi.grid_crs is not None:
            return None
        lon0, lat0, lon1, lat1 = area.bounds
        zones = {utm_zone(lon, lat) for lon in (lon0, lon1) for lat in (lat0, lat1)}
        if len(zones) < 2:
            return None
        log.info("the area spans UTM zones %s: cut into Sentinel-2 tiles, each on its own grid (aoi.grid: single "
                 "for one grid)", sorted(zones))
    return tiles_covering(area)


def tile_config(cfg: PipelineConfig, t: S2Tile, *, share: float, out_dir: str) -> PipelineConfig:
    """The settings of tile ``t`` of a Sentinel-2-tiled run: the part of the area inside the tile on the tile's own
    grid (its UTM zone and pixel lattice), its items only, output in ``out_dir``, and ``share`` (0–1, its part of
    the area) of the training sample per class, so that the tiles' samples together are one sample of the area."""
    d = cfg.model_dump(mode="json")
    area = area_lonlat(cfg.aoi)
    part = to_crs(area.intersection(t.lonlat_polygon()), "EPSG:4326", t.crs)
    w, s, e, n = part.bounds
    tw, ts, te, tn = t.bounds
    bbox = (max(w, tw), max(s, ts), min(e, te), min(n, tn))
    d["aoi"].update(bbox=list(bbox), crs=t.crs, grid_crs=t.crs, origin=list(t.origin), tile=t.id, tiles=None, grid="single")
    if cfg.aoi.geometry is None:  # the area (a bbox or the tiles) still bounds what is mapped
        d["aoi"]["geometry"] = shapely.to_wkt(part, rounding_precision=3)
        d["aoi"]["geometry_crs"] = t.crs
        d["aoi"]["layer"] = d["aoi"]["where"] = None
    d["output"]["dir"] = out_dir
    d["name"] = f"{cfg.name}-{t.id}"
    if d.get("labels"):
        lc = d["labels"]
        lc["n_per_class"] = max(lc["min_per_class"], int(round(lc["n_per_class"] * share)))
    return PipelineConfig.model_validate(d)


#: Where EPSG:3035 (ETRS89-LAEA Europe) is defined (its area of use), lon/lat.
_EUROPE = shapely.box(-35.58, 24.6, 44.83, 84.73)


def default_mosaic_crs(area: BaseGeometry) -> str:
    """``output.mosaic_crs: auto``: EPSG:3035 for an area in Europe, else EPSG:6933 (both equal area)."""
    return "EPSG:3035" if _EUROPE.contains(area) else "EPSG:6933"


def area_in(cfg: PipelineConfig, crs) -> bytes | None:
    """The area's polygon in ``crs`` as WKB, or None when the run maps its whole bounding box."""
    geom = area_of(cfg.aoi)
    return None if geom is None else shapely.to_wkb(to_crs(geom, "EPSG:4326", str(crs)))


def inside_mask(area_wkb: bytes | None, geobox, chunk_px: int) -> da.Array | None:
    """Lazy ``(y, x)`` bool on ``geobox`` in ``chunk_px`` chunks: pixel centres inside the area (None: no polygon)."""
    if area_wkb is None:
        return None
    return zone_raster([(area_wkb, 1)], geobox, da.core.normalize_chunks((chunk_px, chunk_px), geobox.shape)) > 0


def chunk_touches(area_wkb: bytes | None, geobox) -> bool:
    """Whether the polygon meets ``geobox`` (a tile of the grid); True without a polygon."""
    if area_wkb is None:
        return True
    bb = geobox.extent.boundingbox
    return bool(shapely.from_wkb(area_wkb).intersects(shapely.box(bb.left, bb.bottom, bb.right, bb.top)))


def tile_share(tiles: list[S2Tile], area: BaseGeometry) -> dict[str, float]:
    """Each tile's share (0–1, summing to 1) of the area: the area of its part (on an equal-area projection) over
    the sum of the tiles' parts, so that where tiles overlap the sample is not drawn twice over."""
    ea = "EPSG:6933"
    parts = {t.id: to_crs(area.intersection(t.lonlat_polygon()), "EPSG:4326", ea).area for t in tiles}
    total = sum(parts.values()) or 1.0
    return {k: v / total for k, v in parts.items()}

