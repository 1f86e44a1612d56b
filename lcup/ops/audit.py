"""Where the coarse map is wrong: per coarse cell, the share of its 10 m pixels that the map confidently gives
another class than the cell's label, and the class most of them get."""

from __future__ import annotations

import numpy as np

__all__ = ["cell_disagreement"]


def cell_disagreement(cls: np.ndarray, conf: np.ndarray, label: np.ndarray, cell: int, min_confidence: int) -> np.ndarray:
    """``(2, ny, nx)`` uint8 over the ``cell`` × ``cell`` px cells of a block (its sides multiples of ``cell``):
    band 0, the share (%) of each cell's labelled and mapped pixels whose map class differs from the label with a
    confidence of at least ``min_confidence`` (%), 255 where the cell has none; band 1, the class code most of those
    pixels have (0 where none).

    ``cls`` and ``label`` are ``(y, x)`` legend codes (0 = no data), ``conf`` the map's confidence in % (255 = no
    data).

    Examples
    --------
    >>> cls = np.array([[1, 2], [2, 2]]); lab = np.ones((2, 2), int); conf = np.full((2, 2), 90)
    >>> cell_disagreement(cls, conf, lab, 2, 60)[:, 0, 0].tolist()
    [75, 2]
    """
    h, w = cls.shape
    ny, nx = h // cell, w // cell
    ok = (cls > 0) & (label > 0) & (conf != 255)
    other = ok & (cls != label) & (conf >= min_confidence)

    def per_cell(a):
        return a[: ny * cell, : nx * cell].reshape(ny, cell, nx, cell).sum(axis=(1, 3))

    n_ok, n_other = per_cell(ok.astype(np.int64)), per_cell(other.astype(np.int64))
    share = np.where(n_ok > 0, np.round(100 * n_other / np.maximum(n_ok, 1)), 255).astype(np.uint8)
    codes = np.unique(cls[other])
    best = np.zeros((ny, nx), np.uint8)
    if codes.size:
        counts = np.stack([per_cell((other & (cls == c)).astype(np.int64)) for c in codes])
        best = np.where(n_other > 0, codes[counts.argmax(0)], 0).astype(np.uint8)
    return np.stack([share, best])
