"""Accuracy assessment: confusion matrix, overall accuracy, kappa, per-class F1/IoU."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .blocks import sum_blocks


def _confusion_full(reference: np.ndarray, predicted: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """``(n + 1, n + 1)`` counts (reference, predicted); the last column holds predictions outside ``classes``."""
    ref = np.asarray(reference).ravel().astype(np.int64)
    pred = np.nan_to_num(np.asarray(predicted).ravel()).astype(np.int64)
    classes = [int(c) for c in classes]
    n = len(classes)
    keep = (ref != 0) & np.isin(ref, classes)
    lut_size = int(max(classes + [int(ref.max(initial=0)), int(pred.max(initial=0))])) + 1
    lut = np.full(lut_size, n, np.int64)  # predicted classes outside the list go to an overflow column
    for i, c in enumerate(classes):
        lut[c] = i
    r, p = lut[ref[keep]], lut[pred[keep]]
    return np.bincount(r * (n + 1) + p, minlength=(n + 1) * (n + 1)).reshape(n + 1, n + 1)


def confusion_matrix(reference: np.ndarray, predicted: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Confusion matrix ``(reference class, predicted class)``, ignoring reference 0 (no data)."""
    n = len(classes)
    return _confusion_full(reference, predicted, classes)[:n, :n]


def confusion_blocks(reference, predicted, classes: Sequence[int]):
    """The counts :func:`report_from_confusion` takes, summed chunk by chunk over two ``(y, x)`` Dask arrays.

    Returns a ``dask.delayed`` object: compute it (memory bounded by one chunk per task).
    """
    return sum_blocks(_confusion_full, reference, predicted, classes=[int(c) for c in classes])


def accuracy_report(reference: np.ndarray, predicted: np.ndarray, classes: Sequence[int], names: dict[int, str] | None = None) -> dict:
    """Overall accuracy, Cohen's kappa and per-class producer/user accuracy, F1 and IoU.

    Reference pixels equal to 0 are ignored; predicted classes outside ``classes`` count as errors.

    Returns
    -------
    dict
        JSON-ready: ``n``, ``overall_accuracy``, ``kappa``, ``confusion_matrix`` (rows = reference
        classes, columns = ``confusion_columns``: the classes, then no data or another code),
        ``unpredicted`` (reference pixels predicted as no data/other), ``classes`` and ``per_class`` ``{code: {name, support, producer_accuracy, user_accuracy, f1, iou}}``.
    """
    return report_from_confusion(_confusion_full(reference, predicted, classes), classes, names)


def report_from_confusion(counts: np.ndarray, classes: Sequence[int], names: dict[int, str] | None = None) -> dict:
    """:func:`accuracy_report` from ``(n + 1, n + 1)`` counts (:func:`confusion_blocks`).

    The last column counts reference pixels predicted as no data (0) or as a class outside
    ``classes``; it is part of the matrix reported, of ``n``, and of kappa's chance agreement, so that
    ``overall_accuracy == trace / sum`` of the matrix shown and kappa equals
    ``sklearn.metrics.cohen_kappa_score`` with no-data predictions kept as their own label.
    """
    classes = [int(c) for c in classes]
    k = len(classes)
    full = np.asarray(counts)[: k + 1, : k + 1]
    cm = full[:k, :]  # reference rows; the predicted columns plus "no data / other"
    n = int(cm.sum())
    oa = float(np.trace(cm[:, :k])) / n if n else float("nan")
    rows, cols = full.sum(1), full.sum(0)
    pe = float((rows * cols).sum()) / n**2 if n else float("nan")
    kappa = (oa - pe) / (1 - pe) if n and pe < 1 else float("nan")
    per = {}
    for i, c in enumerate(classes):
        tp = cm[i, i]
        ref_n = cm[i].sum()
        pred_n = cols[i]
        pa = tp / ref_n if ref_n else float("nan")
        ua = tp / pred_n if pred_n else float("nan")
        f1 = 2 * tp / (ref_n + pred_n) if (ref_n + pred_n) else float("nan")
        iou = tp / (ref_n + pred_n - tp) if (ref_n + pred_n - tp) else float("nan")
        per[c] = {
            "name": (names or {}).get(c, str(c)),
            "support": int(ref_n),
            "producer_accuracy": float(pa),
            "user_accuracy": float(ua),
            "f1": float(f1),
            "iou": float(iou),
        }
    return {
        "n": n,
        "overall_accuracy": oa,
        "kappa": float(kappa),
        "classes": classes,
        "confusion_matrix": cm.tolist(),
        "confusion_columns": [*classes, "nodata_or_other"],
        "unpredicted": int(cm[:, k].sum()),
        "per_class": per,
    }


def calibration(reference: np.ndarray, proba: np.ndarray, classes: Sequence[int], bins: int = 10) -> dict:
    """How far the top-class probability is from the share of right answers: the expected calibration error (ECE)
    and the reliability curve, on ``bins`` equal-width bins of the top probability.

    Parameters
    ----------
    reference
        ``(n,)`` true classes.
    proba
        ``(n, class)`` probabilities, columns in ``classes`` order.

    Returns
    -------
    dict
        ``ece`` (Σ share of samples × |accuracy − mean probability| over the bins), ``bins``: per non-empty bin
        ``{"lo", "hi", "confidence", "accuracy", "n"}``, and ``n``.

    Examples
    --------
    >>> round(calibration(np.array([1, 1, 2, 2]), np.array([[.9, .1], [.9, .1], [.9, .1], [.2, .8]]), [1, 2])["ece"], 3)
    0.225
    """
    reference, proba = np.asarray(reference), np.asarray(proba, np.float64)
    if not len(reference):
        return {"ece": None, "bins": [], "n": 0}
    conf = proba.max(1)
    right = np.asarray(classes)[proba.argmax(1)] == reference
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            c, a = float(conf[m].mean()), float(right[m].mean())
            ece += m.mean() * abs(a - c)
            out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "confidence": c, "accuracy": a, "n": int(m.sum())})
    return {"ece": float(ece), "bins": out, "n": int(len(reference))}


def temperature_scaling(proba: np.ndarray, reference: np.ndarray, classes: Sequence[int]) -> dict:
    """The temperature ``T`` (of 0.25 … 8) whose scaled probabilities ``p ** (1 / T)`` (renormalised; for a network,
    ``softmax(logits / T)``) have the lowest log-loss on ``reference``, kept when it lowers the expected calibration
    error (:func:`calibration`) — temperature scaling, Guo et al. 2017, on log-probabilities.

    Returns
    -------
    dict
        ``temperature`` (1.0 when not kept), ``fitted``, ``ece_before``, ``ece_after``, ``kept``.

    Examples
    --------
    >>> p = np.array([[0.99, 0.01]] * 3 + [[0.01, 0.99]] * 3)
    >>> y = np.array([1, 1, 2, 2, 2, 1])  # right two times in three, sure every time
    >>> temperature_scaling(p, y, [1, 2])["temperature"] > 2
    True
    """
    proba, reference = np.asarray(proba, np.float64), np.asarray(reference)
    idx = np.searchsorted(np.asarray(classes), reference)
    grid = np.exp(np.linspace(np.log(0.25), np.log(8), 61))
    nll = [-np.mean(np.log(np.clip(with_temperature(proba, t)[np.arange(len(idx)), idx], 1e-12, 1))) for t in grid]
    t = float(grid[int(np.argmin(nll))])
    before, after = calibration(reference, proba, classes)["ece"], calibration(reference, with_temperature(proba, t), classes)["ece"]
    keep = after is not None and before is not None and after < before
    return {"temperature": t if keep else 1.0, "fitted": round(t, 3), "ece_before": before and round(before, 4),
            "ece_after": after and round(after, 4), "kept": bool(keep)}


def with_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``proba`` ``(n, class)`` scaled by ``temperature`` (:func:`temperature_scaling`); itself at 1."""
    if temperature == 1.0 or not len(proba):
        return proba
    z = np.log(np.clip(np.asarray(proba, np.float64), 1e-12, 1)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
