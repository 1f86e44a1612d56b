"""A multi-year run (`years:`): a map per year from one model, then the change — against the demo's known change."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio

from lcup.config import load_config
from lcup.errors import ConfigError, LcupWarning
from lcup.pipeline import run_pipeline
from tests.conftest import demo_scene, scene_pipeline


@pytest.fixture(scope="module")
def two_years(tmp_path_factory):
    return demo_scene(tmp_path_factory.mktemp("years"), size=(160, 160), revisit_days=10, seed=5, years=2)


@pytest.mark.slow
def test_years_map_each_year_and_their_change(two_years, tmp_path):
    cfg = load_config(scene_pipeline(two_years, tmp_path / "o", year=None, years=[2024, 2025], **{"model.n_estimators": 60}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        s = run_pipeline(cfg, progress=False)
    out = tmp_path / "o"
    y1 = json.loads((out / "2024" / "summary.json").read_text())
    y2 = json.loads((out / "2025" / "summary.json").read_text())
    assert "truth" in y1["figures"] and "truth" not in y2["figures"]  # the truth map is the first year's
    assert y2["figures"]["model"] == {"applied": str(out / "2024" / "model.skops")}  # one model for every year
    assert (out / "2025" / "report.html").exists() and (out / "change" / "report.html").exists()
    maps = [rasterio.open(out / str(y) / "landcover_class.tif").read(1) for y in (2024, 2025)]
    truths = [rasterio.open(two_years["dir"] / f"truth_10m_{y}.tif").read(1) for y in (2024, 2025)]
    with rasterio.open(out / "change" / "change_2024_2025.tif") as src:
        cm = src.read(1)
    np.testing.assert_array_equal(cm == 1, (maps[0] == maps[1]) & (maps[0] > 0))
    changed, true_change = cm > 1, truths[0] != truths[1]
    recall = (changed & true_change).sum() / true_change.sum()
    precision = (changed & true_change).sum() / changed.sum()
    assert 0.08 < true_change.mean() < 0.25  # the demo clears forest, builds, turns crops to grass
    assert recall > 0.6 and precision > 0.5, (recall, precision)
    pair = s.figures["change"]["pairs"][0]
    forest = pair["hectares"]["classes"]["1"] if "1" in pair["hectares"]["classes"] else pair["hectares"]["classes"][1]
    true_forest_loss = ((truths[0] == 1) & (truths[1] != 1)).sum() * 0.01
    assert forest["loss"] == pytest.approx(true_forest_loss, rel=0.35) and forest["net"] < 0
    assert json.loads((out / "summary.json").read_text())["status"] == "done"

    # area of change with confidence intervals from a reference sample of change, labelled from the two truths
    import geopandas as gpd

    from lcup.stages.reference import area, design

    chg = out / "change" / "change_2024_2025.tif"
    design(chg, tmp_path / "p.gpkg", n=400, min_per_class=15)
    p = gpd.read_file(tmp_path / "p.gpkg")
    r, c = ((two_years["spec"].origin[1] - p.y) / 10).astype(int), ((p.x - two_years["spec"].origin[0]) / 10).astype(int)
    names = {1: "forest", 2: "grassland", 3: "cropland", 4: "built-up", 5: "bare", 6: "water", 7: "wetland"}
    code_of = {v: int(k) for k, v in json.loads((out / "change" / "change.json").read_text())["change_map"]["codes"].items()}
    a, b = truths[0][r, c], truths[1][r, c]
    p["reference"] = [1 if x == y else code_of.get(f"{names[x]} → {names[y]}", 200 + 10 * x + y) for x, y in zip(a, b)]
    p.to_file(tmp_path / "labelled.gpkg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)  # transitions the map missed: reported as classes it never shows
        est = area(chg, tmp_path / "labelled.gpkg")
    stable_ha = ((truths[0] == truths[1]) & (cm > 0)).sum() * 0.01
    # Within 5 % of the census (or its interval). Not within the interval alone: where the sample finds no omitted
    # change in the stable stratum its variance is estimated as 0, so the interval is too narrow (measured in
    # session 12 over design seeds 0-7: an interval of ±3.2 ha around an estimate 8 ha (3.8 %) off on four, ±28 ha
    # around one 6 ha off on the other four) - a known limit of the stratified estimator with few rare errors.
    assert abs(est["classes"][1]["area_ha"] - stable_ha) <= max(est["classes"][1]["area_ci_ha"], 0.05 * stable_ha)


def test_years_exclude_year():
    with pytest.raises(ConfigError, match="`years` or `year`"):
        load_config({"aoi": {"bbox": [0, 0, 1, 1]}, "year": 2024, "years": [2024, 2025], "output": {"dir": "x"}})
    with pytest.raises(ConfigError, match="two or more different"):
        load_config({"aoi": {"bbox": [0, 0, 1, 1]}, "years": [2024], "output": {"dir": "x"}})


def test_a_year_without_imagery_fails_before_the_first_map(two_years, tmp_path):
    """years: [2024, 2026] where the catalog has no 2026: the run stops within seconds, naming the missing year's
    search, before a map of 2024 is computed (it failed after the whole first map before)."""
    import time

    from lcup.errors import EmptySearchError

    cfg = load_config(scene_pipeline(two_years, tmp_path / "o", year=None, years=[2024, 2026], **{"model.n_estimators": 10}))
    t0 = time.perf_counter()
    with pytest.raises(EmptySearchError, match="2026"):
        run_pipeline(cfg, progress=False)
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "o" / "2024" / "landcover.zarr").exists()


@pytest.fixture(scope="module")
def three_years(tmp_path_factory):
    return demo_scene(tmp_path_factory.mktemp("years3"), size=(160, 160), revisit_days=10, seed=9, years=3)


@pytest.mark.slow
def test_years_smoothing_removes_flicker_and_keeps_the_change(three_years, tmp_path):
    """Issue 30's targets on a 3-year demo, with the default smoothing (flicker): flip-back share ≤ 0.3 %, and change
    recall (producer's accuracy of change, first → last year, against the yearly truths) not lower than the yearly
    maps'; the change's user's accuracy is reported beside it."""
    cfg = load_config(scene_pipeline(three_years, tmp_path / "o", year=None, years=[2024, 2025, 2026], **{
        "model.n_estimators": 60, "truth.path": str(three_years["dir"] / "truth_10m_{year}.tif"), "output.report": False}))
    assert cfg.years_smoothing == "flicker"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        s = run_pipeline(cfg, progress=False)
    sm = s.figures["years_smoothing"]
    assert sm["before"]["flip_back_share"] > sm["after"]["flip_back_share"] and sm["after"]["flip_back_share"] <= 0.003, sm
    first_last = {a["from"] + a["to"]: a for a in s.figures["change_accuracy"]}["20242026"]
    raw = {a["from"] + a["to"]: a for a in s.figures["change_accuracy_unsmoothed"]}["20242026"]
    assert first_last["change"]["producer_accuracy"] >= raw["change"]["producer_accuracy"], (first_last, raw)
    # every year was scored against its own truth, and the change maps read the smoothed maps
    for y in (2024, 2025, 2026):
        assert "truth" in json.loads((tmp_path / "o" / str(y) / "summary.json").read_text())["figures"]
    change = json.loads((tmp_path / "o" / "change" / "change.json").read_text())
    assert all("smoothed" in m for m in change["maps"])
    area = first_last["area_of_change_ha"]
    assert area["census"] > 0 and area["ci"] > 0 and area["mapped"] > 0

    # the hidden-Markov option re-decides the years from the same stores: no flicker left either
    from lcup.legends import get_legend
    from lcup.stages.years import smooth_years

    hmm = smooth_years([tmp_path / "o" / str(y) / "landcover.zarr" for y in (2024, 2025, 2026)], tmp_path / "hmm",
                       labels=["2024", "2025", "2026"], legend=get_legend("lcup7"), cost=0.5, method="hmm")
    stack = np.stack([rasterio.open(p).read(1) for p in hmm])
    valid = (stack > 0).all(0)
    assert (((stack[0] != stack[1]) & (stack[2] == stack[0]) & valid).sum() / valid.sum()) <= 0.003
