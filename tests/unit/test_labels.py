"""Erosion with exact pixel counts, stratified sampling with spatial blocks, crosswalks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from lcup.errors import EmptyClassWarning, LabelError
from lcup.legends import CROSSWALKS, LEGENDS, apply_crosswalk, get_crosswalk
from lcup.ops.labels import erode_classes
from lcup.ops.sampling import stratified_sample


def _squares():
    lab = np.zeros((40, 40), np.uint8)
    lab[5:15, 5:15] = 1  # 10×10 square, surrounded by no data
    lab[20:40, 0:40] = 2  # touches the array edge on three sides
    lab[20:40, 20:40] = 3  # shares an edge with class 2
    return lab


@pytest.mark.parametrize("radius, n1", [(0, 100), (1, 64), (2, 36), (3, 16)])
def test_erosion_exact_counts_on_square(radius, n1):
    out = erode_classes(_squares(), radius)
    assert (out == 1).sum() == n1


def test_radius_one_erodes_one_pixel_rim_and_array_edge_is_not_an_edge():
    out = erode_classes(_squares(), 1)
    # class 2 block (rows 20..39, cols 0..19): loses its top row (next to no data) and its
    # right column (next to class 3), not the array edges
    assert (out == 2).sum() == 19 * 19
    assert (out == 3).sum() == 19 * 19


def test_erosion_dask_equals_numpy():
    lab = np.random.default_rng(0).integers(0, 4, (50, 60)).astype(np.uint8)
    lab = np.kron(lab[:10, :12], np.ones((5, 5), np.uint8))
    a = erode_classes(lab, 2)
    b = erode_classes(xr.DataArray(lab, dims=("y", "x")).chunk({"y": 13, "x": 17}), 2)
    np.testing.assert_array_equal(a, b.compute().values)


def test_stratified_sample_caps_blocks_and_seed(rng):
    lab = np.ones((300, 300), np.uint8)
    lab[:, 150:] = 2
    lab[:20, :20] = 3  # small class
    s = stratified_sample(da.from_array(lab, chunks=120), 500, 3, min_per_class=10, block_px=50, validation_fraction=0.3)
    s2 = stratified_sample(da.from_array(lab, chunks=120), 500, 3, min_per_class=10, block_px=50, validation_fraction=0.3)
    np.testing.assert_array_equal(s.iy, s2.iy)
    tr = ~s.validation
    for c in (1, 2):
        assert (s.label[tr] == c).sum() == 500
    assert (lab[s.iy, s.ix] == s.label).all()
    # spatial separation: no 50 px block holds both training and validation samples
    bt = set(zip(s.iy[tr] // 50, s.ix[tr] // 50))
    bv = set(zip(s.iy[~tr] // 50, s.ix[~tr] // 50))
    assert bt and bv and not (bt & bv)


def test_small_class_policies():
    lab = np.ones((100, 100), np.uint8)
    lab[50:, :] = 2
    lab[0, 0:5] = 3
    with pytest.warns(EmptyClassWarning, match="class 3 has only 5"):
        s = stratified_sample(da.from_array(lab, chunks=40), 100, 0, min_per_class=10, small_class_policy="drop")
    assert 3 not in s.label
    with pytest.raises(LabelError, match="min_per_class"):
        stratified_sample(da.from_array(lab, chunks=40), 100, 0, min_per_class=10, small_class_policy="error")


def test_one_class_is_an_error():
    with pytest.raises(LabelError, match="at least two"):
        stratified_sample(da.from_array(np.ones((50, 50), np.uint8), chunks=20), 10, 0)


def test_crosswalks_cover_their_legends():
    for (src, dst), cw in CROSSWALKS.items():
        assert set(cw) == set(LEGENDS[src].codes), (src, dst)
        assert set(cw.values()) - {0} <= set(LEGENDS[dst].codes)


def test_unknown_codes_are_named():
    with pytest.raises(LabelError, match=r"\[77\]"):
        apply_crosswalk(np.array([[10, 77], [0, 30]]), get_crosswalk("esa-worldcover", "lcup7"))
    out = apply_crosswalk(np.array([[10, 80], [0, 30]]), get_crosswalk("esa-worldcover", "lcup7"))
    np.testing.assert_array_equal(out, [[1, 6], [0, 2]])


def test_a_map_in_another_legend_is_told_so():
    """A CGLS-LC100 map declared esa-worldcover (was told to 'add them under labels.crosswalk'): its codes are all
    CGLS-LC100's, and the message says to set the legend."""
    with pytest.raises(LabelError, match=r"label codes \[111, 126\] are not in the crosswalk .* every code of the map is in "
                                         r"the legend\(s\) \['cgls-lc100'\]: this looks like a map in another legend; set "
                                         r"its legend \(e\.g\. labels\.legend: cgls-lc100\)"):
        apply_crosswalk(np.array([[111, 126], [0, 30]]), get_crosswalk("esa-worldcover", "lcup7"))


def test_homogeneity_edge_and_confidence():
    from lcup.ops.labels import edge_distance, homogeneity, label_confidence

    lab = np.ones((60, 60), np.uint8)
    lab[:, 30:] = 2
    h = homogeneity(lab, 30)
    assert h[30, 5] == 1.0 and np.isclose(h[30, 29], 16 / 30, atol=0.02)
    d = edge_distance(lab)
    assert d[10, 29] == 1 and d[10, 25] == 5
    conf = label_confidence(lab, 10)
    assert conf[30, 5] == 1.0 and conf[30, 29] < 0.1
    other = lab.copy()
    other[:30] = 2  # the other map agrees on the bottom half only
    conf2 = label_confidence(lab, 10, others=[other])
    assert conf2[45, 5] == conf[45, 5] and conf2[10, 5] == 0.0


def test_confident_learning_flags_flipped_labels(rng):
    from lcup.ops.model import confident_learning_filter

    X = np.concatenate([rng.normal(0, 1, (300, 4)), rng.normal(4, 1, (300, 4))]).astype(np.float32)
    y = np.repeat([1, 2], 300)
    flipped = rng.choice(600, 30, replace=False)
    y[flipped] = 3 - y[flipped]
    keep, info = confident_learning_filter(X, y, seed=0)
    assert info["n_flagged"] >= 20
    assert (~keep[flipped]).mean() > 0.6  # most flipped labels are caught ...
    assert np.delete(~keep, flipped).mean() < 0.05  # ... and few clean ones
    assert (~keep).sum() < 60  # few clean ones are lost


def test_corine_crosswalks():
    assert get_crosswalk("corine", "corine-l1")[312] == 3
    assert get_crosswalk("corine", "corine-l2")[242] == 24
    cw = get_crosswalk("corine-grid", "lcup7")  # chained through the 3-digit codes
    assert len(cw) == 44 and cw[1] == 4 and cw[24] == 1 and cw[41] == 6


def test_chunked_sampler_quotas_blocks_and_seed():
    from lcup.ops.sampling import stratified_sample

    lab = np.ones((300, 300), np.uint8)
    lab[:, 150:] = 2
    lab[:20, :20] = 3
    d = da.from_array(lab, chunks=70)
    s = stratified_sample(d, 500, 3, min_per_class=10, block_px=50, validation_fraction=0.3)
    s2 = stratified_sample(d, 500, 3, min_per_class=10, block_px=50, validation_fraction=0.3)
    np.testing.assert_array_equal(s.iy, s2.iy)
    assert (lab[s.iy, s.ix] == s.label).all()
    assert len(set(zip(s.iy.tolist(), s.ix.tolist()))) == len(s)  # without replacement
    tr = ~s.validation
    for c in (1, 2):
        assert (s.label[tr] == c).sum() == 500
    n3 = (s.label == 3).sum()  # the small class sits in one block: all 400 px (training) or the validation quota
    assert n3 in (400, int(round(500 * 0.3 / 0.7)))
    bt = set(zip(s.iy[tr] // 50, s.ix[tr] // 50))
    bv = set(zip(s.iy[~tr] // 50, s.ix[~tr] // 50))
    assert bt and bv and not (bt & bv)
    # samples spread over the whole area, not just the first chunks
    assert s.iy.max() > 250 and s.ix.max() > 250


def _blocky_labels(rng, shape=(300, 260), cell=10):
    """A coarse random map upsampled ×cell, with no-data cells and one class filling a big square."""
    coarse = rng.integers(0, 5, (shape[0] // cell + 1, shape[1] // cell + 1)).astype(np.uint8)
    coarse[2:14, 3:16] = 3  # wider than a chunk plus its halo: a chunk with one class only
    return np.kron(coarse, np.ones((cell, cell), np.uint8))[: shape[0], : shape[1]]


@pytest.mark.parametrize("chunk", [64, 100])
def test_chunked_label_stages_equal_the_whole_array(rng, chunk):
    """Erosion and confidence chunk by chunk with a halo give exactly the whole-array values."""
    import dask.array as da

    from lcup.ops.labels import erode_classes, label_confidence, label_statistics

    lab = _blocky_labels(rng)
    other = lab.copy()
    other[::7] = 1
    dl, do = da.from_array(lab, chunks=chunk), da.from_array(other, chunks=chunk)
    conf = label_confidence(dl, 10, others=[do])
    assert isinstance(conf, da.Array) and conf.chunks == dl.chunks
    np.testing.assert_array_equal(conf.compute(), label_confidence(lab, 10, others=[other]))
    np.testing.assert_array_equal(label_confidence(dl, 2.5).compute(), label_confidence(lab, 2.5))
    ero = erode_classes(dl, 3)
    np.testing.assert_array_equal(ero.compute(), erode_classes(lab, 3))
    stats = label_statistics(dl, ero, ero, conf).compute()
    assert stats["labelled_px"] == int((lab > 0).sum())
    assert stats["after_erosion_px"] == int((erode_classes(lab, 3) > 0).sum())
    assert stats["class_px"] == {int(c): int((lab == c).sum()) for c in np.unique(lab) if c}
    assert np.isclose(stats["mean_confidence"], label_confidence(lab, 10, others=[other])[lab > 0].mean())


def test_homogeneity_counts_like_a_uniform_filter(rng):
    from scipy import ndimage

    from lcup.ops.labels import edge_distance, homogeneity

    lab = _blocky_labels(rng, (90, 70), 7)
    for w in (3, 8, 21):
        ref = np.zeros(lab.shape, np.float32)
        for c in np.unique(lab[lab > 0]):
            m = lab == c
            ref[m] = ndimage.uniform_filter(m.astype(np.float64), w, mode="nearest")[m]
        np.testing.assert_allclose(homogeneity(lab, w), ref, atol=1e-6)
    # one class everywhere: no edge anywhere (the array's border is not a class edge)
    assert np.isinf(edge_distance(np.full((5, 6), 2, np.uint8))).all()


def test_sample_from_a_few_chunks_still_fills_every_class():
    """max_chunks: the sample comes from a few random chunks, plus those a rare class needs; quotas are still met."""
    from lcup.ops.sampling import stratified_sample

    lab = np.ones((400, 400), np.uint8)
    lab[:, 200:] = 2
    lab[350:370, 10:30] = 3  # a rare class inside one chunk
    d = da.from_array(lab, chunks=50)  # 64 chunks
    kw = dict(min_per_class=10, block_px=20)
    full = stratified_sample(d, 100, 0, **kw)
    few = stratified_sample(d, 100, 0, max_chunks=4, **kw)
    used = set(zip((few.iy // 50).tolist(), (few.ix // 50).tolist()))
    assert len(used) <= 8, used
    assert (350 // 50, 10 // 50) in used
    for c in (1, 2, 3):
        for v in (False, True):
            assert ((few.label == c) & (few.validation == v)).sum() == ((full.label == c) & (full.validation == v)).sum()
    assert (lab[few.iy, few.ix] == few.label).all()
    vals = da.from_array(np.arange(lab.size, dtype=np.float32).reshape(lab.shape), chunks=50)
    with_vals = stratified_sample(d, 100, 0, max_chunks=4, values=vals, **kw)
    np.testing.assert_array_equal(with_vals.iy, few.iy)  # same draw, plus the values read at it
    np.testing.assert_array_equal(with_vals.value, with_vals.iy * lab.shape[1] + with_vals.ix)
    same = stratified_sample(d, 100, 0, max_chunks=64, **kw)  # as many as there are: the default draw
    np.testing.assert_array_equal(same.iy, full.iy)
    np.testing.assert_array_equal(same.ix, full.ix)


def test_block_split_leaves_a_buffer_and_whole_coarse_cells(rng):
    """Validation blocks snapped to a 10 px coarse grid shifted by (3, 7) px, 16 px buffer: no coarse cell gives
    pixels to both sides, and no training pixel lies within 16 px of a validation pixel."""
    import dask.array as da

    from lcup.ops.sampling import make_block_split, min_train_validation_distance, stratified_sample

    lab = np.zeros((300, 300), np.uint8)
    cy, cx = np.mgrid[0:300, 0:300]
    lab[:] = 1 + (((cy - 3) // 10 + (cx - 7) // 10) % 3)  # 3 classes in 10 px cells whose edges are at rows 3, 13, ...
    split = make_block_split(np.random.default_rng(0), lab.shape, 45, 0.4, cell_px=10, cell_origin=(3, 7), buffer_px=16)
    assert split.block_px == 50 and split.origin == (7, 3)
    yy, xx = np.nonzero(lab)
    isval, ok = split.split(yy, xx)
    cell = ((yy - 3) // 10) * 100 + (xx - 7) // 10
    both = set(cell[isval]) & set(cell[~isval])
    assert not both, f"{len(both)} coarse cells give pixels to both training and validation"
    s = stratified_sample(da.from_array(lab, chunks=64), 3000, 1, block_px=45, validation_fraction=0.4,
                                  cell_px=10, cell_origin=(3, 7), buffer_px=16)
    assert s.validation.any() and (~s.validation).any()
    assert min_train_validation_distance(s) >= 16
    # without the buffer, training pixels touch the validation blocks
    s0 = stratified_sample(da.from_array(lab, chunks=64), 3000, 1, block_px=45, validation_fraction=0.4)
    assert min_train_validation_distance(s0) < 3


def test_one_block_means_no_validation_and_class_lost_in_split_warns():
    import dask.array as da

    from lcup.errors import EmptyClassWarning
    from lcup.ops.sampling import stratified_sample, validation_blocks

    assert not validation_blocks(np.random.default_rng(0), (50, 50), 100, 0.3).any()
    lab = np.ones((200, 200), np.uint8)
    lab[:, 100:] = 2
    lab[10:14, 150:154] = 3  # a small class living in one block only
    for seed in range(20):
        held = validation_blocks(np.random.default_rng(seed), lab.shape, 100, 0.5)
        if held[0, 1] and not held[1, 1] and not held[:, 0].all():
            break  # the block holding class 3 is held out: no training pixel of class 3 is left
    s = stratified_sample(da.from_array(lab, chunks=100), 100, seed, min_per_class=5, block_px=100,
                                  validation_fraction=0.5)
    assert 3 in s.label[~s.validation]  # its block was given back to training: the class can be learnt
    lab[50, 50] = 4  # a class of one pixel: below min_per_class after the split, and said so
    with pytest.warns(EmptyClassWarning, match=r"class 4 has only [01] usable pixels in the training blocks"):
        stratified_sample(da.from_array(lab, chunks=100), 100, seed, min_per_class=5, block_px=100,
                                  validation_fraction=0.5)


def test_vanished_classes():
    from lcup.stages.score import vanished_classes

    assert vanished_classes({1: 1000, 2: 400, 3: 50}, {1: 900, 2: 39, 5: 7}) == {
        2: {"coarse_px": 400, "map_px": 39}, 3: {"coarse_px": 50, "map_px": 0}}


def test_train_says_why_there_is_no_validation(rng):
    """One validation class (or none): no 'OA 1.000, kappa nan', but the reason and the fix."""
    from lcup.errors import EmptyClassWarning
    from lcup.legends import get_legend
    from lcup.ops.sampling import Sample
    from lcup.stages import train

    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = np.where(X[:, 0] > 0, 1, 2).astype(np.uint8)
    val = np.zeros(200, bool)
    val[:20] = True
    y[:20] = 1  # the validation blocks hold one class
    s = Sample(np.arange(200), np.arange(200), y, val)
    with pytest.warns(EmptyClassWarning, match="validation blocks hold 1 class only.*labels.block_m"):
        clf, figures = train(X, s, names=list("abcd"), legend=get_legend("lcup7"), model={"n_estimators": 5})
    assert "skipped" in figures["validation"] and "overall_accuracy" not in figures["validation"]


def test_float_label_maps_read_nan_as_no_data_and_refuse_fractions():
    """A float class map with NaN cells (was: 'cannot convert float NaN to integer', exit 70): NaN and inf are no
    data; a value that is not a whole code is refused, naming it."""
    cw = get_crosswalk("esa-worldcover", "lcup7")
    out = apply_crosswalk(np.array([[10, np.nan], [80, -np.inf]], np.float32), cw)
    np.testing.assert_array_equal(out, [[1, 0], [6, 0]])
    with pytest.raises(LabelError, match=r"not whole class codes \(e.g. 10.5\)"):
        apply_crosswalk(np.array([10.5, 20.0]), cw)
