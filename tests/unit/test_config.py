"""Pipeline files are rejected before any work, naming the key and the valid ones."""

from __future__ import annotations

import pytest
import yaml

from lcup.config import load_config
from lcup.errors import ConfigError

BASE = {
    "source": {"catalog": "/data/catalog.json"},
    "aoi": {"bbox": [14.5, 45.8, 14.6, 45.9]},
    "year": 2024,
    "labels": {"path": "/data/cgls.tif", "legend": "cgls-lc100"},
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
    p.parent.mkdir()
    p.write_text(yaml.safe_dump(d))
    cfg = load_config(p)
    assert cfg.labels.path == str(tmp_path / "sub" / "maps" / "cgls.tif")
    assert cfg.source.catalog == str(tmp_path / "sub" / "cat" / "catalog.json")


def test_shipped_pipelines_are_valid():
    from pathlib import Path

    files = sorted((Path(__file__).parents[2] / "pipelines").glob("*.yaml"))
    assert files
    for p in files:
        load_config(p)
