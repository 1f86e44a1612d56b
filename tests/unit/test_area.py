"""Stratified area estimation against the published worked example of Olofsson et al. (2014), Remote Sensing of
Environment 148, 42-57, section 5 (Tables 4 and 8): exact figures, to the digits the paper prints."""

from __future__ import annotations

import numpy as np
import pytest

from lcup.ops.area import stratified_estimates

COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])  # map class × reference class
MAP_HA = [200_000 * 0.09, 150_000 * 0.09, 3_200_000 * 0.09, 6_450_000 * 0.09]  # Landsat pixels (0.09 ha)
#: (area ha, ± 95 % CI ha, user's accuracy ± CI, producer's accuracy ± CI) as printed in the paper
PUBLISHED = [(21_158, 6_158, 0.88, 0.07, 0.75, 0.21),   # deforestation
             (11_686, 3_756, 0.73, 0.10, 0.85, 0.25),   # forest gain
             (285_770, 15_510, 0.93, 0.04, 0.93, 0.03),  # stable forest
             (581_386, 16_282, 0.96, 0.02, 0.96, 0.02)]  # stable non-forest


def test_olofsson_2014_worked_example():
    r = stratified_estimates(COUNTS, MAP_HA, classes=["loss", "gain", "forest", "non-forest"])
    assert round(r["overall_accuracy"], 2) == 0.95 and round(1.96 * r["overall_accuracy_se"], 2) == 0.02
    for c, (area, ci, ua, ua_ci, pa, pa_ci) in zip(r["classes"], PUBLISHED):
        assert round(c["area"]) == area and round(c["area_ci"]) == ci, c
        assert round(c["user_accuracy"], 2) == ua and round(1.96 * c["user_accuracy_se"], 2) == ua_ci, c
        assert round(c["producer_accuracy"], 2) == pa and round(1.96 * c["producer_accuracy_se"], 2) == pa_ci, c
    assert np.isclose(sum(c["area"] for c in r["classes"]), sum(MAP_HA))  # areas are redistributed, not created


def test_bad_counts():
    with pytest.raises(ValueError, match="square"):
        stratified_estimates(np.ones((2, 3)), [1, 2])
