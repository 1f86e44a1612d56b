"""SCL masks, dilation across chunks, valid fractions; real SCL from openEO GFMap (CDSE L2A, Apache-2.0)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from lcup.ops.cloud import DEFAULT_INVALID_SCL, disk, keep_dates, scl_valid_mask, valid_fraction
from tests.conftest import shared_data


def _scl(rng, shape=(4, 60, 70)):
    scl = rng.choice([4, 5, 6, 8, 9, 3, 10, 0], size=shape, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.03, 0.02]).astype(np.uint8)
    return xr.DataArray(scl, dims=("time", "y", "x"))


def test_default_classes_masked(rng):
    scl = _scl(rng)
    valid = scl_valid_mask(scl)
    np.testing.assert_array_equal(valid.values, ~np.isin(scl.values, DEFAULT_INVALID_SCL))
    assert set(DEFAULT_INVALID_SCL) == {0, 1, 3, 8, 9, 10}


def test_disk_radius_one_is_a_cross():
    np.testing.assert_array_equal(disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])


def test_dilation_numpy_equals_dask_across_chunk_edges(rng):
    scl = _scl(rng)
    a = scl_valid_mask(scl, dilation_px=3)
    b = scl_valid_mask(scl.chunk({"time": -1, "y": 17, "x": 23}), dilation_px=3)
    np.testing.assert_array_equal(a.values, b.compute().values)
    # dilation only removes valid pixels
    assert (a.values <= scl_valid_mask(scl).values).all()


def test_single_cloud_pixel_dilated_by_exact_disk():
    scl = np.full((1, 21, 21), 4, np.uint8)
    scl[0, 10, 10] = 9
    valid = scl_valid_mask(xr.DataArray(scl, dims=("time", "y", "x")), dilation_px=2)
    assert (~valid.values).sum() == disk(2).sum() == 13


def test_valid_fraction_and_keep(rng):
    scl = _scl(rng).chunk({"y": 20})
    frac = valid_fraction(scl_valid_mask(scl))
    np.testing.assert_allclose(frac.values, (~np.isin(scl.values, DEFAULT_INVALID_SCL)).mean((1, 2)))
    np.testing.assert_array_equal(keep_dates(np.array([0.1, 0.5, 0.9]), 0.5), [False, True, True])


def test_real_scl_gfmap():
    """Real Sentinel-2 L2A SCL from openeo-gfmap's test cube (CDSE, 2023-10..12)."""
    p = shared_data("openeo-gfmap-l2a") / "test_optical_cube.nc"
    ds = xr.open_dataset(p)
    scl_name = [v for v in ds.data_vars if "SCL" in v.upper()][0]
    scl = ds[scl_name]
    scl = scl.rename({d: d.lower() for d in scl.dims}).transpose("t" if "t" in scl.dims else "time", "y", "x")
    if "t" in scl.dims:
        scl = scl.rename(t="time")
    scl = scl.fillna(0).astype(np.uint8)
    valid = scl_valid_mask(scl.chunk({"y": 20, "x": 20}), dilation_px=1).compute()
    frac = valid_fraction(valid).values
    assert frac.shape == (scl.sizes["time"],)
    # real scenes: some clear, some cloudy dates
    assert frac.max() > 0.5 and frac.min() < 0.5
    assert (valid.values <= ~np.isin(scl.values, DEFAULT_INVALID_SCL)).all()


def test_dilation_grows_clouds_not_nodata():
    """The swath edge (SCL 0) must not eat clear pixels: only clouds and shadows are grown."""
    scl = np.full((1, 9, 9), 4, np.uint8)
    scl[0, :, :3] = 0  # no data on the left
    scl[0, 4, 7] = 9  # one cloud pixel
    v = scl_valid_mask(xr.DataArray(scl, dims=("time", "y", "x")), dilation_px=1).values[0]
    assert v[:, 3].all()  # the column next to no data stays clear
    assert not v[:, :3].any() and (~v[:, 3:]).sum() == 5  # the cloud's 3×3 cross
