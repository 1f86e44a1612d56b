"""The notebook walkthrough (examples/walkthrough.py, a percent-format notebook) runs as a script, so it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_walkthrough_runs_and_beats_the_coarse_map(small_scene, tmp_path):
    from lcup.io.rasters import read_on_geobox
    from lcup.legends import apply_crosswalk, get_crosswalk
    from lcup.ops.accuracy import accuracy_report

    r = subprocess.run([sys.executable, str(REPO / "examples" / "walkthrough.py"), str(small_scene["dir"]), str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "validation OA" in r.stdout and "NDVI p10–p90" in r.stdout
    assert (tmp_path / "walkthrough.png").stat().st_size > 10_000
    ds = xr.open_zarr(tmp_path / "landcover.zarr", consolidated=False, mask_and_scale=False)
    import odc.geo.xr  # noqa: F401 - the .odc accessor

    gb = ds.odc.geobox
    cls = ds["class"].values
    truth = read_on_geobox(small_scene["dir"] / "truth_10m.tif", gb)
    coarse = apply_crosswalk(read_on_geobox(small_scene["dir"] / "coarse_cgls_100m.tif", gb), get_crosswalk("cgls-lc100", "lcup7"))
    inside = truth > 0
    oa = accuracy_report(truth[inside], cls[inside], list(range(1, 8)))["overall_accuracy"]
    oa_coarse = accuracy_report(truth[inside], coarse[inside], list(range(1, 8)))["overall_accuracy"]
    assert oa > oa_coarse + 0.05, (oa, oa_coarse)
    import rasterio

    with rasterio.open(tmp_path / "landcover_class.tif") as src:
        np.testing.assert_array_equal(src.read(1), cls)
