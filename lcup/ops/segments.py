"""Segment-based regularisation of class probabilities: superpixels from the feature image, probabilities
averaged per segment. Pure numpy / scikit-image, on one block (``model.segments``; measured in
``benchmarks/bench_quality.py``, not a pipeline default).

Parcels, forest stands and water bodies are spectrally homogeneous regions; averaging the model's probabilities
over a segment removes salt-and-pepper errors without blurring across region edges, as a fixed-window smoothing
does.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import felzenszwalb, slic

from .model import packed


def feature_image(feats: np.ndarray, n_components: int = 3, max_samples: int = 20000, seed: int = 0) -> np.ndarray:
    """The first ``n_components`` principal components of ``feats`` ``(y, x, feature)`` (standardised; NaN → 0), as
    a ``(y, x, n_components)`` float32 image scaled to unit variance per component."""
    h, w, f = feats.shape
    X = np.nan_to_num(feats.reshape(-1, f).astype(np.float64))
    mu, sd = X.mean(0), X.std(0)
    X = (X - mu) / np.where(sd > 0, sd, 1)
    rng = np.random.default_rng(seed)
    sub = X[rng.choice(len(X), min(max_samples, len(X)), replace=False)]
    _, _, vt = np.linalg.svd(sub - sub.mean(0), full_matrices=False)
    pc = X @ vt[:n_components].T
    pc /= np.where(pc.std(0) > 0, pc.std(0), 1)
    return pc.reshape(h, w, -1).astype(np.float32)


def segments(image: np.ndarray, *, region_px: int = 50, method: str = "slic") -> np.ndarray:
    """Superpixels of a ``(y, x, channel)`` image: ``(y, x)`` int labels from 1, about ``region_px`` pixels each
    (``slic``: SLICO, compactness adapted per segment; ``felzenszwalb``: graph-based, scale from ``region_px``)."""
    h, w = image.shape[:2]
    if method == "slic":
        return slic(image, n_segments=max(1, h * w // region_px), slic_zero=True, channel_axis=-1, start_label=1,
                    enforce_connectivity=True)
    if method == "felzenszwalb":
        return felzenszwalb(image, scale=float(region_px), sigma=0.5, min_size=max(2, region_px // 4), channel_axis=-1) + 1
    raise ValueError(f"segment method must be 'slic' or 'felzenszwalb', not {method!r}")


def segment_mean(prob: np.ndarray, seg: np.ndarray, mix: float = 1.0) -> np.ndarray:
    """``(class, y, x)`` probabilities averaged over each segment of ``seg`` ``(y, x)``; ``mix`` of the segment
    mean with ``1 - mix`` of the pixel's own (NaN pixels stay NaN and do not count).

    Examples
    --------
    >>> p = np.array([[[0.9, 0.1], [0.6, 0.2]], [[0.1, 0.9], [0.4, 0.8]]])
    >>> segment_mean(p, np.array([[1, 2], [1, 2]]))[0].astype(float).round(2).tolist()
    [[0.75, 0.15], [0.75, 0.15]]
    """
    k = prob.shape[0]
    flat = seg.ravel()
    ok = np.isfinite(prob).all(0).ravel()
    n = np.bincount(flat[ok], minlength=flat.max() + 1).astype(np.float64)
    out = np.empty_like(prob, dtype=np.float32)
    for c in range(k):
        s = np.bincount(flat[ok], weights=prob[c].ravel()[ok], minlength=flat.max() + 1)
        mean = (s / np.maximum(n, 1))[flat].reshape(seg.shape)
        out[c] = mix * mean + (1 - mix) * prob[c]
    out[:, ~ok.reshape(seg.shape)] = np.nan
    return out


def segment_block(pred: np.ndarray, feats: np.ndarray, classes, *, region_px: int = 30, method: str = "slic",
                  mix: float = 0.5, confidence: str = "max") -> np.ndarray:
    """Segment-based regularisation of one block of :func:`lcup.ops.model.predict_block`'s output.

    Parameters
    ----------
    pred
        ``(2 + class, y, x)`` class, confidence and probabilities (NaN = no prediction).
    feats
        ``(y, x, feature)`` features of the same pixels, segmented on their first three principal components.
    classes
        The model's classes, in the order of the probabilities.
    region_px, method, mix
        Mean segment size (px), ``slic`` or ``felzenszwalb``, weight of the segment mean (:func:`segment_mean`).

    Returns
    -------
    numpy.ndarray
        ``(2 + class, y, x)`` float32, classified again.
    """
    prob = pred[2:].astype(np.float32)
    ok = np.isfinite(prob).all(0)
    if ok.any():
        seg = segments(feature_image(feats), region_px=region_px, method=method)
        prob = segment_mean(prob, seg, mix)
    return packed(prob[:, ok].T, ok, classes, confidence)

