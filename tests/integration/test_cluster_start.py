"""The run's cluster starts in a thread while the run searches (lcup.cluster.starting_cluster)."""

import json
import socket
import time
from concurrent.futures import Future

import pytest


def test_cluster_starts_beside_the_caller_warmed_up_and_closes():
    """The caller gets a Future at once and works while the worker process starts; the client it gives has lcup
    imported in its workers already; leaving the block closes the cluster."""
    from lcup.cluster import starting_cluster
    from lcup.config import ClusterConfig

    t0 = time.perf_counter()
    with starting_cluster(ClusterConfig(kind="local", n_workers=1, threads_per_worker=1, dashboard=None),
                          warm=("lcup.pipeline",)) as fut:
        handed_over = time.perf_counter() - t0
        assert isinstance(fut, Future) and handed_over < 0.5  # not waiting for the cluster (~1.5 s to start)
        client = fut.result(timeout=120)
        assert all(client.run(lambda: __import__("sys").modules.get("lcup.pipeline") is not None).values())
    assert client.status == "closed"


def test_a_cluster_that_cannot_start_fails_the_run_with_one_clear_error(small_scene, tmp_path):
    """A scheduler address nobody listens on: the run fails with lcup's error naming the address (raised where the
    run first needs the cluster, after the search), summary.json says failed, and nothing is left running."""
    from lcup.config import load_config
    from lcup.errors import LcupError
    from lcup.pipeline import run_pipeline
    from tests.conftest import scene_pipeline

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    cfg = load_config(scene_pipeline(small_scene, tmp_path / "out", **{"cluster.kind": "address", "cluster.address": address}))
    with pytest.raises(LcupError, match=f"cannot reach the Dask scheduler at {address}"):
        run_pipeline(cfg, progress=False)
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["status"] == "failed" and address in s["error"] and "search" in s["timings"]
