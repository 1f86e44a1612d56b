"""`lcup change` and `lcup zonal` on the two real ESA WorldCover years (../shared/data/esa-worldcover, EPSG:4326),
checked against direct counts of the same windows; outputs opened with GDAL and geopandas."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from tests.conftest import shared_data
from tests.integration.browser import render_in_chromium

pytestmark = pytest.mark.shared

BBOX = (6.44, 0.0, 6.78, 0.42)  # São Tomé, in the maps' CRS (degrees)
CODES = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100]


@pytest.fixture(scope="module")
def years():
    d = shared_data("esa-worldcover")
    return [d / "ESA_WorldCover_10m_2020_v100_N00E006_Map.tif", d / "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif"]


def _window(path):
    with rasterio.open(path) as src:
        w = from_bounds(*BBOX, transform=src.transform)
        w = rasterio.windows.Window(int(np.floor(w.col_off)), int(np.floor(w.row_off)),
                                    int(np.ceil(w.col_off + w.width)) - int(np.floor(w.col_off)),
                                    int(np.ceil(w.row_off + w.height)) - int(np.floor(w.row_off)))
        return src.read(1, window=w), src.window_transform(w)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lcup.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_change_between_two_real_years(years, tmp_path):
    r = _cli("change", *years, "--labels", "2020", "2021", "--legend", "esa-worldcover", "--bbox", *BBOX, "--chunk-px", "700",
             "-o", tmp_path / "c", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2020 → 2021:" in r.stdout and "ha changed" in r.stdout
    res = json.loads((tmp_path / "c" / "change.json").read_text())
    a, _ = _window(years[0])
    b, _ = _window(years[1])
    ia, ib = np.searchsorted(CODES, a), np.searchsorted(CODES, b)
    want = np.bincount((ia * len(CODES) + ib).ravel(), minlength=len(CODES) ** 2).reshape(len(CODES), len(CODES))
    np.testing.assert_array_equal(res["pairs"][0]["matrix_pixels"], want)  # every pixel, in its cell
    from pyproj import Geod
    from shapely import box

    bbox_ha = abs(Geod(ellps="WGS84").geometry_area_perimeter(box(*BBOX))[0]) / 1e4
    total_ha = np.asarray(res["pairs"][0]["matrix_hectares"]).sum()
    assert total_ha == pytest.approx(bbox_ha, rel=2e-4)  # the grid cut covers the bbox to within a pixel row
    s = res["pairs"][0]["hectares"]
    assert s["classes"]["50"]["net"] == pytest.approx(s["classes"]["50"]["gain"] - s["classes"]["50"]["loss"])
    assert s["classes"]["50"]["name"] == "built-up" and s["classes"]["50"]["gain"] > 0
    with rasterio.open(res["change_map"]["path"]) as src:  # the change map: GDAL reads codes and their names
        cm = src.read(1)
        cats = src.descriptions, open(res["change_map"]["path"] + ".aux.xml").read()
    assert cm.shape == a.shape
    valid = (a > 0) & (b > 0)
    assert ((cm == 1) == (valid & (a == b))).all() and ((cm == 0) == ~valid).all()
    code2 = res["change_map"]["codes"]["2"]
    f, t = code2.split(" → ")
    names = {10: "tree cover", 20: "shrubland", 30: "grassland", 40: "cropland", 50: "built-up", 60: "bare / sparse vegetation",
             80: "permanent water bodies", 90: "herbaceous wetland", 95: "mangroves"}
    inv = {v: k for k, v in names.items()}
    assert (cm == 2).sum() == ((a == inv[f]) & (b == inv[t])).sum() > 0
    assert f"<Category>{code2}</Category>" in cats[1].replace("&gt;", ">")
    assert (tmp_path / "c" / "sankey.png").stat().st_size > 10_000
    seen = render_in_chromium(tmp_path / "c" / "report.html")  # the change report: map, tables, Sankey
    assert not (seen["console_errors"] or seen["page_errors"] or seen["requests"]) and "Change" in seen["headings"]
    assert len(seen["images"]) == 2 and all(i[0] and min(i[1:]) > 0 for i in seen["images"])
    rows = (tmp_path / "c" / "transitions.csv").read_text().splitlines()
    assert rows[0] == "from_map,to_map,from_code,from_name,to_code,to_name,pixels,hectares" and len(rows) > 50


def test_change_needs_a_legend_and_two_maps(years, tmp_path):
    r = _cli("change", *years, "--bbox", *BBOX, "-o", tmp_path / "c", cwd=tmp_path)
    assert r.returncode == 1 and "--legend esa-worldcover" in r.stderr and "Traceback" not in r.stderr
    r = _cli("change", years[0], "--legend", "esa-worldcover", cwd=tmp_path)
    assert r.returncode == 1 and "two maps or more" in r.stderr


def test_zonal_statistics_on_real_years(years, tmp_path):
    import geopandas as gpd
    import shapely
    from rasterio.features import rasterize

    # three zones in UTM (not the maps' CRS), edges off the pixel grid, two of them overlapping
    zones = gpd.GeoDataFrame({"name": ["north", "south", "west"]}, geometry=[
        shapely.box(6.5013, 0.2517, 6.7021, 0.3989), shapely.box(6.5007, 0.0031, 6.6993, 0.2011),
        shapely.Polygon([(6.4517, 0.0523), (6.5531, 0.3507), (6.4509, 0.3493)])], crs="EPSG:4326").to_crs("EPSG:32632")
    zones.to_file(tmp_path / "zones.gpkg")
    r = _cli("zonal", *years, tmp_path / "zones.gpkg", "--by", "name", "--labels", "2020", "2021", "--legend", "esa-worldcover",
             "--bbox", *BBOX, "--chunk-px", "512", "-o", tmp_path / "z.gpkg", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import pandas as pd

    long = pd.read_csv(tmp_path / "z.csv", dtype={"map": str})
    a, tr = _window(years[1])
    zr = rasterize([(g, i + 1) for i, g in enumerate(zones.to_crs("EPSG:4326").geometry)], out_shape=a.shape, transform=tr,
                   dtype=np.int32)
    got = long[long["map"] == "2021"].set_index(["zone", "class_code"])["pixels"]
    for z, name in enumerate(["north", "south", "west"], start=1):
        counts = np.bincount(a[zr == z], minlength=101)
        for code in (0, 10, 30, 50, 80):
            assert got[(name, code)] == counts[code], (name, code)
    shares = long[(long["map"] == "2020") & (long["class_code"] > 0)].groupby("zone")["share"].sum()
    np.testing.assert_allclose(shares.values, 1.0)
    wide = gpd.read_file(tmp_path / "z.gpkg")
    assert len(wide) == 3 and "2020_2021_built-up_change_ha" in wide.columns
    north = wide.set_index("name").loc["north"]
    assert north["2020_2021_built-up_change_ha"] == pytest.approx(north["2021_built-up_ha"] - north["2020_built-up_ha"])
    r = _cli("zonal", years[0], tmp_path / "zones.gpkg", "--by", "nom", "--legend", "esa-worldcover", cwd=tmp_path)
    assert r.returncode == 1 and "no column 'nom'" in r.stderr and "'name'" in r.stderr
