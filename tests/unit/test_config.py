"""Pipeline files are rejected before any work, naming the key and the valid ones."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml

from lcup.config import load_config
from lcup.errors import ConfigError

_DATA = Path(tempfile.mkdtemp(prefix="lcup-config-"))
(_DATA / "catalog.json").write_text('{"type": "Catalog", "id": "x", "description": "x", "stac_version": "1.0.0", "links": []}')
(_DATA / "cgls.tif").write_bytes(b"")  # only its existence is checked here
BASE = {
    "source": {"catalog": str(_DATA / "catalog.json")},
    "aoi": {"bbox": [14.5, 45.8, 14.6, 45.9]},
    "year": 2024,
    "labels": {"path": str(_DATA / "cgls.tif"), "legend": "cgls-lc100"},
    "output": {"dir": "/tmp/out"},
}


def _with(**kv):
    import copy

    from lcup.config import set_dotted

    d = copy.deepcopy(BASE)
    for dotted, v in kv.items():
        set_dotted(d, dotted, v)
    return d


def test_valid_minimal():
    cfg = load_config(BASE)
    assert cfg.period[0].isoformat() == "2024-01-01"
    assert cfg.clean.invalid_scl == [0, 1, 3, 8, 9, 10]


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        load_config(_with(**{"clean.dilation": 20}))
    msg = str(e.value)
    assert "clean.dilation" in msg and "dilation_m" in msg and "step_days" in msg


def test_unknown_top_level_section():
    with pytest.raises(ConfigError, match="unknown key 'lables'.*labels"):
        load_config(_with(lables={}))


def test_wrong_type_and_missing():
    with pytest.raises(ConfigError, match="clean.step_days"):
        load_config(_with(**{"clean.step_days": "ten"}))
    d = _with()
    del d["labels"]
    with pytest.raises(ConfigError, match="missing required key 'labels'"):
        load_config(d)


@pytest.mark.parametrize(
    "bbox, match",
    [([14.6, 45.8, 14.5, 45.9], "west < east"), ([500000, 5000000, 510000, 5010000], r"outside \[-180, 180\]")],
)
def test_bad_bbox(bbox, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_with(**{"aoi.bbox": bbox}))


def test_dates_order_and_provider_and_bands():
    with pytest.raises(ConfigError, match="is after end"):
        load_config(_with(year=None, start="2024-05-01", end="2024-01-01"))
    with pytest.raises(ConfigError, match="unknown provider 'sentinelhub'"):
        load_config(_with(**{"source.provider": "sentinelhub"}))
    with pytest.raises(ConfigError, match=r"unknown bands \['B04'\]"):
        load_config(_with(**{"load.bands": ["B04"]}))


def test_relative_paths_resolve_against_the_file(tmp_path):
    d = _with(**{"labels.path": "maps/cgls.tif", "output.dir": "out", "source.catalog": "cat/catalog.json"})
    p = tmp_path / "sub" / "p.yaml"
    for f in ("maps/cgls.tif", "cat/catalog.json"):
        (p.parent / f).parent.mkdir(parents=True, exist_ok=True)
        (p.parent / f).write_text("{}")
    p.write_text(yaml.safe_dump(d))
    cfg = load_config(p)
    assert cfg.labels.path == str(tmp_path / "sub" / "maps" / "cgls.tif")
    assert cfg.source.catalog == str(tmp_path / "sub" / "cat" / "catalog.json")


def test_shipped_pipelines_are_valid(tmp_path):
    """The shipped pipelines, with the files they name (made by ``lcup demo``) stubbed beside them."""
    files = sorted((Path(__file__).parents[2] / "pipelines").glob("*.yaml"))
    assert files
    base = tmp_path / "pipelines"
    base.mkdir()
    for p in files:
        raw = yaml.safe_load(p.read_text())
        for sec, key in (("source", "catalog"), ("labels", "path"), ("truth", "path")):
            rel = (raw.get(sec) or {}).get(key)
            if rel and "://" not in rel:
                f = (base / rel).resolve()
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text("{}" if f.suffix == ".json" else "")
        rel = (raw.get("aoi") or {}).get("geometry")
        if rel:  # a polygon file (lcup demo --two-zones writes area.geojson): a small real one
            f = (base / rel).resolve()
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text('{"type": "Polygon", "coordinates": [[[11.9, 46.4], [12.1, 46.4], [12.1, 46.5], [11.9, 46.4]]]}')
        load_config(p, base_dir=base)


#: Bad inputs found before any pixel is read: (dotted overrides, what the message must say). Each must end in one
#: ConfigError (an LcupError) naming the key and the fix, never in a traceback from inside a library.
BAD_INPUTS = [
    ({"output.tile_px": 128}, r"output.tile_px 128 is not a multiple of load.chunk_px 512 \(a tile is whole chunks\): use 512, "
                              r"or a load.chunk_px that divides 128"),
    ({"output.tile_px": 1000}, r"output.tile_px 1000 is not a multiple of load.chunk_px 512.*use 512 or 1024"),
    ({"aoi.crs": "EPSG:99999"}, r"aoi.crs 'EPSG:99999' is not a CRS.*EPSG:4326"),
    ({"aoi.grid_crs": "utm please"}, r"aoi.grid_crs 'utm please' is not a CRS"),
    ({"source.catalog": "/nowhere/catalog.json"}, r"source.catalog /nowhere/catalog.json does not exist"),
    ({"source.catalog": str(_DATA / "cgls.tif") + ".json"}, r"does not exist"),
    ({"labels.path": "/nowhere/cgls.tif"}, r"labels.path /nowhere/cgls.tif does not exist; fix the path"),
    ({"truth": {"path": "/nowhere/truth.tif"}}, r"truth.path /nowhere/truth.tif does not exist"),
    ({"labels.legend": "cgls-lc1000"}, r"unknown legend 'cgls-lc1000'; built-in legends are"),
    ({"labels.crosswalk": {111: 42}}, r"maps to code\(s\) \[42\].*does not have"),
    ({"load.bands": ["red", "green", "blue"]}, r"'ndvi' needs band\(s\) \['nir'\]; add them to load.bands"),
    ({"features.series": ["ndvi", "bsi"]}, r"features.series \['bsi'\] are neither loaded bands nor computed indices"),
    ({"labels.erosion_m": 5000}, r"erosion_m 5000.*nothing would be left"),
    ({"model.params": {"n_estimator": 10}}, r"unknown random_forest parameter.*'n_estimator'.*did you mean \['n_estimators'\]"),
    ({"model.params": {"criterion": "purity"}}, r"model.params:.*criterion"),
    ({"cluster.memory_limit": "lots"}, r"memory_limit 'lots' is not a size"),
    ({"cluster.kind": "address", "cluster.address": "my scheduler"}, r"is not a scheduler address; use e.g. tcp://"),
    ({"cluster.kind": "gateway"}, r"gateway needs cluster.address"),
    ({"name": "../../etc/x"}, r"name '../../etc/x' must be"),
    ({"aoi.grid_crs": "EPSG:4326"}, r"grid_crs EPSG:4326 is geographic \(degrees\).*projected CRS"),
    ({"features.neighbourhood_m": [30, -50]}, r"neighbourhood_m.*must be positive metres, e.g. \[30, 50\]"),
    ({"features.neighbourhood_m": [20000]}, r"need a halo of 1000 px around every chunk.*few tens of metres"),
    ({"features.neighbourhood_stats": ["median"]}, r"neighbourhood_stats"),
    ({"model.segments": "watershed"}, r"model.segments.*'slic'"),
    ({"model.refine_threshold": 0.3}, r"model.refine_threshold"),
    ({"model.max_features": "sqrtt"}, r"model.max_features 'sqrtt' is not sqrt, log2"),  # was found at training only
    ({"model.max_features": 1.5}, r"model.max_features 1.5 is a share of the features"),
    ({"model.kind": "tempcnn", "features.series": []}, r"model.kind tempcnn reads the smoothed series"),
    ({"model.kind": "fcn", "model.nn_dilations": [8, 16, 32], "load.chunk_px": 64}, r"model.nn_dilations .* at least half a chunk"),
]


@pytest.mark.parametrize("overrides, message", BAD_INPUTS, ids=[str(k) for k, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_with(**overrides))


def test_bad_catalog_json_and_impossible_date(tmp_path):
    bad = tmp_path / "catalog.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        load_config(_with(**{"source.catalog": str(bad)}))
    y = tmp_path / "p.yaml"
    y.write_text(yaml.safe_dump({k: v for k, v in BASE.items() if k != "year"}) + "start: 2023-02-30\nend: 2023-10-01\n")
    with pytest.raises(ConfigError, match="impossible date.*2023-02-28"):
        load_config(y)


def test_custom_crosswalk_extends_the_built_in_one():
    from lcup.legends import get_crosswalk

    built_in = get_crosswalk("cgls-lc100", "lcup7")
    cw = get_crosswalk("cgls-lc100", "lcup7", {50: 3})
    assert cw[50] == 3 and {k: v for k, v in cw.items() if k != 50} == {k: v for k, v in built_in.items() if k != 50}


def test_bad_inputs_through_the_cli_never_show_a_traceback(tmp_path):
    """The same cases through ``lcup validate``: exit code 2, one line naming the fix, no traceback."""
    import subprocess
    import sys

    from lcup.config import set_dotted

    for overrides, message in BAD_INPUTS[:6] + BAD_INPUTS[-3:]:
        import copy
        import re

        d = copy.deepcopy(BASE)
        for k, v in overrides.items():
            set_dotted(d, k, v)
        y = tmp_path / "p.yaml"
        y.write_text(yaml.safe_dump(d))
        r = subprocess.run([sys.executable, "-m", "lcup.cli", "validate", str(y)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, (overrides, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and re.search(message, r.stderr), (overrides, r.stderr)


def test_b8a_stands_in_for_b08():
    """A catalog with B8A but no B08: NIR indices are computed from nir08."""
    import numpy as np
    import xarray as xr

    from lcup.ops.indices import compute_indices

    cfg = load_config(_with(**{"load.bands": ["blue", "green", "red", "nir08", "swir16", "swir22"],
                               "features.indices": ["ndvi", "ndbi", "nbr"], "features.series": ["ndvi"]}))
    assert "nir" not in cfg.load.bands
    b = {k: xr.DataArray(np.array([v], np.float32)) for k, v in dict(red=0.1, nir08=0.5, swir16=0.2).items()}
    assert np.isclose(compute_indices(b, ["ndvi"])["ndvi"].item(), 0.4 / 0.6)


def test_custom_legends_everywhere():
    """A two-class forest / non-forest map needs no trick: its own legend as a mapping, for labels and truth."""
    from lcup.legends import get_crosswalk, get_legend

    fnf = {"name": "forest-nonforest", "classes": {1: {"name": "forest", "color": "#1a7f2e"},
                                                   2: {"name": "non-forest", "color": "#f0c341"}}}
    cfg = load_config(_with(**{"labels.legend": fnf, "labels.target_legend": fnf}))
    assert get_crosswalk(cfg.labels.legend, get_legend(cfg.labels.target_legend)) == {1: 1, 2: 2}
    with pytest.raises(ConfigError, match=r"no built-in crosswalk from 'forest-nonforest' to 'lcup7'.*labels.crosswalk"):
        load_config(_with(**{"labels.legend": fnf}))
    cfg = load_config(_with(**{"labels.legend": fnf, "labels.crosswalk": {1: 1, 2: 2}}))  # into lcup7's forest / grassland
    assert cfg.labels.crosswalk == {1: 1, 2: 2}


def test_cli_habits(tmp_path):
    """--version; -v/-q/--set after the subcommand; distinct exit codes (1 lcup error, 2 usage)."""
    import subprocess
    import sys

    import numpy as np
    import rasterio
    from rasterio.transform import from_bounds

    cgls = tmp_path / "cgls.tif"  # lcup validate opens the label map and checks it meets the area: a real one
    with rasterio.open(cgls, "w", driver="GTiff", width=40, height=40, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=from_bounds(14.4, 45.7, 14.7, 46.0, 40, 40)) as dst:
        dst.write(np.full((1, 40, 40), 111, np.uint8))
    y = tmp_path / "p.yaml"
    y.write_text(yaml.safe_dump({**BASE, "labels": {**BASE["labels"], "path": str(cgls)}}))
    run = lambda *a: subprocess.run([sys.executable, "-m", "lcup.cli", *a], capture_output=True, text=True, timeout=60)  # noqa: E731
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("lcup ")
    r = run("validate", str(y), "-v", "--set", "model.n_estimators=7", "--set", "labels.n_per_class=300")
    assert r.returncode == 0, r.stderr
    r = run("validate", str(y), "--set", "model.n_estimators=0")
    assert r.returncode == 1 and "model.n_estimators" in r.stderr and "Traceback" not in r.stderr
    r = run("validate", str(y), "--no-such-flag")
    assert r.returncode == 2


def test_catalog_defaults_to_the_providers_api():
    d = {k: v for k, v in BASE.items() if k != "source"}
    assert load_config(d).source.catalog == "https://earth-search.aws.element84.com/v1"
    d["source"] = {"provider": "planetary-computer"}
    try:
        import planetary_computer  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r'pip install "lcup\[pc\]"'):
            load_config(d)


def test_init_template_and_schema(tmp_path):
    """`lcup init` writes a commented template that validates once its 'set this' keys are set; `lcup schema`
    prints a JSON schema that knows every section."""
    import json
    import subprocess
    import sys

    y = tmp_path / "p.yaml"
    r = subprocess.run([sys.executable, "-m", "lcup.cli", "init", str(y)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "# set this" in y.read_text()
    (tmp_path / "coarse_map.tif").write_text("")
    cfg = load_config(y)
    assert cfg.labels.legend == "cgls-lc100" and cfg.source.catalog.startswith("https://")
    r = subprocess.run([sys.executable, "-m", "lcup.cli", "schema"], capture_output=True, text=True, timeout=60)
    s = json.loads(r.stdout)
    assert {"source", "aoi", "labels", "model", "output", "cluster"} <= set(s["properties"])
    r = subprocess.run([sys.executable, "-m", "lcup.cli", "init", str(y)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "exists" in r.stderr


def test_custom_index_formulas():
    """Custom indices as plain arithmetic of band names: checked at validation, computed like the built-in ones."""
    import numpy as np
    import xarray as xr

    from lcup.ops.indices import formula_index
    from lcup.stages import feature_names

    cfg = load_config(_with(**{"features.custom_indices": {"ndvi_b8a": "(nir08 - red) / (nir08 + red)", "sr": "nir / red"}}))
    names = feature_names(cfg.load.bands, cfg.period, clean=cfg.clean, features=cfg.features)
    assert "ndvi_b8a_mean" in names and "sr_p90" in names
    b = {k: xr.DataArray(np.array([v], np.float32)) for k, v in dict(red=0.1, nir08=0.5).items()}
    assert np.isclose(formula_index(b, "x", "(nir08 - red) / (nir08 + red)").item(), 0.4 / 0.6)
    for expr, msg in (("__import__('os').system('x')", "only band names"), ("nir +", "not an expression"),
                      ("red.real", "only band names"), ("bsi * 2", r"needs band\(s\) \['bsi'\]")):
        with pytest.raises(ConfigError, match=msg):
            load_config(_with(**{"features.custom_indices": {"x": expr}}))
