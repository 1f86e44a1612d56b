from __future__ import annotations

import numpy as np
from sklearn.metrics import cohen_kappa_score, f1_score, jaccard_score

from lcup.ops.accuracy import accuracy_report, confusion_matrix


def test_against_sklearn(rng):
    ref = rng.integers(1, 5, 2000)
    pred = np.where(rng.random(2000) < 0.7, ref, rng.integers(1, 5, 2000))
    rep = accuracy_report(ref, pred, [1, 2, 3, 4])
    assert np.isclose(rep["overall_accuracy"], (ref == pred).mean())
    assert np.isclose(rep["kappa"], cohen_kappa_score(ref, pred))
    f1 = f1_score(ref, pred, average=None, labels=[1, 2, 3, 4])
    iou = jaccard_score(ref, pred, average=None, labels=[1, 2, 3, 4])
    for i, c in enumerate([1, 2, 3, 4]):
        assert np.isclose(rep["per_class"][c]["f1"], f1[i])
        assert np.isclose(rep["per_class"][c]["iou"], iou[i])


def test_nodata_reference_ignored_and_unknown_prediction_is_error():
    ref = np.array([0, 1, 1, 2])
    pred = np.array([2, 1, 9, 2])
    cm = confusion_matrix(ref, pred, [1, 2])
    np.testing.assert_array_equal(cm, [[1, 0], [0, 1]])
    rep = accuracy_report(ref, pred, [1, 2])
    assert rep["n"] == 3 and np.isclose(rep["overall_accuracy"], 2 / 3)


def test_report_summed_over_chunks_equals_whole_array(rng):
    import dask.array as da

    from lcup.ops.accuracy import confusion_blocks, report_from_confusion

    ref = rng.integers(0, 5, (130, 170)).astype(np.uint8)
    pred = np.where(rng.random(ref.shape) < 0.7, ref, rng.integers(0, 7, ref.shape)).astype(np.uint8)
    counts = confusion_blocks(da.from_array(ref, chunks=50), da.from_array(pred, chunks=(64, 40)), [1, 2, 3, 4]).compute()
    assert report_from_confusion(counts, [1, 2, 3, 4]) == accuracy_report(ref, pred, [1, 2, 3, 4])


def test_kappa_and_oa_with_nodata_predictions_match_sklearn(rng):
    """30 % of the predictions are no data (0) or a code outside the legend: kappa must equal sklearn's
    with those kept as their own label, and OA must be trace / sum of the matrix reported."""
    from sklearn.metrics import accuracy_score

    ref = rng.integers(1, 5, 5000)
    pred = np.where(rng.random(5000) < 0.6, ref, rng.integers(1, 5, 5000))
    hole = rng.random(5000) < 0.3
    pred[hole] = np.where(rng.random(hole.sum()) < 0.8, 0, 9)
    rep = accuracy_report(ref, pred, [1, 2, 3, 4])
    other = np.where(np.isin(pred, [1, 2, 3, 4]), pred, 0)  # both "no data" and "other" are one column
    assert np.isclose(rep["kappa"], cohen_kappa_score(ref, other), atol=1e-12)
    cm = np.asarray(rep["confusion_matrix"])
    assert cm.shape == (4, 5) and rep["confusion_columns"][-1] == "nodata_or_other"
    assert rep["n"] == cm.sum() == 5000
    assert np.isclose(rep["overall_accuracy"], np.trace(cm[:, :4]) / cm.sum())
    assert np.isclose(rep["overall_accuracy"], accuracy_score(ref, pred))
    assert rep["unpredicted"] == hole.sum()
    # without the fix kappa was computed from the 4×4 block only and was far too high
    assert rep["kappa"] < cohen_kappa_score(ref[~hole], pred[~hole])


def test_calibration_error_is_zero_when_probabilities_are_right_and_large_when_overconfident():
    from lcup.ops.accuracy import calibration

    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 200_000)  # top-class probability; right with exactly that probability
    right = rng.random(len(p)) < p
    ref = np.where(right, 1, 2)
    proba = np.stack([p, 1 - p], 1)
    assert calibration(ref, proba, [1, 2])["ece"] < 0.01
    over = np.stack([np.full(len(p), 0.99), np.full(len(p), 0.01)], 1)  # always sure, right 75 % of the time
    cal = calibration(ref, over, [1, 2])
    assert abs(cal["ece"] - (0.99 - right.mean())) < 1e-9 and len(cal["bins"]) == 1 and cal["n"] == len(p)
    assert calibration(np.array([]), np.zeros((0, 2)), [1, 2])["ece"] is None


def test_relabel_maps_the_classes_missing_from_validation():
    from lcup.stages.score import relabel

    rep = {"classes": [1, 2], "confusion_columns": [1, 2], "per_class": {1: {}, 2: {}}, "classes_missing": [3]}
    assert relabel(rep, np.array([0, 10, 20, 30]))["classes_missing"] == [30]
