"""Training labels from a coarse map on the 10 m grid: erosion, stratified sampling, spatial blocks."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from ..errors import EmptyClassWarning, LabelError
from .cloud import disk


def _erode_np(labels: np.ndarray, radius_px: int) -> np.ndarray:
    out = np.zeros_like(labels)
    st = disk(radius_px)
    for c in np.unique(labels):
        if c == 0:
            continue
        # border_value=1: the edge of the array is not a class edge (chunks get real neighbours
        # through map_overlap; the AOI edge is unknown, not different).
        keep = ndimage.binary_erosion(labels == c, structure=st, border_value=1)
        out[keep] = c
    return out


def erode_classes(labels: xr.DataArray | da.Array | np.ndarray, radius_px: int) -> xr.DataArray | da.Array | np.ndarray:
    """Negative buffer: drop (set to 0) every pixel within ``radius_px`` of another class or no data.

    A pixel keeps its class only if every pixel of the disk of radius ``radius_px`` around it
    (``dy² + dx² <= r²``) has the same class. ``radius_px=1`` removes a one-pixel rim; 0 is a no-op.
    Seamless across dask chunks (``map_overlap``).

    Parameters
    ----------
    labels
        ``(y, x)`` integer class codes, 0 = no data.
    radius_px
        Erosion radius in pixels (convert metres with the pixel size first).
    """
    r = int(radius_px)
    if r <= 0:
        return labels
    if isinstance(labels, np.ndarray):
        return _erode_np(labels, r)
    if isinstance(labels, da.Array):
        # boundary="none": the AOI edge is unknown, not a class edge (border_value=1 in the kernel).
        # (dask merges chunks thinner than the halo; the result keeps the input's chunks)
        return labels.map_overlap(_erode_np, depth=r, boundary="none", radius_px=r, dtype=labels.dtype).rechunk(labels.chunks)
    if isinstance(labels.data, da.Array):
        return labels.copy(data=erode_classes(labels.data, r))
    return labels.copy(data=_erode_np(labels.values, r))


@dataclass(frozen=True)
class Sample:
    """Pixel positions drawn for training/validation.

    Attributes
    ----------
    iy, ix
        Row and column on the 10 m grid, int64.
    label
        Class code per sample.
    validation
        True for samples in held-out spatial blocks.
    value
        Optional per-sample values read in the same pass (e.g. the label confidence), or None.
    """

    iy: np.ndarray
    ix: np.ndarray
    label: np.ndarray
    validation: np.ndarray
    value: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.iy)


def _keep_class(c: int, n: int, min_per_class: int, policy: str, after_split: bool = False) -> bool:
    """The small-class policy: True to sample class ``c`` with ``n`` usable pixels, False to drop it."""
    if policy not in ("warn", "drop", "error"):
        raise ValueError(f"small_class_policy must be 'warn', 'drop' or 'error', not {policy!r}")
    if n >= min_per_class:
        return True
    where = " in the training blocks (after the spatial split and its buffer)" if after_split else ""
    msg = f"class {c} has only {n} usable pixels{where} (< min_per_class={min_per_class})"
    if n == 0 and policy == "warn":
        msg += "; it cannot be learnt and will be missing from the map"
    if policy == "error":
        raise LabelError(msg + "; lower labels.min_per_class or set small_class_policy: drop")
    warnings.warn(msg + ("; dropped" if policy == "drop" else "; kept"), EmptyClassWarning, stacklevel=3)
    return policy != "drop"


def _need_two_classes(classes: list[int]) -> None:
    if len(classes) < 2:
        raise LabelError(
            f"the label map has {len(classes)} usable class(es) {classes} in the area after crosswalk and erosion; "
            "a classifier needs at least two: enlarge the area, lower labels.erosion_m or check the crosswalk"
        )


def _validation_quota(n_per_class: int, validation_fraction: float) -> int:
    """Validation pixels per class so that training keeps ``n_per_class`` in the same proportion."""
    return int(round(n_per_class * validation_fraction / max(1e-9, 1 - validation_fraction)))


def validation_blocks(rng: np.random.Generator, shape: tuple[int, int], block_px: int, fraction: float,
                      origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``(blocks_y, blocks_x)`` bool: which ``block_px`` squares are held out for validation.

    Block ``(i, j)`` covers rows ``i * block_px - origin[0]`` onwards (see :class:`BlockSplit`). At
    least one block on each side when ``0 < fraction < 1`` and there are two blocks or more.
    """
    nby, nbx = -(-(shape[0] + origin[0]) // block_px), -(-(shape[1] + origin[1]) // block_px)
    block_val = rng.random((nby, nbx)) < fraction
    if block_val.size < 2:
        return np.zeros_like(block_val)  # one block: no spatially separate validation is possible
    if fraction > 0 and not block_val.any():
        block_val.flat[rng.integers(block_val.size)] = True
    if fraction < 1 and block_val.all():
        block_val.flat[rng.integers(block_val.size)] = False
    return block_val


@dataclass(frozen=True)
class BlockSplit:
    """Spatial training/validation split of the grid into square blocks, with a buffer between them.

    Attributes
    ----------
    held_out
        ``(blocks_y, blocks_x)`` bool, True for validation blocks (:func:`validation_blocks`).
    block_px
        Block side, pixels; snap it to whole coarse cells so that no coarse cell gives pixels to both sides.
    origin
        ``(rows, columns)`` the block grid is shifted by: pixel ``(y, x)`` lies in block
        ``((y + origin[0]) // block_px, (x + origin[1]) // block_px)``.
    buffer_px
        Training pixels closer than this (Chebyshev distance, pixels) to a validation block are not used,
        so no training pixel neighbours a validation pixel.
    """

    held_out: np.ndarray
    block_px: int
    origin: tuple[int, int] = (0, 0)
    buffer_px: int = 0

    def split(self, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(is_validation, usable)`` for the pixels ``(yy, xx)`` of the grid."""
        B, buf = self.block_px, self.buffer_px
        py, px = np.asarray(yy) + self.origin[0], np.asarray(xx) + self.origin[1]
        by, bx = py // B, px // B
        isval = self.held_out[by, bx]
        usable = np.ones(len(py), bool)
        if buf > 0 and self.held_out.any():
            nby, nbx = self.held_out.shape
            ry, rx = py - by * B, px - bx * B  # position inside the block
            for dy in (-1, 0, 1):
                near_y = ry < buf if dy < 0 else (B - 1 - ry < buf if dy > 0 else np.ones(len(py), bool))
                for dx in (-1, 0, 1):
                    if dy == dx == 0:
                        continue
                    near_x = rx < buf if dx < 0 else (B - 1 - rx < buf if dx > 0 else np.ones(len(px), bool))
                    ny, nx = by + dy, bx + dx
                    inside = (ny >= 0) & (ny < nby) & (nx >= 0) & (nx < nbx)
                    nb_val = np.zeros(len(py), bool)
                    nb_val[inside] = self.held_out[ny[inside], nx[inside]]
                    usable &= ~(~isval & nb_val & near_y & near_x)
        return isval, usable


def make_block_split(rng: np.random.Generator, shape: tuple[int, int], block_px: int, fraction: float, *,
                     cell_px: float = 1.0, cell_origin: tuple[int, int] = (0, 0), buffer_px: int = 0) -> BlockSplit:
    """A :class:`BlockSplit` whose blocks are whole coarse cells: ``block_px`` rounded up to a multiple of
    ``cell_px`` (when that is a whole number of pixels) and the block grid aligned on the coarse grid,
    whose cell edges fall at rows/columns ``cell_origin`` modulo ``cell_px``."""
    c = int(round(cell_px))
    origin = (0, 0)
    if c > 1 and abs(cell_px - c) < 1e-6:
        block_px = -(-int(block_px) // c) * c
        origin = ((-int(cell_origin[0])) % c, (-int(cell_origin[1])) % c)
    return BlockSplit(validation_blocks(rng, shape, block_px, fraction, origin), int(block_px), origin, int(buffer_px))


def _block_class_counts(block: np.ndarray, origin: tuple[int, int], block_px: int, nbx: int, y0: int, x0: int) -> np.ndarray:
    """``(n, 2)`` int64 (block_index * 256 + class, pixels) for the labelled pixels of one chunk."""
    yy, xx = np.nonzero(block)
    key = (((yy + y0 + origin[0]) // block_px) * nbx + (xx + x0 + origin[1]) // block_px) * 256 + block[yy, xx]
    u, n = np.unique(key, return_counts=True)
    return np.stack([u, n], 1).astype(np.int64)


def keep_classes_trainable(held_out: np.ndarray, block_class_px: np.ndarray, min_px: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``held_out`` with validation blocks given back to training until every class has ``min_px``
    training pixels (or all it has), so no class of the coarse map is lost to the spatial split.

    ``block_class_px``: ``(blocks, 256)`` labelled pixels per block (flattened like ``held_out``) and class.
    At least one validation block is kept when there was one.
    """
    held = held_out.ravel().copy()
    total = block_class_px.sum(0)
    for c in np.argsort(total, kind="stable"):  # rarest classes first
        if c == 0 or total[c] == 0:
            continue
        need = min(int(min_px), int(total[c]))
        for b in rng.permutation(np.nonzero(held & (block_class_px[:, c] > 0))[0]):
            if block_class_px[~held, c].sum() >= need or held.sum() <= 1:
                break
            held[b] = False
    return held.reshape(held_out.shape)


def min_train_validation_distance(sample: "Sample") -> float:
    """Smallest distance (pixels) between a training and a validation sample; inf without both."""
    tr, va = ~sample.validation, sample.validation
    if not tr.any() or not va.any():
        return float("inf")
    from scipy.spatial import cKDTree

    d, _ = cKDTree(np.stack([sample.iy[tr], sample.ix[tr]], 1)).query(np.stack([sample.iy[va], sample.ix[va]], 1), k=1)
    return float(d.min())


def stratified_sample(
    labels: np.ndarray,
    n_per_class: int,
    rng: np.random.Generator,
    *,
    min_per_class: int = 50,
    block_px: int = 100,
    validation_fraction: float = 0.3,
    small_class_policy: str = "warn",
) -> Sample:
    """Stratified random sample of labelled pixels with spatially separated validation blocks.

    The grid is cut into ``block_px`` square blocks; a random ``validation_fraction`` of the blocks is
    held out for validation so that training and validation pixels are never neighbours. Within the
    training and validation blocks each class is sampled up to ``n_per_class`` pixels (and the same
    proportion for validation).

    Parameters
    ----------
    labels
        ``(y, x)`` class codes, 0 = not usable (no data, eroded edge).
    n_per_class
        Cap of training pixels per class.
    rng
        Random generator; the sample is reproducible from its seed.
    min_per_class
        Classes with fewer usable pixels are handled by ``small_class_policy``:
        ``"warn"`` keeps them with an :class:`~lcup.errors.EmptyClassWarning`, ``"drop"`` drops them
        (with the warning), ``"error"`` raises :class:`~lcup.errors.LabelError`.
    block_px
        Side of the spatial validation blocks, pixels.
    validation_fraction
        Share of blocks held out.

    Returns
    -------
    Sample
    """
    blocks = make_block_split(rng, labels.shape, block_px, validation_fraction)
    classes = [int(c) for c in np.unique(labels) if c != 0]
    _need_two_classes(classes)
    iys, ixs, labs, vals = [], [], [], []
    n_val = _validation_quota(n_per_class, validation_fraction)
    for c in classes:
        yy, xx = np.nonzero(labels == c)
        if not _keep_class(c, len(yy), min_per_class, small_class_policy):
            continue
        isval, ok = blocks.split(yy, xx)
        for want, sel, is_val in ((n_per_class, ~isval & ok, False), (n_val, isval & ok, True)):
            cand = np.nonzero(sel)[0]
            if len(cand) == 0:
                continue
            take = rng.choice(cand, size=min(want, len(cand)), replace=False)
            iys.append(yy[take]); ixs.append(xx[take]); labs.append(np.full(len(take), c, labels.dtype))
            vals.append(np.full(len(take), is_val))
    if not iys:
        raise LabelError("no pixel could be sampled; check the label map overlaps the area")
    return Sample(np.concatenate(iys).astype(np.int64), np.concatenate(ixs).astype(np.int64),
                  np.concatenate(labs), np.concatenate(vals).astype(bool))


def _box_count(mask: np.ndarray, window_px: int) -> np.ndarray:
    """Number of True pixels in the ``window_px`` square around each pixel, edges repeated (int32).

    The window is placed as :func:`scipy.ndimage.uniform_filter` places it (``mode="nearest"``); integer
    sums from a summed-area table, so the count does not depend on where the array was cut into chunks.
    """
    w = int(window_px)
    lo = w // 2
    p = np.pad(mask, ((lo, w - 1 - lo),) * 2, mode="edge")
    s = np.zeros((p.shape[0] + 1, p.shape[1] + 1), np.int32)
    np.cumsum(np.cumsum(p, 0, dtype=np.int32), 1, out=s[1:, 1:])
    return s[w:, w:] - s[:-w, w:] - s[w:, :-w] + s[:-w, :-w]


def homogeneity(labels: np.ndarray, window_px: int) -> np.ndarray:
    """Share of the ``window_px`` square around each pixel that has the pixel's own class.

    With ``window_px`` = 3 coarse cells this is "how many of the 3×3 coarse cells agree", at 10 m.
    Returns ``(y, x)`` float32 in [0, 1]; 0 where the label is 0.
    """
    out = np.zeros(labels.shape, np.float32)
    for c in np.unique(labels):
        if c == 0:
            continue
        m = labels == c
        out[m] = _box_count(m, window_px)[m] / np.float32(int(window_px) ** 2)
    return out


def edge_distance(labels: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) from each labelled pixel to the nearest pixel of another class or no data.

    Beyond the array is unknown, not another class: a class that fills the array is ``inf`` away from an edge.
    """
    out = np.zeros(labels.shape, np.float32)
    for c in np.unique(labels):
        if c == 0:
            continue
        m = labels == c
        if m.all():
            out[:] = np.inf
            continue
        d = ndimage.distance_transform_edt(m)
        out[m] = d[m]
    return out


def _confidence_window_px(coarse_cell_px: float) -> tuple[float, int]:
    cell = max(float(coarse_cell_px), 1.0)
    return cell, max(3, int(round(3 * cell)))


def confidence_halo_px(coarse_cell_px: float) -> int:
    """Pixels of neighbourhood :func:`label_confidence` needs around a chunk to be exact there."""
    cell, window = _confidence_window_px(coarse_cell_px)
    return max(window // 2 + 1, int(np.ceil(cell)) + 1)


def _confidence_np(labels: np.ndarray, *others: np.ndarray, coarse_cell_px: float) -> np.ndarray:
    cell, window = _confidence_window_px(coarse_cell_px)
    conf = homogeneity(labels, window)
    conf *= np.minimum(1.0, edge_distance(labels) / cell).astype(np.float32)
    if others:
        agree = np.mean([(o == labels) & (o > 0) for o in others], axis=0).astype(np.float32)
        conf *= agree
    conf[labels == 0] = 0.0
    return conf


def label_confidence(
    labels: np.ndarray | da.Array,
    coarse_cell_px: float,
    *,
    others: list | None = None,
) -> np.ndarray | da.Array:
    """Per-pixel confidence (0–1) of a label taken from a coarse map.

    ``confidence = homogeneity × edge × agreement`` where

    * homogeneity: share of the 3×3 coarse-cell neighbourhood with the pixel's class
      (:func:`homogeneity` with a window of ``3 * coarse_cell_px``);
    * edge: ``min(1, distance to another class / coarse_cell_px)``, so pixels within one coarse cell
      of a class edge, where mixed cells live, count less;
    * agreement: share of the ``others`` reference maps (already crosswalked to the same legend) that
      give the same class (1 when no other map is given).

    A Dask array is computed chunk by chunk with a halo of :func:`confidence_halo_px` (``map_overlap``),
    giving exactly the values of the whole-array computation.

    Parameters
    ----------
    labels
        ``(y, x)`` class codes on the 10 m grid, 0 = no data; numpy or Dask.
    coarse_cell_px
        Size of one coarse cell in output pixels (100 m map on a 10 m grid: 10).
    others
        Arrays like ``labels`` (Dask ones chunked like it).

    Returns
    -------
    ``(y, x)`` float32, numpy or Dask like ``labels``.
    """
    others = list(others or [])
    if isinstance(labels, da.Array):
        return da.map_overlap(_confidence_np, labels, *others, depth=confidence_halo_px(coarse_cell_px), boundary="none",
                              dtype=np.float32, coarse_cell_px=coarse_cell_px).rechunk(labels.chunks)
    return _confidence_np(labels, *others, coarse_cell_px=coarse_cell_px)


def _stats_block(labels, eroded, usable, conf) -> np.ndarray:
    """Per-class pixel counts of the three label stages, then the confidence summed over labelled pixels: ``(3 * 256 + 1,)``."""
    counts = [np.bincount(a.ravel(), minlength=256)[:256] for a in (labels, eroded, usable)]
    return np.concatenate([*counts, [conf[labels > 0].sum(dtype=np.float64)]]).astype(np.float64)


def _stats_summary(total: np.ndarray) -> dict:
    counts, conf_sum = total[:-1].reshape(3, 256).astype(np.int64), float(total[-1])
    n = int(counts[0, 1:].sum())
    return {
        "labelled_px": n,
        "after_erosion_px": int(counts[1, 1:].sum()),
        "after_confidence_px": int(counts[2, 1:].sum()),
        "mean_confidence": conf_sum / n if n else 0.0,
        "class_px": {int(c): int(k) for c, k in enumerate(counts[0]) if c and k},
    }


def label_statistics(labels: da.Array, eroded: da.Array, usable: da.Array, conf: da.Array):
    """Pixel counts of the label stages, summed chunk by chunk: a ``dask.delayed`` dict to compute.

    Keys: ``labelled_px``, ``after_erosion_px``, ``after_confidence_px``, ``mean_confidence`` (over
    labelled pixels) and ``class_px`` ``{code: pixels}`` of ``labels``; all ``(y, x)`` Dask arrays
    chunked alike (uint8 codes, float32 confidence). Counts are exact in float64 up to 2**53 pixels.
    """
    import dask

    from .blocks import sum_blocks

    return dask.delayed(_stats_summary)(sum_blocks(_stats_block, labels, eroded, usable, conf))


def _chunk_pixels(block, blocks: BlockSplit, y0, x0):
    """The usable pixels of one chunk: rows, columns (in the chunk) and whether each is in a validation block."""
    yy, xx = np.nonzero(block)
    isval, ok = blocks.split(yy + y0, xx + x0)
    return yy[ok], xx[ok], isval[ok]


def _chunk_counts(block: np.ndarray, blocks: BlockSplit, y0: int, x0: int) -> np.ndarray:
    """``(2, 256)`` pixel counts per (train/validation, class) in one chunk."""
    yy, xx, isval = _chunk_pixels(block, blocks, y0, x0)
    c = block[yy, xx].astype(np.int64)
    return np.stack([np.bincount(c[~isval], minlength=256), np.bincount(c[isval], minlength=256)])


def _chunk_draw(block, blocks, y0, x0, quota, seed, key, values=None):
    """Draw ``quota[s, c]`` pixels of class c in split s from one chunk with the chunk's own generator.

    Returns ``(rows, vals)``: ``(n, 4)`` int64 (row, column, class, split) and the ``values`` block at
    those pixels (None without ``values``).
    """
    rng = np.random.default_rng([seed, *key])
    yy, xx, isval = _chunk_pixels(block, blocks, y0, x0)
    c = block[yy, xx]
    out = []
    for s in (0, 1):
        for cls in np.nonzero(quota[s])[0]:
            cand = np.nonzero((c == cls) & (isval == bool(s)))[0]
            take = rng.choice(cand, size=int(quota[s, cls]), replace=False)
            out.append(np.stack([yy[take] + y0, xx[take] + x0, np.full(len(take), cls), np.full(len(take), s)], 1))
    rows = np.concatenate(out) if out else np.zeros((0, 4), np.int64)
    return rows, None if values is None else np.asarray(values)[rows[:, 0] - y0, rows[:, 1] - x0]


def choose_chunks(counts: np.ndarray, want: np.ndarray, max_chunks: int, rng: np.random.Generator) -> np.ndarray:
    """Which chunks to sample from: ``max_chunks`` at random, plus what the rarer classes need.

    Parameters
    ----------
    counts
        ``(chunk, split, class)`` usable pixels.
    want
        ``(split, class)`` pixels wanted.
    max_chunks
        Chunks drawn at random first; then, for each (split, class) the drawn chunks cannot fill,
        further chunks holding it are added in the same random order until they can.

    Returns
    -------
    ``(chunk,)`` bool.
    """
    order = rng.permutation(len(counts))
    chosen = np.zeros(len(counts), bool)
    chosen[order[:max_chunks]] = True
    for s, c in zip(*np.nonzero(want)):
        need = min(int(want[s, c]), int(counts[:, s, c].sum()))
        have = int(counts[chosen, s, c].sum())
        for i in order[max_chunks:]:
            if have >= need:
                break
            if not chosen[i] and counts[i, s, c]:
                chosen[i] = True
                have += int(counts[i, s, c])
    return chosen


def stratified_sample_chunked(
    labels: "da.Array",
    n_per_class: int,
    seed: int,
    *,
    min_per_class: int = 50,
    block_px: int = 100,
    validation_fraction: float = 0.3,
    small_class_policy: str = "warn",
    max_chunks: int | None = None,
    values: "da.Array | None" = None,
    compute=None,
    cell_px: float = 1.0,
    cell_origin: tuple[int, int] = (0, 0),
    buffer_px: int = 0,
) -> Sample:
    """Chunk-parallel :func:`stratified_sample`: positions are drawn per chunk, never gathered whole.

    1. one pass counts the pixels per (chunk, split, class) — a tiny array;
    2. the per-class quotas are spread over the chunks by a multivariate hypergeometric draw, which is
       exactly a uniform sample without replacement over all chunks together;
    3. each chunk draws its quota with its own generator ``default_rng([seed, chunk_y, chunk_x])``.

    The result depends only on ``seed`` and the chunking. Spatial validation blocks are assigned as in
    :func:`stratified_sample`.

    With ``max_chunks``, the draw is restricted to that many chunks picked at random over the whole
    grid (:func:`choose_chunks`; more when a rare class needs them), so gathering the sample's features
    costs those chunks' features whatever the size of the AOI.

    Parameters
    ----------
    labels
        ``(y, x)`` dask array of class codes (uint8), 0 = not usable.
    values
        ``(y, x)`` Dask array read at the drawn pixels in the same pass (:attr:`Sample.value`), e.g. the
        label confidence for sample weights.
    compute
        ``callable(list_of_delayed) -> list`` (e.g. a distributed client's compute+gather); default
        ``dask.compute``.
    cell_px, cell_origin, buffer_px
        Blocks of whole coarse cells, aligned on the coarse grid, and the buffer kept free of training
        pixels around validation blocks (:func:`make_block_split`).

    A class whose training pixels (after the split and the buffer) number fewer than ``min_per_class``
    meets ``small_class_policy`` there, so no class reaches the map without training data unnoticed.
    """
    import dask

    compute = compute or (lambda objs: list(dask.compute(*objs)))
    rng = np.random.default_rng(seed)
    blocks_split = make_block_split(rng, labels.shape, block_px, validation_fraction, cell_px=cell_px,
                                    cell_origin=cell_origin, buffer_px=buffer_px)
    starts_y = np.cumsum((0,) + labels.chunks[0][:-1])
    starts_x = np.cumsum((0,) + labels.chunks[1][:-1])
    blocks = labels.to_delayed()
    keys = [(i, j) for i in range(blocks.shape[0]) for j in range(blocks.shape[1])]
    if blocks_split.held_out.any():
        # labelled pixels per (block, class), then validation blocks given back until every class can be learnt
        nbx = blocks_split.held_out.shape[1]
        parts = compute([dask.delayed(_block_class_counts)(blocks[i, j], blocks_split.origin, blocks_split.block_px, nbx,
                                                             starts_y[i], starts_x[j]) for i, j in keys])
        per = np.zeros((blocks_split.held_out.size, 256), np.int64)
        for part in parts:
            np.add.at(per, (part[:, 0] // 256, part[:, 0] % 256), part[:, 1])
        need = max(min_per_class, n_per_class // 4)
        held = keep_classes_trainable(blocks_split.held_out, per, need, np.random.default_rng([seed, 2]))
        blocks_split = BlockSplit(held, blocks_split.block_px, blocks_split.origin, blocks_split.buffer_px)
    counts = np.stack(compute([dask.delayed(_chunk_counts)(blocks[i, j], blocks_split, starts_y[i], starts_x[j]) for i, j in keys]))
    if blocks_split.held_out.any() and blocks_split.buffer_px:
        # the buffer takes training pixels too: give back further blocks while a class is still short (a few rounds)
        flip_rng = np.random.default_rng([seed, 3])
        for _ in range(4):
            train = counts[:, 0].sum(0)
            held = blocks_split.held_out.ravel().copy()
            short = [c for c in range(1, 256) if train[c] < min(need, per[:, c].sum()) and (per[held, c] > 0).any()]
            if not short or held.sum() <= 1:
                break
            for c in short:
                cand = np.nonzero(held & (per[:, c] > 0))[0]
                if len(cand) and held.sum() > 1:
                    held[flip_rng.choice(cand)] = False
            blocks_split = BlockSplit(held.reshape(blocks_split.held_out.shape), blocks_split.block_px, blocks_split.origin,
                                      blocks_split.buffer_px)
            counts = np.stack(compute([dask.delayed(_chunk_counts)(blocks[i, j], blocks_split, starts_y[i], starts_x[j])
                                       for i, j in keys]))
    # counts: (chunk, split, class) usable pixels under the final split
    total = counts.sum((0, 1))
    classes = [c for c in range(1, 256) if total[c] > 0]
    _need_two_classes(classes)
    n_val = _validation_quota(n_per_class, validation_fraction)
    train_total = counts[:, 0].sum(0)
    kept = [c for c in classes if _keep_class(c, int(train_total[c]), min_per_class, small_class_policy, after_split=True)]
    _need_two_classes([c for c in kept if train_total[c] > 0])
    if max_chunks is not None and max_chunks < len(keys):
        wanted = np.zeros(counts.shape[1:], np.int64)
        wanted[0, kept], wanted[1, kept] = n_per_class, n_val
        chosen = choose_chunks(counts, wanted, max_chunks, np.random.default_rng([seed, 1]))
        counts = counts * chosen[:, None, None]
    quota = np.zeros_like(counts)
    for c in kept:
        for s, want in ((0, n_per_class), (1, n_val)):
            avail = counts[:, s, c]
            k = int(min(want, avail.sum()))
            if k:
                quota[:, s, c] = rng.multivariate_hypergeometric(avail, k)
    vblocks = values.rechunk(labels.chunks).to_delayed() if values is not None else None
    draw_tasks = [dask.delayed(_chunk_draw)(blocks[i, j], blocks_split, starts_y[i], starts_x[j], quota[n], seed, (i, j),
                                            None if vblocks is None else vblocks[i, j])
                  for n, (i, j) in enumerate(keys) if quota[n].any()]
    drawn = compute(draw_tasks) if draw_tasks else []
    rows = np.concatenate([d[0] for d in drawn]) if drawn else np.zeros((0, 4), np.int64)
    if len(rows) == 0:
        raise LabelError("no pixel could be sampled; check the label map overlaps the area")
    value = np.concatenate([d[1] for d in drawn]) if values is not None else None
    return Sample(rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2].astype(labels.dtype), rows[:, 3].astype(bool),
                  value)


def near_classes(label: np.ndarray, classes, radius_px: int) -> np.ndarray:
    """``(y, x, class)`` bool: whether each class of ``classes`` occurs in ``label`` within ``radius_px`` of each
    pixel (a square window; nothing beyond the array's edge)."""
    from scipy import ndimage

    size = 2 * int(radius_px) + 1
    return np.stack([ndimage.maximum_filter((label == c).astype(np.uint8), size=size, mode="constant") > 0
                     for c in classes], -1)


def plausible_classes(label: np.ndarray, iy: np.ndarray, ix: np.ndarray, classes, radius_px: int) -> np.ndarray:
    """``(sample, class)`` bool: whether each class of ``classes`` occurs in the label map within ``radius_px`` of
    each sample (a square window): the classes a sample may be relabelled to (:func:`refine_labels`).

    ``label`` is the coarse map on the 10 m grid (class indices, 0 = no data), whole or a window holding every
    sample with its ``radius_px`` margin.
    """
    return near_classes(label, classes, radius_px)[iy, ix]


def refine_labels(X: np.ndarray, y: np.ndarray, groups: np.ndarray, plausible: np.ndarray, *, rounds: int = 2,
                  threshold: float = 0.6, n_estimators: int = 50, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Iterative label refinement with coarse-cell constraints (self-training on the coarse labels).

    Each round, every sample gets class probabilities from forests that never saw its spatial group (group
    k-fold: ``groups`` are blocks of coarse cells, so a sample's own cell cannot vouch for its coarse label); a
    sample is relabelled to another class when that class reaches ``threshold`` and is plausible where the sample
    lies (``plausible[i, k]``: present in the coarse map nearby, :func:`plausible_classes`). What a coarse cell
    hides — a parcel of another class inside it — is learnt from the cells where that class is the majority.

    Parameters
    ----------
    X
        ``(sample, feature)`` features (rows with NaN keep their label).
    y
        ``(sample,)`` class labels (the coarse map's).
    groups
        ``(sample,)`` spatial group ids (e.g. blocks of 3 × 3 coarse cells).
    plausible
        ``(sample, class)`` bool, columns in the order of ``np.unique(y)``.

    Returns
    -------
    labels, info
        The refined labels and ``{"rounds": [{"relabelled": n, "to": {class: n}}, ...], "changed": n}``.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GroupKFold

    classes = np.unique(y)
    ok = np.isfinite(X).all(1)
    cur = y.copy()
    info: dict = {"rounds": []}
    n_groups = len(np.unique(groups[ok]))
    if n_groups < 3 or len(classes) < 2:
        return cur, {"rounds": [], "changed": 0, "note": "too few spatial groups or classes to cross-fit"}
    for r in range(rounds):
        proba = np.zeros((len(y), len(classes)))
        for tr, te in GroupKFold(min(5, n_groups)).split(X[ok], cur[ok], groups[ok]):
            rf = RandomForestClassifier(n_estimators=n_estimators, n_jobs=-1, random_state=seed + r, max_features="sqrt",
                                        min_samples_leaf=2, class_weight="balanced")
            rf.fit(X[ok][tr], cur[ok][tr])
            p = np.zeros((len(te), len(classes)))
            p[:, np.searchsorted(classes, rf.classes_)] = rf.predict_proba(X[ok][te])
            proba[np.flatnonzero(ok)[te]] = p
        best = proba.argmax(1)
        conf = proba.max(1)
        move = ok & (classes[best] != cur) & (conf >= threshold) & plausible[np.arange(len(y)), best]
        to = {int(c): int((classes[best][move] == c).sum()) for c in classes if (classes[best][move] == c).any()}
        info["rounds"].append({"relabelled": int(move.sum()), "to": to})
        if not move.any():
            break
        cur = np.where(move, classes[best], cur)
    info["changed"] = int((cur != y).sum())
    return cur, info
