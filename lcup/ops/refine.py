"""Refinement of coarse training labels: relabel samples that cross-fitted forests confidently give another class
that occurs nearby in the coarse map (self-training within coarse-cell constraints)."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GroupKFold


def near_classes(label: np.ndarray, classes, radius_px: int) -> np.ndarray:
    """``(y, x, class)`` bool: whether each class of ``classes`` occurs in ``label`` within ``radius_px`` of each
    pixel (a square window; nothing beyond the array's edge)."""

    size = 2 * int(radius_px) + 1
    return np.stack([ndimage.maximum_filter((label == c).astype(np.uint8), size=size, mode="constant") > 0
                     for c in classes], -1)


def plausible_classes(label: np.ndarray, iy: np.ndarray, ix: np.ndarray, classes, radius_px: int) -> np.ndarray:
    """``(sample, class)`` bool: whether each class of ``classes`` occurs in the label map within ``radius_px`` of
    each sample (a square window): the classes a sample may be relabelled to (:func:`refine_labels`).

    ``label`` is the coarse map on the 10 m grid (class indices, 0 = no data), whole or a window holding every
    sample with its ``radius_px`` margin.
    """
    return near_classes(label, classes, radius_px)[iy, ix]


def refine_labels(X: np.ndarray, y: np.ndarray, groups: np.ndarray, plausible: np.ndarray, *, rounds: int = 2,
                  threshold: float = 0.6, n_estimators: int = 50, seed: int = 0,
                  fit_proba: Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray] | None = None
                  ) -> tuple[np.ndarray, dict]:
    """Iterative label refinement with coarse-cell constraints (self-training on the coarse labels).

    Each round, every sample gets class probabilities from forests that never saw its spatial group (group
    k-fold: ``groups`` are blocks of coarse cells, so a sample's own cell cannot vouch for its coarse label); a
    sample is relabelled to another class when that class reaches ``threshold`` and is plausible where the sample
    lies (``plausible[i, k]``: present in the coarse map nearby, :func:`plausible_classes`). What a coarse cell
    hides — a parcel of another class inside it — is learnt from the cells where that class is the majority.

    Parameters
    ----------
    X
        ``(sample, feature)`` features (rows with NaN keep their label).
    y
        ``(sample,)`` class labels (the coarse map's).
    groups
        ``(sample,)`` spatial group ids (e.g. blocks of 3 × 3 coarse cells).
    plausible
        ``(sample, class)`` bool, columns in the order of ``np.unique(y)``.
    fit_proba
        ``fit_proba(X_train, y_train, X_test, seed) -> (test, class)`` probabilities with columns in the order of
        ``np.unique(y_train)``: the model that vouches for the labels (default: a forest of ``n_estimators``; a
        network refines the labels it learns from with its own, as Paraformer does).

    Returns
    -------
    labels, info
        The refined labels and ``{"rounds": [{"relabelled": n, "to": {class: n}}, ...], "changed": n}``.
    """

    classes = np.unique(y)
    ok = np.isfinite(X).all(1)
    cur = y.copy()
    info: dict = {"rounds": []}
    n_groups = len(np.unique(groups[ok]))
    if n_groups < 3 or len(classes) < 2:
        return cur, {"rounds": [], "changed": 0, "note": "too few spatial groups or classes to cross-fit"}
    for r in range(rounds):
        proba = np.zeros((len(y), len(classes)))
        for tr, te in GroupKFold(min(5, n_groups)).split(X[ok], cur[ok], groups[ok]):
            p = np.zeros((len(te), len(classes)))
            seen = np.unique(cur[ok][tr])
            if fit_proba is None:
                rf = RandomForestClassifier(n_estimators=n_estimators, n_jobs=-1, random_state=seed + r, max_features="sqrt",
                                            min_samples_leaf=2, class_weight="balanced")
                rf.fit(X[ok][tr], cur[ok][tr])
                p[:, np.searchsorted(classes, rf.classes_)] = rf.predict_proba(X[ok][te])
            else:
                p[:, np.searchsorted(classes, seen)] = fit_proba(X[ok][tr], cur[ok][tr], X[ok][te], seed + r)
            proba[np.flatnonzero(ok)[te]] = p
        best = proba.argmax(1)
        conf = proba.max(1)
        move = ok & (classes[best] != cur) & (conf >= threshold) & plausible[np.arange(len(y)), best]
        to = {int(c): int((classes[best][move] == c).sum()) for c in classes if (classes[best][move] == c).any()}
        info["rounds"].append({"relabelled": int(move.sum()), "to": to})
        if not move.any():
            break
        cur = np.where(move, classes[best], cur)
    info["changed"] = int((cur != y).sum())
    return cur, info
