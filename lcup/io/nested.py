"""An odc-stac reader driver that reads nested grids without warping, each COG block decoded once per process.

Sentinel-2's 20 m and 60 m bands (and SCL) sit on grids that nest in the 10 m grid: each coarse pixel is exactly
``k × k`` fine pixels. odc-stac reads them through ``rasterio.warp.reproject``, which resamples every output pixel;
with nearest resampling on nested grids that is an exact pixel repeat. :class:`NestedRioDriver` reads the covering
window at the asset's own resolution and repeats its pixels (:func:`repeat_pixels`), and hands every other case (other
CRS, rotation, non-integer ratios or offsets, other resampling, multi-band reads) to odc-stac's own reader. The
pixels are the same (tested against odc-stac); the warp's cost is gone.

A COG is decoded a whole internal block at a time, and Sentinel-2's blocks are larger than a chunk: Earth Search's
are 1024 × 1024 pixels, 10 km at 10 m and 20 km at 20 m, so a 512 px chunk decoded a 10 m block 4 times over and a
20 m block 16 times over (~7× the decode a band needs, measured ~8× the plain-rasterio floor). The reader keeps the
blocks it decodes in a :class:`BlockCache` shared by the process's threads (bounded in bytes, a block picked at
random makes room once full): the chunks that share a block decode it once.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable, NamedTuple, Sequence

import distributed
import numpy as np
import psutil
import rasterio
from odc.geo import CRS
from odc.loader._reader import (
    nodata_mask,
    resolve_band_query,
    resolve_dst_dtype,
    resolve_dst_nodata,
    resolve_src_nodata,
    same_nodata,
)
from odc.loader._rio import RioDriver, RioReader, rio_read

from ..errors import ReadError
from ..redact import redact_text

#: Largest accepted deviation from an integer (ratio of resolutions, offset in fine pixels).
_TOL = 1e-6


def nesting(src_transform, src_crs, dst_geobox) -> tuple[int, int, int] | None:
    """``(k, row_offset, col_offset)`` when ``dst_geobox``'s pixels nest ``k × k`` in the source's (same CRS, no
    rotation, resolution ratio an integer ``k ≥ 1``, source origin on the fine pixel lattice), else None.

    Offsets are the source origin in fine pixels from the destination origin: fine pixel ``(r, c)`` lies in
    source pixel ``((r + row_offset) // k, (c + col_offset) // k)``.

    Examples
    --------
    >>> from affine import Affine
    >>> from odc.geo.geobox import GeoBox
    >>> dst = GeoBox((4, 4), Affine(10, 0, 500010, 0, -10, 6000000), "EPSG:32633")
    >>> nesting(Affine(20, 0, 500000, 0, -20, 6000000), "EPSG:32633", dst)
    (2, 0, 1)
    >>> nesting(Affine(20, 0, 500005, 0, -20, 6000000), "EPSG:32633", dst) is None  # off the lattice
    True
    """
    a, b, c, d, e, f = tuple(src_transform)[:6]
    A, B, C, D, E, F = tuple(dst_geobox.transform)[:6]
    if b or d or B or D or dst_geobox.crs is None or src_crs is None:
        return None
    if not _same_crs(dst_geobox.crs, src_crs):
        return None
    kx, ky = a / A, e / E
    k = round(kx)
    if k < 1 or abs(kx - k) > _TOL or abs(ky - k) > _TOL:
        return None
    ox, oy = (C - c) / A, (F - f) / E  # destination origin from the source origin, in fine pixels
    if abs(ox - round(ox)) > _TOL or abs(oy - round(oy)) > _TOL:
        return None
    return k, int(round(oy)), int(round(ox))


#: CRS comparisons made, by the objects' ids (each entry holds its objects, so the ids stay theirs).
_CRS_EQ: dict[tuple[int, int], tuple[Any, Any, bool]] = {}


def _same_crs(a, b) -> bool:
    """``a == b``, remembered for these two objects (pyproj's comparison: ~30–100 µs, asked once per read)."""
    hit = _CRS_EQ.get((id(a), id(b)))
    if hit is None:
        if len(_CRS_EQ) > 256:
            _CRS_EQ.clear()
        hit = _CRS_EQ[(id(a), id(b))] = (a, b, bool(a == b))
    return hit[2]


class BlockCache:
    """Decoded blocks shared by threads, bounded in bytes: once full, a block picked at random makes room.

    A chunk's reads cycle through the blocks of its tile (every band, every date), chunk after chunk: when those
    are more than fit, least-recently-used eviction drops each block just before it is asked for again and serves
    none (measured: 11 % of reads with a cache three quarters of the loop), while random eviction keeps a share of
    the loop and degrades gradually. :meth:`fetch` returns the blocks asked for, decoding only those no thread
    holds or is decoding: a block another thread is decoding is waited for, not decoded twice. Blocks are read-only.

    Examples
    --------
    >>> c = BlockCache(1 << 20)
    >>> decoded = []
    >>> def read(keys):
    ...     decoded.extend(keys)
    ...     return [np.full((2, 2), k, np.uint16) for k in keys]
    >>> [int(a[0, 0]) for a in c.fetch([1, 2], read)], [int(a[0, 0]) for a in c.fetch([2, 3], read)], decoded
    ([1, 2], [2, 3], [1, 2, 3])
    """

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = int(max_bytes)
        self._data: dict[Hashable, np.ndarray] = {}
        self._keys: list[Hashable] = []  # for picking one at random
        self._where: dict[Hashable, int] = {}
        self._pending: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(0)
        self.nbytes = self.peak_bytes = 0
        self.hits = self.misses = self.waits = 0
        self.wait_s = 0.0

    def resize(self, max_bytes: int) -> None:
        """Hold at most ``max_bytes`` from now on (dropping blocks now if over)."""
        with self._lock:
            self.max_bytes = int(max_bytes)
            self._evict()

    def clear(self) -> None:
        """Drop every block and start the counts (hits, misses, peak) again."""
        with self._lock:
            self._data.clear()
            self._keys.clear()
            self._where.clear()
            self.nbytes = self.peak_bytes = self.hits = self.misses = self.waits = 0
            self.wait_s = 0.0

    def _drop(self, key: Hashable) -> None:
        i = self._where.pop(key)
        last = self._keys.pop()
        if last != key:  # the last key takes the dropped one's place
            self._keys[i] = last
            self._where[last] = i
        self.nbytes -= self._data.pop(key).nbytes

    def _evict(self) -> None:
        while self._keys and self.nbytes > self.max_bytes:
            self._drop(self._keys[self._rng.randrange(len(self._keys))])

    def _store(self, key: Hashable, a: np.ndarray) -> None:
        if a.nbytes > self.max_bytes:
            return
        if key in self._data:
            self._drop(key)
        self._where[key] = len(self._keys)
        self._keys.append(key)
        self._data[key] = a
        self.nbytes += a.nbytes
        self._evict()
        self.peak_bytes = max(self.peak_bytes, self.nbytes)

    def fetch(self, keys: Sequence[Hashable], read: Callable[[list], list]) -> list[np.ndarray]:
        """The arrays of ``keys``; ``read(missing_keys) -> arrays`` decodes those not held (in one call)."""
        out: dict[Hashable, np.ndarray] = {}
        mine, others = [], []
        with self._lock:
            for k in dict.fromkeys(keys):
                a = self._data.get(k)
                if a is not None:
                    out[k] = a
                    self.hits += 1
                elif k in self._pending:
                    others.append((k, self._pending[k]))
                else:
                    self._pending[k] = threading.Event()
                    mine.append(k)
        try:
            if mine:
                arrays = read(mine)
                with self._lock:
                    for k, a in zip(mine, arrays):
                        a.setflags(write=False)
                        out[k] = a
                        self.misses += 1
                        self._store(k, a)
        finally:  # released before waiting on other threads' blocks: no two threads wait on each other
            with self._lock:
                for k in mine:
                    self._pending.pop(k).set()
        for k, ev in others:
            t0 = time.perf_counter()
            ev.wait()
            with self._lock:
                self.waits += 1
                self.wait_s += time.perf_counter() - t0
                a = self._data.get(k)
            if a is None:  # its reader failed, or it was dropped already: decode it here (not kept)
                a = read([k])[0]
                a.setflags(write=False)
            out[k] = a
        return [out[k] for k in keys]


#: The process's decoded blocks (sized by :class:`NestedRioDriver`; 0 bytes: nothing kept).
BLOCKS = BlockCache(0)


def clear_blocks() -> None:
    """Drop the process's decoded blocks, their counts and size (the next read sets it again), and the files' headers
    held (on a cluster's workers: ``client.run(clear_blocks)``)."""
    BLOCKS.clear()
    BLOCKS.resize(0)
    with _META_LOCK:
        _META.clear()
    _CRS_EQ.clear()
    _CRS_BY_WKT.clear()


def cache_stats() -> dict:
    """This process's :data:`BLOCKS`: ``hits``, ``misses`` (blocks decoded), ``peak_bytes`` held, ``max_bytes``."""
    return {"hits": BLOCKS.hits, "misses": BLOCKS.misses, "peak_bytes": BLOCKS.peak_bytes, "max_bytes": BLOCKS.max_bytes,
            "waits": BLOCKS.waits, "wait_s": BLOCKS.wait_s}


class _Meta(NamedTuple):
    height: int
    width: int
    count: int
    transform: Any
    crs: Any
    block_shapes: list
    nodatavals: tuple
    dtypes: tuple


#: Header facts of the files read, by :func:`_file_key` (small; bounded like the blocks, by count).
_META: OrderedDict[Hashable, _Meta] = OrderedDict()
_META_MAX = 100_000
_META_LOCK = threading.Lock()


def _file_key(uri: str) -> tuple:
    """What identifies a file's content: a local file's path, size, modification time and inode (a file rewritten
    in place is another file); a URL itself (remote assets are immutable)."""
    path = uri[7:] if uri.startswith("file://") else uri
    if "://" not in path:
        try:
            st = os.stat(path)
            return (path, st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            pass
    return (uri,)


#: One odc-geo CRS object per CRS (by WKT) over the files read, so :func:`_same_crs` remembers one comparison for
#: all the files of a zone (a CRS object per file made it compare again at every read of a new file).
_CRS_BY_WKT: dict[str, Any] = {}


def _meta_of(rdr) -> _Meta:
    crs = None
    if rdr.crs:
        wkt = rdr.crs.to_wkt()
        crs = _CRS_BY_WKT.get(wkt)
        if crs is None:
            if len(_CRS_BY_WKT) > 64:
                _CRS_BY_WKT.clear()
            # odc-geo's CRS: compared with the output grid's in ~1 µs (rasterio's against odc-geo's: ~30 µs, per read)
            crs = _CRS_BY_WKT[wkt] = CRS(rdr.crs)
    return _Meta(rdr.height, rdr.width, rdr.count, rdr.transform, crs, list(rdr.block_shapes), tuple(rdr.nodatavals),
                 tuple(rdr.dtypes))


def read_nested(open_file: Callable[[], Any], meta: _Meta, fkey: tuple, bidx: int, k: int, oy: int, ox: int,
                shape: tuple[int, int], out_dtype, src_nodata, dst_nodata, cache: BlockCache | None = None,
                on_non_finite: Callable[[int, int], None] | None = None) -> tuple[tuple[slice, slice], np.ndarray]:
    """The part of a ``shape`` fine grid that a source nested ``k``-fold (offsets ``oy, ox``: :func:`nesting`)
    covers, read at the source's resolution and repeated: ``(roi, pixels)`` as odc-stac's readers return.

    With ``cache`` (and ``max_bytes`` > 0), the source's internal blocks covering the window are taken from it or
    decoded into it (``open_file()`` opens the file only when some are missing); else the window is read directly.
    The pixels may be a read-only view of a cached block (odc-stac only copies them into its own array).
    NaN/inf pixels of a floating-point source read into integers are ``dst_nodata`` (0 without one), and their
    count and the pixels read go to ``on_non_finite(bad, total)`` (numpy would cast them to arbitrary integers).
    """
    H, W = meta.height, meta.width
    h, w = shape
    # fine rows r with 0 <= (r + oy) // k < H
    r0, r1 = max(0, -oy), min(h, H * k - oy)
    c0, c1 = max(0, -ox), min(w, W * k - ox)
    roi = (slice(r0, max(r0, r1)), slice(c0, max(c0, c1)))
    if r1 <= r0 or c1 <= c0:
        return roi, np.empty((max(0, r1 - r0), max(0, c1 - c0)), out_dtype)
    rows = ((r0 + oy) // k, (r1 - 1 + oy) // k + 1)
    cols = ((c0 + ox) // k, (c1 - 1 + ox) // k + 1)
    if cache is not None and cache.max_bytes > 0:
        parts = _blocks(open_file, meta, fkey, bidx, rows, cols, cache)
    else:
        with open_file() as rdr:
            parts = [(rows[0], cols[0], rdr.read(bidx, window=(rows, cols)))]
    src = _repeated(parts, rows, cols, k)
    dy, dx = (r0 + oy) - rows[0] * k, (c0 + ox) - cols[0] * k
    pix = src[dy:dy + r1 - r0, dx:dx + c1 - c0]
    if pix.dtype.kind == "f" and np.dtype(out_dtype).kind in "iu":
        bad = ~np.isfinite(pix)
        n_bad = int(bad.sum())
        if on_non_finite is not None:
            on_non_finite(n_bad, int(pix.size))
        if n_bad:
            pix = np.where(bad, 0 if dst_nodata is None else dst_nodata, pix)
    if dst_nodata is not None and not same_nodata(src_nodata, dst_nodata):
        pix = pix.astype(out_dtype, copy=True)
        np.copyto(pix, dst_nodata, where=nodata_mask(src[dy:dy + r1 - r0, dx:dx + c1 - c0], src_nodata))
    return roi, pix.astype(out_dtype, copy=False)


def _blocks(open_file, meta: _Meta, fkey: tuple, bidx: int, rows: tuple[int, int], cols: tuple[int, int],
            cache: BlockCache) -> list[tuple[int, int, np.ndarray]]:
    """The whole blocks of band ``bidx`` that cover source ``rows`` and ``cols`` (half-open): ``(first row, first
    column, pixels)`` each, from ``cache`` or decoded into it."""
    bh, bw = meta.block_shapes[bidx - 1]
    blocks = [(i, j) for i in range(rows[0] // bh, (rows[1] - 1) // bh + 1) for j in range(cols[0] // bw, (cols[1] - 1) // bw + 1)]

    def read(keys):
        with open_file() as rdr:
            return [rdr.read(bidx, window=((i * bh, min(meta.height, (i + 1) * bh)), (j * bw, min(meta.width, (j + 1) * bw))))
                    for *_, i, j in keys]

    arrays = cache.fetch([fkey + (bidx, i, j) for i, j in blocks], read)
    return [(i * bh, j * bw, a) for (i, j), a in zip(blocks, arrays)]


def _repeated(parts: list[tuple[int, int, np.ndarray]], rows: tuple[int, int], cols: tuple[int, int], k: int) -> np.ndarray:
    """Source ``rows`` × ``cols`` (half-open) assembled from ``parts`` (``(first row, first column, pixels)``, which
    cover them), every pixel repeated ``k × k`` (:func:`repeat_pixels`); a view of the one part when it holds the
    window and ``k`` is 1.

    Examples
    --------
    >>> a = np.arange(6, dtype=np.uint16).reshape(2, 3)
    >>> _repeated([(0, 0, a)], (1, 2), (1, 3), 2).tolist()
    [[4, 4, 5, 5], [4, 4, 5, 5]]
    """
    (y0, y1), (x0, x1) = rows, cols
    if len(parts) == 1:
        py, px, a = parts[0]
        src = a[y0 - py:y1 - py, x0 - px:x1 - px]
    else:
        src = np.empty((y1 - y0, x1 - x0), parts[0][2].dtype)
        for py, px, a in parts:
            ya, yb = max(py, y0), min(py + a.shape[0], y1)
            xa, xb = max(px, x0), min(px + a.shape[1], x1)
            if ya < yb and xa < xb:
                src[ya - y0:yb - y0, xa - x0:xb - x0] = a[ya - py:yb - py, xa - px:xb - px]
    return repeat_pixels(src, k) if k > 1 else src


def repeat_pixels(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` ``(y, x)`` with every pixel repeated ``k × k`` (``numpy.repeat`` along both axes, 5–10× faster for
    ``k = 2``: a 20 m band on the 10 m grid).

    Columns are doubled by widening each pixel's bits to twice the size and multiplying by ``2**bits + 1`` (both
    halves then hold the pixel, whatever the byte order); rows by copying whole rows.

    Examples
    --------
    >>> repeat_pixels(np.array([[1, 2], [3, 4]], np.int16), 2).tolist()
    [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    """
    n, m = a.shape
    if k == 2 and a.itemsize in (1, 2, 4):
        bits = 8 * a.itemsize
        wide = np.dtype(f"u{2 * a.itemsize}")
        cols = (a.view(f"u{a.itemsize}").astype(wide) * wide.type((1 << bits) + 1)).view(a.dtype)
    else:
        cols = np.broadcast_to(a[:, :, None], (n, m, k)).reshape(n, m * k)
    return np.repeat(cols, k, axis=0)


def fuse_nodata_0(dst: np.ndarray, src: np.ndarray) -> None:
    """odc-stac's default fuser for bands whose no-data value is 0 (copy ``src`` where ``dst`` is 0), with a plain
    copy where ``dst`` holds no data yet (a date's first granule: ~25 µs to check a 512² window, against ~270 µs
    for the masked copy). For ``odc.stac.load(fuse_func={band: "lcup.io.nested.fuse_nodata_0"})``.

    Examples
    --------
    >>> dst = np.array([0, 0, 5], np.uint16)
    >>> fuse_nodata_0(dst, np.array([1, 0, 2], np.uint16)); dst.tolist()
    [1, 0, 5]
    """
    if dst.size and dst.max() == 0 and dst.min() == 0:
        np.copyto(dst, src)
    else:
        np.copyto(dst, src, where=nodata_mask(dst, 0))


#: Ceiling of the automatic block cache, bytes.
AUTO_CACHE_MAX = 8 << 30


def auto_cache_bytes() -> int:
    """A quarter of the memory this process may use (its ``distributed`` worker's memory limit, else the machine's),
    at most :data:`AUTO_CACHE_MAX`.

    A quarter, because the cache pays only once it holds the blocks of the tiles being computed: a worker computes
    two 2048 px tiles at a time by default (a chunk per thread, plus one), each needing ~1.8 GB of blocks when it
    lies on Sentinel-2's block lattice and up to ~4.5 GB when it straddles it; served reads fall steeply below that
    (measured on two 1024 px tiles at a time, whose blocks peaked at 2.7 GB: 95 % of reads served at 3 GiB, 25 % at
    1 GiB). The rest of a 2-thread worker peaked at ~2.8 GB there, so a worker of 24 GB stays under 40 % of its
    limit, below distributed's spill threshold."""
    limit = 0
    try:
        limit = int(distributed.get_worker().memory_manager.memory_limit or 0)
    except (ValueError, AttributeError):  # not in a worker
        pass
    if not limit:
        limit = psutil.virtual_memory().total
    return int(min(AUTO_CACHE_MAX, limit // 4))


class NestedRioReader(RioReader):
    """odc-stac's rasterio reader, with :func:`read_nested` where the grids nest and resampling is nearest."""

    cache_bytes: int = 0

    def read(self, cfg, dst_geobox, *, dst: np.ndarray | None = None, selection=None):
        """One asset's pixels on ``dst_geobox``; a failure is noted (:func:`note_read_failure`) and then raised as a
        :class:`~lcup.errors.ReadError` naming the file (``fail_on_error``) or read as no data, as a cloud is."""
        try:
            return self._read(cfg, dst_geobox, dst=dst, selection=selection)
        except (rasterio.errors.RasterioError, OSError) as e:
            note_read_failure(self._src.uri, self._src.band, e)
            if cfg.fail_on_error:
                raise ReadError(f"cannot read {redact_text(self._src.uri)} (band {self._src.band}): {e}; fix or remove "
                                "the file, or set source.on_error: skip to read its unreadable blocks as no data (they "
                                "are then counted in summary.json)") from None
            return np.s_[0:0, 0:0], (dst[0:0, 0:0] if dst is not None else np.ndarray((0, 0), dtype=cfg.dtype))

    def _read(self, cfg, dst_geobox, *, dst: np.ndarray | None = None, selection=None):
        strict = dataclasses.replace(cfg, fail_on_error=True)  # a failure comes back here, to be noted
        src = self._src
        if dst is not None or not cfg.nearest:
            return rio_read(src, strict, dst_geobox, dst=dst, selection=selection)
        if BLOCKS.max_bytes != self.cache_bytes:
            BLOCKS.resize(self.cache_bytes)
        fkey = _file_key(src.uri)

        def open_file():  # within the GDAL settings odc-stac's task has entered (a nested rasterio Env per file: ~0.3 ms)
            return rasterio.open(src.uri, "r", sharing=False)

        with _META_LOCK:
            meta = _META.get(fkey)
        if meta is None:
            with open_file() as rdr:
                meta = _meta_of(rdr)
            with _META_LOCK:
                _META[fkey] = meta
                while len(_META) > _META_MAX:
                    _META.popitem(last=False)
        bidx = resolve_band_query(src, meta.count, selection=selection)
        nest = nesting(meta.transform, meta.crs, dst_geobox) if isinstance(bidx, int) else None
        if nest is None:
            return rio_read(src, strict, dst_geobox, dst=dst, selection=selection)
        src_nodata = resolve_src_nodata(meta.nodatavals[bidx - 1], cfg)
        out_dtype = resolve_dst_dtype(meta.dtypes[bidx - 1], cfg)
        dst_nodata = resolve_dst_nodata(out_dtype, cfg, src_nodata)
        return read_nested(open_file, meta, fkey, bidx, *nest, dst_geobox.shape, out_dtype, src_nodata, dst_nodata,
                           cache=BLOCKS, on_non_finite=lambda bad, total: note(NON_FINITE_TOPIC, {
                               "href": redact_text(str(src.uri)), "band": str(src.band), "bad": bad, "total": total}))


#: The ``distributed`` event topics of failed reads and of non-finite pixels read (:func:`note`).
READ_FAILURE_TOPIC, NON_FINITE_TOPIC = "lcup-read-failure", "lcup-non-finite"
_NOTES: dict[str, list[dict]] = {READ_FAILURE_TOPIC: [], NON_FINITE_TOPIC: []}
_NOTES_LOCK = threading.Lock()


def note(topic: str, record: dict) -> None:
    """Record something a read met (``topic``: :data:`READ_FAILURE_TOPIC`, :data:`NON_FINITE_TOPIC`): as a
    ``distributed`` event on a worker (the client collects them), in this process otherwise."""
    record = {**record, "t": time.time()}
    try:
        distributed.get_worker().log_event(topic, record)
    except ValueError:  # not in a worker
        with _NOTES_LOCK:
            _NOTES[topic].append(record)


def note_read_failure(uri: str, band: Any, error: BaseException) -> None:
    """Record a failed read of one asset for one chunk (:func:`note`)."""
    note(READ_FAILURE_TOPIC, {"href": redact_text(str(uri)), "band": str(band),
                              "error": redact_text(f"{type(error).__name__}: {error}")[:300]})


def notes(topic: str, client: Any = None, *, since: float = 0.0, clear: bool = False) -> list[dict]:
    """The records of ``topic`` made in this process and, with ``client``, on its workers, from ``since``
    (``time.time()``) on. ``clear``: forget this process's records once read."""
    with _NOTES_LOCK:
        records = [r for r in _NOTES[topic] if r["t"] >= since]
        if clear:
            _NOTES[topic].clear()
    if client is not None:
        try:
            records += [msg for t, msg in client.get_events(topic) if t >= since]
        except Exception:  # noqa: BLE001 - a closed or older client: this process's records only
            pass
    return records


def read_failures(client: Any = None, *, since: float = 0.0, clear: bool = False) -> list[dict]:
    """The reads that failed (:func:`notes`), one record per file, ``{"href", "band", "reads", "error"}``
    (``reads``: the chunk reads that failed, each read as no data)."""
    by_href: dict[str, dict] = {}
    for r in notes(READ_FAILURE_TOPIC, client, since=since, clear=clear):
        agg = by_href.setdefault(r["href"], {k: v for k, v in r.items() if k != "t"} | {"reads": 0})
        agg["reads"] += 1
    return sorted(by_href.values(), key=lambda r: r["href"])


def non_finite(client: Any = None, *, since: float = 0.0, clear: bool = False) -> dict[str, dict]:
    """NaN/inf pixels read from floating-point assets (:func:`notes`; each read as no data), per file:
    ``{href: {"pixels", "read"}}`` (``read``: the file's pixels read)."""
    out: dict[str, dict] = {}
    for r in notes(NON_FINITE_TOPIC, client, since=since, clear=clear):
        f = out.setdefault(r["href"], {"pixels": 0, "read": 0})
        f["pixels"] += r["bad"]
        f["read"] += r["total"]
    return out


class NestedRioDriver(RioDriver):
    """:class:`odc.loader._rio.RioDriver` whose readers skip the warp on nested grids (``odc.stac.load(driver=...)``)
    and share decoded blocks through the process's :data:`BLOCKS`, sized to ``cache_mb`` MiB (0: none kept; ``"auto"``:
    :func:`auto_cache_bytes`, decided where the reading runs)."""

    def __init__(self, cache_mb: float | str = 0) -> None:
        super().__init__()
        self.cache_mb = cache_mb

    def open(self, src, ctx: Any) -> NestedRioReader:
        r = NestedRioReader(src, ctx)
        r.cache_bytes = auto_cache_bytes() if self.cache_mb == "auto" else int(float(self.cache_mb) * 2**20)
        return r


__all__ = ["BLOCKS", "NON_FINITE_TOPIC", "READ_FAILURE_TOPIC", "BlockCache", "non_finite", "note", "note_read_failure", "notes", "read_failures", "cache_stats", "clear_blocks", "fuse_nodata_0", "NestedRioDriver", "auto_cache_bytes", "nesting", "read_nested", "repeat_pixels"]
