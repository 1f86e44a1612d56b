"""Bad input met only while running: one clear error that names the fix, nothing lost, nothing half-written.

Disk full and read-only outputs use real tmpfs mounts (the tests run as root here and in CI; elsewhere they skip).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from lcup.config import load_config
from lcup.errors import ConfigError, LcupWarning, ReadError, WriteError
from lcup.pipeline import run_pipeline
from tests.conftest import scene_pipeline

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def tmpfs(path: Path, size: str, ro: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _small(small_scene, out, **kw):
    return scene_pipeline(small_scene, out, **{"model.n_estimators": 10, "labels.n_per_class": 200,
                                               "load.bands": ["green", "red", "nir", "swir16"],
                                               "features.indices": ["ndvi", "ndbi"], "features.series": ["ndvi"], "truth": None, **kw})


def test_disk_full_is_a_clear_error_without_empty_files(small_scene, tmp_path):
    with tmpfs(tmp_path / "full", "300k") as out:
        cfg = load_config(_small(small_scene, out / "run"))
        with warnings.catch_warnings(), pytest.raises(WriteError, match=r"cannot write the outputs into .*free some space"):
            warnings.simplefilter("ignore", LcupWarning)
            run_pipeline(cfg, progress=False)
        files = [p for p in (out / "run").rglob("*") if p.is_file()]
        assert files and not [p for p in files if p.stat().st_size == 0], [str(p) for p in files if p.stat().st_size == 0]
        assert not (out / "run" / "landcover_class.tif").exists()  # never a partial COG


def test_read_only_output_is_refused_before_any_work(small_scene, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", ro=True) as out:
        cfg = load_config(_small(small_scene, out / "run"))
        with pytest.raises(ConfigError, match=r"cannot create output.dir .*Read-only file system.*choose a folder"):
            run_pipeline(cfg, progress=False)


def test_cog_corrupt_inside_is_counted_named_and_masked_or_fails_naming_it(small_scene, tmp_path):
    """A COG whose header is fine and whose bytes are all there but whose middle is garbage passes the pre-flight
    probe (it reads headers and checks the last block's bytes are present, decoding nothing). With on_error: skip
    (here on a real distributed cluster: the workers' failures come back as events) each failed chunk read is no
    data, counted per file in summary.json and named in a warning (was: exit 0, no word, 2 % of the map changed);
    with fail, lcup's ReadError names the file (was: only a log line before it did)."""
    from distributed import Client, LocalCluster

    from lcup.errors import SkippedAssetWarning

    scene = tmp_path / "scene"
    shutil.copytree(small_scene["dir"], scene)
    victim = sorted(scene.glob("items/*/B04.tif"))[20]  # relative hrefs: the copied catalog reads the copied files
    data = bytearray(victim.read_bytes())
    mid = len(data) // 2
    data[mid - 2000: mid + 2000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    victim.write_bytes(bytes(data))
    local = dict(small_scene, dir=scene, catalog=scene / "catalog.json")
    with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None, memory_limit="4GiB") as cluster, \
            Client(cluster) as client, pytest.warns(SkippedAssetWarning) as caught:
        warnings.simplefilter("ignore", LcupWarning)
        warnings.simplefilter("always", SkippedAssetWarning)
        s = run_pipeline(load_config(_small(local, tmp_path / "skip", **{"source.on_error": "skip"})), client=client,
                         progress=False)
    assert s.status == "done"
    reads = json.loads((tmp_path / "skip" / "summary.json").read_text())["figures"]["unreadable_reads"]
    assert [Path(r["href"]).resolve() for r in reads] == [victim.resolve()] and reads[0]["reads"] >= 1, reads
    assert reads[0]["band"] == "red"
    assert any(f"{victim.name} (" in str(w.message) and "read as no data" in str(w.message) for w in caught)
    with warnings.catch_warnings(), pytest.raises(ReadError, match=rf"cannot read \S*{victim.parent.name}/B04\.tif .*"
                                                   r"source\.on_error: skip"):
        warnings.simplefilter("ignore", LcupWarning)
        run_pipeline(load_config(_small(local, tmp_path / "fail")), progress=False)
    assert json.loads((tmp_path / "fail" / "summary.json").read_text())["status"] == "failed"


def test_cli_never_prints_a_traceback(small_scene, tmp_path):
    """A failure through the CLI: one line, exit code 1 (an lcup error; 2 is kept for usage errors), no traceback."""
    y = tmp_path / "p.yaml"
    cfg = _small(small_scene, tmp_path / "o", **{"year": 2019})  # no item in 2019
    y.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "lcup.cli", "run", str(y), "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout and "lcup: error:" in r.stderr


def test_band_the_catalog_lacks_is_found_by_plan(small_scene, tmp_path):
    """A provider layout whose asset keys the items do not have: found at search, by plan, before any pixel."""
    from lcup.errors import MissingBandError
    from lcup.pipeline import plan

    cfg = load_config(_small(small_scene, tmp_path / "o", **{"source.provider": "planetary-computer",
                                                           "source.collection": "sentinel-2-c1-l2a"}))
    with pytest.raises(MissingBandError, match=r"band 'green' \(asset 'B03'\) is in none of the .* items.*source.provider"):
        plan(cfg)


def test_legend_with_codes_above_255_is_written_as_uint16(small_scene, tmp_path):
    """CORINE's codes (111-523) as the target legend: computed with internal indices, written in CORINE codes
    as uint16 (Zarr and COG), scored against the truth in those codes."""
    import rasterio
    import xarray as xr

    # codes in the same order as lcup7's, so the internal indices, the sample and the model are the same
    truth_cw = {1: 311, 2: 321, 3: 322, 4: 331, 5: 332, 6: 333, 7: 334}
    cw = {30: 321, 40: 322, 50: 331, 60: 332, 80: 333, 90: 334, 115: 311}
    corine = {"name": "corine-subset", "classes": {c: {"name": f"class {c}", "color": "#3c8c3c"} for c in sorted(truth_cw.values())}}
    cfg = _small(small_scene, tmp_path / "o", **{
        "labels.target_legend": corine, "labels.crosswalk": cw,
        "truth": {"path": str(small_scene["dir"] / "truth_10m.tif"), "legend": "lcup7"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        ref = run_pipeline(load_config(_small(small_scene, tmp_path / "ref", **{
            "truth": {"path": str(small_scene["dir"] / "truth_10m.tif"), "legend": "lcup7"}})), progress=False)
        # the truth is in lcup7: crosswalk it into the same CORINE codes through a custom truth legend
        from lcup.legends import CROSSWALKS

        CROSSWALKS[("lcup7", "corine-subset")] = truth_cw
        try:
            s = run_pipeline(load_config(cfg), progress=False)
        finally:
            del CROSSWALKS[("lcup7", "corine-subset")]
    ds = xr.open_zarr(tmp_path / "o" / "landcover.zarr", consolidated=False, mask_and_scale=False)
    assert ds["class"].dtype == np.uint16 and set(np.unique(ds["class"].values)) <= {0, *truth_cw.values()}
    assert sorted(ds["class_code"].values.tolist()) == sorted(truth_cw.values())
    with rasterio.open(tmp_path / "o" / "landcover_class.tif") as src:
        assert src.dtypes[0] == "uint16"
        np.testing.assert_array_equal(src.read(1), ds["class"].values)
    # the same map as with lcup7 codes, code for code
    ref_cls = xr.open_zarr(tmp_path / "ref" / "landcover.zarr", consolidated=False, mask_and_scale=False)["class"].values
    lut = np.zeros(8, np.uint16)
    for k, v in truth_cw.items():
        lut[k] = v
    np.testing.assert_array_equal(lut[ref_cls], ds["class"].values)
    assert s.figures["truth"]["prediction_10m"]["overall_accuracy"] == ref.figures["truth"]["prediction_10m"]["overall_accuracy"]
    assert set(s.figures["validation"]["per_class"]) <= set(truth_cw.values())


def test_resume_refuses_other_settings_and_reuses_the_model(small_scene, tmp_path):
    """Resuming into a store written with more trees or another crosswalk is refused before any work, naming the
    keys that differ, and the finished run's summary is kept; resuming a finished run has nothing to do (seconds);
    resuming an unfinished one loads the saved model instead of training again and keeps the bytes."""
    import time

    import xarray as xr

    from lcup.errors import OutputExistsError

    out = tmp_path / "o"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        first = run_pipeline(load_config(_small(small_scene, out)), progress=False)
        before = xr.open_zarr(out / "landcover.zarr", consolidated=False, mask_and_scale=False)["class"].values
        finished = (out / "summary.json").read_text()
        for change, key in (({"model.n_estimators": 11}, "model.n_estimators"), ({"labels.crosswalk": {30: 3}}, "labels.crosswalk")):
            t0 = time.perf_counter()
            with pytest.raises(OutputExistsError, match=rf"resuming would mix two maps\. These differ: \['{key}'\]"):
                run_pipeline(load_config(_small(small_scene, out, **{"output.overwrite": False, "output.resume": True,
                                                                      **change})), progress=False)
            assert time.perf_counter() - t0 < 5  # refused before the search, the cluster and the scene filter
            assert (out / "summary.json").read_text() == finished  # nothing lost
        t0 = time.perf_counter()
        done = run_pipeline(load_config(_small(small_scene, out, **{"output.overwrite": False, "output.resume": True})),
                            progress=False)
        assert time.perf_counter() - t0 < 5 and done.figures["resumed"] == "nothing left to do"
        assert done.figures["digest"] == first.figures["digest"]
        unfinished = json.loads(finished) | {"status": "interrupted"}  # as a run stopped after its last tile
        (out / "summary.json").write_text(json.dumps(unfinished))
        again = run_pipeline(load_config(_small(small_scene, out, **{"output.overwrite": False, "output.resume": True})),
                             progress=False)
    assert again.figures["model"] == {"resumed_from": str(out / "model.skops")}
    assert again.figures["scene_filter"] == "reused from the interrupted run"  # and the labels' figures and sample:
    assert json.loads(json.dumps(again.figures["labels"])) == json.loads(finished)["figures"]["labels"]
    assert again.timings["labels"] < 1
    assert again.figures["tiles"]["skipped_already_done"] == 1 and again.figures["digest"] == first.figures["digest"]
    after = xr.open_zarr(out / "landcover.zarr", consolidated=False, mask_and_scale=False)["class"].values
    np.testing.assert_array_equal(before, after)


def test_train_once_apply_to_another_area_and_refuse_a_mismatch(small_scene, tmp_path):
    """A model trained on the west half maps the east half with no labels at all (model.path, CLI --model); a
    cube with other features, or another resolution, is refused naming what differs."""
    from lcup.errors import ModelError

    x0, y0 = small_scene["spec"].origin
    west = _small(small_scene, tmp_path / "west", **{"aoi.bbox": [x0, y0 - 2000, x0 + 1000, y0], "aoi.crs": "EPSG:32633"})
    east = _small(small_scene, tmp_path / "east", **{"aoi.bbox": [x0 + 1000, y0 - 2000, x0 + 2000, y0], "aoi.crs": "EPSG:32633",
                                                      "truth": {"path": str(small_scene["dir"] / "truth_10m.tif"), "legend": "lcup7"}})
    del east["labels"]
    model = tmp_path / "west" / "model.skops"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        run_pipeline(load_config(west), progress=False)
        y = tmp_path / "east.yaml"
        y.write_text(yaml.safe_dump(east))
        r = subprocess.run([sys.executable, "-m", "lcup.cli", "run", str(y), "-q", "--model", str(model)],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        s = json.loads((tmp_path / "east" / "summary.json").read_text())
        assert s["figures"]["model"] == {"applied": str(model)} and "samples" not in s["figures"]
        assert s["figures"]["truth"]["prediction_10m"]["overall_accuracy"] > 0.7
        with pytest.raises(ModelError, match=r"trained on 61 features, the cube has 54; missing from the cube: \['ndbi_amplitude'"):
            run_pipeline(load_config({**east, "model": {"path": str(model)}, "features": {"indices": ["ndvi"], "series": ["ndvi"]},
                                      "output": {"dir": str(tmp_path / "e2"), "overwrite": True}}), progress=False)
        with pytest.raises(ModelError, match=r"trained at 10.0 m, this grid is 20.0 m"):
            run_pipeline(load_config({**east, "model": {"path": str(model)}, "aoi": {**east["aoi"], "resolution": 20},
                                      "output": {"dir": str(tmp_path / "e3"), "overwrite": True}}), progress=False)


def test_source_without_scl(small_scene, tmp_path):
    """Composites and pre-masked products have no SCL: the default says how to proceed; clean.mask: none runs, and
    clean.mask: probability masks clouds with a cloud-probability asset instead."""
    from lcup.errors import MissingBandError

    scene = tmp_path / "scene"
    shutil.copytree(small_scene["dir"], scene)
    for f in scene.rglob("*.json"):
        d = json.loads(f.read_text())
        if d.get("type") == "Feature":
            d["assets"].pop("scl", None)
            f.write_text(json.dumps(d))
    local = dict(small_scene, dir=scene, catalog=scene / "catalog.json")
    with pytest.raises(MissingBandError, match=r"band 'scl' .* is in none of the .* set clean.mask: none"):
        run_pipeline(load_config(_small(local, tmp_path / "scl")), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        s = run_pipeline(load_config(_small(local, tmp_path / "none", **{
            "clean.mask": "none", "truth": {"path": str(scene / "truth_10m.tif"), "legend": "lcup7"}})), progress=False)
    assert s.status == "done" and s.figures["dates_kept"] == s.figures["dates_found"]  # every date has data
    assert s.figures["truth"]["prediction_10m"]["overall_accuracy"] > 0.6  # clouds left in: worse, but a map

    # a cloud-probability layer instead (clean.mask: probability): a 20 m COG per item beside its bands, in percent
    import numpy as np
    import rasterio

    for f in scene.rglob("*.json"):
        d = json.loads(f.read_text())
        if d.get("type") != "Feature":
            continue
        src = (f.parent / d["assets"]["red"]["href"]).resolve().parent / "SCL.tif"
        with rasterio.open(src) as r:
            scl, profile = r.read(1), r.profile
        prob = np.select([scl == 0, np.isin(scl, (8, 9, 10)), scl == 3], [255, 90, 50], 5).astype(np.uint8)
        with rasterio.open(src.parent / "CLD.tif", "w", **{**profile, "nodata": 255}) as w:
            w.write(prob, 1)
        d["assets"]["cloud"] = {**d["assets"]["nir08"], "href": d["assets"]["red"]["href"].replace("B04.tif", "CLD.tif"),
                                "raster:bands": [{"nodata": 255, "data_type": "uint8", "unit": "%"}], "roles": ["data", "cloud"]}
        f.write_text(json.dumps(d))
    # an asset without the projection fields its siblings have: one clear error, not odc-stac's ValueError
    from lcup.errors import ProviderError

    bare = tmp_path / "bare-scene"
    shutil.copytree(scene, bare)
    for f in bare.rglob("*.json"):
        d = json.loads(f.read_text())
        if d.get("type") == "Feature":
            d["assets"]["cloud"] = {k: v for k, v in d["assets"]["cloud"].items() if not k.startswith("proj:")}
            f.write_text(json.dumps(d))
    with pytest.raises(ProviderError, match=r"asset\(s\) 'cloud' of S2X_DEMO_\d+.* lack proj:shape/proj:transform"):
        run_pipeline(load_config(_small(dict(local, dir=bare, catalog=bare / "catalog.json"), tmp_path / "bare", **{
            "clean.mask": "probability", "clean.probability_asset": "cloud"})), progress=False)
    with pytest.raises(MissingBandError, match=r"cloud-probability asset 'clouds' \(clean.probability_asset\) is in none "
                                              r"of the .* items; assets of the first item: \[.*'cloud'"):
        run_pipeline(load_config(_small(local, tmp_path / "bad", **{"clean.mask": "probability",
                                                                     "clean.probability_asset": "clouds"})), progress=False)
    with pytest.raises(ConfigError, match="needs clean.probability_asset"):
        load_config(_small(local, tmp_path / "bad", **{"clean.mask": "probability"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        p = run_pipeline(load_config(_small(local, tmp_path / "prob", **{
            "clean.mask": "probability", "clean.probability_asset": "cloud",
            "truth": {"path": str(scene / "truth_10m.tif"), "legend": "lcup7"}})), progress=False)
    # cloudy dates drop out and the masked map is better than the unmasked one
    assert p.status == "done" and p.figures["dates_kept"] < s.figures["dates_kept"]
    oa = p.figures["truth"]["prediction_10m"]["overall_accuracy"]
    assert oa > s.figures["truth"]["prediction_10m"]["overall_accuracy"] + 0.01 and oa > 0.9, oa  # measured 0.933 vs 0.914


def test_output_grid_is_the_datas_own(tmp_path):
    """A catalog whose pixel grid is 5 m off the multiples of 10 m (as EPSG:3035 products are): the output grid
    follows the items' proj:transform, with no half-pixel shift and no no-data row or column; align: resolution
    keeps the old behaviour; an explicit origin wins."""
    import xarray as xr

    from lcup.synthetic import SceneSpec, write_demo

    spec = SceneSpec(size=(96, 96), revisit_days=20, seed=3, parcel_spacing_px=16, origin=(500005.0, 5100005.0))
    cat = write_demo(tmp_path / "scene", spec, progress=False)
    scene = {"dir": tmp_path / "scene", "catalog": cat, "spec": spec}
    x0, y0 = spec.origin
    base = {"aoi.bbox": [x0, y0 - 960, x0 + 960, y0], "aoi.crs": "EPSG:32633", "load.chunk_px": 64, "labels.n_per_class": 200,
            "labels.block_m": 300, "labels.erosion_m": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        for align, want_x0, want_shape in (("native", x0, 96), ("resolution", x0 - 5, 97)):
            out = tmp_path / align
            run_pipeline(load_config(_small(scene, out, **base, **{"aoi.align": align})), progress=False)
            ds = xr.open_zarr(out / "landcover.zarr", mask_and_scale=False)
            assert ds.attrs["transform"][2] == want_x0 and ds["class"].shape == (want_shape, want_shape), align
        assert (xr.open_zarr(tmp_path / "native" / "landcover.zarr")["class"].values > 0).all()
        from lcup.pipeline import find_items

        gb, _ = find_items(load_config(_small(scene, tmp_path / "o", **base, **{"aoi.origin": [0.0, 0.0]})))
        assert gb.transform.c % 10 == 0


def test_custom_index_in_a_run(small_scene, tmp_path):
    """A custom index formula goes through the whole pipeline, its series a feature like any index's."""
    import xarray as xr

    cfg = load_config(_small(small_scene, tmp_path / "o", **{"features.custom_indices": {"sr": "nir / (red + 0.01)"},
                                                             "features.series": ["sr"]}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        s = run_pipeline(cfg, progress=False)
    names = json.loads((tmp_path / "o" / "model.skops.json").read_text())["feature_names"]
    assert {"sr_mean", "sr_p90", "sr_t00"} <= set(names) and s.figures["n_features"] == len(names)
    assert (xr.open_zarr(tmp_path / "o" / "landcover.zarr")["class"].values > 0).mean() > 0.95


@pytest.mark.parametrize("argv, message", [
    (["demo", "{tmp}/d", "--size", "0"], "argument --size: 0 is too small: at least 64 pixels"),
    (["demo", "{tmp}/d", "--years", "0"], "argument --years: 0 is too small: at least 1 year"),
    (["demo", "{tmp}/d", "--size", "64", "--set", "model.seed=1"], "--set changes a pipeline's keys, for lcup run, plan and validate"),
])
def test_cli_usage_errors_are_one_line_and_exit_2(argv, message, tmp_path):
    """Inputs the CLI cannot use: a usage error naming the argument (exit 2), never exit 70 from inside a library,
    and nothing written."""
    r = subprocess.run([sys.executable, "-m", "lcup.cli", *[a.format(tmp=tmp_path) for a in argv]], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "d").exists()


def test_truth_url_that_answers_404_fails_at_the_search(small_scene, tmp_path):
    """A truth map over HTTP that is not there: the run stops after the search with lcup's one error naming the truth
    map (it was found at scoring, after the Zarr, the COGs and the model were written, and called a label map)."""
    from lcup.errors import ReadError
    from tests.integration.servers import RangeServer

    with RangeServer(tmp_path) as http, warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        cfg = load_config(_small(small_scene, tmp_path / "o", **{"truth": {"path": f"{http.url}/truth.tif", "legend": "lcup7"}}))
        with pytest.raises(ReadError, match=r"cannot open truth map \(truth.path\) http://127.0.0.1:\d+/truth.tif"):
            run_pipeline(cfg, progress=False)
    assert not (tmp_path / "o" / "landcover.zarr").exists()
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["timings"].keys() <= {"search"}


def test_change_refuses_maps_in_another_legend(tmp_path):
    """lcup change between an lcup7 map and a CGLS-LC100 map (it reported "0.0 ha of 0.0 ha changed" and sent every
    pixel to no data), or a map whose codes are not the legend given: one error naming the map and the legends."""
    from affine import Affine

    from lcup.io.write import write_cog_array
    from lcup.legends import get_legend

    rng = np.random.default_rng(0)
    t = Affine(10, 0, 500000, 0, -10, 5100000)
    a = write_cog_array(tmp_path / "a.tif", rng.integers(1, 8, (64, 64)).astype(np.uint8), t, 32633, legend=get_legend("lcup7"))
    cgls = get_legend("cgls-lc100")
    b = write_cog_array(tmp_path / "b.tif", rng.choice(cgls.codes, (64, 64)).astype(np.uint8), t, 32633, legend=cgls)
    bare = write_cog_array(tmp_path / "bare.tif", rng.choice([10, 20, 30], (64, 64)).astype(np.uint8), t, 32633)
    for args, message in (([a, b], "b.tif is a map in the legend 'cgls-lc100', not 'lcup7'"),
                          ([a, bare], "bare.tif holds codes [10, 20, 30] that the legend 'lcup7' does not have")):
        r = subprocess.run([sys.executable, "-m", "lcup.cli", "change", *map(str, args), "-o", str(tmp_path / "c")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("fault, message", [
    ("empty", r"S2X_DEMO_\w+\.json is empty \(0 bytes\): a failed download\? fetch it again or remove it"),
    ("not json", r"S2X_DEMO_\w+\.json is not JSON"),
    ("datetime null", r"item 'S2X_DEMO_\w+' \(.*\) has datetime null and no start_datetime/end_datetime"),
])
def test_catalog_item_files_that_lcup_cannot_place_are_named(fault, message, small_scene, tmp_path):
    """An item file of a static catalog that is empty, not JSON, or has datetime null: lcup's one error at the search,
    naming the file and the fix (was 'unexpected error: STACError ... does not resolve to a STAC object', exit 70)."""
    import shutil

    from lcup.errors import ProviderError
    from lcup.pipeline import find_items

    scene = shutil.copytree(small_scene["dir"], tmp_path / "scene")
    item = sorted(scene.rglob("S2X_DEMO_*.json"))[0]
    if fault == "empty":
        item.write_text("")
    elif fault == "not json":
        item.write_text("{\"type\": \"Feature\", ")
    else:
        d = json.loads(item.read_text())
        d["properties"]["datetime"] = None
        item.write_text(json.dumps(d))
    cfg = load_config(_small({**small_scene, "dir": scene, "catalog": scene / small_scene["catalog"].name}, tmp_path / "o"))
    with pytest.raises(ProviderError, match=message):
        find_items(cfg)


def test_item_without_its_cloud_mask_is_named_and_left_out(small_scene, tmp_path):
    """An item whose SCL asset is missing: left out at the search with a warning naming it (it read as all cloud and
    was dropped as 'clear fraction below 0.05' without a word on the asset)."""
    import shutil

    from lcup.errors import SkippedAssetWarning
    from lcup.pipeline import find_items

    scene = shutil.copytree(small_scene["dir"], tmp_path / "scene")
    item = sorted(scene.rglob("S2X_DEMO_*.json"))[3]
    d = json.loads(item.read_text())
    del d["assets"]["scl"]
    item.write_text(json.dumps(d))
    cfg = load_config(_small({**small_scene, "dir": scene, "catalog": scene / small_scene["catalog"].name}, tmp_path / "o"))
    with pytest.warns(SkippedAssetWarning, match=rf"left out 1 item\(s\) without the cloud-mask asset 'scl': \['{d['id']}'\]"):
        _, items = find_items(cfg)
    assert d["id"] not in {it.id for it in items} and len(items) > 10


@pytest.mark.parametrize("w, h", [(1, 1), (5, 3)])
def test_an_area_smaller_than_the_halos_is_refused_before_the_search(small_scene, tmp_path, w, h):
    """An area of 1 px or 5 × 3 px (was exit 70: 'The overlapping depth 16 is larger than your array 3'): lcup's
    one error naming the size it needs, before the catalog is searched."""
    from lcup.errors import GridError
    from lcup.pipeline import find_items

    x0, y0 = small_scene["spec"].origin
    cfg = load_config(_small(small_scene, tmp_path / "o", **{"aoi.bbox": [x0, y0 - 10 * h, x0 + 10 * w, y0]}))
    with pytest.raises(GridError, match=rf"the area is {h} × {w} px at 10.0 m; lcup needs at least \d+ px a side"):
        find_items(cfg)


def _catalog_copy(small_scene, tmp_path):
    scene = shutil.copytree(small_scene["dir"], tmp_path / "scene")
    return scene, {**small_scene, "dir": scene, "catalog": scene / small_scene["catalog"].name}


def _edit(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("fault, message", [
    ("cycle", r"the catalog's child links form a cycle: \S*catalog\.json → \S*collection\.json → \S*catalog\.json; remove "
              r"the link that points back up"),
    ("duplicate id", r"lists two different items with the id 'S2X_DEMO_\w+' \(\d{4}-\d\d-\d\d \d\d:\d\d and \d{4}-\d\d-\d\d "
                     r"\d\d:\d\d.*\): an id must name one acquisition; remove or rename one of them"),
    ("item as catalog", r"S2X_DEMO_\w+\.json is a STAC Item, not a catalog: give source\.catalog the catalog\.json or "
                        r"collection\.json that links it"),
    ("local file elsewhere", None),
    ("internal url", r"the catalog's assets are on host\(s\) it is not allowed to read: 169\.254\.169\.254 \(e\.g\. "
                     r"S2X_DEMO_\w+/red: http://169\.254\.169\.254/latest/B04\.tif\); allowed: \['file', 'sentinel-cogs.*"
                     r"add them to source\.allowed_hosts"),
])
def test_catalogs_that_lie_get_one_clear_error_at_the_search(fault, message, small_scene, tmp_path):
    """A child link back to the root (pystac recursed for ever), one id for two acquisitions (accepted without a
    word), an Item given as the catalog (its relative links resolved outside the data folder), an asset on an
    internal URL (GDAL read whatever the catalog named): lcup's one error at the search, naming the fix. A local
    catalog may name local files anywhere (the user's own disk); a remote one may not (see the STAC API test)."""
    from lcup.errors import ProviderError
    from lcup.pipeline import find_items

    scene, local = _catalog_copy(small_scene, tmp_path)
    items = sorted(scene.rglob("S2X_DEMO_*.json"))
    if fault == "cycle":
        _edit(next(scene.rglob("collection.json")),
              lambda d: d["links"].append({"rel": "child", "href": "../catalog.json", "type": "application/json"}))
    elif fault == "duplicate id":
        twin = json.loads(items[4].read_text())
        _edit(items[5], lambda d: d.update(id=twin["id"]))
    elif fault == "item as catalog":
        local["catalog"] = items[0]
    else:
        moved = tmp_path / "elsewhere" / "B04.tif"
        moved.parent.mkdir()
        shutil.copy(scene / "items" / items[3].stem / "B04.tif", moved)
        href = str(moved) if fault == "local file elsewhere" else "http://169.254.169.254/latest/B04.tif"
        _edit(items[3], lambda d: d["assets"]["red"].update(href=href))
    cfg = load_config(_small(local, tmp_path / "o"))
    if message is None:
        _, found = find_items(cfg)
        assert len(found) == len(items)
        return
    with pytest.raises(ProviderError, match=message):
        find_items(cfg)
    if fault == "internal url":  # allowed once the user says so
        cfg = load_config(_small(local, tmp_path / "o", **{"source.allowed_hosts": ["file", "169.254.*"]}))
        assert len(find_items(cfg)[1]) == len(items)


def test_nan_and_inf_in_a_band_are_named_with_their_share(small_scene, tmp_path):
    """Floating-point red band files with NaN/inf over a quarter of the scene (was: a third of the map no data, a
    hint to 'widen the period' and two raw RuntimeWarnings): the band and its share are named, in a warning and in
    summary.json, and numpy never warns about the cast."""
    import rasterio

    scene, local = _catalog_copy(small_scene, tmp_path)
    for tif in sorted(scene.glob("items/*/B04.tif")):
        with rasterio.open(tif) as src:
            a, profile = src.read(1).astype("float32"), src.profile
        a[: a.shape[0] // 2, : a.shape[1] // 2] = np.nan
        a[0, -1] = np.inf
        profile.update(dtype="float32", driver="GTiff", tiled=True, blockxsize=256, blockysize=256)
        tif.unlink()
        with rasterio.open(tif, "w", **profile) as dst:
            dst.write(a, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = run_pipeline(load_config(_small(local, tmp_path / "o")), progress=False)
    texts = [str(w.message) for w in caught]
    assert not [t for t in texts if "invalid value encountered" in t], texts
    f = s.figures["non_finite_pixels"]["red"]
    assert 0.24 < f["share"] < 0.27, f  # the quarter, and one inf pixel per file
    assert any(re.search(r"band 'red': 2\d\.\d % of the pixels read from its floating-point files are NaN or inf", t)
               for t in texts), texts


@pytest.mark.parametrize("fault, message", [
    ("all no data", r"the label map \S+ has no data over the area: every pixel is its no-data value or a class the "
                    r"crosswalk maps to 0"),
    ("200 km away", r"label map \(labels\.path\) \S+ \(bounds .*\) does not overlap the area .*: they are 19\d km apart; "
                    r"check aoi\.bbox \(order \[west, south, east, north\], in aoi\.crs\)"),
    ("another legend", r"every code of the map is in the legend\(s\) \['cgls-lc100'\]: this looks like a map in another "
                       r"legend; set its legend \(e\.g\. labels\.legend: cgls-lc100\)"),
])
def test_label_maps_that_point_at_the_wrong_fix_are_told_the_right_one(fault, message, small_scene, tmp_path):
    """An all-no-data label map (was told to 'enlarge the area, lower labels.erosion_m'), one 200 km away (bounds but
    no fix, and lcup validate passed it: now refused by validate and before the search's heavy work), a CGLS-LC100
    map declared esa-worldcover (was told to 'add them under labels.crosswalk')."""
    import rasterio
    from affine import Affine

    from lcup.errors import LabelError

    src_path = small_scene["dir"] / "coarse_cgls_100m.tif"
    bad = tmp_path / "labels.tif"
    with rasterio.open(src_path) as src:
        a, profile = src.read(1), src.profile
    if fault == "all no data":
        a[:] = profile.get("nodata") or 0
    elif fault == "200 km away":
        t = profile["transform"]
        profile["transform"] = Affine(t.a, t.b, t.c + 200_000, t.d, t.e, t.f)
    profile.update(driver="GTiff")
    with rasterio.open(bad, "w", **profile) as dst:
        dst.write(a, 1)
    over = {"labels.path": str(bad), **({"labels.legend": "esa-worldcover"} if fault == "another legend" else {})}
    y = tmp_path / "p.yaml"
    y.write_text(yaml.safe_dump(_small(small_scene, tmp_path / "o", **over)))
    r = subprocess.run([sys.executable, "-m", "lcup.cli", "validate", str(y)], capture_output=True, text=True, timeout=120)
    if fault == "200 km away":
        assert r.returncode == 1 and re.search(message, r.stderr) and "Traceback" not in r.stderr, r.stderr
    else:
        assert r.returncode == 0, r.stderr
    with warnings.catch_warnings(), pytest.raises(LabelError, match=message):
        warnings.simplefilter("ignore", LcupWarning)
        run_pipeline(load_config(_small(small_scene, tmp_path / "o", **over)), progress=False)


def test_outputs_lose_nothing_when_the_folder_moves(small_scene, tmp_path):
    """A run's folder moved elsewhere (or published): item.json's assets and derived_from links, summary.json's
    outputs and the Zarr parameters still resolve (were absolute paths of the machine that ran); the class COG alone
    carries its colour table, its side-cars are item assets, the confidence COG has a band description and
    raster:bands; a Zarr v2 store carries GDAL's own _CRS, so GDAL reads its CRS without the CF attributes."""
    import pystac
    import rasterio
    import zarr

    project = tmp_path / "project"  # the data and the run side by side, then the whole moved
    _, local = _catalog_copy(small_scene, project)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        run_pipeline(load_config(_small(local, project / "run", **{"output.zarr_format": 2})), progress=False)
    moved = Path(shutil.move(project, tmp_path / "published")) / "run"
    item = pystac.Item.from_file(str(moved / "item.json"))
    assert {"cog", "cog_aux", "cog_qml", "confidence", "zarr", "summary", "model"} <= set(item.assets)
    for a in item.assets.values():
        assert Path(a.get_absolute_href()).exists(), a.href
    derived = [link.get_absolute_href() for link in item.get_links("derived_from")]
    assert derived and all(not link.href.startswith("/") for link in item.get_links("derived_from"))
    assert all(Path(h).exists() for h in derived), derived[:2]  # the source catalog beside it, as it was
    conf = item.assets["confidence"].extra_fields["raster:bands"][0]
    assert conf["nodata"] == 255 and conf["unit"] == "%" and conf["data_type"] == "uint8"
    summary = json.loads((moved / "summary.json").read_text())
    assert all((moved / v).exists() for v in summary["outputs"].values()), summary["outputs"]
    assert summary["parameters"]["output"]["dir"] == "."
    assert zarr.open_group(str(moved / "landcover.zarr"), mode="r").attrs["parameters"]["output"]["dir"] == "."
    with rasterio.open(f'ZARR:"{moved / "landcover.zarr"}":/class') as z:
        assert z.crs is not None and z.crs.to_epsg() == 32633
    alone = shutil.copy(moved / "landcover_class.tif", tmp_path / "alone.tif")  # without its .aux.xml
    with rasterio.open(alone) as src:
        cmap = src.colormap(1)
        assert cmap[1][:3] == (26, 127, 46) and src.tags()["CLASS_1"] == "forest"
    with rasterio.open(moved / "landcover_confidence.tif") as src:
        assert src.descriptions[0].startswith("confidence (%)") and src.nodata == 255


def test_the_grid_is_in_the_zone_of_the_imagery_not_of_the_longitude(tmp_path):
    """Imagery in UTM 32 east of 12°E (as the Sentinel-2 grid has western Norway in 32V): the AOI given in lon/lat
    is mapped on the items' own CRS (the formula from the longitude gave zone 33, warping every scene)."""
    from odc.geo.geom import box

    from lcup.pipeline import find_items
    from lcup.synthetic import SceneSpec, write_demo

    spec = SceneSpec(size=(64, 64), revisit_days=30, seed=3, crs_epsg=32632, origin=(880_000.0, 5_100_000.0))
    catalog = write_demo(tmp_path / "scene", spec, progress=False)
    lonlat = box(880_000, 5_100_000 - 640, 880_640, 5_100_000, "EPSG:32632").to_crs("EPSG:4326").boundingbox
    assert int((lonlat.left + 180) // 6) + 1 == 33  # what the longitude says
    cfg = load_config(scene_pipeline({"dir": tmp_path / "scene", "catalog": catalog, "spec": spec}, tmp_path / "o",
                                     **{"aoi.bbox": list(lonlat), "aoi.crs": "EPSG:4326", "truth": None}))
    geobox, items = find_items(cfg)
    assert str(geobox.crs) == "EPSG:32632" and items
    assert abs(geobox.transform.c % 10) < 1e-6 and abs(geobox.transform.f % 10) < 1e-6  # on the items' pixel grid


def test_items_crs_prefers_the_items_over_the_point():
    import pystac

    from lcup.io.stac import items_crs

    def item(i, code, bbox):
        return pystac.Item(f"i{i}", None, bbox, __import__("datetime").datetime(2024, 1, 1), {"proj:code": code})

    items = [item(0, "EPSG:32631", [0, 59, 3, 60]), item(1, "EPSG:32632", [4, 59.5, 7, 61]), item(2, "EPSG:32632", [4, 60, 7, 62])]
    assert items_crs(items, (5.5, 60.5)) == "EPSG:32632"  # western Norway: zone 32 (the longitude says 31)
    assert items_crs(items, (50, 0)) == "EPSG:32632"  # none covers it: the most common
    assert items_crs([item(0, None, [0, 0, 1, 1])], (0.5, 0.5)) is None
