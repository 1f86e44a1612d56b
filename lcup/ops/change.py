"""Change between class maps of several years on one grid: transition matrices, gains and losses, change codes,
temporal consistency. Pure numpy / Dask: maps in, tables out, chunk by chunk.

Class maps hold legend codes (0 = no data); inside, codes become indices ``1..K`` of ``codes`` (0 = no data or a code
outside the legend), so a transition matrix is ``(K + 1, K + 1)`` whatever the codes' values.
"""

from __future__ import annotations

from typing import Sequence

import dask.array as da
import numpy as np

#: WGS 84 semi-major axis (m) and flattening, for pixel areas on geographic grids.
WGS84_A, WGS84_F = 6_378_137.0, 1 / 298.257223563


def _q(phi: np.ndarray) -> np.ndarray:
    """The authalic function q(φ) of the WGS 84 ellipsoid (Snyder 1987, eq. 3-12)."""
    e2 = WGS84_F * (2 - WGS84_F)
    e, s = np.sqrt(e2), np.sin(phi)
    return (1 - e2) * (s / (1 - e2 * s**2) - np.log((1 - e * s) / (1 + e * s)) / (2 * e))


def row_area_m2(transform: Sequence[float], height: int, geographic: bool) -> np.ndarray:
    """Area of one pixel in each row of a north-up grid, m², ``(height,)``.

    Projected grids (metres): ``|a · e|`` for every row. Geographic grids (degrees): the exact area of the
    row's cell on the WGS 84 ellipsoid, ``A² · Δλ / 2 · |q(φ_top) − q(φ_bottom)|`` (Snyder 1987), which shrinks
    towards the poles.

    Examples
    --------
    >>> row_area_m2((10, 0, 500000, 0, -10, 5100000), 2, geographic=False)
    array([100., 100.])
    >>> round(float(row_area_m2((1 / 12000, 0, 6, 0, -1 / 12000, 0.5), 1, geographic=True)[0]), 1)
    85.5
    """
    a, _, _, _, e, f = transform[:6]
    if not geographic:
        return np.full(height, abs(a * e), np.float64)
    top = np.radians(f + e * np.arange(height))
    return WGS84_A**2 * np.radians(abs(a)) / 2 * np.abs(_q(top) - _q(top + np.radians(e)))


def code_index(codes: Sequence[int]) -> np.ndarray:
    """Lookup table code → index ``1..K`` (0 for no data and codes outside ``codes``), sized for the codes' dtype."""
    lut = np.zeros(max(256, int(max(codes, default=0)) + 1), np.int64)
    lut[np.asarray(codes, np.int64)] = np.arange(1, len(codes) + 1)
    return lut


def _pair_block(a, b, area, lut_a, lut_b, n_a, n_b):
    ia = (lut_a[np.clip(a, 0, len(lut_a) - 1)] if lut_a is not None else a.astype(np.int64)).ravel()
    ib = lut_b[np.clip(b, 0, len(lut_b) - 1)].ravel()
    flat = ia * n_b + ib
    px = np.bincount(flat, minlength=n_a * n_b)
    m2 = np.bincount(flat, weights=np.broadcast_to(area, a.shape).ravel(), minlength=n_a * n_b)
    return np.stack([px, m2])[None, None]


def pair_sums(a: da.Array, b: da.Array, lut_a: np.ndarray | None, lut_b: np.ndarray, n_a: int, n_b: int,
              row_area: np.ndarray) -> da.Array:
    """Lazy ``(2, n_a, n_b)`` float64 — pixels and m² — of every pair (index of ``a``, index of ``b``) over two
    ``(y, x)`` maps on one grid; ``lut_a``/``lut_b`` map values to indices (``lut_a`` None: ``a`` holds indices
    already, e.g. zone numbers). One small bincount task per chunk, summed: no AOI-sized array is ever held."""
    area = da.from_array(np.asarray(row_area, np.float64)[:, None], chunks=(b.chunks[0], 1))
    blocks = da.map_blocks(_pair_block, a.rechunk(b.chunks), b, area, lut_a, lut_b, n_a, n_b, new_axis=[2, 3],
                           chunks=((1,) * len(b.chunks[0]), (1,) * len(b.chunks[1]), (2,), (n_a * n_b,)), dtype=np.float64)
    return blocks.sum(axis=(0, 1)).reshape(2, n_a, n_b)


def transitions(a: da.Array, b: da.Array, codes: Sequence[int], row_area: np.ndarray) -> da.Array:
    """Lazy transition matrix from map ``a`` to map ``b`` (``(y, x)``, same grid and chunks): ``(2, K + 1, K + 1)``
    float64 — ``[0]`` pixels, ``[1]`` area in m² — rows ``a``'s class, columns ``b``'s; index 0 is no data.

    One small task per chunk (:func:`pair_sums`): no AOI-sized array is ever held.

    Examples
    --------
    >>> a = da.from_array(np.array([[1, 1], [2, 0]], np.uint8), chunks=1)
    >>> b = da.from_array(np.array([[1, 2], [2, 2]], np.uint8), chunks=1)
    >>> transitions(a, b, [1, 2], np.array([100.0, 100.0])).compute()[0]
    array([[0., 0., 1.],
           [0., 1., 1.],
           [0., 0., 1.]])
    """
    lut = code_index(codes)
    return pair_sums(a, b.rechunk(a.chunks), lut, lut, len(codes) + 1, len(codes) + 1, row_area)


def change_summary(matrix: np.ndarray, codes: Sequence[int], names: dict[int, str]) -> dict:
    """Gross gains, losses, net change and persistence per class from a transition matrix (rows from, columns to;
    index 0 no data, left out: a pixel without data in either year is not a change).

    ``matrix`` in any unit (pixels or hectares); returns ``{code: {"name", "from", "to", "persistence", "gain",
    "loss", "net"}}`` in that unit, and the totals ``changed`` and ``share_changed``.

    Examples
    --------
    >>> m = np.array([[0, 0, 0], [0, 8, 2], [0, 1, 9]])
    >>> s = change_summary(m, [1, 2], {1: "forest", 2: "crops"})
    >>> s["classes"][1]["loss"], s["classes"][1]["gain"], s["classes"][2]["net"], s["share_changed"]
    (2.0, 1.0, 1.0, 0.15)
    """
    m = np.asarray(matrix, np.float64)[1:, 1:]
    diag = np.diag(m)
    out = {}
    for i, c in enumerate(codes):
        frm, to = m[i].sum(), m[:, i].sum()
        out[int(c)] = {"name": names.get(int(c), str(c)), "from": float(frm), "to": float(to), "persistence": float(diag[i]),
                       "gain": float(to - diag[i]), "loss": float(frm - diag[i]), "net": float(to - frm)}
    total = m.sum()
    changed = total - diag.sum()
    return {"classes": out, "total": float(total), "changed": float(changed), "share_changed": float(changed / total) if total else None}


def change_legend_table(matrix: np.ndarray, codes: Sequence[int]) -> list[tuple[int, int, int]]:
    """The change map's codes: ``[(change_code, from_code, to_code)]``, 1 = no change, then every transition
    between two classes that occurs, largest first (ties by codes), numbered from 2."""
    m = np.asarray(matrix)[1:, 1:]
    pairs = [(-m[i, j], codes[i], codes[j]) for i in range(len(codes)) for j in range(len(codes)) if i != j and m[i, j] > 0]
    return [(n + 2, int(f), int(t)) for n, (_, f, t) in enumerate(sorted(pairs))]


def _change_block(a, b, lut, table):
    k = len(lut)
    ia, ib = lut[np.clip(a, 0, k - 1)], lut[np.clip(b, 0, k - 1)]
    out = table[ia, ib]
    return out


def change_map(a: da.Array, b: da.Array, codes: Sequence[int], legend_table: list[tuple[int, int, int]]) -> da.Array:
    """Lazy change map ``(y, x)``: 0 where either year has no data, 1 no change, else the code of the transition in
    ``legend_table`` (:func:`change_legend_table`); uint8, or uint16 beyond 255 codes."""
    lut = code_index(codes)
    n = len(codes) + 1
    dtype = np.uint8 if len(legend_table) + 2 <= 256 else np.uint16
    table = np.zeros((n, n), dtype)
    table[1:, 1:][np.eye(n - 1, dtype=bool)] = 1
    pos = {c: i + 1 for i, c in enumerate(codes)}
    for code, f, t in legend_table:
        table[pos[f], pos[t]] = code
    return da.map_blocks(_change_block, a, b.rechunk(a.chunks), lut, table, dtype=dtype)


def _flip_block(*maps):
    s = np.stack(maps)
    valid = (s > 0).all(0)
    changed = (s[1:] != s[:-1]).any(0) & valid
    back = np.zeros_like(valid)
    for i in range(len(maps) - 2):  # changed, then changed back to what it was
        back |= (s[i] != s[i + 1]) & (s[i + 2] == s[i])
    back &= valid
    return np.array([valid.sum(), changed.sum(), back.sum()], np.int64)[None, None]


def temporal_consistency(maps: Sequence[da.Array]) -> da.Array:
    """Lazy ``[valid pixels, pixels that change at least once, pixels that change and change back]`` over a
    sequence of yearly maps on one grid (3 or more years for the flip-back count): a flip-back is most often
    noise, not land-cover change, so its share measures the maps' temporal consistency.

    Examples
    --------
    >>> m = [da.from_array(np.array([[1, 1, 2]]), chunks=1) for _ in range(3)]
    >>> m[1] = da.from_array(np.array([[2, 1, 1]]), chunks=1)
    >>> temporal_consistency(m).compute().tolist()  # pixels 0 and 2 change and change back
    [3, 2, 2]
    """
    first = maps[0]
    rest = [m.rechunk(first.chunks) for m in maps[1:]]
    blocks = da.map_blocks(_flip_block, first, *rest, new_axis=[2],
                           chunks=((1,) * len(first.chunks[0]), (1,) * len(first.chunks[1]), (3,)), dtype=np.int64)
    return blocks.sum(axis=(0, 1))
