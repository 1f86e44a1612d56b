"""The Sentinel-2 tiling grid from the MGRS definition, checked against real items, and the area settings."""

from __future__ import annotations

import json

import pytest
import shapely

from lcup.config import load_config
from lcup.errors import ConfigError
from lcup.ops.s2grid import TILE_M, tile, tiles_covering, utm_zone
from tests.conftest import shared_data


def _real_tiles():
    """(tile id, EPSG, upper-left corner) of the real Earth Search / Copernicus items in ../shared/data."""
    found = {}
    for f in sorted(shared_data("stac-items").glob("*.json")) + sorted(shared_data("stac-items").glob("*.geojson")):
        try:
            doc = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        for it in doc.get("features", [doc]) if isinstance(doc, dict) else []:
            p = it.get("properties", {})
            tid = p.get("s2:mgrs_tile")
            if tid is None and "mgrs:utm_zone" in p:
                tid = f"{p['mgrs:utm_zone']:02d}{p['mgrs:latitude_band']}{p['mgrs:grid_square']}"
            if tid is None and "_28QCH_" in it.get("id", ""):
                tid = "28QCH"
            code = p.get("proj:code") or f"EPSG:{p.get('proj:epsg')}"
            red = next((a for k, a in it.get("assets", {}).items() if k in ("B04", "red")), None)
            if tid and red and red.get("proj:transform"):
                t = red["proj:transform"]
                found[tid] = (int(code.split(":")[1]), (float(t[2]), float(t[5])), red.get("proj:shape"))
    return found


def test_tile_geometry_matches_the_real_items_proj_transform():
    real = _real_tiles()
    assert len(real) >= 4, real  # 28QCH, 06VVN, 35MNM (southern hemisphere), 32TPS
    for tid, (epsg, corner, shape) in real.items():
        t = tile(tid)
        assert t.epsg == epsg, tid
        assert t.origin == corner, (tid, t.origin, corner)
        assert t.bounds[2] - t.bounds[0] == TILE_M and t.bounds[3] - t.bounds[1] == TILE_M
        if shape:
            assert list(shape) == [10980, 10980]


def test_tiles_covering_an_area_across_a_zone_boundary_come_from_both_zones():
    area = shapely.box(11.95, 46.40, 12.05, 46.45)
    tiles = tiles_covering(area)
    assert {t.zone for t in tiles} == {32, 33}
    for t in tiles:
        assert t.lonlat_polygon().intersects(area)
        assert tile(t.id) == t  # the id says the geometry back
    # a larger area: every point of it is inside some tile, each tile meets it
    big = shapely.box(13.2, 45.4, 16.6, 46.9)
    tiles = tiles_covering(big)
    cover = shapely.union_all([t.lonlat_polygon() for t in tiles])
    assert cover.contains(big)
    assert len(tiles) == len({t.id for t in tiles})


def test_zones_follow_the_sentinel2_grid_exceptions():
    assert utm_zone(4.0, 60.0) == 32  # western Norway: zone 32 from 3° E in band V
    assert utm_zone(4.0, 50.0) == 31
    assert utm_zone(8.0, 78.0) == 31 and utm_zone(15.0, 78.0) == 33  # Svalbard's wide zones
    assert utm_zone(-70.5, -33.4) == 19


@pytest.mark.parametrize("bad, says", [("32TQ", "not a Sentinel-2 tile id"), ("61TQM", "not a Sentinel-2 tile id"),
                                       ("32TAM", "column letter A is not used in zone 32")])
def test_bad_tile_ids_are_named(bad, says):
    with pytest.raises(ValueError, match=says):
        tile(bad)


def _base(tmp_path, **aoi):
    cat = tmp_path / "catalog.json"
    cat.write_text('{"type": "Catalog", "id": "x", "description": "x", "stac_version": "1.0.0", "links": []}')
    lab = tmp_path / "l.tif"
    lab.write_bytes(b"")
    return {"source": {"catalog": str(cat)}, "aoi": aoi, "year": 2024,
            "labels": {"path": str(lab), "legend": "cgls-lc100"}, "output": {"dir": str(tmp_path / "o")}}


def test_area_settings_are_checked_when_the_pipeline_is_read(tmp_path):
    with pytest.raises(ConfigError, match="give the area: aoi.bbox, aoi.geometry"):
        load_config(_base(tmp_path))
    with pytest.raises(ConfigError, match="column letter A is not used in zone 32"):
        load_config(_base(tmp_path, tiles=["32TAM"]))
    with pytest.raises(ConfigError, match="aoi.geometry .*does not exist"):
        load_config(_base(tmp_path, geometry="nowhere.gpkg"))
    with pytest.raises(ConfigError, match="not valid WKT or GeoJSON"):
        load_config(_base(tmp_path, geometry="POLYGON((1 2, 3"))
    with pytest.raises(ConfigError, match="has no area"):
        load_config(_base(tmp_path, geometry="POINT(14 46)"))
    with pytest.raises(ConfigError, match="reaches outside longitude/latitude"):
        load_config(_base(tmp_path, geometry="POLYGON((500000 5100000, 501000 5100000, 501000 5101000, 500000 5100000))"))
    ok = load_config(_base(tmp_path, geometry="POLYGON((500000 5100000, 501000 5100000, 501000 5101000, 500000 5100000))",
                           geometry_crs="EPSG:32633"))
    assert ok.aoi.bbox is None and ok.aoi.tiles is None
    assert load_config(_base(tmp_path, tiles=["T32tqm"])).aoi.tiles == ["32TQM"]


def test_a_polygon_file_with_layer_and_filter(tmp_path):
    gpd = pytest.importorskip("geopandas")
    gdf = gpd.GeoDataFrame({"NAME": ["Slovenia", "Elsewhere"]},
                           geometry=[shapely.box(500000, 5090000, 505000, 5095000), shapely.box(510000, 5090000, 515000, 5095000)],
                           crs="EPSG:32633")
    path = tmp_path / "areas.gpkg"
    gdf.to_file(path, layer="countries")
    from lcup.stages.area import area_of

    cfg = load_config(_base(tmp_path, geometry=str(path), layer="countries", where="NAME = 'Slovenia'"))
    geom = area_of(cfg.aoi)
    assert geom.bounds[0] == pytest.approx(15.0, abs=0.01)  # 500 km easting in zone 33 is its central meridian
    assert geom.bounds[2] < 15.07  # the other feature was filtered out
    with pytest.raises(ConfigError, match="holds no feature where NAME = 'Nowhere'"):
        load_config(_base(tmp_path, geometry=str(path), layer="countries", where="NAME = 'Nowhere'"))
    with pytest.raises(ConfigError, match="cannot read aoi.geometry .* with aoi.where"):
        load_config(_base(tmp_path, geometry=str(path), layer="countries", where="NOCOLUMN = 1"))
