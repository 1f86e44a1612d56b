"""Random-forest training and per-block prediction (scikit-learn), pure compute."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from sklearn.ensemble import RandomForestClassifier


def train_random_forest(
    X: np.ndarray,
    y: np.ndarray,
    *,
    params: Mapping[str, Any] | None = None,
    sample_weight: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[RandomForestClassifier, dict]:
    """Fit a random forest on sampled features.

    Rows with NaN features (pixels with no clear observation) are dropped and counted.

    Parameters
    ----------
    X
        ``(sample, feature)`` float32.
    y
        ``(sample,)`` class codes.
    params
        Extra ``RandomForestClassifier`` parameters (``n_estimators``, ``max_depth``, ``class_weight``...).

    Returns
    -------
    model, info
        The fitted classifier and ``{"n_train", "n_dropped_nan", "oob_score"}``.
    """
    ok = np.isfinite(X).all(1)
    p = {"n_estimators": 100, "n_jobs": -1, "oob_score": True, "min_samples_leaf": 1, "max_features": "sqrt"}
    p.update(dict(params or {}))
    p["random_state"] = seed
    model = RandomForestClassifier(**p)
    model.fit(X[ok], y[ok], sample_weight=None if sample_weight is None else sample_weight[ok])
    info = {"n_train": int(ok.sum()), "n_dropped_nan": int((~ok).sum())}
    if getattr(model, "oob_score_", None) is not None:
        info["oob_score"] = float(model.oob_score_)
    return model, info


def predict_block(features: np.ndarray, model, nodata: int = 0) -> np.ndarray:
    """Predict one block.

    Parameters
    ----------
    features
        ``(y, x, feature)`` float32.
    model
        A fitted classifier with ``predict_proba`` and ``classes_``.

    Returns
    -------
    numpy.ndarray
        ``(2, y, x)`` uint8: band 0 the class code (``nodata`` where any feature is NaN), band 1 the
        confidence, the highest class probability scaled to 0–100 (0 where nodata).
    """
    h, w, f = features.shape
    X = features.reshape(-1, f)
    ok = np.isfinite(X).all(1)
    cls = np.full(h * w, nodata, np.uint8)
    conf = np.zeros(h * w, np.uint8)
    if ok.any():
        proba = model.predict_proba(X[ok])
        best = proba.argmax(1)
        cls[ok] = np.asarray(model.classes_)[best].astype(np.uint8)
        conf[ok] = np.round(100 * proba[np.arange(len(best)), best]).astype(np.uint8)
    return np.stack([cls.reshape(h, w), conf.reshape(h, w)])


def confident_learning_filter(X: np.ndarray, y: np.ndarray, *, seed: int = 0, cv: int = 3, n_estimators: int = 50) -> tuple[np.ndarray, dict]:
    """Flag training samples whose label is probably wrong (confident learning, Northcutt et al. 2021).

    Out-of-fold class probabilities come from a smaller forest; each class ``c`` gets a threshold
    ``t_c``, the mean out-of-fold probability of ``c`` over the samples labelled ``c``. A sample labelled
    ``c`` is flagged when its probability of ``c`` is below ``t_c`` and another class ``j`` reaches its
    own threshold ``t_j`` with a higher probability.

    Returns
    -------
    keep, info
        Boolean ``(sample,)`` mask of the samples to keep, and ``{"n_flagged", "per_class"}``.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    classes, yi = np.unique(y, return_inverse=True)
    counts = np.bincount(yi)
    folds = int(min(cv, counts.min())) if counts.min() >= 2 else 0
    if folds < 2 or len(classes) < 2:
        return np.ones(len(y), bool), {"n_flagged": 0, "per_class": {}, "note": "too few samples per class to cross-validate"}
    rf = RandomForestClassifier(n_estimators=n_estimators, n_jobs=-1, random_state=seed, max_features="sqrt")
    proba = cross_val_predict(rf, X, yi, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="predict_proba")
    own = proba[np.arange(len(y)), yi]
    thr = np.array([own[yi == k].mean() for k in range(len(classes))])
    other = proba.copy()
    other[np.arange(len(y)), yi] = -1.0
    above = other >= thr[None, :]
    best_other = np.where(above, other, -1.0).max(1)
    flagged = (own < thr[yi]) & (best_other > own)
    per_class = {int(c): int(flagged[yi == k].sum()) for k, c in enumerate(classes)}
    return ~flagged, {"n_flagged": int(flagged.sum()), "per_class": per_class}
