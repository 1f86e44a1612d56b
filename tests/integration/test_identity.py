"""One map whatever the tiling, the path (persisted features or a graph per tile) or the worker count.

The AOI is the 192×192 px window of the small generated scene, in 64 px chunks, so ``output.tile_px``
64 / 128 / 192 cuts it into 9, 4 and 1 tiles. Clouds in the scene cross tile edges and the cloud mask is
dilated by 20 m: without a halo, or with a scene filter per tile, the maps differ along tile edges.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from lcup.config import load_config
from lcup.errors import LcupWarning
from lcup.pipeline import run_pipeline
from tests.conftest import tiled_pipeline

pytestmark = pytest.mark.slow


def _cfg(small_scene, out, tile_px, persist, **kw):
    return load_config(tiled_pipeline(small_scene, out, tile_px, persist, **{"model.n_estimators": 15, **kw}))


def _maps(out):
    ds = xr.open_zarr(out / "landcover.zarr", consolidated=False, mask_and_scale=False)
    return {v: ds[v].values for v in ("class", "confidence", "probability")}


@pytest.fixture(scope="module")
def two_worker_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, memory_limit="3GiB") as cluster, \
            Client(cluster) as client:
        yield client


def test_byte_identical_over_tiles_paths_and_workers(small_scene, tmp_path, two_worker_client):
    from distributed import Client, LocalCluster

    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None, memory_limit="4GiB") as one, \
                Client(one) as one_worker:
            # tiles × paths × workers: every tiling on the persisted path, two on the per-tile path, both worker counts
            for n_tiles, persist, workers in ((1, "always", 1), (4, "always", 1), (9, "always", 1), (1, "always", 2),
                                              (4, "never", 2), (9, "never", 1)):
                client = one_worker if workers == 1 else two_worker_client
                out = tmp_path / f"{n_tiles}-{persist}-{workers}"
                tile_px = {1: 192, 4: 128, 9: 64}[n_tiles]
                s = run_pipeline(_cfg(small_scene, out, tile_px, persist), client=client, progress=False)
                assert s.figures["graph_per_tile"] == (persist == "never" and n_tiles > 1)
                assert s.figures["tiles"]["written"] == n_tiles
                runs[(n_tiles, persist, workers)] = (_maps(out), s)
    ref_maps, ref_summary = runs[(1, "always", 1)]
    assert (ref_maps["class"] > 0).mean() > 0.95
    for key, (maps, s) in runs.items():
        assert s.figures["dates_kept"] == ref_summary.figures["dates_kept"], key
        assert s.figures["samples"] == ref_summary.figures["samples"], key
        for v in maps:
            diff = (maps[v] != ref_maps[v]).sum()
            assert diff == 0, f"{key}: {v} differs from the 1-tile persisted run on {diff} values"


def test_worker_killed_during_prediction_same_bytes(small_scene, tmp_path):
    """The only worker of a LocalCluster dies while prediction tasks are pending: the model (a persisted task,
    not scattered data) is rebuilt on the restarted worker, the run finishes, and the map is byte-identical."""
    import os
    import threading
    import time

    from distributed import Client, LocalCluster

    def pending_predictions(dask_scheduler=None):
        return sum(1 for ts in dask_scheduler.tasks.values()
                   if "_predict_chunk" in str(ts.key) and ts.state in ("waiting", "processing", "queued", "no-worker"))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        ref = run_pipeline(_cfg(small_scene, tmp_path / "ref", 128, "never", **{"cluster.kind": "none"}), progress=False)
        with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None, memory_limit="4GiB") as cluster, \
                Client(cluster) as client:
            seen = {}

            def killer():
                deadline = time.time() + 240
                while time.time() < deadline and not seen:
                    n = client.run_on_scheduler(pending_predictions)
                    if n:
                        seen["pending"] = n
                        seen["worker"] = list(client.scheduler_info()["workers"])[0]
                        try:
                            client.run(os._exit, 1)
                        except Exception:  # noqa: BLE001 - the worker dies before it answers
                            pass
                        return
                    time.sleep(0.02)

            t = threading.Thread(target=killer)
            t.start()
            s = run_pipeline(_cfg(small_scene, tmp_path / "cut", 128, "never"), client=client, progress=False)
            t.join()
            assert seen.get("pending", 0) > 0, "no prediction task was pending when the worker was to be killed"
            assert seen["worker"] not in client.scheduler_info()["workers"]  # it really died and was replaced
    assert s.status == "done" and ref.status == "done"
    a, b = _maps(tmp_path / "ref"), _maps(tmp_path / "cut")
    for v in a:
        np.testing.assert_array_equal(a[v], b[v])


def test_spatial_context_options_byte_identical_over_tiles_and_paths(small_scene, tmp_path, two_worker_client):
    """Neighbourhood features, segments (per output chunk, with a halo) and label refinement on: still one map
    whatever the tiling, the path or the worker count; and each option changes the map."""
    opts = {"features.neighbourhood_m": [30], "features.neighbourhood_stats": ["mean", "std"], "model.segments": "slic",
            "model.segment_px": 20, "model.refine_rounds": 1}
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        for n_tiles, persist in ((1, "always"), (9, "never")):
            out = tmp_path / f"{n_tiles}-{persist}"
            s = run_pipeline(_cfg(small_scene, out, {1: 192, 4: 128, 9: 64}[n_tiles], persist, **opts),
                             client=two_worker_client, progress=False)
            runs[n_tiles] = (_maps(out), s)
        plain = run_pipeline(_cfg(small_scene, tmp_path / "plain", 192, "always"), client=two_worker_client, progress=False)
    ref, s1 = runs[1]
    assert s1.figures["n_features"] == 3 * plain.figures["n_features"]  # the features, their mean and std at 30 m
    assert len(s1.figures["refinement"]["rounds"]) == 1
    assert (ref["class"] != _maps(tmp_path / "plain")["class"]).sum() > 100
    for key, (maps, s) in runs.items():
        assert s.figures["graph_per_tile"] == (key == 9)
        for v in maps:
            diff = (maps[v] != ref[v]).sum()
            assert diff == 0, f"{key} tiles: {v} differs from the 1-tile run on {diff} values"


def test_chunk_size_changes_no_pixel(small_scene, tmp_path, monkeypatch):
    """load.chunk_px 64, 96 and 192 over the 192 px window: the same bytes (the sample is drawn on a lattice of its
    own, here 64 px so that the window holds nine of its squares, whatever the chunks)."""
    import importlib

    monkeypatch.setattr(importlib.import_module("lcup.stages.labels"), "SAMPLE_LATTICE_PX", 64)
    maps = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        for chunk in (64, 96, 192):
            out = tmp_path / str(chunk)
            run_pipeline(_cfg(small_scene, out, 192, "auto", **{"load.chunk_px": chunk, "cluster.kind": "none"}), progress=False)
            maps[chunk] = _maps(out)
    for chunk in (96, 192):
        for var, ref in maps[64].items():
            np.testing.assert_array_equal(maps[chunk][var], ref, err_msg=f"chunk {chunk}: {var}")
