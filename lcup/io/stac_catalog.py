"""Write a static STAC catalog in the Earth Search ``sentinel-2-c1-l2a`` layout (demo data)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pystac
from odc.geo.geom import box

from ..providers import BANDS, SCL

COLLECTION_ID = "sentinel-2-c1-l2a"


def _raster_band(band: str, res: int) -> dict:
    if band == SCL:
        return {"nodata": 0, "data_type": "uint8", "spatial_resolution": res}
    return {"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "spatial_resolution": res, "scale": 0.0001, "offset": -0.1}


def write_s2_catalog(out: Path, records: list[dict], epsg: int, bbox_utm: tuple, *, truth: str | None = None, coarse: str | None = None) -> Path:
    """Write ``catalog.json`` → collection → one item per record, hrefs relative (self-contained).

    Each record is ``{"id", "datetime", "cloud_cover", "assets": {band: (path, shape, transform, res)}}``, and
    optionally its own ``"epsg"`` and ``"bbox"`` (in that CRS; default ``epsg`` and ``bbox_utm``) and extra
    ``"properties"`` (a Sentinel-2 tile's ``grid:code`` and ``mgrs:*``).
    """
    def footprint(r):
        g = box(*r.get("bbox", bbox_utm), crs=f"EPSG:{r.get('epsg', epsg)}").to_crs("EPSG:4326")
        return g, list(g.boundingbox)

    boxes = [footprint(r)[1] for r in records]
    lonlat_bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    start = min(r["datetime"] for r in records)
    end = max(r["datetime"] for r in records)
    collection = pystac.Collection(
        id=COLLECTION_ID,
        description="lcup synthetic Sentinel-2 L2A demo scene in the Earth Search v1 sentinel-2-c1-l2a layout",
        extent=pystac.Extent(
            pystac.SpatialExtent([lonlat_bbox]),
            pystac.TemporalExtent([[start.replace(tzinfo=dt.timezone.utc), end.replace(tzinfo=dt.timezone.utc)]]),
        ),
        license="CC0-1.0",
    )
    for key, href, title in (("truth", truth, "10 m truth land cover (lcup7 legend)"), ("coarse", coarse, "100 m coarse land cover (CGLS-LC100 codes)")):
        if href:
            collection.add_asset(key, pystac.Asset(href=str(out / href), media_type=pystac.MediaType.COG, roles=["labels"], title=title))
    for r in records:
        geom, bbox = footprint(r)
        item = pystac.Item(
            id=r["id"],
            geometry=geom.json,
            bbox=bbox,
            datetime=r["datetime"].replace(tzinfo=dt.timezone.utc),
            properties={
                "platform": "sentinel-2x",
                "constellation": "sentinel-2",
                "eo:cloud_cover": round(r["cloud_cover"], 2),
                "proj:code": f"EPSG:{r.get('epsg', epsg)}",
                **r.get("properties", {}),
                "s2:processing_baseline": "05.10",
                "earthsearch:boa_offset_applied": False,
            },
            stac_extensions=[
                "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            ],
        )
        for band, (path, shape, transform, res) in r["assets"].items():
            extra = {
                "proj:shape": list(shape),
                "proj:transform": list(transform),
                "raster:bands": [_raster_band(band, res)],
            }
            if band != SCL:
                extra["eo:bands"] = [{"name": BANDS[band][0], "common_name": band, "center_wavelength": BANDS[band][1] / 1000}]
            item.add_asset(
                band,
                pystac.Asset(href=str(path), media_type=pystac.MediaType.COG, roles=["data"], extra_fields=extra),
            )
        collection.add_item(item)
    catalog = pystac.Catalog(id="lcup-demo", description="lcup demo data: synthetic Sentinel-2 L2A year with truth")
    catalog.add_child(collection)
    catalog.normalize_hrefs(str(out))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out / "catalog.json"
