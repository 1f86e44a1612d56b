"""Credentials never reach what lcup writes or prints."""

from __future__ import annotations

import json
import logging

from lcup.errors import ReadError
from lcup.redact import redact, redact_text

SECRET = "s3cr3t-T0KEN"


def test_urls_signed_hrefs_and_options_are_masked():
    texts = [
        f"https://user:{SECRET}@catalog.example.org/stac?token={SECRET}&limit=10",
        f"https://acc.blob.core.windows.net/c/B04.tif?st=2024&se=2025&sp=rl&sv=2021&sr=b&sig={SECRET}",
        f"https://bucket.s3.amazonaws.com/x.tif?X-Amz-Signature={SECRET}&X-Amz-Credential={SECRET}",
        f"DASK_GATEWAY_PASSWORD={SECRET} password: {SECRET}",
    ]
    for t in texts:
        out = redact_text(t)
        assert SECRET not in out and "***" in out, out
    assert redact_text("https://host/x.tif?limit=10&page=2") == "https://host/x.tif?limit=10&page=2"
    params = {"cluster": {"gateway_auth": "basic", "gateway_options": {"password": SECRET, "worker_cores": 2}},
              "source": {"catalog": f"https://h/stac?api_key={SECRET}"}}
    out = redact(params)
    assert SECRET not in json.dumps(out)
    assert out["cluster"]["gateway_auth"] == "basic" and out["cluster"]["gateway_options"]["worker_cores"] == 2


def test_errors_and_logs_are_masked(caplog):
    import lcup  # noqa: F401 - installs the log filter

    e = ReadError(f"cannot read https://h/B04.tif?sig={SECRET}")
    assert SECRET not in str(e)
    with caplog.at_level(logging.INFO, logger="lcup"):
        logging.getLogger("lcup").info("reading %s", f"https://u:{SECRET}@h/x")
    assert SECRET not in caplog.text and "***" in caplog.text


def test_failed_run_summary_has_the_error_and_no_secret(tmp_path):
    """A run that fails (no item: the catalog is empty) still writes summary.json, with the error, masked."""
    from lcup.config import load_config
    from lcup.pipeline import run_pipeline

    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps({"type": "Catalog", "id": "empty", "description": "x", "stac_version": "1.0.0", "links": []}))
    lab = tmp_path / "l.tif"
    lab.write_bytes(b"")
    cfg = load_config({"name": "fails", "source": {"catalog": str(cat)}, "aoi": {"bbox": [14.5, 45.8, 14.51, 45.81]},
                       "year": 2024, "labels": {"path": str(lab), "legend": "cgls-lc100"},
                       "output": {"dir": str(tmp_path / "out")},
                       "cluster": {"kind": "none", "gateway_options": {"password": SECRET}}})
    try:
        run_pipeline(cfg, progress=False)
    except lcup_error() as e:
        assert SECRET not in str(e)
    else:
        raise AssertionError("the run should fail")
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["status"] == "failed" and s["error"]
    assert SECRET not in (tmp_path / "out" / "summary.json").read_text()
    assert not (tmp_path / "out" / ".lcup.lock").exists()


def lcup_error():
    from lcup.errors import LcupError

    return LcupError
