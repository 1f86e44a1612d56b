"""Shared fixtures: geo-registered factories, a small generated scene, real clusters, ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LCUP_SHARED", REPO.parent / "shared")) / "data"


def shared_data(sub: str) -> Path:
    """Path of a ../shared/data folder; fail under CI (CI=true) when missing, skip otherwise."""
    p = SHARED / sub
    if not p.exists():
        msg = f"{p} is missing: the real-data tests need ../shared/data beside the repository"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return p


def demo_scene(out: Path, **spec_kw) -> dict:
    """A synthetic scene (``SceneSpec(**spec_kw)``) written into ``out`` as COGs + static STAC catalog:
    ``{"dir", "catalog", "spec"}``, what :func:`scene_pipeline` takes."""
    from lcup.synthetic import SceneSpec, write_demo

    spec = SceneSpec(**spec_kw)
    return {"dir": out, "catalog": write_demo(out, spec, progress=False), "spec": spec}


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory):
    """A 200×200 px synthetic scene with a 10-day revisit."""
    return demo_scene(tmp_path_factory.mktemp("scene"), size=(200, 200), revisit_days=10, seed=7, parcel_spacing_px=20)


def scene_pipeline(scene: dict, out: Path, **overrides) -> dict:
    """A pipeline mapping for the small scene."""
    x0, y0 = scene["spec"].origin
    h, w = scene["spec"].size
    cfg = {
        "name": "test",
        "source": {"catalog": str(scene["catalog"]), "provider": "earth-search"},
        "aoi": {"bbox": [x0, y0 - 10 * h, x0 + 10 * w, y0], "crs": "EPSG:32633"},
        "year": scene["spec"].year,
        "load": {"chunk_px": 128},
        "clean": {"dilation_m": 10, "step_days": 10},
        "labels": {"path": str(scene["dir"] / "coarse_cgls_100m.tif"), "legend": "cgls-lc100", "erosion_m": 20,
                   "n_per_class": 800, "min_per_class": 20, "block_m": 500},
        "model": {"n_estimators": 40},
        "truth": {"path": str(scene["dir"] / "truth_10m.tif"), "legend": "lcup7"},
        "output": {"dir": str(out), "overwrite": True},
        "cluster": {"kind": "none"},
    }
    from lcup.config import set_dotted

    for dotted, v in overrides.items():
        set_dotted(cfg, dotted, v)
    return cfg


@pytest.fixture(scope="session")
def local_client():
    """A real distributed LocalCluster (2 worker processes, 1 thread each)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, memory_limit="3GiB") as cluster:
        with Client(cluster) as client:
            yield client


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def chromium() -> str:
    """Path of a Chromium (Debian's package: /usr/bin/chromium); fail when LCUP_REQUIRE_BROWSER=1 (CI) and it is
    missing, skip otherwise."""
    import shutil

    path = os.environ.get("LCUP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        msg = "no Chromium: install Debian's package (apt-get install chromium) for the report's browser test"
        if os.environ.get("LCUP_REQUIRE_BROWSER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def tiled_pipeline(scene: dict, out: Path, tile_px: int, persist: str, **overrides) -> dict:
    """The small scene's 192×192 px window in 64 px chunks, cut into tiles of ``tile_px`` (64, 128, 192: 9, 4 or 1
    tiles), with ``features.persist`` ``persist``: a pipeline mapping for the identity tests, cheap features."""
    x0, y0 = scene["spec"].origin
    return scene_pipeline(scene, out, **{
        "aoi.bbox": [x0, y0 - 1920, x0 + 1920, y0], "load.chunk_px": 64, "output.tile_px": tile_px,
        "features.persist": persist, "clean.dilation_m": 20, "clean.min_valid_fraction": 0.3,
        "load.bands": ["green", "red", "nir", "swir16"], "features.indices": ["ndvi", "ndbi"],
        "features.stats": ["mean", "p10", "p90"], "features.series": ["ndvi"], "features.series_every": 3,
        "labels.n_per_class": 300, "output.tile_cogs": False, "truth": None, **overrides})
