"""The whole pipeline on a generated scene through a real distributed LocalCluster."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr

from lcup.config import load_config
from lcup.errors import EmptySearchError, LcupWarning, LowCoverageWarning, MissingBandError, OutputExistsError
from lcup.pipeline import run_pipeline
from tests.conftest import scene_pipeline
from tests.integration.browser import render_in_chromium
from tests.integration.servers import extension_errors


@pytest.fixture(scope="module")
def e2e_run(small_scene, local_client, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    cfg = load_config(scene_pipeline(small_scene, out, **{"output.probability_cog": True}))
    with pytest.warns(LowCoverageWarning):
        summary = run_pipeline(cfg, client=local_client, progress=False)
    return summary, out


def test_outputs_open_with_crs_and_transform(e2e_run, small_scene):
    summary, out = e2e_run
    ds = xr.open_zarr(out / "landcover.zarr", mask_and_scale=False, consolidated=False)
    assert ds["class"].shape == small_scene["spec"].size
    assert ds["class"].dtype == np.uint8
    assert "spatial_ref" in ds.coords and "32633" in ds.spatial_ref.attrs.get("crs_wkt", "")
    assert ds.attrs["legend"]["name"] == "lcup7" and ds.attrs["crs"] == "EPSG:32633"
    assert len(ds.attrs["items"]) > 10 and ds.attrs["lcup_tiles_done"] == ["0_0"]
    # probabilities (percent) sum to ~100 where there is a prediction; class = argmax
    prob = ds["probability"].values.astype(int)
    cls = ds["class"].values
    has = cls > 0
    assert (abs(prob.sum(0)[has] - 100) <= 4).all()
    # class = argmax; where rounding to whole percent ties two classes, the class holds the tied maximum
    codes = list(ds["class_code"].values)
    p_cls = np.take_along_axis(prob, np.searchsorted(codes, cls)[None], 0)[0]
    assert (p_cls[has] >= prob.max(0)[has] - 1).all()
    assert (ds["class_code"].values[prob.argmax(0)][has] == cls[has]).mean() > 0.99
    item = json.loads((out / "item.json").read_text())
    assert item["properties"]["proj:code"] == "EPSG:32633"
    classes = item["assets"]["cog"]["classification:classes"]
    assert classes[0] == {"value": 0, "name": "no-data", "title": "no data", "nodata": True}
    assert classes[1]["name"] == "forest" and item["assets"]["cog"]["raster:bands"][0]["nodata"] == 0
    with rasterio.open(out / "landcover_class.tif") as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform.a == 10 and src.transform.c == small_scene["spec"].origin[0]
        # the colour table GDAL shows (from the .aux.xml): no data transparent, then the legend's codes only
        assert src.colormap(1) == {0: (0, 0, 0, 0), 1: (26, 127, 46, 255), 2: (181, 227, 108, 255), 3: (240, 195, 65, 255),
                                   4: (215, 25, 28, 255), 5: (180, 166, 143, 255), 6: (43, 131, 186, 255), 7: (110, 195, 193, 255)}
        assert src.tags()["CLASS_1"] == "forest"
        cog = src.read(1)
    np.testing.assert_array_equal(cog, ds["class"].values)
    from rio_cogeo.cogeo import cog_validate

    ok, errors, _ = cog_validate(str(out / "landcover_class.tif"))
    assert ok, errors


def test_prediction_beats_coarse_map(e2e_run):
    summary, out = e2e_run
    t = summary.figures["truth"]
    assert t["prediction_10m"]["overall_accuracy"] > t["coarse_map_upsampled"]["overall_accuracy"] + 0.05, t["oa_gain_points"]
    s = json.loads((out / "summary.json").read_text())
    assert set(s["timings"]) >= {"search", "scene filter", "clean+features (graph)", "labels", "train", "predict+write", "score", "total"}
    assert {"lcup", "dask", "distributed", "xarray", "odc-stac", "numba", "scikit-learn", "GDAL"} <= set(s["figures"]["versions"])
    assert s["figures"]["cluster"]["workers"] == 2 and s["status"] == "done"
    assert s["figures"]["validation"]["n"] > 0
    assert 0 < s["figures"]["dates_kept"] <= s["figures"]["dates_found"]


def test_existing_output_is_refused(small_scene, tmp_path, e2e_run):
    _, out = e2e_run
    cfg = load_config(scene_pipeline(small_scene, out, **{"output.overwrite": False}))
    with pytest.raises(OutputExistsError, match="overwrite"):
        run_pipeline(cfg, progress=False)


def test_empty_search_is_a_clear_error(small_scene, tmp_path):
    cfg = load_config(scene_pipeline(small_scene, tmp_path, year=2019))
    with pytest.raises(EmptySearchError, match="2019-01-01.*check the area"):
        run_pipeline(cfg, progress=False)


def test_aoi_elsewhere_is_a_clear_error(small_scene, tmp_path):
    cfg = load_config(scene_pipeline(small_scene, tmp_path, **{"aoi.bbox": [10.0, 50.0, 10.1, 50.1], "aoi.crs": "EPSG:4326"}))
    with pytest.raises(EmptySearchError):
        run_pipeline(cfg, progress=False)


def test_missing_band_is_a_clear_error(small_scene, tmp_path):

    from lcup.io.stac import geobox_for_aoi, load_cube, lonlat_bbox, search_items
    from lcup.providers import get_profile

    prof = get_profile("planetary-computer")  # asset keys B04..., not in the Earth Search layout
    gb = geobox_for_aoi((500000, 5098000, 502000, 5100000), None, 10, "EPSG:32633")
    items = search_items(str(small_scene["catalog"]), get_profile("earth-search"), lonlat_bbox(gb), "2024-01-01", "2024-12-31")
    with pytest.raises(MissingBandError, match="asset 'B04'.*source.provider"):
        load_cube(items, prof, ["red", "scl"], gb)


def test_upsampling_consistency_is_reported(e2e_run):
    """Every run compares its map with the coarse map: agreement and each class's area share in both."""
    summary, _ = e2e_run
    c = summary.figures["consistency"]
    assert 0.5 < c["agreement"] < 1.0
    shares = c["classes"]
    assert abs(sum(v["coarse_share"] for v in shares.values()) - 1) < 1e-9
    assert abs(sum(v["map_share"] for v in shares.values()) - 1) < 0.05  # less what has no prediction
    coarse_px = summary.figures["labels"]["class_px"]
    total = sum(coarse_px.values())
    for code, v in shares.items():
        assert abs(v["coarse_share"] - coarse_px.get(code, 0) / total) < 1e-9


def test_zarr_follows_conventions(e2e_run):
    """Consolidated metadata (opens without a warning), no data declared on every layer as a value it cannot hold
    (class 0; 255 for the uint8 percentages, so a genuine 0 % probability stays 0 % once decoded), CF x/y
    coordinates."""
    import warnings

    _, out = e2e_run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(out / "landcover.zarr", mask_and_scale=False)
    for v, nodata in (("class", 0), ("confidence", 255), ("probability", 255)):
        assert ds[v].attrs.get("_FillValue", ds[v].encoding.get("_FillValue")) == nodata, v
    decoded = xr.open_zarr(out / "landcover.zarr")  # what a user gets by default: no data as NaN
    has = ds["class"].values > 0
    raw, dec = ds["probability"].values, decoded["probability"].values
    assert (raw[:, has] == 0).any() and (dec[:, has] == 0).any() and not np.isnan(dec[:, has]).any()
    assert np.isnan(dec[:, ~has]).all() and np.isnan(decoded["confidence"].values[~has]).all()
    np.testing.assert_allclose(np.nanmean(dec[:, has]), raw[:, has].mean())  # a mean over the layer is right
    assert ds.x.attrs["standard_name"] == "projection_x_coordinate" and ds.y.attrs["axis"] == "Y"
    assert "_FillValue" not in ds.x.attrs


def test_outputs_gis_tools_open(small_scene, tmp_path, e2e_run):
    """With output.zarr_format 2 the store opens with the GDAL that rasterio ships; the class COG has class names
    (GDAL category names in .aux.xml) and a QGIS style beside it; a confidence COG is written too."""
    import warnings

    from tests.conftest import scene_pipeline

    _, out = e2e_run
    aux = (out / "landcover_class.tif.aux.xml").read_text()
    assert "<Category>forest</Category>" in aux and aux.count("<Category>") == 8  # 0 (no data) … 7
    qml = (out / "landcover_class.qml").read_text()
    assert 'type="paletted"' in qml and 'value="1" color="#1a7f2e"' in qml and 'label="forest"' in qml
    with rasterio.open(out / "landcover_confidence.tif") as src:
        conf = src.read(1)
        assert src.nodata == 255 and 0 < conf[conf != 255].max() <= 100
    with rasterio.open(out / "landcover_probability.tif") as src:  # one band per class, named, 255 = no data
        prob = src.read()
        assert src.count == 7 and src.descriptions[0] == "forest (%)" and src.nodata == 255
    ds = xr.open_zarr(out / "landcover.zarr", mask_and_scale=False)
    has = ds["class"].values > 0
    np.testing.assert_array_equal(prob[:, has], ds["probability"].values[:, has])
    assert (prob[:, ~has] == 255).all() and (prob[:, has] <= 100).all()
    item = json.loads((out / "item.json").read_text())
    assert item["assets"]["probability"]["href"] == "landcover_probability.tif"
    cfg = load_config(scene_pipeline(small_scene, tmp_path / "v2", **{"output.zarr_format": 2, "truth": None,
                                                                     "model.n_estimators": 10, "output.cog": False}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        run_pipeline(cfg, progress=False)
    ds = xr.open_zarr(tmp_path / "v2" / "landcover.zarr", mask_and_scale=False)
    with rasterio.open(f'ZARR:"{tmp_path / "v2" / "landcover.zarr"}":/class') as src:
        np.testing.assert_array_equal(src.read(1), ds["class"].values)


def test_output_item_is_valid_stac(e2e_run):
    """The output Item validates against the STAC 1.1 item schema pystac bundles (no network), links the
    source items it was derived from, and lists the confidence COG."""
    import pystac
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    summary, out = e2e_run
    d = json.loads((out / "item.json").read_text())
    JsonSchemaSTACValidator().validate_core(d, pystac.STACObjectType.ITEM, d["stac_version"])
    derived = [link for link in d["links"] if link["rel"] == "derived_from"]
    assert len(derived) == summary.figures["items"]
    assert d["assets"]["confidence"]["type"] == pystac.MediaType.COG
    bad = json.loads(json.dumps(d))
    del bad["properties"]["start_datetime"]  # datetime null needs start/end: the schema must catch it
    with pytest.raises(pystac.errors.STACValidationError, match="start_datetime"):
        JsonSchemaSTACValidator().validate_core(bad, pystac.STACObjectType.ITEM, d["stac_version"])


def test_output_item_is_valid_against_extension_schemas(e2e_run):
    """projection v2, classification v2 and raster v1.1, validated with their bundled JSON schemas; a class name
    with a space (what the built-in legends held before) and a bad nodata type are caught."""
    _, out = e2e_run
    d = json.loads((out / "item.json").read_text())
    assert extension_errors(d) == []
    bad = json.loads(json.dumps(d))
    bad["assets"]["cog"]["classification:classes"][1]["name"] = "urban / built up"
    bad["assets"]["cog"]["raster:bands"][0]["data_type"] = "byte"
    errors = extension_errors(bad)
    assert any("classification" in e and "does not match" in e for e in errors), errors
    assert any("raster" in e for e in errors), errors


def test_report_renders_in_a_real_browser(e2e_run):
    """report.html opens in headless Chromium without errors or network requests; every figure has a size; it holds
    what an analyst looks for."""
    summary, out = e2e_run
    seen = render_in_chromium(out / "report.html")
    assert seen["console_errors"] == [] and seen["page_errors"] == [] and seen["requests"] == []
    assert len(seen["images"]) >= 8
    assert all(ok and nw > 0 and nh > 0 and w > 0 and h > 0 for ok, nw, nh, w, h in seen["images"]), seen["images"]
    assert {"Maps", "Accuracy", "ROC curves", "Feature importance", "Profiles", "Area", "Upsampling consistency",
            "Timings"} <= set(seen["headings"])
    text = (out / "report.html").read_text()
    assert "forest" in text and f"{summary.figures['truth']['prediction_10m']['overall_accuracy']:.3f}" in text


def test_area_estimates_with_confidence_intervals(e2e_run):
    """The run estimates class areas from a stratified sample of the truth: the intervals are real (positive, most
    cover the census area) and the estimates sum to the sampled population."""
    summary, _ = e2e_run
    a = summary.figures["area"]
    classes = a["classes"]
    assert a["n"] == sum(min(100, int(v["map_ha"] / 0.01)) for v in classes.values())
    assert sum(v["area_ha"] for v in classes.values()) == pytest.approx(sum(v["map_ha"] for v in classes.values()))
    assert all(v["area_ci_ha"] > 0 for v in classes.values() if v["user_accuracy"] < 1)
    assert sum(v["covered"] for v in classes.values()) >= len(classes) - 1
    roc = summary.figures["validation"]["roc"]
    assert set(roc) <= set(summary.figures["validation"]["classes"]) and len(roc) >= 5
    for r in roc.values():  # curves from (0, 0) to (1, 1), never going back; the area under them is the AUC
        fpr, tpr = np.array(r["fpr"]), np.array(r["tpr"])
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
        assert r["auc"] == pytest.approx(np.trapezoid(tpr, fpr), abs=0.02)  # thinned curve: close, not exact
    assert np.median([r["auc"] for r in roc.values()]) > 0.9


def test_forest_temperature_scaling_is_fitted_saved_and_applied(small_scene, tmp_path):
    """model.calibrate: temperature on the forest: a temperature fitted on the validation blocks (kept only where it
    lowers their ECE), saved with the model, and applied again when the model is applied elsewhere (same bytes)."""
    import warnings

    from lcup.io.models import load_model

    kw = {"model.n_estimators": 20, "labels.n_per_class": 300, "model.calibrate": "temperature", "truth": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        s = run_pipeline(load_config(scene_pipeline(small_scene, tmp_path / "a", **kw)), progress=False)
        cal = s.figures["model"]["calibration"]
        assert cal["ece_before"] is not None and (cal["kept"] == (cal["ece_after"] < cal["ece_before"]))
        model, _ = load_model(tmp_path / "a" / "model.skops")
        assert model.lcup_temperature_ == cal["temperature"]
        if cal["kept"]:
            assert s.figures["validation"]["calibration"]["ece"] == pytest.approx(cal["ece_after"], abs=1e-3)
        run_pipeline(load_config(scene_pipeline(small_scene, tmp_path / "b", **{**kw, "model.path": str(tmp_path / "a" / "model.skops")})),
                     progress=False)
    a = xr.open_zarr(tmp_path / "a" / "landcover.zarr", consolidated=False, mask_and_scale=False)
    b = xr.open_zarr(tmp_path / "b" / "landcover.zarr", consolidated=False, mask_and_scale=False)
    np.testing.assert_array_equal(a["probability"].values, b["probability"].values)
