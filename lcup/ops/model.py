"""Random-forest training and per-block prediction (scikit-learn), pure compute."""

from __future__ import annotations

import difflib
import warnings
from typing import Any, Mapping

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from .accuracy import with_temperature


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


def predict_block(features: np.ndarray, model, *, confidence: str = "max", origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Predict one block: class, confidence and per-class probabilities.

    Parameters
    ----------
    features
        ``(y, x, feature)`` float32.
    model
        A fitted classifier with ``predict_proba`` and ``classes_``, or a network with ``predict_proba_image``
        (:class:`lcup.ops.nn.FCNModel`), which reads each pixel's neighbours within the block.
    confidence
        ``"max"`` (highest probability), ``"margin"`` (highest minus second highest) or ``"entropy"``
        (1 − normalised Shannon entropy); all in [0, 1], higher is more confident.
    origin
        The block's first pixel on the map's lattice (a strided network aligns on it; ignored by the others).

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
    if hasattr(model, "predict_proba_image"):  # a network over the block (lcup.ops.nn.FCNModel): neighbours read too
        proba = model.predict_proba_image(features, origin=origin).reshape(-1, len(model.classes_))[ok]
    else:
        proba = model.predict_proba(X[ok]) if ok.any() else np.zeros((0, len(model.classes_)))
        proba = with_temperature(proba, float(getattr(model, "lcup_temperature_", 1.0)))  # model.calibrate: temperature
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


class Averaged:
    """Models whose class probabilities are averaged (an ensemble, e.g. a forest and a network), applied like one.

    Each member has ``predict_proba`` and the same ``classes_``.
    """

    def __init__(self, members: list):
        if any(list(m.classes_) != list(members[0].classes_) for m in members):
            raise ValueError("the models of an ensemble must have the same classes")
        self.members = list(members)
        self.classes_ = np.asarray(members[0].classes_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return sum(np.asarray(m.predict_proba(X), np.float64) for m in self.members) / len(self.members)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]
