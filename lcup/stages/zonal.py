"""Stage: zonal statistics — area and share of every class per zone (and their change over years), chunk-parallel."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

import dask
import dask.array as da
import numpy as np
import pandas as pd
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize
from shapely import box as sbox
from shapely import from_wkb, intersects

from ..errors import ConfigError, OutputExistsError, ReadError
from ..ops.change import row_area_m2
from ..ops.zonal import zone_class_area
from ..optional import require
from .change import open_maps, safe_label


def _rasterise_block(shapes, geobox, block_info=None):
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    gb = geobox[y0:y1, x0:x1]
    geoms = from_wkb([s for s, _ in shapes])
    bb = gb.extent.boundingbox
    hit = intersects(geoms, sbox(bb.left, bb.bottom, bb.right, bb.top))
    pairs = [(g, z) for g, (_, z), h in zip(geoms, shapes, hit) if h]
    if not pairs:
        return np.zeros((y1 - y0, x1 - x0), np.int32)
    # rasterio warns "no geotransform" about its in-memory target, which has ours; a process-wide filter, as
    # catch_warnings is not thread-safe (chunks rasterise in threads)
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module="rasterio.features")
    return rasterize(pairs, out_shape=(y1 - y0, x1 - x0), transform=gb.transform, fill=0, dtype=np.int32)


def zone_raster(shapes: list[tuple[bytes, int]], geobox, chunks) -> da.Array:
    """Lazy ``(y, x)`` int32 zone numbers on ``geobox``, rasterised chunk by chunk (pixel centres inside a zone; a
    later zone wins where zones overlap); ``shapes`` are ``(WKB geometry in the grid's CRS, zone number)``."""
    return da.map_blocks(_rasterise_block, shapes, geobox, chunks=chunks, dtype=np.int32, meta=np.empty((0, 0), np.int32))


def read_zones(path: str | Path, by: str, crs):
    """A zone layer (GeoPackage, GeoJSON, Shapefile, GeoParquet ...) in ``crs``, with its ``by`` column checked."""
    gpd = require("geopandas", "reading zones")
    path = Path(path)
    try:
        gdf = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    except Exception as e:  # pyogrio's DataSourceError and friends: one clear line
        raise ReadError(f"cannot read zones {path}: {e}; give a GeoPackage, GeoJSON, Shapefile or GeoParquet file") from None
    if by not in gdf.columns:
        raise ConfigError(f"zones {path} have no column {by!r}; columns: {[c for c in gdf.columns if c != 'geometry']}")
    if gdf.crs is None:
        raise ConfigError(f"zones {path} have no CRS; set one (e.g. ogr2ogr -a_srs EPSG:4326 ...)")
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty].to_crs(crs)
    if gdf.empty:
        raise ConfigError(f"zones {path} hold no geometry")
    return gdf.reset_index(drop=True)


def zonal(paths: Sequence[str | Path], zones: str | Path, output: str | Path, *, by: str, labels: Sequence[str] | None = None,
          legend=None, bbox=None, chunk_px: int = 1024, compute: Callable | None = None, overwrite: bool = False):
    """Area (hectares) and share of every class in every zone, for one map or several years of maps.

    Zones are rasterised chunk by chunk on the first map's grid (pixel centres; no AOI-sized array), classes
    counted per chunk and summed; areas use each row's true pixel area (right on geographic grids too).

    Writes ``output`` by its extension — ``.gpkg`` (zones with a column per map and class: ``<map>_<class>_ha``
    and ``_share``, and ``<first>_<last>_<class>_change_ha`` with several maps), ``.parquet`` (GeoParquet, the same)
    or ``.csv`` (a long table) — and always ``<output stem>.csv`` beside it (the long table: zone, map, class code,
    class name, pixels, hectares, share of the zone's mapped area).

    Returns
    -------
    pandas.DataFrame
        The long table.

    Examples
    --------
    >>> lcup.zonal(["map2020.tif", "map2021.tif"], "municipalities.gpkg", "zonal.gpkg", by="name")  # doctest: +SKIP
    """
    output = Path(output)
    if output.suffix not in (".gpkg", ".parquet", ".csv"):
        raise ConfigError(f"zonal output {output}: use a .gpkg, .parquet or .csv name")
    csv_path = output.with_suffix(".csv")
    if (output.exists() or csv_path.exists()) and not overwrite:
        raise OutputExistsError(f"{output} exists; pass overwrite=True (CLI: --overwrite) or choose another name")
    labels = list(labels) if labels else [Path(str(p)).stem for p in paths]
    if len(labels) != len(paths):
        raise ConfigError(f"{len(paths)} maps but {len(labels)} labels; give one label per map")
    maps, geobox, leg = open_maps(paths, legend=legend, bbox=bbox, chunk_px=chunk_px)
    gdf = read_zones(zones, by, geobox.crs.to_wkt())
    shapes = [(g.wkb, i + 1) for i, g in enumerate(gdf.geometry)]
    zr = zone_raster(shapes, geobox, maps[0].chunks)
    area = row_area_m2(list(geobox.transform)[:6], geobox.shape[0], geobox.crs.geographic)
    results = (compute or dask.compute)(*[zone_class_area(zr, m, leg.codes, len(gdf), area) for m in maps])
    names = leg.names()
    rows = []
    for lab, r in zip(labels, results):
        px, ha = r[0][1:], r[1][1:] / 1e4  # zones 1..Z
        mapped = ha[:, 1:].sum(1)
        for z in range(len(gdf)):
            for k, code in enumerate(leg.codes, start=1):
                rows.append({"zone": gdf[by].iloc[z], "map": lab, "class_code": code, "class_name": names[code],
                             "pixels": int(px[z, k]), "hectares": float(ha[z, k]),
                             "share": float(ha[z, k] / mapped[z]) if mapped[z] else float("nan")})
            rows.append({"zone": gdf[by].iloc[z], "map": lab, "class_code": 0, "class_name": "no data",
                         "pixels": int(px[z, 0]), "hectares": float(ha[z, 0]), "share": float("nan")})
    table = pd.DataFrame(rows)
    output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv_path, index=False)
    if output.suffix != ".csv":
        wide = gdf[[by, "geometry"]].copy()
        for lab, r in zip(labels, results):
            ha = r[1][1:] / 1e4
            mapped = np.maximum(ha[:, 1:].sum(1), 1e-12)
            for k, code in enumerate(leg.codes, start=1):
                wide[f"{safe_label(lab)}_{safe_label(names[code])}_ha"] = ha[:, k]
                wide[f"{safe_label(lab)}_{safe_label(names[code])}_share"] = ha[:, k] / mapped
        if len(maps) > 1:
            first, last = results[0][1][1:] / 1e4, results[-1][1][1:] / 1e4
            for k, code in enumerate(leg.codes, start=1):
                wide[f"{safe_label(labels[0])}_{safe_label(labels[-1])}_{safe_label(names[code])}_change_ha"] = last[:, k] - first[:, k]
        if output.exists():
            output.unlink()
        if output.suffix == ".parquet":
            wide.to_parquet(output)
        else:
            wide.to_file(output, driver="GPKG", layer="zonal")
    return table
