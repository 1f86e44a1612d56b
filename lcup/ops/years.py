"""Maps of several years that agree with each other: a hidden-Markov smoothing of the yearly class probabilities.

Each pixel's sequence of classes over the years is the most probable path (Viterbi) of a hidden-Markov model whose
emissions are the yearly class probabilities and whose transitions cost ``cost`` (nats) per change of class: a
class changes where the probabilities say so by more than ``e**cost`` over the years that follow. A one-year
deviation in the middle of the sequence ("flicker": a class that changes and changes back) needs a probability
ratio of ``e**(2 * cost)`` in that year to survive; a change that persists to the last year needs ``e**cost`` in
total over the years after it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["viterbi_years", "remove_flicker"]

#: Floor of the probabilities before their logarithm: a class the model gave 0 % is unlikely, not impossible.
PROBABILITY_FLOOR = 0.005


def viterbi_years(proba: np.ndarray, cost: float, valid: np.ndarray | None = None) -> np.ndarray:
    """The most probable class index per year and pixel.

    Parameters
    ----------
    proba
        ``(year, class, ...)`` class probabilities (0–1, any float dtype; pixel dims after the class axis).
    cost
        Cost of a change of class between consecutive years, nats (0: each year its own most probable class).
    valid
        ``(year, ...)`` bool: years with an observation; a year without one adds no evidence (uniform emission).

    Returns
    -------
    numpy.ndarray
        ``(year, ...)`` int64 class indices along ``proba``'s class axis.

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.4, 0.6], [0.9, 0.1]])[:, :, None]  # a one-year flicker to class 1
    >>> viterbi_years(p, cost=1.0)[:, 0].tolist(), viterbi_years(p, cost=0.0)[:, 0].tolist()
    ([0, 0, 0], [0, 1, 0])
    """
    t, k = proba.shape[:2]
    rest = proba.shape[2:]
    logp = np.log(np.maximum(proba.reshape(t, k, -1).astype(np.float64), PROBABILITY_FLOOR))
    if valid is not None:
        logp = np.where(valid.reshape(t, 1, -1), logp, 0.0)
    n = logp.shape[2]
    score = logp[0].copy()  # (class, pixel)
    back = np.zeros((t, k, n), np.int16)
    cols = np.arange(n)
    for y in range(1, t):
        best = score.argmax(0)  # the best previous class, when changing
        best_score = score[best, cols] - cost
        stay = score >= best_score[None]  # staying wins ties: no change without evidence
        back[y] = np.where(stay, np.arange(k)[:, None], best[None])
        score = np.where(stay, score, best_score[None]) + logp[y]
    path = np.empty((t, n), np.int64)
    path[-1] = score.argmax(0)
    for y in range(t - 1, 0, -1):
        path[y - 1] = back[y, path[y], cols]
    return path.reshape((t, *rest))


def remove_flicker(proba: np.ndarray, cost: float, valid: np.ndarray | None = None,
                   classes: np.ndarray | None = None) -> np.ndarray:
    """Each year's most probable class, except a one-year flicker: where a year's class differs from the classes of
    the years before and after it, which agree, it takes theirs unless its own probability exceeds theirs by more
    than ``e**(2 * cost)`` that year. Nothing else is touched: a change that lasts (to the last year too) is left as
    the yearly maps have it, so the change between the first and the last year is the yearly maps'.

    ``proba``: ``(year, class, ...)``; ``valid``: ``(year, ...)`` (a year without observation never flickers);
    ``classes``: ``(year, ...)`` the yearly maps' class indices (default: each year's most probable; a map whose
    probabilities were rounded may break a tie the other way); returns ``(year, ...)`` int64 class indices.

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])[:, :, None]
    >>> remove_flicker(p, cost=1.0)[:, 0].tolist()  # the middle flicker goes, the last year's change stays
    [0, 0, 0, 1]
    """
    t = proba.shape[0]
    flat = proba.reshape(t, proba.shape[1], -1)
    cls = flat.argmax(1) if classes is None else np.array(classes, np.int64).reshape(t, -1)
    ok = np.ones(cls.shape, bool) if valid is None else valid.reshape(t, -1)
    logp = np.log(np.maximum(flat.astype(np.float64), PROBABILITY_FLOOR))
    cols = np.arange(cls.shape[1])
    for y in range(1, t - 1):
        around = (cls[y - 1] == cls[y + 1]) & (cls[y] != cls[y - 1]) & ok[y - 1] & ok[y] & ok[y + 1]
        margin = logp[y, cls[y], cols] - logp[y, cls[y - 1], cols]
        cls[y] = np.where(around & (margin < 2 * cost), cls[y - 1], cls[y])
    return cls.reshape(proba.shape[:1] + proba.shape[2:])
