"""Reductions over Dask arrays chunk by chunk: one small result per chunk, summed."""

from __future__ import annotations

from typing import Callable

import dask
import dask.array as da


def sum_blocks(func: Callable, *arrays: da.Array, **kwargs):
    """``sum(func(*blocks, **kwargs))`` over the aligned chunks of ``arrays`` (rechunked like the first).

    Memory is bounded by one chunk per task. Returns a ``dask.delayed`` object: compute it.
    """
    first = arrays[0]
    parts = [a.rechunk(first.chunks).to_delayed().ravel() for a in arrays]
    return dask.delayed(sum)([dask.delayed(func)(*blocks, **kwargs) for blocks in zip(*parts)])
