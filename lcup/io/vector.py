"""Area polygons: a vector file (GeoPackage, GeoJSON, Shapefile, GeoParquet; a layer and an attribute filter) or
inline WKT / GeoJSON, read into one shapely geometry in longitude/latitude (EPSG:4326)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from ..errors import ConfigError, ReadError
from ..optional import require

__all__ = ["is_inline", "read_area", "to_crs"]

_WKT = re.compile(r"^\s*(MULTI)?(POLYGON|POINT|LINESTRING|GEOMETRYCOLLECTION)\b", re.IGNORECASE)


def is_inline(geometry: str) -> bool:
    """Whether ``aoi.geometry`` is inline WKT or GeoJSON rather than a file path."""
    return bool(_WKT.match(geometry)) or geometry.lstrip().startswith("{")


def read_area(geometry: str, *, layer: str | None = None, where: str | None = None, crs: str | None = None) -> BaseGeometry:
    """The area of ``geometry`` as one (multi)polygon in longitude/latitude (EPSG:4326, ``x`` = longitude).

    Parameters
    ----------
    geometry
        A vector file, or inline WKT or GeoJSON (a geometry, Feature or FeatureCollection).
    layer
        The file's layer (GeoPackage); default: its first.
    where
        An attribute filter in SQL, e.g. ``NAME = 'Slovenia'``: the union of the features it keeps.
    crs
        CRS of inline WKT (default EPSG:4326; GeoJSON is longitude/latitude by definition); a file has its own.

    Raises
    ------
    ConfigError
        If the text is not a geometry, the filter keeps nothing, the area is empty or has no area.
    ReadError
        If the file cannot be read.
    """
    path = None if is_inline(geometry) else Path(geometry)
    stamp = path.stat().st_mtime_ns if path is not None and path.exists() else None
    return _read_area(geometry, layer, where, crs, stamp)


@lru_cache(maxsize=16)
def _read_area(geometry: str, layer, where, crs, stamp) -> BaseGeometry:
    if is_inline(geometry):
        geom = _inline(geometry, crs)
    else:
        geom = _from_file(Path(geometry), layer, where)
    if geom.is_empty or geom.area == 0:
        raise ConfigError(f"aoi.geometry {_short(geometry)} has no area: give polygons (a point or a line maps no pixel)")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    lon0, lat0, lon1, lat1 = geom.bounds
    if not (-180 <= lon0 <= lon1 <= 180 and -90 <= lat0 <= lat1 <= 90):
        raise ConfigError(f"aoi.geometry {_short(geometry)} reaches outside longitude/latitude ({geom.bounds}): is its CRS "
                          "right? (inline WKT: set aoi.geometry_crs; a file: its own .prj / layer CRS)")
    return geom


def _short(text: str) -> str:
    return text if len(text) < 80 else text[:77] + "..."


def _inline(text: str, crs: str | None) -> BaseGeometry:
    try:
        if text.lstrip().startswith("{"):
            obj = json.loads(text)
            feats = obj.get("features") or [obj]
            geoms = [shapely.geometry.shape(f.get("geometry", f)) for f in feats]
            return shapely.union_all(geoms)
        geom = shapely.from_wkt(text)
    except Exception as e:  # shapely's GEOSException, json's errors, KeyError of a malformed mapping
        raise ConfigError(f"aoi.geometry is not valid WKT or GeoJSON ({e}): {_short(text)}") from None
    return to_crs(geom, crs or "EPSG:4326", "EPSG:4326")


def _from_file(path: Path, layer: str | None, where: str | None) -> BaseGeometry:
    if not path.exists():
        raise ConfigError(f"aoi.geometry {path} does not exist; give a polygon file (GeoPackage, GeoJSON, Shapefile, "
                          "GeoParquet) or inline WKT / GeoJSON")
    gpd = require("geopandas", "reading aoi.geometry from a file")
    try:
        if path.suffix == ".parquet":
            gdf = gpd.read_parquet(path)
            if where:
                gdf = gdf.query(where.replace(" = ", " == "))
        else:
            gdf = gpd.read_file(path, layer=layer, where=where)
    except Exception as e:  # pyogrio's DataSourceError / FieldError (a bad filter) and friends: one clear line
        what = f" with aoi.where {where!r}" if where else ""
        raise ReadError(f"cannot read aoi.geometry {path}{what}: {e}; check the file, aoi.layer and the filter's column "
                        "names and quotes (e.g. NAME = 'Slovenia')") from None
    if gdf.crs is None:
        raise ConfigError(f"aoi.geometry {path} has no CRS; set one (e.g. ogr2ogr -a_srs EPSG:4326 ...)")
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if gdf.empty:
        raise ConfigError(f"aoi.geometry {path} holds no feature" + (f" where {where}" if where else "")
                          + ("; check aoi.where" if where else ""))
    return shapely.union_all(gdf.to_crs("EPSG:4326").geometry.values)


def to_crs(geom: BaseGeometry, src: str, dst: str) -> BaseGeometry:
    """``geom`` from CRS ``src`` to ``dst`` (longitude first for geographic CRSs)."""
    if CRS.from_user_input(src) == CRS.from_user_input(dst):
        return geom
    return shapely.transform(geom, Transformer.from_crs(src, dst, always_xy=True).transform, interleaved=False)
