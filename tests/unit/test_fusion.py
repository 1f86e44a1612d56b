"""The coarse map as a prior on the class probabilities (lcup.ops.fusion, lcup.stages.predict)."""

import dask.array as da
import numpy as np
import pytest

from lcup.ops.fusion import coarse_prior, default_floor, fuse, fuse_block
from lcup.stages.predict import coarse_prior_array


@pytest.fixture
def coarse(rng):
    """A 100 m map at 10 m: 13 × 11 cells of 10 px, classes 1–3 and no data (0)."""
    return np.kron(rng.integers(0, 4, (13, 11)), np.ones((10, 10), np.uint8)).astype(np.uint8)


def test_prior_shares_floor_and_no_data(coarse):
    p = coarse_prior(coarse, [1, 2, 3], 10, floor=0.05)
    assert p.shape == (3, *coarse.shape) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(0)[(coarse > 0)], 1, rtol=1e-6)
    # in the middle of a labelled cell the window holds that cell only: its class 1 - 2 × floor, the others the floor
    cy, cx = np.argwhere(coarse[::10, ::10] > 0)[0]
    y, x = 10 * cy + 5, 10 * cx + 5
    c = int(coarse[y, x])
    assert p[c - 1, y, x] == pytest.approx(0.9) and sorted(p[:, y, x])[0] == pytest.approx(0.05)
    # a window with no labelled pixel: flat
    empty = np.zeros((20, 20), np.uint8)
    np.testing.assert_allclose(coarse_prior(empty, [1, 2, 3], 10), 1 / 3, rtol=1e-6)


def test_floor_leaves_a_prior_for_many_classes():
    assert default_floor(7) == 0.05
    assert default_floor(44) == pytest.approx(0.5 / 44)  # CORINE: 0.05 × 44 > 1 would make every prior flat
    lab = np.ones((10, 10), np.uint8)
    p = coarse_prior(lab, list(range(1, 45)), 3, floor=None)
    assert p[0, 5, 5] > 0.5 > p[1, 5, 5]


@pytest.mark.parametrize("chunks", [(64, 64), (17, 50), ((5, 60, 65), (100, 10)), (130, 110)])
def test_prior_does_not_depend_on_the_chunks(coarse, chunks):
    """The halo makes every chunking give the whole-array result bit for bit (a narrow chunk joins its neighbour)."""
    ref = coarse_prior(coarse, [1, 2, 3], 30, floor=None)
    got = coarse_prior_array(da.from_array(coarse, chunks=chunks), [1, 2, 3], 30)
    assert got.chunks[1:] == da.from_array(coarse, chunks=chunks).chunks
    np.testing.assert_array_equal(got.compute(), ref)


@pytest.mark.parametrize("shape, chunks", [((10, 40), (5, 20)), ((8, 8), (8, 8)), ((16, 200), (16, 64))])
def test_prior_of_an_area_smaller_than_its_window(rng, shape, chunks):
    """An AOI a few pixels across (smaller than the halo) is one chunk along that axis, without a halo."""
    lab = rng.integers(0, 4, shape).astype(np.uint8)
    got = coarse_prior_array(da.from_array(lab, chunks=chunks), [1, 2, 3], 30)
    np.testing.assert_array_equal(got.compute(), coarse_prior(lab, [1, 2, 3], 30, floor=None))


def test_fuse_lets_the_coarse_class_stand_where_the_model_is_unsure():
    prior = np.array([0.9, 0.1], np.float32)[:, None, None] * np.ones((1, 1, 3), np.float32)
    prob = np.array([[0.45, 0.2, 0.05], [0.55, 0.8, 0.95]], np.float32)[:, None, :]  # the model says class 1, less or more sure
    pred = np.concatenate([np.ones((1, 1, 3), np.float32), prob.max(0, keepdims=True), prob])
    out = fuse_block(pred, prior, [0, 1], strength=0.75)
    assert out[0, 0].tolist() == [0, 0, 1]  # unsure: the coarse class; sure: the model
    np.testing.assert_allclose(out[2:].sum(0), 1, rtol=1e-6)
    assert out[1, 0, 0] == pytest.approx(out[2, 0, 0])  # confidence of the posterior
    np.testing.assert_array_equal(fuse_block(pred, prior, [0, 1], strength=0), pred)
    # probability ∝ p × prior ** strength
    post = fuse(prob, prior, 0.75)
    expect = prob * prior ** 0.75
    np.testing.assert_allclose(post, expect / expect.sum(0), rtol=1e-6)


def test_fuse_keeps_no_data():
    pred = np.full((4, 2, 2), np.nan, np.float32)
    pred[:, 0, 0] = [1, 0.7, 0.3, 0.7]
    out = fuse_block(pred, np.full((2, 2, 2), 0.5, np.float32), [0, 1], strength=1.0)
    assert np.isnan(out[:, 1]).all() and np.isnan(out[:, 0, 1]).all() and out[0, 0, 0] == 1
