"""Training labels from a coarse map on the 10 m grid: class-edge erosion, label confidence, statistics.

The sample drawn from them is :mod:`lcup.ops.sampling`'s; their refinement :mod:`lcup.ops.refine`'s.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from .blocks import sum_blocks
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


def box_count(mask: np.ndarray, window_px: int) -> np.ndarray:
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
        out[m] = box_count(m, window_px)[m] / np.float32(int(window_px) ** 2)
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
    return dask.delayed(_stats_summary)(sum_blocks(_stats_block, labels, eroded, usable, conf))
