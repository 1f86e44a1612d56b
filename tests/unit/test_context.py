"""Spatial context and label refinement (issue 13's techniques 1, 3 and 4) as the pipeline runs them: neighbourhood
features, segment-based regularisation and coarse-cell-constrained refinement, each independent of the chunking."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from lcup.legends import get_legend
from lcup.ops.features import neighbourhood_features, neighbourhood_names
from lcup.ops.refine import plausible_classes
from lcup.ops.sampling import Sample
from lcup.ops.segments import segment_block, segment_mean
from lcup.stages.features import neighbourhood_px, with_neighbourhood


@pytest.fixture
def feats(rng):
    """Two kinds of 'parcels' (8 × 8 px blocks) with distinct features, noise, and a few missing pixels."""
    kind = np.kron(rng.integers(0, 2, (12, 14)), np.ones((8, 8), int))
    f = np.stack([kind + 0.3 * rng.standard_normal(kind.shape), -kind + 0.3 * rng.standard_normal(kind.shape),
                  rng.standard_normal(kind.shape)], -1).astype(np.float32)
    f[3, 4, :] = np.nan
    return f, kind


def test_neighbourhood_statistics_match_scipy_and_skip_missing_pixels(feats):
    from scipy import ndimage

    f, _ = feats
    out = neighbourhood_features(f, sizes=(3, 5), stats=("std", "mean"))
    assert out.shape == f.shape[:2] + (3 * 2 * 2,) and out.dtype == np.float32
    clean = np.nan_to_num(f)
    inner = (slice(6, -6), slice(6, -6))
    np.testing.assert_allclose(out[inner][..., 3:6], ndimage.generic_filter(clean, np.std, size=(3, 3, 1))[inner], atol=1e-5)
    np.testing.assert_allclose(out[inner][..., 6:9], ndimage.uniform_filter(clean.astype(np.float64), (5, 5, 1))[inner], atol=1e-5)
    # the missing pixel is not counted: the 3 × 3 mean around it is that of its 8 neighbours
    win = f[2:5, 3:6, 0]
    assert out[3, 4, 0] == pytest.approx(np.nanmean(win), rel=1e-6)
    assert neighbourhood_names(["a", "b"], [30, 50], ["std", "mean"])[:3] == ["a_mean30m", "b_mean30m", "a_std30m"]


@pytest.mark.parametrize("chunks", [(96, 112), (17, 50), ((5, 60, 31), (100, 12))])
def test_neighbourhood_features_do_not_depend_on_the_chunks(feats, chunks):
    f, _ = feats
    x = xr.DataArray(f, dims=("y", "x", "feature"), coords={"feature": ["a", "b", "c"]})
    whole = with_neighbourhood(x, [30, 50], ["mean", "std"], 10.0)
    cut = with_neighbourhood(x.chunk({"y": chunks[0], "x": chunks[1], "feature": -1}), [30, 50], ["mean", "std"], 10.0)
    assert list(cut.feature.values[:4]) == ["a", "b", "c", "a_mean30m"] and cut.sizes["feature"] == 15
    np.testing.assert_array_equal(cut.values, whole.values)  # bit for bit
    assert neighbourhood_px({"neighbourhood_m": [20, 30, 50]}, 10) == [3, 3, 5]
    assert neighbourhood_px({"neighbourhood_m": [30]}, 20) == [3]


def test_segments_remove_noise_inside_parcels(feats, rng):
    f, kind = feats
    p1 = np.clip(0.35 + 0.3 * kind + 0.35 * rng.standard_normal(kind.shape), 0, 1).astype(np.float32)
    pred = np.stack([np.zeros_like(p1), p1, p1, 1 - p1])  # class, confidence, P(2) = p1, P(1)
    pred[2:, 3, 4] = np.nan
    noisy = (p1 > 0.5) == kind.astype(bool)
    out = segment_block(pred, f, np.array([2, 1]), region_px=30, method="slic", mix=1.0)
    assert out.shape == pred.shape and np.isnan(out[0, 3, 4])
    seg_right = ((out[0] == 2) == kind.astype(bool))
    seg_right[3, 4] = noisy[3, 4]
    assert seg_right.mean() > noisy.mean() + 0.1  # salt-and-pepper errors inside parcels are gone
    # mix 0 leaves the probabilities alone
    same = segment_block(pred, f, np.array([2, 1]), region_px=30, mix=1e-9)
    np.testing.assert_allclose(same[2:], pred[2:], atol=1e-6)
    assert segment_mean(pred[2:], np.ones(kind.shape, int))[0, 0, 0] == pytest.approx(np.nanmean(p1[np.isfinite(pred[2])]), rel=1e-5)


def test_predict_with_segments_depends_on_the_output_chunks_only(feats, rng):
    """Notebook use (no halo): the features' own chunking does not change the map; the output chunks do."""
    from sklearn.ensemble import RandomForestClassifier

    import lcup

    f, kind = feats
    ok = np.isfinite(f).all(-1)
    clf = RandomForestClassifier(20, random_state=0).fit(f[ok][::3], 1 + kind[ok][::3])
    x = xr.DataArray(f, dims=("y", "x", "feature"), coords={"y": np.arange(96) * -10.0, "x": np.arange(112) * 10.0,
                                                           "feature": ["a", "b", "c"]})
    from odc.geo.geobox import GeoBox

    gb = GeoBox.from_bbox((0, -960, 1120, 0), "EPSG:32633", resolution=10)
    kw = dict(legend=get_legend("lcup7"), geobox=gb, output={"dir": ".", "probabilities": "float16"}, segments="slic",
              segment_px=20, chunk_px=64)
    a = lcup.predict(clf, x.chunk({"y": 96, "x": 112, "feature": -1}), **kw)
    b = lcup.predict(clf, x.chunk({"y": 30, "x": 50, "feature": -1}), **kw)
    assert a["class"].data.chunks == ((64, 32), (64, 48))
    for v in ("class", "confidence", "probability"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    plain = lcup.predict(clf, x.chunk({"y": 96, "x": 112, "feature": -1}), **{**kw, "segments": "none"})
    assert (plain["class"].values != a["class"].values).sum() > 10


def test_plausible_classes_chunk_by_chunk_equal_the_whole_map(rng):
    from lcup.stages.train import plausible_at

    lab = np.kron(rng.integers(0, 4, (9, 8)), np.ones((10, 10), np.uint8)).astype(np.uint8)
    iy, ix = rng.integers(0, 90, 300), rng.integers(0, 80, 300)
    whole = plausible_classes(lab, iy, ix, [1, 2, 3], 10)
    for chunks in ((90, 80), (23, 31), (10, 80)):
        np.testing.assert_array_equal(plausible_at(da.from_array(lab, chunks=chunks), iy, ix, [1, 2, 3], 10), whole)


def test_refinement_relabels_training_samples_where_another_class_is_plausible(rng):
    """Class-2 parcels hidden inside class-1 coarse cells: refinement turns their samples into class 2, only
    where class 2 occurs in the coarse map nearby, and never touches the validation blocks."""
    from lcup.stages.train import refine

    n_cells = 12
    coarse = np.kron(rng.integers(1, 3, (n_cells, n_cells)), np.ones((10, 10), np.uint8)).astype(np.uint8)
    true = coarse.copy()
    hidden = np.zeros_like(coarse, bool)
    for cy, cx in np.argwhere(coarse[::10, ::10] == 1)[::2]:
        hidden[10 * cy:10 * cy + 4, 10 * cx:10 * cx + 4] = True  # a 4 × 4 px class-2 parcel in a class-1 cell
    true[hidden] = 2
    iy, ix = np.nonzero(np.ones_like(coarse, bool))
    pick = rng.choice(len(iy), 6000, replace=False)
    iy, ix = iy[pick], ix[pick]
    X = (true[iy, ix][:, None] + 0.25 * rng.standard_normal((len(iy), 4))).astype(np.float32)
    validation = (iy < 30)
    smp = Sample(iy, ix, coarse[iy, ix], validation)
    lab = xr.Dataset({"label": (("y", "x"), da.from_array(coarse, chunks=40))}, attrs={"figures": {"coarse_cell_px": 10.0}})
    new, info = refine(X, smp, lab, model={"refine_rounds": 2, "refine_threshold": 0.6})
    assert len(info["rounds"]) >= 1 and info["changed"] > 0
    moved = new.label != smp.label
    assert not moved[validation].any()
    assert (true[iy, ix][moved] == new.label[moved]).mean() > 0.9  # what moved is right
    assert moved[hidden[iy, ix] & ~validation].mean() > 0.5  # and most hidden parcels' samples moved
    same, none = refine(X, smp, lab, model={"refine_rounds": 0})
    assert same is smp and none["changed"] == 0


def test_refinement_takes_the_model_that_vouches_for_the_labels():
    """refine_labels(fit_proba=...): the given model (a network, in the pipeline with kind tempcnn) gives the
    cross-fitted probabilities; a class it is sure of moves the samples where it is plausible, and only there."""
    from lcup.ops.refine import refine_labels

    rng = np.random.default_rng(0)
    n = 600
    X = rng.normal(size=(n, 3))
    y = np.where(np.arange(n) % 2 == 0, 1, 2)
    groups = np.arange(n) // 60
    plausible = np.ones((n, 2), bool)
    plausible[: n // 2, 1] = False  # class 2 not plausible in the first half
    calls = []

    def always_two(Xa, ya, Xb, seed):
        calls.append(len(Xa))
        return np.tile([0.1, 0.9], (len(Xb), 1))

    new, info = refine_labels(X, y, groups, plausible, rounds=1, fit_proba=always_two)
    assert len(calls) == 5  # group 5-fold
    assert (new[n // 2:] == 2).all() and (new[: n // 2] == y[: n // 2]).all()
    assert info["rounds"][0]["relabelled"] == int(((y == 1) & (np.arange(n) >= n // 2)).sum())
