"""Combine the model's class probabilities with the coarse map as a prior, per pixel.

The coarse map is evidence, not only a source of training labels: where the model has little to say, the
coarse class should stand, and classes the coarse map holds should not vanish. The prior of class ``c`` at a
pixel is the share of ``c`` in the coarse map around it (a window of ``window_px``, e.g. 3 × 3 coarse cells),
floored at ``floor`` so that the model can still overturn it; the posterior is

    p(c | x) ∝ p_model(c | x) × prior(c) ** strength

(``strength`` 0 is the model alone; large values tend to the coarse map).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .labels import _box_count


def coarse_prior(labels: np.ndarray, classes: Sequence[int], window_px: int, floor: float = 0.05) -> np.ndarray:
    """``(class, y, x)`` float32 prior from a ``(y, x)`` coarse class map (0 = no data: a flat prior there).

    Examples
    --------
    >>> lab = np.array([[1, 1, 2, 2]] * 4, np.uint8)
    >>> coarse_prior(lab, [1, 2], 3, floor=0.0)[:, 0, 1].round(2).tolist()
    [0.67, 0.33]
    """
    labels = np.asarray(labels)
    w = int(window_px)
    known = _box_count(labels > 0, w).astype(np.float32)
    shares = np.stack([_box_count(labels == c, w).astype(np.float32) for c in classes])
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
