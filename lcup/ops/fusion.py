"""Combine the model's class probabilities with the coarse map as a prior, per pixel.

The coarse map is evidence, not only a source of training labels: where the model has little to say, the
coarse class should stand, and classes the coarse map holds should not vanish. The prior of class ``c`` at a
pixel is the share of ``c`` in the coarse map around it (a window of ``window_px``, e.g. 3 × 3 coarse cells),
floored at ``floor`` so that the model can still overturn it; the posterior is

    p(c | x) ∝ p_model(c | x) × prior(c) ** strength

(``strength`` 0 is the model alone; large values tend to the coarse map). ``lcup run`` applies it after the
probability smoothing with ``model.coarse_prior`` (strength) and ``model.coarse_prior_cells`` (window, coarse
cells); ``benchmarks/bench_quality.py`` measures it on every development set.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .labels import box_count
from .model import packed


def default_floor(n_classes: int) -> float:
    """The prior's floor for ``n_classes``: 0.05, at most half of a flat prior (so that 44 CORINE classes still
    get a prior that is not flat)."""
    return min(0.05, 0.5 / max(1, int(n_classes)))


def coarse_prior(labels: np.ndarray, classes: Sequence[int], window_px: int, floor: float | None = 0.05) -> np.ndarray:
    """``(class, y, x)`` float32 prior from a ``(y, x)`` coarse class map (0 = no data: a flat prior there).

    The window is placed as :func:`lcup.ops.labels.box_count` places it; with a halo of ``window_px // 2`` the
    result does not depend on how the map was cut into chunks. ``floor`` None: :func:`default_floor`.

    Examples
    --------
    >>> lab = np.array([[1, 1, 2, 2]] * 4, np.uint8)
    >>> [round(float(v), 2) for v in coarse_prior(lab, [1, 2], 3, floor=0.0)[:, 0, 1]]
    [0.67, 0.33]
    """
    labels = np.asarray(labels)
    floor = default_floor(len(classes)) if floor is None else floor
    w = int(window_px)
    known = box_count(labels > 0, w).astype(np.float32)
    shares = np.stack([box_count(labels == c, w).astype(np.float32) for c in classes])
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(known > 0, shares / np.maximum(known, 1), 1.0 / len(classes))
    prior = floor + (1 - floor * len(classes)) * shares if floor * len(classes) < 1 else np.full_like(shares, 1 / len(classes))
    return prior.astype(np.float32)


def fuse(prob: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """Posterior ``(class, y, x)`` ∝ ``prob × prior ** strength``, renormalised; NaN where ``prob`` is NaN."""
    post = np.asarray(prob, np.float64) * np.power(np.asarray(prior, np.float64), float(strength))
    tot = post.sum(0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (post / tot).astype(np.float32)


def fuse_block(pred: np.ndarray, prior: np.ndarray, classes, *, strength: float, confidence: str = "max") -> np.ndarray:
    """:func:`fuse` on a prediction block: ``pred`` ``(2 + class, y, x)`` (class index, confidence, probabilities;
    NaN = no prediction, as :func:`lcup.ops.model.predict_block` gives), ``prior`` ``(class, y, x)``; returns the
    same layout with the class, confidence and probabilities of the posterior. Pixel by pixel: any chunking
    gives the same result.

    Examples
    --------
    >>> pred = np.array([[[1.0]], [[0.6]], [[0.4]], [[0.6]]], np.float32)  # class 1 at 60 %
    >>> prior = np.array([[[0.9]], [[0.1]]], np.float32)  # the coarse map says class 0
    >>> fuse_block(pred, prior, [0, 1], strength=1.0)[0, 0, 0]
    np.float32(0.0)
    """
    if strength == 0:
        return pred
    ok = np.isfinite(pred[2])
    return packed(fuse(pred[2:], prior, strength)[:, ok].T.astype(np.float64), ok, classes, confidence)
