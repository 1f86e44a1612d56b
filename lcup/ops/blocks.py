"""Reductions over Dask arrays chunk by chunk: one small result per chunk, summed."""

from __future__ import annotations

import functools
import string
from typing import Callable

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.utils import funcname


def sum_blocks(func: Callable, *arrays: da.Array, **kwargs):
    """``sum(func(*blocks, **kwargs))`` over the aligned chunks of ``arrays`` (rechunked like the first).

    Memory is bounded by one chunk per task. Returns a ``dask.delayed`` object: compute it.
    """
    first = arrays[0]
    parts = [a.rechunk(first.chunks).to_delayed().ravel() for a in arrays]
    return dask.delayed(sum)([dask.delayed(func)(*blocks, **kwargs) for blocks in zip(*parts)])


def _first_of_lists(func: Callable, *blocks, **kwargs):
    return func(*(b[0] if isinstance(b, list) else b for b in blocks), **kwargs)


def map_blocks_across(func: Callable, *arrays: da.Array, drop_axis: int, new_axis: int, new_size: int, dtype,
                      **kwargs) -> da.Array:
    """``da.map_blocks(func, *arrays, drop_axis=drop_axis, new_axis=new_axis)`` for arrays with one chunk along
    ``drop_axis``, without the copy of every block that ``map_blocks`` makes to concatenate it along that axis
    (a chunk of a ``(time, y, x)`` cube or of ``(y, x, feature)`` features: hundreds of MB copied for nothing).

    ``func(*blocks, **kwargs)`` gets the blocks themselves and returns an array with ``drop_axis`` gone and an
    axis of ``new_size`` inserted at ``new_axis`` (of the output); the arrays must have the same dimensions and
    chunks.

    Examples
    --------
    >>> x = da.ones((5, 4, 4), chunks=(5, 2, 2))
    >>> y = map_blocks_across(lambda b: b.sum(0)[None], x, drop_axis=0, new_axis=0, new_size=1, dtype=float)
    >>> y.shape, y.chunks, float(y.sum().compute())
    ((1, 4, 4), ((1,), (2, 2), (2, 2)), 80.0)
    """
    n = arrays[0].ndim
    if any(len(a.chunks[drop_axis]) != 1 for a in arrays):
        raise ValueError(f"map_blocks_across needs one chunk along axis {drop_axis}; rechunk it first")
    ind = string.ascii_lowercase[:n]
    out = [c for i, c in enumerate(ind) if i != drop_axis]
    out.insert(new_axis, "z")
    pairs = [p for a in arrays for p in (a, ind)]
    name = f"{funcname(func)}-{tokenize(func, *arrays, drop_axis, new_axis, new_size, dtype, kwargs)}"
    return da.blockwise(functools.partial(_first_of_lists, func), "".join(out), *pairs, new_axes={"z": new_size},
                        concatenate=False, dtype=dtype, meta=np.empty((0,) * n, dtype), name=name, **kwargs)


def chunks_touched(iy: np.ndarray, ix: np.ndarray, chunk_px: int) -> int:
    """How many ``chunk_px`` square chunks the pixels ``(iy, ix)`` fall in.

    Examples
    --------
    >>> chunks_touched(np.array([0, 1, 600]), np.array([0, 5, 0]), 512)
    2
    """
    return len(set(zip((np.asarray(iy) // chunk_px).tolist(), (np.asarray(ix) // chunk_px).tolist())))
