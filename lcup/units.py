"""Unit conversions shared by config checks and stages (no heavy imports)."""

from __future__ import annotations

import math


def metres_to_px(metres: float, resolution_m: float) -> int:
    """A distance in metres as a whole number of pixels, rounding halves up (25 m at 10 m → 3 px).

    Python's ``round`` rounds halves to even (25 m → 2 px but 35 m → 4 px); a buffer must not
    shrink or grow depending on the parity of its size.

    Examples
    --------
    >>> metres_to_px(25, 10), metres_to_px(35, 10), metres_to_px(20, 10), metres_to_px(0, 20)
    (3, 4, 2, 0)
    """
    if resolution_m <= 0:
        raise ValueError(f"resolution must be positive, got {resolution_m}")
    return int(math.floor(metres / resolution_m + 0.5 + 1e-9))


def padded_chunks(n: int, chunk: int, pad: int) -> int:
    """Chunk side for ``n + 2 * pad`` pixels cut into as many chunks as ``n`` pixels in ``chunk`` ones, so a
    padding ring adds no sliver chunk to read.

    Examples
    --------
    >>> padded_chunks(1024, 512, 1), padded_chunks(200, 64, 1)
    (513, 51)
    """
    return -(-(n + 2 * pad) // -(-n // chunk))


def grid_step(ds) -> float:
    """Pixel size of a ``(…, y, x)`` xarray object from its coordinates (x, or y when x has one pixel)."""
    d = ds.x if ds.sizes["x"] > 1 else ds.y
    return abs(float(d[1] - d[0]))


def segment_halo_px(region_px: int) -> int:
    """The halo (px) a chunk is segmented with (:func:`lcup.ops.segments.segment_block`): about two segment
    diameters, at least 4.

    Examples
    --------
    >>> segment_halo_px(30)
    11
    """
    return max(4, int(math.ceil(2 * math.sqrt(region_px))))
