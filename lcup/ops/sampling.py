"""The training sample: stratified per class, drawn chunk by chunk, with spatially separated validation blocks."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
from scipy.spatial import cKDTree

from ..errors import EmptyClassWarning, LabelError


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
    split
        The spatial training/validation split the sample was drawn with (:class:`BlockSplit`), or None: which
        block any pixel of the grid belongs to.
    """

    iy: np.ndarray
    ix: np.ndarray
    label: np.ndarray
    validation: np.ndarray
    value: np.ndarray | None = None
    split: "BlockSplit | None" = None

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

    d, _ = cKDTree(np.stack([sample.iy[tr], sample.ix[tr]], 1)).query(np.stack([sample.iy[va], sample.ix[va]], 1), k=1)
    return float(d.min())


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


def stratified_sample(
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
    """Stratified random sample of usable pixels with spatially separated validation blocks, drawn chunk by chunk:
    positions are drawn per chunk, never gathered whole.

    The grid is cut into ``block_px`` square blocks; a random ``validation_fraction`` of the blocks is held out
    for validation so that training and validation pixels are never neighbours. Within the training and
    validation blocks each class is sampled up to ``n_per_class`` pixels (and the same proportion for
    validation). Classes with fewer than ``min_per_class`` usable pixels meet ``small_class_policy``:
    ``"warn"`` keeps them with an :class:`~lcup.errors.EmptyClassWarning`, ``"drop"`` drops them (with the
    warning), ``"error"`` raises :class:`~lcup.errors.LabelError`.

    1. one pass counts the pixels per (chunk, split, class) — a tiny array;
    2. the per-class quotas are spread over the chunks by a multivariate hypergeometric draw, which is
       exactly a uniform sample without replacement over all chunks together;
    3. each chunk draws its quota with its own generator ``default_rng([seed, chunk_y, chunk_x])``.

    The result depends only on ``seed`` and the chunking.

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
                  value, blocks_split)
