"""The Dask Gateway path for real: dask-gateway-server on 127.0.0.1 (UnsafeLocalBackend, SimpleAuthenticator)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from lcup.errors import LcupError, LcupWarning
from tests.conftest import scene_pipeline
from tests.integration.servers import free_port, wait_until_up

pytest.importorskip("dask_gateway_server", reason="pip install 'lcup[test]' brings dask-gateway-server[local]")
pytestmark = pytest.mark.slow

PASSWORD = "lcup-test-secret"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    d = tmp_path_factory.mktemp("gateway")
    api, proxy = free_port(), free_port()
    bindir = Path(sys.executable).parent
    (d / "config.py").write_text(textwrap.dedent(f"""
        c.DaskGateway.address = "127.0.0.1:{api}"
        c.Proxy.address = "127.0.0.1:{proxy}"
        c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
        c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
        c.SimpleAuthenticator.password = "{PASSWORD}"
        c.ClusterConfig.scheduler_cmd = ["{bindir / 'dask'}", "scheduler"]
        c.ClusterConfig.worker_cmd = ["{bindir / 'dask'}", "worker"]
        c.ClusterConfig.worker_cores = 1
        c.ClusterConfig.worker_memory = "2 G"
        c.ClusterConfig.idle_timeout = 600
        c.LocalClusterConfig.cluster_start_timeout = 120
        c.DaskGateway.log_level = "WARN"
    """))
    proc = subprocess.Popen([sys.executable, "-m", "dask_gateway_server", "-f", str(d / "config.py")], cwd=d,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{proxy}"  # the public entry: the proxy routes the API and scheduler traffic
    try:
        wait_until_up(proc, lambda: urllib.request.urlopen(url + "/api/health", timeout=1).status == 200,
                      "dask-gateway-server", timeout=60)
    except RuntimeError:
        proc.kill()
        raise
    yield url
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_pipeline_on_dask_gateway(small_scene, tmp_path, gateway, monkeypatch):
    from lcup.config import load_config
    from lcup.pipeline import run_pipeline

    monkeypatch.setenv("DASK_GATEWAY_USER", "lcup")
    monkeypatch.setenv("DASK_GATEWAY_PASSWORD", PASSWORD)
    cfg = load_config(scene_pipeline(small_scene, tmp_path / "out", **{
        "cluster": {"kind": "gateway", "address": gateway, "n_workers": 1, "gateway_auth": "basic"},
        "model.n_estimators": 20, "load.chunk_px": 128,
    }))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        summary = run_pipeline(cfg, progress=False)
    assert summary.figures["truth"]["oa_gain_points"] > 5
    assert (tmp_path / "out" / "landcover_class.tif").exists()
    # the cluster was shut down at the end of the run
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth

    gw = Gateway(gateway, auth=BasicAuth("lcup", PASSWORD))
    try:
        assert gw.list_clusters() == []
    finally:
        from lcup.cluster import _forget_loop

        gw.close()
        _forget_loop(gw)


def test_gateway_refuses_bad_password(small_scene, tmp_path, gateway, monkeypatch):
    from lcup.cluster import cluster_client
    from lcup.config import ClusterConfig

    monkeypatch.setenv("DASK_GATEWAY_USER", "lcup")
    monkeypatch.setenv("DASK_GATEWAY_PASSWORD", "wrong")
    with pytest.raises(LcupError, match="refused the credentials"):
        with cluster_client(ClusterConfig(kind="gateway", address=gateway, gateway_auth="basic")):
            pass


def test_unreachable_gateway_is_a_clear_error():
    from lcup.cluster import cluster_client
    from lcup.config import ClusterConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LcupError, match="cannot reach the Dask Gateway"):
        with cluster_client(ClusterConfig(kind="gateway", address=f"http://127.0.0.1:{port}")):
            pass


def test_an_area_across_two_utm_zones_on_dask_gateway(tmp_path, gateway, monkeypatch):
    """Issue 29: the two-zone polygon from one pipeline through the Gateway: tiles on their own grids, the mosaic,
    the collection; the cluster is shut down at the end."""
    from lcup.config import load_config
    from lcup.pipeline import run_pipeline
    from lcup.synthetic import SceneSpec, write_two_zone_demo
    from tests.integration.test_two_zones import _cfg

    monkeypatch.setenv("DASK_GATEWAY_USER", "lcup")
    monkeypatch.setenv("DASK_GATEWAY_PASSWORD", PASSWORD)
    scene = tmp_path / "scene"
    write_two_zone_demo(scene, SceneSpec(size=(128, 128), revisit_days=20, seed=5), progress=False)
    cfg = _cfg(scene, tmp_path / "out")
    cfg["cluster"] = {"kind": "gateway", "address": gateway, "n_workers": 1, "gateway_auth": "basic"}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        summary = run_pipeline(load_config(cfg), progress=False)
    assert sorted(summary.figures["tiles"]) == ["32TQS", "33TTM"]
    assert all("error" not in t for t in summary.figures["tiles"].values())
    for f in ("mosaic.tif", "collection.json", "tiles_32632.vrt", "tiles_32633.vrt", "model.skops"):
        assert (tmp_path / "out" / f).exists(), f
