"""Metres to pixels: halves round up, whatever their parity."""

from __future__ import annotations

import pytest

from lcup.units import metres_to_px


@pytest.mark.parametrize("m, res, px", [(25, 10, 3), (35, 10, 4), (15, 10, 2), (20, 10, 2), (24.9, 10, 2), (0, 10, 0),
                                        (30, 20, 2), (10, 20, 1), (1000, 10, 100)])
def test_metres_to_px_rounds_half_up(m, res, px):
    assert metres_to_px(m, res) == px


def test_bad_resolution():
    with pytest.raises(ValueError, match="positive"):
        metres_to_px(10, 0)
