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
from lcup.pipeline import run_pipeline
from tests.conftest import scene_pipeline

pytestmark = pytest.mark.slow


def _cfg(small_scene, out, tile_px, persist, **kw):
    x0, y0 = small_scene["spec"].origin
    return load_config(scene_pipeline(small_scene, out, **{
        "aoi.bbox": [x0, y0 - 1920, x0 + 1920, y0], "load.chunk_px": 64, "output.tile_px": tile_px,
        "features.persist": persist, "clean.dilation_m": 20, "clean.min_valid_fraction": 0.3,
        "load.bands": ["green", "red", "nir", "swir16"], "features.indices": ["ndvi", "ndbi"],
        "features.stats": ["mean", "p10", "p90"], "features.series": ["ndvi"], "features.series_every": 3,
        "model.n_estimators": 15, "labels.n_per_class": 300, "output.tile_cogs": False, "truth": None, **kw}))


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
        warnings.simplefilter("ignore")
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
