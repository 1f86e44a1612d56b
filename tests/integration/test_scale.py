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

from lcup.errors import LcupWarning
from tests.conftest import scene_pipeline
from tests.integration.servers import extension_errors

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
    """kill -9 of the whole job (driver and its LocalCluster, several tiles in flight), then --resume: same bytes."""
    on_cluster = {"cluster.kind": "local", "cluster.n_workers": 2, "cluster.threads_per_worker": 1}
    ref = _yaml(small_scene, tmp_path / "ref", tmp_path / "ref.yaml", **on_cluster)
    p = _run(ref)
    assert p.wait(600) == 0, p.stdout.read().decode()[-3000:]

    yml = _yaml(small_scene, tmp_path / "cut", tmp_path / "cut.yaml", **{"output.overwrite": False, **on_cluster})
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
    assert summary["figures"]["tiles"]["in_flight"] == 3  # 2 threads, 1 chunk per tile: 2 + 1 tiles at once
    # what the killed run had found (saved after each stage) is reused: no scene filter, label statistics or sample
    assert summary["figures"]["scene_filter"] == "reused from the interrupted run", summary["figures"].keys()
    assert summary["figures"]["model"]["resumed_from"].endswith("model.skops") and summary["figures"]["samples"]

    a = xr.open_zarr(tmp_path / "ref" / "landcover.zarr", consolidated=False, mask_and_scale=False)
    b = xr.open_zarr(tmp_path / "cut" / "landcover.zarr", consolidated=False, mask_and_scale=False)
    for v in ("class", "confidence", "probability"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    assert (tmp_path / "ref" / "landcover_class.tif").read_bytes() == (tmp_path / "cut" / "landcover_class.tif").read_bytes()
    for tid in ("0_0", "1_1"):
        rel = Path("tiles") / tid / "landcover_class.tif"
        assert (tmp_path / "ref" / rel).read_bytes() == (tmp_path / "cut" / rel).read_bytes()
    _check_tile_catalog(tmp_path / "cut", a["class"].values, n_tiles=4)


def _check_tile_catalog(out: Path, cls: np.ndarray, n_tiles: int) -> dict:
    """The catalog of a multi-tile run: an Item per tile, with its region of the store and a valid COG."""
    import pystac
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    cat = pystac.Catalog.from_file(str(out / "catalog.json"))
    items = {it.properties["lcup:tile"]: it for it in cat.get_items()}
    assert len(items) == n_tiles
    for tid, it in items.items():
        assert any("projection" in e for e in it.stac_extensions) and any("classification" in e for e in it.stac_extensions)
        assert extension_errors(it.to_dict()) == []
        assert [c["value"] for c in it.assets["cog"].extra_fields["classification:classes"]][:3] == [0, 1, 2]
        (y0, y1), (x0, x1) = it.assets["zarr"].extra_fields["lcup:region"].values()
        assert it.properties["proj:shape"] == [y1 - y0, x1 - x0]
        assert it.properties["lcup:valid_pixels"] == int(np.count_nonzero(cls[y0:y1, x0:x1]))
        cog = it.assets["cog"].get_absolute_href()
        assert cog_validate(cog)[0], cog
        with rasterio.open(cog) as src:
            np.testing.assert_array_equal(src.read(1), cls[y0:y1, x0:x1])
            assert list(src.transform)[:6] == it.properties["proj:transform"]
    return items


def test_tile_without_data_is_written_as_nodata(small_scene, tmp_path):
    """An AOI reaching past the imagery: the empty tiles are nodata, listed, and the job still succeeds."""
    from lcup.config import load_config
    from lcup.pipeline import run_pipeline

    x0, y0 = small_scene["spec"].origin
    h, w = small_scene["spec"].size
    cfg = scene_pipeline(small_scene, tmp_path / "o", **{
        "aoi.bbox": [x0, y0 - 10 * h, x0 + 10 * (w + 128), y0],  # one 128 px tile column east of the scene
        "output.tile_px": 128, "load.chunk_px": 64, "model.n_estimators": 20, "labels.sample_chunks": 3})
    summary = run_pipeline(load_config(cfg), progress=False)
    cls = xr.open_zarr(tmp_path / "o" / "landcover.zarr", consolidated=False, mask_and_scale=False)["class"].values
    assert cls.shape == (h, w + 128)
    assert (cls[:, w:] == 0).all() and (cls[:, :w] > 0).mean() > 0.95
    assert summary.figures["tiles"]["without_valid_data"] == ["0_2", "1_2"]
    assert summary.figures["graph_per_tile"]  # each tile loaded, featured and predicted from its own graph
    # drawn from 3 random chunks (+ those rare classes need), not from all 16 with data
    assert summary.figures["samples"]["chunks"] < 16, summary.figures["samples"]
    assert summary.figures["truth"]["oa_gain_points"] > 0  # and the tiled run still beats the coarse map
    items = _check_tile_catalog(tmp_path / "o", cls, n_tiles=6)
    assert items["0_2"].properties["lcup:valid_pixels"] == 0


def test_worker_killed_mid_run_is_recovered(small_scene, tmp_path):
    """Kill a worker process of a real LocalCluster while it computes features: Dask reruns its tasks."""
    import warnings

    from distributed import Client, LocalCluster

    from lcup.config import load_config
    from lcup.pipeline import find_items
    from lcup.stages import features, load

    cfg = load_config(scene_pipeline(small_scene, tmp_path, **{"load.chunk_px": 128}))
    geobox, items = find_items(cfg)
    cube = load(items, geobox, load=cfg.load)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        feats = features(cube, cfg.period, clean=cfg.clean, features=cfg.features)
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
    assert "labels: read chunk by chunk" in r.stdout and "800 training pixels per class" in r.stdout
    assert not (tmp_path / "o").exists()  # a dry run writes nothing
    assert "segments" not in r.stdout and "neighbourhood" not in r.stdout and "refinement" not in r.stdout
    yml = _yaml(small_scene, tmp_path / "o", tmp_path / "p2.yaml", **{
        "features.neighbourhood_m": [30, 50], "model.segments": "slic", "model.refine_rounds": 2})
    r = subprocess.run([sys.executable, "-m", "lcup.cli", "plan", str(yml)], capture_output=True, text=True, timeout=120)
    assert "then over slic segments of ~30 px (mix 0.5)" in r.stdout
    assert "neighbourhood features: mean of every feature in 30, 50 m windows (a 2 px halo per tile)" in r.stdout
    assert "label refinement: 2 round(s)" in r.stdout


def test_workers_are_tuned_for_prediction(local_client):
    """The malloc tuning plugin is registered on the cluster and applies in every worker."""
    from lcup.cluster import MallocTuning, tune_workers

    applied = tune_workers(local_client)
    assert len(applied) == 2 and all(applied.values())
    names = local_client.run(lambda dask_worker: sorted(dask_worker.plugins))
    assert all(MallocTuning.name in n for n in names.values())


def test_label_stage_memory_is_bounded_by_the_chunk(tmp_path):
    """Labels, erosion, confidence, statistics and the sample for a 4096² px grid (17 M px) in 512 px chunks
    stay far below the AOI-sized arrays of the whole-grid route (53 B/px measured: 889 MB here; this route
    measured 43 MB, 2.6 B/px, a few chunks' worth)."""
    import tracemalloc

    import dask
    import rasterio
    from odc.geo.geobox import GeoBox
    from rasterio.transform import from_origin

    from lcup.config import load_config
    from lcup.ops.sampling import stratified_sample
    from lcup.stages import labels as label_stage

    side, x0, y0 = 4096, 500000.0, 5100000.0
    rng = np.random.default_rng(3)
    n = -(-side // 10)  # 100 m cells
    coarse = np.kron(rng.integers(1, 8, (n // 3 + 1, n // 3 + 1)), np.ones((3, 3), int))[:n, :n]  # patches of 3×3 cells
    mixed = rng.random(coarse.shape) < 0.2
    coarse[mixed] = rng.integers(1, 8, int(mixed.sum()))
    f = tmp_path / "coarse.tif"
    with rasterio.open(f, "w", driver="GTiff", width=coarse.shape[1], height=coarse.shape[0], count=1, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(x0, y0, 100, 100), tiled=True) as dst:
        dst.write(coarse.astype(np.uint8), 1)
    (tmp_path / "x.json").write_text("{}")
    cfg = load_config({"source": {"catalog": str(tmp_path / "x.json")}, "aoi": {"bbox": [0, 0, 1, 1]}, "year": 2024,
                       "labels": {"path": str(f), "legend": "lcup7"}, "load": {"chunk_px": 512}, "output": {"dir": str(tmp_path)}})
    gb = GeoBox.from_bbox((x0, y0 - 10 * side, x0 + 10 * side, y0), "EPSG:32633", resolution=10)
    sync = lambda objs: list(dask.compute(*objs, scheduler="synchronous"))  # noqa: E731 - one chunk at a time
    tracemalloc.start()
    try:
        lab = label_stage(gb, cfg.labels, chunk_px=cfg.load.chunk_px, compute=sync)
        usable, conf, info = lab["usable"].data, lab["confidence"].data, lab.attrs["figures"]
        sample = stratified_sample(usable, 2000, 0, values=conf, compute=sync)  # weights in the same pass
        w = sample.value
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(w, conf.vindex[sample.iy, sample.ix].compute())
    assert info["labelled_px"] == side * side and set(info["class_px"]) == set(range(1, 8))
    assert len(sample) > 7 * 2000 and (w > 0).all()
    assert peak < 5 * side * side, f"peak {peak / 1e6:.0f} MB for {side * side / 1e6:.0f} M px: not bounded by the chunk"


def _warnings_passing() -> list[str]:
    """In this process: which of two NotGeoreferencedWarnings, one raised in rasterio.warp, one elsewhere, get through."""
    import warnings

    code = "import warnings\nfrom rasterio.errors import NotGeoreferencedWarning as W\nwarnings.warn('Dataset has no geotransform', W)"
    with warnings.catch_warnings(record=True) as rec:  # keeps this process's filters, records what passes them
        for module in ("rasterio.warp", "somewhere.else"):
            exec(code, {"__name__": module})
    return [r.filename for r in rec]


def test_spurious_reprojection_warning_is_quiet_in_workers():
    """odc-geo#131: rasterio's NotGeoreferencedWarning from MEM→MEM reprojection is ignored in every worker,
    and only that one (the same warning raised elsewhere still shows)."""
    from distributed import Client, LocalCluster

    from lcup.cluster import QuietWarnings, quiet_workers

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        assert all(len(v) == 2 for v in client.run(_warnings_passing).values())  # before: both pass
        quiet_workers(client)
        names = client.run(lambda dask_worker: sorted(dask_worker.plugins))
        assert all(QuietWarnings.name in n for n in names.values())
        assert all(len(v) == 1 for v in client.run(_warnings_passing).values())


def test_tiles_in_flight_write_the_same_bytes(tmp_path):
    """Several tiles computed at once (real threads, out-of-order completion) give the store of one-by-one writes."""
    import time as _time
    from concurrent.futures import ThreadPoolExecutor

    import dask
    import dask.array as da

    from lcup.io.write import write_tiles_zarr

    rng = np.random.default_rng(0)
    cls = da.from_array(rng.integers(0, 8, (256, 384)).astype(np.uint8), chunks=64)
    ds = xr.Dataset({"class": (("y", "x"), cls), "confidence": (("y", "x"), (cls * 10).astype(np.uint8))})
    kw = dict(tile_px=128, attrs={"transform": [10, 0, 0, 0, -10, 0], "crs": "EPSG:32633"}, overwrite=True, resume=False)
    seq = write_tiles_zarr(ds, tmp_path / "seq.zarr", compute=lambda d, label: dask.compute(d), **kw)

    def slow(d):  # tiles finish out of order
        _time.sleep(float(rng.random()) * 0.05)
        return dask.compute(d, scheduler="threads")

    order, submitted, most = [], [], []

    def submit(d):
        submitted.append(d)
        most.append(len(submitted) - len(order))  # tiles in flight, this one included
        return pool.submit(slow, d)

    with ThreadPoolExecutor(3) as pool:
        par = write_tiles_zarr(ds, tmp_path / "par.zarr", compute=None, submit=submit, in_flight=3,
                               on_done=lambda tid, n, total: order.append((tid, n, total)), **kw)
    assert seq == par == (6, 0) and [n for _, n, _ in order] == list(range(1, 7))
    assert max(most) == 3  # three at once, never more
    for f in sorted((tmp_path / "seq.zarr").rglob("*")):
        if f.is_file():
            twin = tmp_path / "par.zarr" / f.relative_to(tmp_path / "seq.zarr")
            if f.name == "zarr.json" and f.parent.name == "seq.zarr":
                continue  # the group's attributes: same content, written at other moments
            assert twin.read_bytes() == f.read_bytes(), f
    done = json.loads((tmp_path / "par.zarr" / "zarr.json").read_text())["attributes"]["lcup_tiles_done"]
    assert done == json.loads((tmp_path / "seq.zarr" / "zarr.json").read_text())["attributes"]["lcup_tiles_done"]


def test_dashboard_link_is_logged_and_serves(caplog):
    """cluster.kind local starts the Dask dashboard (bokeh) on a free port and logs a link that answers."""
    import logging
    import urllib.request

    from lcup.cluster import cluster_client
    from lcup.config import ClusterConfig

    with caplog.at_level(logging.INFO, logger="lcup"), cluster_client(ClusterConfig(n_workers=1, threads_per_worker=1)) as c:
        assert c.dashboard_link in caplog.text
        assert urllib.request.urlopen(c.dashboard_link, timeout=30).status == 200


def test_progress_is_logged_off_a_terminal(small_scene, tmp_path, local_client, monkeypatch, caplog):
    """In a batch job (no tty, no bars) long computations log elapsed time and task counts at a steady interval."""
    import logging
    import warnings

    import lcup.cluster
    import lcup.pipeline as pl
    from lcup.config import load_config

    monkeypatch.setattr(lcup.cluster, "PROGRESS_EVERY_S", 0.2)
    cfg = load_config(scene_pipeline(small_scene, tmp_path, **{"model.n_estimators": 10, "truth": None, "features.persist": "always"}))
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="lcup"):
        warnings.simplefilter("ignore", LcupWarning)
        pl.run_pipeline(cfg, client=local_client, progress=False)
    beats = [r.getMessage() for r in caplog.records if "tasks done" in r.getMessage()]
    assert beats and "features:" in " ".join(beats), caplog.text[-2000:]
    assert "tile 0_0 written (1/1)" in caplog.text


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_sigterm_stops_the_run_as_ctrl_c_does(how, small_scene, tmp_path):
    """SIGTERM (what Slurm, Kubernetes and timeout send) to the lcup process mid-run, or Ctrl-C (SIGINT to the
    terminal's whole process group, workers included): it ends within seconds with lcup's one line and nothing else
    (Ctrl-C printed 68 lines of worker tracebacks first), summary.json says interrupted, no lock is left, no worker
    process is left behind."""
    import psutil

    yml = _yaml(small_scene, tmp_path / "out", tmp_path / "run.yaml", **{"cluster.kind": "local", "cluster.n_workers": 1})
    # SIGINT as a terminal leaves it (a job started in the background by a non-interactive shell, as CI may be,
    # inherits it ignored, and Python then installs no Ctrl-C handler at all)
    p = subprocess.Popen([sys.executable, "-m", "lcup.cli", "run", str(yml)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines, deadline = [], time.time() + 300
    while time.time() < deadline:
        line = p.stdout.readline().decode()
        lines.append(line)
        if "▶ labels" in line or not line:
            break
    children = psutil.Process(p.pid).children(recursive=True)
    t0 = time.time()
    if how == "SIGTERM":
        p.send_signal(signal.SIGTERM)
    else:
        os.killpg(p.pid, signal.SIGINT)
    rc = p.wait(60)
    after = p.stdout.read().decode()
    out = "".join(lines) + after
    assert rc == 130 and time.time() - t0 < 30, out[-3000:]
    assert ("lcup: interrupted by SIGTERM" if how == "SIGTERM" else "lcup: interrupted;") in out, out[-3000:]
    assert "Traceback" not in out and len(after.splitlines()) <= 4, after
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "interrupted", summary["status"]
    assert not (tmp_path / "out" / ".lcup.lock").exists()
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, alive
