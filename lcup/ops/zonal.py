"""Zonal statistics of class maps: area of every class in every zone, chunk by chunk. Pure numpy / Dask.

Zones arrive as a ``(y, x)`` array of zone numbers ``1..Z`` (0 = outside every zone), rasterised per chunk by the
caller; classes as legend codes (0 = no data), indexed through :func:`lcup.ops.change.code_index`.
"""

from __future__ import annotations

from typing import Sequence

import dask.array as da
import numpy as np

from .change import code_index, pair_sums


def zone_class_area(zones: da.Array, cls: da.Array, codes: Sequence[int], n_zones: int, row_area: np.ndarray) -> da.Array:
    """Lazy ``(2, Z + 1, K + 1)`` float64: ``[0]`` pixels, ``[1]`` m² of each class (columns: no data, then ``codes``)
    in each zone (rows: outside every zone, then zones 1..Z).

    Examples
    --------
    >>> z = da.from_array(np.array([[1, 1], [2, 0]], np.int32), chunks=1)
    >>> c = da.from_array(np.array([[1, 2], [2, 2]], np.uint8), chunks=1)
    >>> zone_class_area(z, c, [1, 2], 2, np.array([100.0, 100.0])).compute()[1]
    array([[  0.,   0., 100.],
           [  0., 100., 100.],
           [  0.,   0., 100.]])
    """
    return pair_sums(zones, cls, None, code_index(codes), n_zones + 1, len(codes) + 1, row_area)
