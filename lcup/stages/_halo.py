"""Block functions with a halo over Dask arrays: the same values however the array is chunked."""

from __future__ import annotations

from typing import Callable

import dask.array as da
from dask.array.overlap import ensure_minimum_chunksize, overlap


def map_with_halo(fn: Callable, arr: da.Array, halo: int, *, axes: tuple[int, int] = (0, 1),
                  out_axes: tuple[int, int] | None = None, out_chunks: tuple | None = None, dtype=None,
                  origin: tuple[int, int] | None = None, **kwargs) -> da.Array:
    """``fn`` applied to every chunk of ``arr`` grown by ``halo`` pixels along the two spatial ``axes``, cropped back.

    At the array's own edges there is no halo (``fn`` sees what is there). ``fn(block)`` returns an array whose
    spatial axes, at ``out_axes`` (default ``axes``), have the block's sizes; ``out_chunks`` gives the result's
    chunks (default ``arr``'s). Chunks smaller than the halo are merged first (dask's minimum-chunk rule); an
    axis shorter than the halo stays one chunk, with no halo; the result has ``arr``'s chunks again. ``kwargs`` go
    to ``fn`` as task arguments (a ``distributed`` future among them is resolved on the worker). With ``origin``
    (the array's first pixel on a lattice shared by all the arrays of a map), ``fn`` also gets ``origin=`` its
    block's first pixel (halo included) on that lattice.
    """
    out_axes = axes if out_axes is None else out_axes
    r = int(halo)
    chunks = list(arr.chunks)
    for a in axes:
        c = arr.chunks[a]
        chunks[a] = ensure_minimum_chunksize(r, c) if r and sum(c) > r else (sum(c),)
    base = arr.rechunk(tuple(chunks))
    depth = {a: (r if len(base.chunks[a]) > 1 else 0) for a in axes}

    def block(b, block_info=None, **kw):
        loc, num = block_info[0]["chunk-location"], block_info[0]["num-chunks"]
        if origin is not None:
            kw["origin"] = tuple(int(o) + sum(base.chunks[a][:loc[a]]) - (depth[a] if loc[a] else 0)
                                 for o, a in zip(origin, axes))
        out = fn(b, **kw)
        idx = [slice(None)] * out.ndim
        for a, oa in zip(axes, out_axes):
            d = depth[a]
            idx[oa] = slice(d if loc[a] else 0, out.shape[oa] - (d if loc[a] < num[a] - 1 else 0))
        return out[tuple(idx)]

    ext = overlap(base, depth=depth, boundary="none") if any(depth.values()) else base

    def grid_chunks(src_chunks):
        if out_chunks is None:
            return src_chunks
        oc = list(out_chunks)
        for a, oa in zip(axes, out_axes):
            oc[oa] = src_chunks[a]
        return tuple(oc)

    extra = {}
    if out_chunks is not None and len(out_chunks) > arr.ndim:  # e.g. (y, x) → (class, y, x)
        extra["new_axis"] = [i for i in range(len(out_chunks)) if i not in out_axes]
    out = ext.map_blocks(block, chunks=grid_chunks(base.chunks), dtype=dtype or arr.dtype, **extra, **kwargs)
    want = grid_chunks(arr.chunks)
    return out if out.chunks == want else out.rechunk(want)
