"""Accuracy assessment: confusion matrix, overall accuracy, kappa, per-class F1/IoU."""

from __future__ import annotations

from typing import Sequence

import numpy as np


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
    from .blocks import sum_blocks

    return sum_blocks(_confusion_full, reference, predicted, classes=[int(c) for c in classes])


def accuracy_report(reference: np.ndarray, predicted: np.ndarray, classes: Sequence[int], names: dict[int, str] | None = None) -> dict:
    """Overall accuracy, Cohen's kappa and per-class producer/user accuracy, F1 and IoU.

    Reference pixels equal to 0 are ignored; predicted classes outside ``classes`` count as errors.

    Returns
    -------
    dict
        JSON-ready: ``n``, ``overall_accuracy``, ``kappa``, ``confusion_matrix`` (rows = reference),
        ``classes`` and ``per_class`` ``{code: {name, support, producer_accuracy, user_accuracy, f1, iou}}``.
    """
    return report_from_confusion(_confusion_full(reference, predicted, classes), classes, names)


def report_from_confusion(counts: np.ndarray, classes: Sequence[int], names: dict[int, str] | None = None) -> dict:
    """:func:`accuracy_report` from ``(n + 1, n + 1)`` counts (:func:`confusion_blocks`)."""
    classes = [int(c) for c in classes]
    k = len(classes)
    counts = np.asarray(counts)
    cm = counts[:k, :k]
    n = int(counts.sum())
    oa = float(np.trace(cm)) / n if n else float("nan")
    rows, cols = cm.sum(1), cm.sum(0)
    pe = float((rows * cols).sum()) / n**2 if n else float("nan")
    kappa = (oa - pe) / (1 - pe) if n and pe < 1 else float("nan")
    per = {}
    for i, c in enumerate(classes):
        tp = cm[i, i]
        ref_n = counts[i].sum()
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
        "per_class": per,
    }
