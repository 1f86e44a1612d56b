"""Designing a reference sample on a map and estimating class areas with confidence intervals from it: checked
against the census of a known truth (the map's errors are made on purpose)."""

from __future__ import annotations

import json
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pytest

from lcup.io.write import write_cog_array
from lcup.legends import Legend
from lcup.ops.area import allocate, sample_size
from lcup.stages.reference import area, design


@pytest.fixture(scope="module")
def map_and_truth(tmp_path_factory):
    """A 600² px map at 10 m whose errors are known: truth blobs of 4 classes; the map confuses 2 with 3 along a band
    and misses most of class 4 (a rare class)."""
    d = tmp_path_factory.mktemp("ref")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:600, :600]
    truth = np.ones((600, 600), np.uint8)
    truth[(yy // 60 + xx // 90) % 3 == 1] = 2
    truth[(yy // 60 + xx // 90) % 3 == 2] = 3
    truth[((yy - 300) ** 2 + (xx - 200) ** 2) < 40**2] = 4
    m = truth.copy()
    m[(truth == 2) & (xx > 400)] = 3
    m[(truth == 4) & (rng.random(truth.shape) < 0.6)] = 1
    m[:5] = 0  # a strip without data
    tr = (10.0, 0.0, 500000.0, 0.0, -10.0, 5100000.0)
    legend = Legend("test4", {1: ("forest", "#1a7f2e"), 2: ("grassland", "#b5e36c"), 3: ("cropland", "#f0c341"), 4: ("water", "#2b83ba")})
    write_cog_array(d / "map.tif", m, tr, 32633, legend=legend)
    # "test4" is not a built-in legend: the class names come from the COG's CLASS_<code> tags
    return d, m, truth


def _label(points: gpd.GeoDataFrame, truth: np.ndarray) -> gpd.GeoDataFrame:
    r = ((5100000.0 - points.y) / 10).astype(int)
    c = ((points.x - 500000.0) / 10).astype(int)
    points["reference"] = truth[r, c]
    return points


def test_design_allocates_and_draws_in_each_class(map_and_truth, tmp_path):
    d, m, _ = map_and_truth
    r = design(d / "map.tif", tmp_path / "p.gpkg", users_accuracy=0.85, target_se=0.01, min_per_class=60, chunk_px=256)
    counts = np.bincount(m.ravel(), minlength=5)[1:]
    n = sample_size(counts, [0.85] * 4, 0.01)
    assert r["n"] == n and list(r["per_class"].values()) == allocate(n, counts, 60).tolist()
    p = gpd.read_file(tmp_path / "p.gpkg")
    assert len(p) == n and p["id"].is_unique and not p.duplicated(["x", "y"]).any()
    rows, cols = ((5100000.0 - p.y - 5) / 10).astype(int), ((p.x - 500000.0 - 5) / 10).astype(int)
    assert (m[rows, cols] == p["map_class"]).all() and (p["map_class"] > 0).all()  # pixel centres, in their class
    assert p.groupby("map_class").size().to_dict() == r["per_class"]
    assert set(p["map_name"]) == {"forest", "grassland", "cropland", "water"} and p.crs.to_epsg() == 32633
    again = design(d / "map.tif", tmp_path / "q.gpkg", users_accuracy=0.85, target_se=0.01, min_per_class=60, chunk_px=256)
    assert again["n"] == n and gpd.read_file(tmp_path / "q.gpkg")[["x", "y"]].equals(p[["x", "y"]])  # same seed, same points


def test_area_estimates_cover_the_census(map_and_truth, tmp_path):
    d, m, truth = map_and_truth
    design(d / "map.tif", tmp_path / "p.gpkg", n=800, min_per_class=80, seed=1)
    pts = _label(gpd.read_file(tmp_path / "p.gpkg"), truth)
    pts.to_file(tmp_path / "labelled.gpkg")
    r = area(d / "map.tif", tmp_path / "labelled.gpkg", output=tmp_path / "area.json")
    assert r["n"] == 800 and r["unused_points"] == 0
    valid = m > 0
    census = {c: float(((truth == c) & valid).sum()) * 0.01 for c in (1, 2, 3, 4)}
    mapped = {c: float((m == c).sum()) * 0.01 for c in (1, 2, 3, 4)}
    for c, v in r["classes"].items():
        assert v["map_ha"] == pytest.approx(mapped[c])
        assert abs(v["area_ha"] - census[c]) <= v["area_ci_ha"], (c, v, census[c])
    # the map under-states water (class 4) by 60 %; the estimate corrects it
    assert r["classes"][4]["map_ha"] < 0.6 * census[4] and r["classes"][4]["area_ha"] > 0.8 * census[4]
    assert json.loads((tmp_path / "area.json").read_text())["n"] == 800 and (tmp_path / "area.csv").exists()


def test_area_from_a_lonlat_csv_and_clear_errors(map_and_truth, tmp_path):
    d, m, truth = map_and_truth
    design(d / "map.tif", tmp_path / "p.gpkg", n=300, min_per_class=40)
    pts = _label(gpd.read_file(tmp_path / "p.gpkg"), truth).to_crs("EPSG:4326")
    pts.assign(lon=pts.geometry.x, lat=pts.geometry.y)[["lon", "lat", "reference"]].rename(columns={"reference": "truth"}).to_csv(
        tmp_path / "p.csv", index=False)
    r = subprocess.run([sys.executable, "-m", "lcup.cli", "area", d / "map.tif", tmp_path / "p.csv", "--class-column", "truth"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "300 reference points (0 unused)" in r.stdout and "water" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lcup.cli", "area", d / "map.tif", tmp_path / "p.csv"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no column 'reference'" in r.stderr and "'truth'" in r.stderr
    # a reference class the map never shows is a stratum of no mapped area, estimated from omission errors
    pts2 = pts.assign(lon=pts.geometry.x, lat=pts.geometry.y)
    pts2.loc[pts2.index[:30], "reference"] = 9
    pts2[["lon", "lat", "reference"]].to_csv(tmp_path / "p9.csv", index=False)
    r = subprocess.run([sys.executable, "-m", "lcup.cli", "area", d / "map.tif", tmp_path / "p9.csv", "-o", tmp_path / "a9.json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "reference classes [9] are not in the map's legend" in r.stderr and "Traceback" not in r.stderr
    est = json.loads((tmp_path / "a9.json").read_text())["classes"]["9"]
    assert est["map_ha"] == 0 and est["area_ha"] > 0 and est["name"] == "class 9 (not in the map)"
