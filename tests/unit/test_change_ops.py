"""Transition matrices, change codes, flip-backs and zone areas against hand counts; pixel areas against pyproj."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from lcup.ops.change import change_legend_table, change_map, change_summary, row_area_m2, temporal_consistency, transitions
from lcup.ops.zonal import zone_class_area


def _d(a, c=3):
    return da.from_array(np.asarray(a), chunks=c)


def test_transitions_match_a_direct_count_whatever_the_chunks():
    rng = np.random.default_rng(0)
    a = rng.choice([0, 10, 20, 40], size=(37, 23)).astype(np.uint8)
    b = np.where(rng.random(a.shape) < 0.2, rng.choice([10, 20, 40, 99], size=a.shape), a).astype(np.uint8)  # 99: not in legend
    codes = [10, 20, 40]
    area = np.linspace(90, 110, 37)
    ref = np.zeros((2, 4, 4))
    idx = {0: 0, 10: 1, 20: 2, 40: 3, 99: 0}
    for (y, x), va in np.ndenumerate(a):
        ref[0, idx[va], idx[b[y, x]]] += 1
        ref[1, idx[va], idx[b[y, x]]] += area[y]
    for c in (5, 16, 64):
        np.testing.assert_allclose(transitions(_d(a, c), _d(b, c), codes, area).compute(), ref)


def test_change_summary_codes_and_map():
    m = np.array([[5, 0, 0, 0], [0, 50, 10, 0], [0, 2, 30, 3], [0, 0, 0, 0]], float)
    s = change_summary(m, [1, 2, 3], {1: "forest", 2: "crops", 3: "urban"})
    assert s["classes"][1] == {"name": "forest", "from": 60, "to": 52, "persistence": 50, "gain": 2, "loss": 10, "net": -8}
    assert s["classes"][3]["gain"] == 3 and s["changed"] == 15 and s["share_changed"] == 15 / 95  # no data left out
    table = change_legend_table(m, [1, 2, 3])
    assert table == [(2, 1, 2), (3, 2, 3), (4, 2, 1)]  # largest first
    a = _d([[1, 1, 2, 0], [2, 2, 3, 1]], 2)
    b = _d([[1, 2, 1, 1], [3, 2, 3, 0]], 2)
    np.testing.assert_array_equal(change_map(a, b, [1, 2, 3], table).compute(), [[1, 2, 4, 0], [3, 1, 1, 0]])


def test_flip_back_needs_the_return_to_the_first_class():
    y1 = [[1, 1, 1, 1, 0]]
    y2 = [[2, 2, 1, 1, 2]]
    y3 = [[1, 3, 1, 2, 2]]
    assert temporal_consistency([_d(y1, 2), _d(y2, 2), _d(y3, 2)]).compute().tolist() == [4, 3, 1]


def test_row_area_on_a_geographic_grid_matches_the_ellipsoid():
    from pyproj import Geod
    from shapely import box

    res = 1 / 12000
    for lat in (0.0, 45.0, 70.0):
        got = row_area_m2((res, 0, 6.0, 0, -res, lat + res), 1, geographic=True)[0]
        want = abs(Geod(ellps="WGS84").geometry_area_perimeter(box(6.0, lat, 6.0 + res, lat + res))[0])
        assert got == pytest.approx(want, rel=1e-6), lat
    assert row_area_m2((20, 0, 0, 0, -20, 0), 3, geographic=False).tolist() == [400.0] * 3


def test_zone_class_area_counts_each_zone():
    zones = np.array([[1, 1, 2], [0, 2, 2]])
    cls = np.array([[10, 20, 20], [10, 0, 10]])
    r = zone_class_area(_d(zones, 2), _d(cls, 2), [10, 20], 2, np.array([1.0, 2.0])).compute()
    np.testing.assert_array_equal(r[0], [[0, 1, 0], [0, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(r[1], [[0, 2, 0], [0, 1, 1], [2, 2, 1]])
