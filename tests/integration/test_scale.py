"""Scale-out behaviour: tiles, resume after a kill, a worker killed mid-run, dry-run plan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from tests.conftest import scene_pipeline

pytestmark = pytest.mark.slow


def _yaml(small_scene, out: Path, path: Path, **kw) -> Path:
    cfg = scene_pipeline(small_scene, out, **{"output.tile_px": 128, "load.chunk_px": 128, "features.persist": "never",
                                              "model.n_estimators": 20, **kw})
    path.write_text(yaml.safe_dump(cfg))
    return path


def _done(store: Path) -> list:
    meta = store / "zarr.json"
    if not meta.exists():
        return []
    try:
        return json.loads(meta.read_text()).get("attributes", {}).get("lcup_tiles_done", [])
    except json.JSONDecodeError:
        return []


def _run(yml: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lcup.cli", "run", str(yml), "-q", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def test_killed_run_resumes_to_identical_output(small_scene, tmp_path):
    ref = _yaml(small_scene, tmp_path / "ref", tmp_path / "ref.yaml")
    p = _run(ref)
    assert p.wait(600) == 0, p.stdout.read().decode()[-3000:]

    yml = _yaml(small_scene, tmp_path / "cut", tmp_path / "cut.yaml", **{"output.overwrite": False})
    p = _run(yml)
    deadline = time.time() + 600
    while time.time() < deadline and len(_done(tmp_path / "cut" / "landcover.zarr")) < 1 and p.poll() is None:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)  # kill -9 the whole job mid-way
    p.wait(30)
    n_done = len(_done(tmp_path / "cut" / "landcover.zarr"))
    assert 1 <= n_done < 4, f"the run was not interrupted half-way ({n_done} tiles done)"

    p = _run(yml)  # without --resume: refused, nothing lost
    assert p.wait(300) != 0 and b"resume" in p.stdout.read()
    p = _run(yml, "--resume")
    assert p.wait(600) == 0, p.stdout.read().decode()[-3000:]
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["figures"]["tiles"]["skipped_already_done"] == n_done

    a = xr.open_zarr(tmp_path / "ref" / "landcover.zarr", consolidated=False, mask_and_scale=False)
    b = xr.open_zarr(tmp_path / "cut" / "landcover.zarr", consolidated=False, mask_and_scale=False)
    for v in ("class", "confidence", "probability"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    assert (tmp_path / "ref" / "landcover_class.tif").read_bytes() == (tmp_path / "cut" / "landcover_class.tif").read_bytes()


def test_worker_killed_mid_run_is_recovered(small_scene, tmp_path):
    """Kill a worker process of a real LocalCluster while it computes features: Dask reruns its tasks."""
    from distributed import Client, LocalCluster

    import warnings

    from lcup.config import load_config
    from lcup.pipeline import RunSummary, build_features, open_cube

    cfg = load_config(scene_pipeline(small_scene, tmp_path, **{"load.chunk_px": 128}))
    cube = open_cube(cfg)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feats = build_features(cfg, cube, RunSummary("t"))
        expected = feats.compute(scheduler="threads").values
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, memory_limit="3GiB") as cluster, Client(cluster) as client:
        fut = client.compute(feats.data)
        time.sleep(1.0)
        victim = list(client.scheduler_info()["workers"])[0]
        from distributed.comm.core import CommClosedError

        try:
            client.run(os._exit, 1, workers=[victim])  # the worker process dies; its nanny restarts it
        except (CommClosedError, OSError):
            pass  # the worker died before it could answer: that is the point
        got = fut.result(timeout=300)
        assert victim not in client.scheduler_info()["workers"]
    np.testing.assert_array_equal(got, expected)


def test_plan_prints_tiles_and_memory(small_scene, tmp_path):
    yml = _yaml(small_scene, tmp_path / "o", tmp_path / "p.yaml")
    r = subprocess.run([sys.executable, "-m", "lcup.cli", "plan", str(yml)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "tiles: 4 of up to 128 × 128 px" in r.stdout and "memory per task" in r.stdout
    assert not (tmp_path / "o").exists()  # a dry run writes nothing
