"""Chunk-wise Dask helpers (lcup.ops.blocks)."""

import dask.array as da
import numpy as np
import pytest

from lcup.ops.blocks import map_blocks_across


def test_map_blocks_across_hands_over_the_blocks_themselves():
    """Dropping a one-chunk axis (time of the cube, feature of the features) gives the function the very block the
    producer made, not a copy (dask's map_blocks(drop_axis=...) copies each block to concatenate it), and the same
    result as map_blocks."""
    made = {}

    def producer(block_info=None):
        a = np.arange(5 * 3 * 3, dtype=np.float32).reshape(5, 3, 3) + sum(block_info[None]["chunk-location"])
        made[block_info[None]["chunk-location"]] = a
        return a

    x = da.map_blocks(producer, chunks=((5,), (3, 3), (3,)), dtype=np.float32)
    shared = []

    def f(a, b):
        shared.append(any(np.shares_memory(a, m) for m in made.values()))
        return np.stack([a.sum(0), (a * b).max(0)], -1)

    y = map_blocks_across(f, x, x + 1, drop_axis=0, new_axis=2, new_size=2, dtype=np.float32)
    assert y.shape == (6, 3, 2) and y.chunks == ((3, 3), (3,), (2,))
    got = y.compute(scheduler="sync")
    assert shared and all(shared)
    ref = da.map_blocks(f, x, x + 1, drop_axis=0, new_axis=2, chunks=((3, 3), (3,), (2,)), dtype=np.float32)
    np.testing.assert_array_equal(got, ref.compute(scheduler="sync"))
    assert y.name != map_blocks_across(f, x + 2, x, drop_axis=0, new_axis=2, new_size=2, dtype=np.float32).name
    with pytest.raises(ValueError, match="one chunk along axis 0"):
        map_blocks_across(f, x.rechunk((2, 3, 3)), drop_axis=0, new_axis=2, new_size=2, dtype=np.float32)
