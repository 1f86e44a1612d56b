"""The hidden-Markov smoothing of yearly class probabilities (lcup.ops.years)."""

from __future__ import annotations

import numpy as np
import pytest

from lcup.ops.years import remove_flicker, viterbi_years


def _p(*rows):
    return np.array(rows, np.float64)[:, :, None]


def test_a_one_year_flicker_needs_twice_the_cost_to_survive():
    flicker = _p([0.9, 0.1], [0.3, 0.7], [0.9, 0.1])  # ratio 7/3 = e^0.85 in the middle year
    assert viterbi_years(flicker, cost=0.0)[:, 0].tolist() == [0, 1, 0]
    assert viterbi_years(flicker, cost=0.5)[:, 0].tolist() == [0, 0, 0]  # 0.85 < 2 × 0.5
    assert viterbi_years(flicker, cost=0.4)[:, 0].tolist() == [0, 1, 0]  # 0.85 > 2 × 0.4


def test_a_lasting_change_is_kept_and_placed_where_the_evidence_says():
    change = _p([0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9])
    assert viterbi_years(change, cost=1.0)[:, 0].tolist() == [0, 0, 1, 1]
    late = _p([0.9, 0.1], [0.9, 0.1], [0.3, 0.7])  # the last year: one year of evidence, ratio e^0.85
    assert viterbi_years(late, cost=0.5)[:, 0].tolist() == [0, 0, 1]
    assert viterbi_years(late, cost=1.0)[:, 0].tolist() == [0, 0, 0]


def test_years_without_observation_add_no_evidence_and_pixels_are_independent():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(5, 300)).transpose(0, 2, 1)  # (year, class, pixel)
    valid = rng.random((5, 300)) > 0.2
    out = viterbi_years(p, cost=1.0, valid=valid)
    for i in rng.choice(300, 20, replace=False):  # each pixel alone gives the same path
        np.testing.assert_array_equal(out[:, i], viterbi_years(p[:, :, i:i + 1], cost=1.0, valid=valid[:, i:i + 1])[:, 0])
    # brute force over every path of a small case: the Viterbi path is the most probable one
    import itertools

    q, v = p[:3, :, 7], valid[:3, 7]
    lp = np.where(v[:, None], np.log(np.maximum(q, 0.005)), 0.0)
    best = max(itertools.product(range(4), repeat=3),
               key=lambda s: sum(lp[t, s[t]] for t in range(3)) - 1.0 * sum(s[t] != s[t - 1] for t in range(1, 3)))
    assert tuple(viterbi_years(p[:3, :, 7:8], cost=1.0, valid=valid[:3, 7:8])[:, 0]) == best


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (2, 3, 1, 1)])
def test_pixel_dims_are_kept(shape):
    p = np.random.default_rng(1).random(shape)
    assert viterbi_years(p, cost=0.3).shape == (shape[0], *shape[2:])


def test_remove_flicker_touches_only_one_year_flickers():
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])[:, :, None]
    assert remove_flicker(p, cost=1.0)[:, 0].tolist() == [0, 0, 0, 1]  # the last year's change stays
    assert remove_flicker(p, cost=0.4)[:, 0].tolist() == [0, 1, 0, 1]  # ratio e^0.85 > e^(2 × 0.4): kept
    lasting = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])[:, :, None]
    assert remove_flicker(lasting, cost=5.0)[:, 0].tolist() == [0, 1, 1]
    rng = np.random.default_rng(2)
    q = rng.dirichlet(np.ones(3), size=(4, 50)).transpose(0, 2, 1)
    out, raw = remove_flicker(q, cost=0.5), q.argmax(1)
    np.testing.assert_array_equal(out[[0, -1]], raw[[0, -1]])  # the first and last years are the yearly maps'
