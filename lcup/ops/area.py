"""Stratified area estimation and accuracy with confidence intervals (Olofsson et al. 2013, 2014; Stehman).

The map's classes are the strata; a reference sample (counts per map class × reference class) and the map's area
per class give unbiased class areas with standard errors, and area-adjusted accuracies. Pure numpy.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def stratified_estimates(counts: np.ndarray, map_area: Sequence[float], *, z: float = 1.96,
                         classes: Sequence | None = None) -> dict:
    """Area estimates and accuracies from a stratified reference sample (Olofsson et al. 2014, eqs. 2–10).

    Parameters
    ----------
    counts
        ``(k, k)`` sample counts, rows = map class (stratum), columns = reference class.
    map_area
        ``(k,)`` mapped area of each class (any unit: pixels, ha); the estimates come in that unit.
    z
        Critical value of the confidence interval (1.96: 95 %).
    classes
        Labels of the ``k`` classes (default ``0 … k-1``).

    Returns
    -------
    dict
        ``overall_accuracy`` and its ``overall_accuracy_se``; per class: ``area`` (estimated), ``area_ci`` (± half
        width), ``area_se``, ``map_area``, ``user_accuracy`` / ``producer_accuracy`` with ``_se``; ``proportions``
        (the estimated error matrix in area proportions).

    Examples
    --------
    Olofsson et al. (2014), Table 8: the estimated area of deforestation is 21,158 ± 6,158 ha.

    >>> n = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
    >>> a = [200000 * 0.09, 150000 * 0.09, 3200000 * 0.09, 6450000 * 0.09]   # 30 m pixels in ha
    >>> r = stratified_estimates(np.array(n), a)["classes"][0]
    >>> round(r["area"]), round(r["area_ci"])
    (21158, 6158)
    """
    n = np.asarray(counts, np.float64)
    k = n.shape[0]
    if n.shape != (k, k):
        raise ValueError(f"counts must be square (map class × reference class), got {n.shape}")
    area = np.asarray(map_area, np.float64)
    total = area.sum()
    W = area / total
    n_i = n.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n_i[:, None] > 0, W[:, None] * n / n_i[:, None], 0.0)  # estimated area proportions
        p_j = p.sum(0)
        # standard error of the estimated proportion of reference class j (eq. 10)
        frac = np.where(n_i[:, None] > 0, n / n_i[:, None], 0.0)
        var_pj = np.where(n_i[:, None] > 1, W[:, None] ** 2 * frac * (1 - frac) / (n_i[:, None] - 1), 0.0).sum(0)
        se_area = total * np.sqrt(var_pj)
        ua = np.where(n_i > 0, np.diag(n) / n_i, np.nan)
        pa = np.where(p_j > 0, np.diag(p) / p_j, np.nan)
        oa = float(np.trace(p))
        var_ua = np.where(n_i > 1, ua * (1 - ua) / (n_i - 1), np.nan)
        var_oa = float(np.nansum(W**2 * ua * (1 - ua) / np.where(n_i > 1, n_i - 1, np.inf)))
        var_pa = np.full(k, np.nan)
        for j in range(k):
            nj_hat = (area / np.where(n_i > 0, n_i, np.inf) * n[:, j]).sum()  # estimated reference area of j
            if nj_hat <= 0:
                continue
            a1 = (area[j] ** 2) * (1 - pa[j]) ** 2 * ua[j] * (1 - ua[j]) / max(n_i[j] - 1, 1)
            others = [i for i in range(k) if i != j and n_i[i] > 1]
            a2 = pa[j] ** 2 * sum(area[i] ** 2 * (n[i, j] / n_i[i]) * (1 - n[i, j] / n_i[i]) / (n_i[i] - 1) for i in others)
            var_pa[j] = (a1 + a2) / nj_hat**2
    labels = list(classes) if classes is not None else list(range(k))
    return {
        "overall_accuracy": oa,
        "overall_accuracy_se": float(np.sqrt(var_oa)),
        "proportions": p.tolist(),
        "classes": [{"class": labels[j], "map_area": float(area[j]), "area": float(p_j[j] * total),
                     "area_se": float(se_area[j]), "area_ci": float(z * se_area[j]),
                     "user_accuracy": float(ua[j]), "user_accuracy_se": float(np.sqrt(var_ua[j])),
                     "producer_accuracy": float(pa[j]), "producer_accuracy_se": float(np.sqrt(var_pa[j]))}
                    for j in range(k)],
    }


def sample_size(weights: Sequence[float], users_accuracy: Sequence[float], target_se: float = 0.01) -> int:
    """Total size of a stratified random reference sample for a target standard error of the overall accuracy
    (Olofsson et al. 2014, eq. 13): ``n = (Σ W_i S_i / S(Ô))²`` with ``S_i = sqrt(U_i (1 − U_i))``.

    Parameters
    ----------
    weights
        Share of the mapped area in each stratum (map class); normalised here.
    users_accuracy
        Anticipated user's accuracy of each class (0–1).
    target_se
        Target standard error of the overall accuracy.

    Examples
    --------
    Olofsson et al. (2014, §5.1.1): four strata, anticipated user's accuracies 0.7, 0.6, 0.9, 0.95, S(Ô) = 0.01.

    >>> sample_size([200000, 150000, 3200000, 6450000], [0.7, 0.6, 0.9, 0.95], 0.01)
    641
    """
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    u = np.asarray(users_accuracy, np.float64)
    return int(np.ceil((w * np.sqrt(u * (1 - u))).sum() ** 2 / target_se**2 - 1e-9))


def allocate(n: int, weights: Sequence[float], min_per_class: int = 50) -> np.ndarray:
    """Split ``n`` reference samples across strata: strata whose proportional share is under ``min_per_class`` get
    that minimum (rare classes need enough samples for their user's accuracy and area), the others share the rest
    in proportion to area — the compromise between proportional and equal allocation Olofsson et al. (2014, §5.1.1)
    recommend. Strata with no area get 0; the total is ``n`` (more if the minimums alone exceed it).

    Examples
    --------
    >>> allocate(641, [200000, 150000, 3200000, 6450000], 50).tolist()
    [50, 50, 179, 362]
    """
    w = np.asarray(weights, np.float64)
    present = w > 0
    fixed = np.zeros(len(w), bool)  # strata held at the minimum
    while True:
        free = present & ~fixed
        rest = max(0, n - min_per_class * int(fixed.sum()))
        share = np.where(free, w / max(w[free].sum(), 1e-300), 0) * rest
        low = free & (share < min_per_class)
        if not low.any():
            break
        fixed |= low
    share = np.where(fixed, float(min_per_class), share)
    out = np.floor(share).astype(np.int64)
    left = n - int(out.sum())
    if left > 0:  # largest remainders first
        order = np.argsort(-(share - np.floor(share)), kind="stable")
        out[order[:left]] += 1
    return out
