"""Random-forest training and per-block prediction (scikit-learn), pure compute."""

from __future__ import annotations

import difflib
import warnings
import weakref
from typing import Any, Mapping

import numba
import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict


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
    with warnings.catch_warnings():  # a few samples in no tree's out-of-bag set: the OOB score is still the estimate
        warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
        model.fit(X[ok], y[ok], sample_weight=None if sample_weight is None else sample_weight[ok])
    info = {"n_train": int(ok.sum()), "n_dropped_nan": int((~ok).sum())}
    if getattr(model, "oob_score_", None) is not None:
        info["oob_score"] = float(model.oob_score_)
    return model, info


def check_params(kind: str, params: Mapping[str, Any]) -> None:
    """Check extra classifier parameters (``model.params``) against the estimator, before any work.

    Raises
    ------
    ValueError
        Naming unknown keys (with close matches) or a value the estimator rejects.
    """
    if not params:
        return
    if kind == "random_forest":
        est = RandomForestClassifier()
        known = set(est.get_params())
    else:
        try:
            from lightgbm import LGBMClassifier  # optional: lcup[lightgbm]
            from lightgbm.basic import _ConfigAliases  # optional: lcup[lightgbm]
        except ImportError:
            raise ValueError("model.kind lightgbm needs LightGBM: pip install 'lcup[lightgbm]'") from None
        est = LGBMClassifier()
        known = set(est.get_params())
        for name, aliases in _ConfigAliases._get_all_param_aliases().items():
            known |= {name, *aliases}
    bad = sorted(k for k in params if k not in known)
    if bad:
        hints = {k: difflib.get_close_matches(k, sorted(known), n=2) for k in bad}
        raise ValueError(f"unknown {kind} parameter(s) in model.params: "
                         + ", ".join(f"{k!r}" + (f" (did you mean {h}?)" if h else "") for k, h in hints.items()))
    if kind == "random_forest":
        try:
            est.set_params(**params)._validate_params()
        except Exception as e:  # noqa: BLE001 - sklearn's InvalidParameterError names the key and the valid values
            raise ValueError(f"model.params: {e}") from None


def train_model(
    X: np.ndarray,
    y: np.ndarray,
    *,
    kind: str = "random_forest",
    params: Mapping[str, Any] | None = None,
    sample_weight: np.ndarray | None = None,
    seed: int = 0,
):
    """Fit the classifier named by ``kind`` (``random_forest`` or ``lightgbm``) behind one interface.

    Both return a scikit-learn-style model with ``predict_proba``, ``classes_`` and
    ``feature_importances_`` (normalised to sum to 1 here for LightGBM's split counts), and
    ``info`` with ``n_train`` and ``n_dropped_nan`` (plus ``oob_score`` for the forest).
    """
    if kind == "random_forest":
        return train_random_forest(X, y, params=params, sample_weight=sample_weight, seed=seed)
    if kind != "lightgbm":
        raise ValueError(f"model kind must be 'random_forest' or 'lightgbm', not {kind!r}")
    try:
        from lightgbm import LGBMClassifier  # optional: lcup[lightgbm]
    except ImportError as e:
        raise ImportError("model.kind 'lightgbm' needs LightGBM: pip install 'lcup[lightgbm]'") from e
    ok = np.isfinite(X).all(1)
    # n_jobs 1: LightGBM's OpenMP threads spin-wait; on Dask workers that already run one task per core, -1 cost
    # 10× the CPU and 5× the wall time of 1 (issue 16)
    p = {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 63, "subsample": 0.8, "subsample_freq": 1,
         "colsample_bytree": 0.8, "n_jobs": 1, "verbose": -1}
    p.update({k: v for k, v in dict(params or {}).items() if v is not None})  # keys checked by check_params
    p["random_state"] = seed
    model = LGBMClassifier(**p)
    model.fit(X[ok], y[ok], sample_weight=None if sample_weight is None else sample_weight[ok])
    return model, {"n_train": int(ok.sum()), "n_dropped_nan": int((~ok).sum())}


@numba.njit(nogil=True, cache=True)
def _leaf(nodes, thr, base, X, i):  # pragma: no cover - compiled
    node = base
    while nodes[node, 0] != -1:
        node = base + (nodes[node, 0] if X[i, nodes[node, 2]] <= thr[node] else nodes[node, 1])
    return node


@numba.njit(nogil=True, cache=True)
def _forest_sum(X, offsets, nodes, thr, values, out, block):  # pragma: no cover - compiled
    """``out[i] += values[leaf of X[i] in tree t]`` for every tree in order: a block of samples at a time through each
    tree, four samples walked together (their node loads overlap: the walk is bound by memory latency)."""
    n, k = X.shape[0], out.shape[1]
    for s in range(0, n, block):
        e = min(n, s + block)
        for t in range(offsets.shape[0] - 1):
            base = offsets[t]
            i = s
            while i + 4 <= e:
                a0 = base
                a1 = base
                a2 = base
                a3 = base
                moving = True
                while moving:
                    moving = False
                    if nodes[a0, 0] != -1:
                        a0 = base + (nodes[a0, 0] if X[i, nodes[a0, 2]] <= thr[a0] else nodes[a0, 1])
                        moving = True
                    if nodes[a1, 0] != -1:
                        a1 = base + (nodes[a1, 0] if X[i + 1, nodes[a1, 2]] <= thr[a1] else nodes[a1, 1])
                        moving = True
                    if nodes[a2, 0] != -1:
                        a2 = base + (nodes[a2, 0] if X[i + 2, nodes[a2, 2]] <= thr[a2] else nodes[a2, 1])
                        moving = True
                    if nodes[a3, 0] != -1:
                        a3 = base + (nodes[a3, 0] if X[i + 3, nodes[a3, 2]] <= thr[a3] else nodes[a3, 1])
                        moving = True
                for c in range(k):
                    out[i, c] += values[a0, c]
                    out[i + 1, c] += values[a1, c]
                    out[i + 2, c] += values[a2, c]
                    out[i + 3, c] += values[a3, c]
                i += 4
            while i < e:
                leaf = _leaf(nodes, thr, base, X, i)
                for c in range(k):
                    out[i, c] += values[leaf, c]
                i += 1


def _float32_at_most(thr: np.ndarray) -> np.ndarray:
    """The largest float32 ≤ each float64 threshold: for float32 ``x``, ``x <= t32`` exactly when ``x <= thr``."""
    t32 = thr.astype(np.float32)
    over = t32.astype(np.float64) > thr
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32


def _packed_forest(model):
    """The forest's trees in flat arrays, built once per fitted model: ``(offsets, nodes (left, right, feature),
    float32 thresholds, leaf class fractions)``; children are relative to their tree's first node."""
    packed = _PACKED.get(model)
    if packed is not None and packed[0] is model.estimators_[0]:
        return packed[1]
    k = len(model.classes_)
    trees = [est.tree_ for est in model.estimators_]
    offsets = np.concatenate([[0], np.cumsum([t.node_count for t in trees])]).astype(np.int64)
    nodes = np.concatenate([np.stack([t.children_left, t.children_right, t.feature], 1) for t in trees]).astype(np.int32)
    thr = _float32_at_most(np.concatenate([t.threshold for t in trees]))
    values = np.ascontiguousarray(np.concatenate([t.value[:, 0, :k] for t in trees]), np.float64)
    out = (offsets, np.ascontiguousarray(nodes), thr, values)
    _PACKED[model] = (model.estimators_[0], out)  # beside the model, never pickled or saved with it
    return out


#: Packed trees per fitted forest in this process (:func:`_packed_forest`), dropped with the model.
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def predict_proba(model, X: np.ndarray) -> np.ndarray:
    """``model.predict_proba(X)``, faster for scikit-learn forests and equal to it bit for bit.

    For a fitted single-output ``RandomForestClassifier`` / ``ExtraTreesClassifier``, the trees are walked by a
    compiled loop over flat node arrays (float32 thresholds rounded down, so every comparison is scikit-learn's),
    four samples at a time, and each tree's leaf class fractions are added in tree order, then divided by the
    number of trees: scikit-learn's leaves and arithmetic in scikit-learn's order, without its per-tree
    ``(sample, class)`` temporaries (measured here: ~1.3× scikit-learn's ``tree_.apply`` route on a 100-tree
    forest). Any other model goes through its own ``predict_proba``.

    Parameters
    ----------
    X
        ``(sample, feature)``, finite.

    Returns
    -------
    numpy.ndarray
        ``(sample, class)`` float64, classes in ``model.classes_`` order.
    """
    if not (isinstance(model, (RandomForestClassifier, ExtraTreesClassifier)) and getattr(model, "n_outputs_", 1) == 1):
        return model.predict_proba(X)
    X = np.ascontiguousarray(X, dtype=np.float32)
    out = np.zeros((len(X), len(model.classes_)), np.float64)
    if len(X):
        _forest_sum(X, *_packed_forest(model), out, 1024)
        out /= len(model.estimators_)
    return out


def predict_block(features: np.ndarray, model, *, confidence: str = "max") -> np.ndarray:
    """Predict one block: class, confidence and per-class probabilities.

    Parameters
    ----------
    features
        ``(y, x, feature)`` float32.
    model
        A fitted classifier with ``predict_proba`` and ``classes_``.
    confidence
        ``"max"`` (highest probability), ``"margin"`` (highest minus second highest) or ``"entropy"``
        (1 − normalised Shannon entropy); all in [0, 1], higher is more confident.

    Returns
    -------
    numpy.ndarray
        ``(2 + n_classes, y, x)`` float32: band 0 the class code, band 1 the confidence, then the
        probability of each class in ``model.classes_`` order. NaN everywhere a pixel has a NaN
        feature (no valid observation).
    """
    h, w, f = features.shape
    X = features.reshape(-1, f)
    ok = np.isfinite(X).all(1)
    proba = predict_proba(model, X[ok]) if ok.any() else np.zeros((0, len(model.classes_)))
    return packed(proba, ok, model.classes_, confidence).reshape(-1, h, w)


def packed(proba: np.ndarray, ok: np.ndarray, classes, confidence: str = "max") -> np.ndarray:
    """The ``(2 + class, *ok.shape)`` float32 layout of :func:`predict_block` from the ``(n, class)`` probabilities
    of the ``n`` pixels where ``ok`` is True: class, confidence (:func:`classify`), probabilities; NaN elsewhere."""
    out = np.full((2 + proba.shape[1], *ok.shape), np.nan, np.float32)
    if ok.any():
        out[0][ok], out[1][ok] = classify(proba, classes, confidence)
        out[2:, ok] = proba.T
    return out


def classify(proba: np.ndarray, classes, confidence: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """Class (highest probability) and confidence of ``(n, class)`` probabilities; see :func:`predict_block`."""
    k = proba.shape[1]
    best = proba.argmax(1)
    cls = np.asarray(classes)[best]
    if confidence == "max":
        conf = proba[np.arange(len(best)), best]
    elif confidence == "margin":
        top2 = np.sort(proba, axis=1)[:, -2:] if k > 1 else np.c_[np.zeros(len(best)), proba]
        conf = top2[:, 1] - top2[:, 0]
    elif confidence == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.nansum(np.where(proba > 0, proba * np.log(proba), 0.0), axis=1)
        conf = 1.0 - ent / np.log(k) if k > 1 else np.ones(len(best))
    else:
        raise ValueError(f"confidence must be 'max', 'margin' or 'entropy', not {confidence!r}")
    return cls, conf


def smooth_block(pred: np.ndarray, classes, *, window: int = 3, confidence: str = "max") -> np.ndarray:
    """Average each pixel's class probabilities over a ``window × window`` square, then classify again.

    ``pred`` is :func:`predict_block`'s ``(2 + class, y, x)`` output (NaN = no prediction). Pixels without a
    prediction stay without one and do not count in their neighbours' means; at the array's edge the window
    holds what is there (give a halo of ``window // 2`` for seamless chunks). The sums run in a fixed order,
    so a pixel's result does not depend on how the array was cut. Removes isolated misclassified pixels and
    sharpens parcel interiors at 10 m.
    """
    r = int(window) // 2
    if r <= 0:
        return pred
    prob = pred[2:].astype(np.float64)
    ok = np.isfinite(prob[0])
    h, w = ok.shape
    p = np.pad(np.where(ok, prob, 0.0), ((0, 0), (r, r), (r, r)))
    n = np.pad(ok.astype(np.float64), r)
    tot = np.zeros_like(prob)
    cnt = np.zeros((h, w))
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            tot += p[:, dy:dy + h, dx:dx + w]
            cnt += n[dy:dy + h, dx:dx + w]
    return packed((tot[:, ok] / cnt[ok]).T, ok, classes, confidence)


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
