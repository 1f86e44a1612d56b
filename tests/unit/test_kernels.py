"""The fused mask → interpolate → Savitzky–Golay kernel against per-pixel numpy/scipy."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.signal import savgol_filter

from lcup.errors import ChunkingError
from lcup.ops._kernels import fused_mask_interp_smooth, reference_mask_interp_smooth, savgol_band
from lcup.ops.temporal import interpolate_smooth, regular_grid


def test_savgol_band_equals_scipy(rng):
    x = rng.normal(size=37)
    lo, coef = savgol_band(37, 7, 2)
    y = np.array([coef[i] @ x[lo[i] : lo[i] + 7] for i in range(37)])
    np.testing.assert_allclose(y, savgol_filter(x, 7, 2, mode="interp"), atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    nt=st.integers(2, 40),
    npx=st.integers(1, 12),
    window=st.sampled_from([1, 3, 5, 7]),
    data=st.data(),
)
def test_kernel_equals_np_interp_then_savgol(nt, npx, window, data):
    t_obs = np.sort(data.draw(hnp.arrays(np.float64, nt, elements=st.floats(0, 365), unique=True)))
    values = data.draw(hnp.arrays(np.float32, (npx, nt), elements=st.floats(0.0009765625, 1.0, width=32)))
    valid = data.draw(hnp.arrays(np.bool_, (npx, nt)))
    grid = np.arange(0.0, 366.0, 15.0)
    polyorder = min(2, window - 1)
    got = fused_mask_interp_smooth(values, valid, t_obs, grid, window=window, polyorder=polyorder)
    for p in range(npx):
        ok = valid[p]
        if not ok.any():
            assert np.isnan(got[p]).all()
            continue
        y = np.interp(grid, t_obs[ok], values[p, ok].astype(np.float64))
        if window > 1:
            y = savgol_filter(y, window, polyorder, mode="interp")
        np.testing.assert_allclose(got[p], y, rtol=1e-5, atol=1e-5)


def test_edge_cases_all_masked_one_valid_none_masked():
    t = np.array([0.0, 10.0, 20.0, 30.0])
    grid = np.array([0.0, 5.0, 15.0, 25.0, 30.0])
    v = np.array([[0.1, 0.2, 0.3, 0.4]] * 3, np.float32)
    m = np.array([[False] * 4, [False, True, False, False], [True] * 4])
    out = fused_mask_interp_smooth(v, m, t, grid, window=1)
    assert np.isnan(out[0]).all()
    np.testing.assert_allclose(out[1], 0.2)  # one valid: held at both ends
    np.testing.assert_allclose(out[2], np.interp(grid, t, v[2]), rtol=1e-6)


def test_uint16_nodata_and_scale_offset():
    t = np.array([0.0, 10.0, 20.0])
    v = np.array([[2000, 0, 4000]], np.uint16)  # 0 = nodata even where valid
    m = np.ones_like(v, bool)
    out = fused_mask_interp_smooth(v, m, t, np.array([10.0]), scale=np.full(3, 1e-4), offset=np.full(3, -0.1), window=1)
    np.testing.assert_allclose(out, [[0.2]], rtol=1e-6)  # mean of 0.1 and 0.3


def test_float_nan_is_nodata_and_zero_is_value():
    t = np.array([0.0, 10.0, 20.0])
    v = np.array([[0.0, np.nan, 0.4]], np.float32)
    out = fused_mask_interp_smooth(v, np.ones_like(v, bool), t, np.array([10.0]), window=1)
    np.testing.assert_allclose(out, [[0.2]], rtol=1e-6)


def test_max_gap_and_hold_ends():
    t = np.array([10.0, 20.0, 100.0])
    v = np.array([[0.1, 0.2, 0.3]], np.float32)
    m = np.ones_like(v, bool)
    grid = np.array([0.0, 15.0, 60.0, 110.0])
    out = fused_mask_interp_smooth(v, m, t, grid, window=1, max_gap=30.0)
    assert np.isnan(out[0, 2])  # inside an 80-day gap
    np.testing.assert_allclose(out[0, [0, 1, 3]], [0.1, 0.15, 0.3], rtol=1e-6)
    out = fused_mask_interp_smooth(v, m, t, grid, window=1, hold_ends=False)
    assert np.isnan(out[0, 0]) and np.isnan(out[0, 3])


def test_reference_matches_kernel(rng):
    t = np.sort(rng.uniform(0, 365, 50))
    v = rng.integers(1, 6000, (20, 20, 50)).astype(np.uint16)
    m = rng.random((20, 20, 50)) > 0.5
    kw = dict(scale=np.full(50, 1e-4), offset=np.full(50, -0.1), window=5, polyorder=2, max_gap=60.0)
    np.testing.assert_allclose(fused_mask_interp_smooth(v, m, t, np.arange(0, 366, 10.0), **kw),
                               reference_mask_interp_smooth(v, m, t, np.arange(0, 366, 10.0), **kw), atol=1e-5, equal_nan=True)


def _cube(rng, chunks=None):
    times = pd.date_range("2024-01-03", periods=30, freq="12D")
    v = rng.integers(1, 6000, (30, 40, 50)).astype(np.uint16)
    m = rng.random((30, 40, 50)) > 0.4
    dims = ("time", "y", "x")
    vals = xr.DataArray(v, dims=dims, coords={"time": times})
    valid = xr.DataArray(m, dims=dims, coords={"time": times})
    if chunks:
        vals, valid = vals.chunk(chunks), valid.chunk(chunks)
    return vals, valid


def test_xarray_chunked_equals_unchunked(rng):
    grid = regular_grid("2024-01-01", "2024-12-31", 10)
    a = interpolate_smooth(*_cube(np.random.default_rng(1)), grid)
    b = interpolate_smooth(*_cube(np.random.default_rng(1), {"time": -1, "y": 16, "x": 20}), grid)
    assert isinstance(b.data, da.Array)
    assert a.dims == ("y", "x", "t") and a.sizes["t"] == len(grid)
    np.testing.assert_array_equal(a.values, b.compute().values)


def test_time_split_across_chunks_is_a_clear_error(rng):
    vals, valid = _cube(rng, {"time": 10})
    with pytest.raises(ChunkingError, match=r"\.chunk\(time=-1\)"):
        interpolate_smooth(vals, valid, regular_grid("2024-01-01", "2024-12-31", 10))


def test_series_stats_equal_numpy(rng):
    from lcup.ops._kernels import STAT_CODES, series_stats

    x = rng.normal(size=(7, 9, 23)).astype(np.float32)
    x[0, 0, 5] = np.nan
    doy = np.arange(23) * 16.0 + 1
    out = series_stats(x, tuple(STAT_CODES), doy)
    assert np.isnan(out[0, 0]).all()
    xv = x[1:].astype(np.float64)
    q = np.percentile(xv, [10, 50, 90], axis=-1)
    exp = [xv.mean(-1), xv.std(-1), xv.min(-1), xv.max(-1), q[0], q[1], q[2], q[2] - q[0], doy[xv.argmax(-1)]]
    np.testing.assert_allclose(out[1:], np.stack(exp, -1), rtol=1e-5, atol=1e-5)


def test_real_slovenia_series_match_reference():
    """Real Sentinel-2 NDVI with real s2cloudless masks (eo-learn TestEOPatch, MIT): kernel == reference."""
    import json

    from tests.conftest import shared_data

    root = shared_data("eolearn-slovenia") / "TestEOPatch"
    ndvi = np.load(root / "data" / "NDVI.npy")[..., 0][:, :40, :40]
    clm = np.load(root / "mask" / "CLM.npy")[..., 0][:, :40, :40].astype(bool)
    times = pd.to_datetime(json.loads((root / "timestamps.json").read_text()))
    t = ((times.tz_localize(None) if times.tz else times) - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    grid = np.arange(float(t[0]), float(t[-1]), 16.0)
    v, m = np.moveaxis(ndvi, 0, -1), np.moveaxis(~clm, 0, -1)
    kw = dict(window=5, polyorder=2, max_gap=90.0)
    got = fused_mask_interp_smooth(v, m, np.asarray(t), grid, **kw)
    ref = reference_mask_interp_smooth(v, m, np.asarray(t), grid, **kw)
    np.testing.assert_allclose(got, ref, atol=1e-5, equal_nan=True)
    assert np.isfinite(got).mean() > 0.5  # long winter gaps (> 90 days) are left as nodata, not invented


def test_indices_on_known_reflectance():
    from lcup.ops.indices import INDICES, compute_indices

    bands = {b: xr.DataArray(np.array([v], np.float32)) for b, v in
             dict(blue=0.05, green=0.08, red=0.04, rededge1=0.12, nir=0.40, swir16=0.20, swir22=0.10).items()}
    out = compute_indices(bands, list(INDICES))
    assert np.isclose(out["ndvi"].item(), (0.40 - 0.04) / 0.44)
    assert np.isclose(out["evi"].item(), 2.5 * 0.36 / (0.40 + 6 * 0.04 - 7.5 * 0.05 + 1))
    assert np.isclose(out["savi"].item(), 1.5 * 0.36 / (0.44 + 0.5))
    assert np.isclose(out["mndwi"].item(), (0.08 - 0.20) / 0.28)
    from lcup.errors import MissingBandError

    with pytest.raises(MissingBandError, match="rededge1"):
        compute_indices({"nir": bands["nir"]}, ["ndre"])


def test_cloud_probability_mask_on_real_clp():
    from lcup.ops.cloud import probability_valid_mask
    from tests.conftest import shared_data

    clp = np.load(shared_data("eolearn-slovenia") / "TestEOPatch" / "data" / "CLP.npy")[..., 0]
    m = probability_valid_mask(xr.DataArray(clp, dims=("time", "y", "x")), threshold=0.4, units="fraction")
    np.testing.assert_array_equal(m.values, clp < 0.4)


def test_cloud_probability_units_are_per_band_not_per_pixel():
    """1 % cloud is clear and 100 % is cloudy in a percent band; the old per-pixel guess read 1 as 100 %."""
    from lcup.ops.cloud import probability_valid_mask

    p = xr.DataArray(np.array([[[0.0, 1.0, 39.0, 40.0, 100.0, np.nan]]], np.float32), dims=("time", "y", "x"))
    np.testing.assert_array_equal(probability_valid_mask(p, 0.4).values[0, 0], [1, 1, 1, 0, 0, 0])
    f = p / 100
    np.testing.assert_array_equal(probability_valid_mask(f, 0.4, units="fraction").values, probability_valid_mask(p, 0.4).values)
    with pytest.raises(ValueError, match="between 0 and 1"):
        probability_valid_mask(p, 40)


@settings(max_examples=80, deadline=None)
@given(
    nt=st.integers(1, 30),
    npx=st.integers(1, 8),
    window=st.sampled_from([1, 3, 5]),
    hold_ends=st.booleans(),
    max_gap=st.one_of(st.just(np.inf), st.floats(5.0, 120.0)),
    on_obs=st.booleans(),
    data=st.data(),
)
def test_kernel_equals_reference_ends_gaps_and_grids_on_observations(nt, npx, window, hold_ends, max_gap, on_obs, data):
    """Draws ``hold_ends``, ``max_gap`` and grids whose dates coincide with observations (first and last
    included), non-finite values too: the compiled kernel must equal its per-pixel reference."""
    t_obs = np.sort(data.draw(hnp.arrays(np.float64, nt, elements=st.integers(0, 365).map(float), unique=True)))
    if on_obs:
        grid = np.unique(np.concatenate([t_obs[: max(1, nt // 2)], t_obs[-1:], np.arange(0.0, 366.0, 30.0)]))
    else:
        grid = np.arange(0.0, 366.0, 15.0)
    values = data.draw(hnp.arrays(np.float32, (npx, nt), elements=st.one_of(
        st.floats(0.0009765625, 1.0, width=32), st.sampled_from([np.nan, np.inf, -np.inf]))))
    valid = data.draw(hnp.arrays(np.bool_, (npx, nt)))
    kw = dict(window=window, polyorder=min(2, window - 1), max_gap=max_gap, hold_ends=hold_ends)
    got = fused_mask_interp_smooth(values, valid, t_obs, grid, **kw)
    np.testing.assert_allclose(got, reference_mask_interp_smooth(values, valid, t_obs, grid, **kw),
                               rtol=1e-5, atol=1e-5, equal_nan=True)
    assert not np.isinf(got).any()


def test_first_observation_on_the_grid_without_hold_ends():
    t = np.array([10.0, 20.0])
    out = fused_mask_interp_smooth(np.array([[0.1, 0.3]], np.float32), np.ones((1, 2), bool), t,
                                   np.array([0.0, 10.0, 15.0, 20.0, 30.0]), window=1, hold_ends=False)
    np.testing.assert_allclose(out[0], [np.nan, 0.1, 0.2, 0.3, np.nan], rtol=1e-6)
