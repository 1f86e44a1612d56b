"""An odc-stac reader driver that reads nested grids without warping.

Sentinel-2's 20 m and 60 m bands (and SCL) sit on grids that nest in the 10 m grid: each coarse pixel is exactly
``k × k`` fine pixels. odc-stac reads them through ``rasterio.warp.reproject``, which resamples every output pixel;
with nearest resampling on nested grids that is an exact pixel repeat. :class:`NestedRioDriver` reads the covering
window at the asset's own resolution and repeats its pixels (``numpy.repeat``), and hands every other case (other
CRS, rotation, non-integer ratios or offsets, other resampling, multi-band reads) to odc-stac's own reader. The
pixels are the same (tested against odc-stac); the warp's cost is gone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rasterio
from odc.loader._reader import (nodata_mask, resolve_band_query, resolve_dst_dtype, resolve_dst_nodata, resolve_src_nodata,
                                same_nodata)
from odc.loader._rio import RioDriver, RioReader, rio_env, rio_read

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
    if not dst_geobox.crs == src_crs:
        return None
    kx, ky = a / A, e / E
    k = round(kx)
    if k < 1 or abs(kx - k) > _TOL or abs(ky - k) > _TOL:
        return None
    ox, oy = (C - c) / A, (F - f) / E  # destination origin from the source origin, in fine pixels
    if abs(ox - round(ox)) > _TOL or abs(oy - round(oy)) > _TOL:
        return None
    return k, int(round(oy)), int(round(ox))


def read_nested(rdr, bidx: int, k: int, oy: int, ox: int, shape: tuple[int, int], out_dtype, src_nodata, dst_nodata
                ) -> tuple[tuple[slice, slice], np.ndarray]:
    """The part of a ``shape`` fine grid that a source nested ``k``-fold (offsets ``oy, ox``: :func:`nesting`)
    covers, read at the source's resolution and repeated: ``(roi, pixels)`` as odc-stac's readers return."""
    H, W = rdr.height, rdr.width
    h, w = shape
    # fine rows r with 0 <= (r + oy) // k < H
    r0, r1 = max(0, -oy), min(h, H * k - oy)
    c0, c1 = max(0, -ox), min(w, W * k - ox)
    roi = (slice(r0, max(r0, r1)), slice(c0, max(c0, c1)))
    if r1 <= r0 or c1 <= c0:
        return roi, np.empty((max(0, r1 - r0), max(0, c1 - c0)), out_dtype)
    sr0, sr1 = (r0 + oy) // k, (r1 - 1 + oy) // k + 1
    sc0, sc1 = (c0 + ox) // k, (c1 - 1 + ox) // k + 1
    src = rdr.read(bidx, window=((sr0, sr1), (sc0, sc1)))
    if k > 1:
        src = np.repeat(np.repeat(src, k, axis=0), k, axis=1)
    dy, dx = (r0 + oy) - sr0 * k, (c0 + ox) - sc0 * k
    pix = src[dy:dy + r1 - r0, dx:dx + c1 - c0]
    if dst_nodata is not None and not same_nodata(src_nodata, dst_nodata):
        pix = pix.astype(out_dtype, copy=True)
        np.copyto(pix, dst_nodata, where=nodata_mask(src[dy:dy + r1 - r0, dx:dx + c1 - c0], src_nodata))
    return roi, np.ascontiguousarray(pix, dtype=out_dtype)


class NestedRioReader(RioReader):
    """odc-stac's rasterio reader, with :func:`read_nested` where the grids nest and resampling is nearest."""

    def read(self, cfg, dst_geobox, *, dst: np.ndarray | None = None, selection=None):
        src = self._src
        if dst is not None or not cfg.nearest:
            return rio_read(src, cfg, dst_geobox, dst=dst, selection=selection)
        try:
            with rasterio.open(src.uri, "r", sharing=False) as rdr:
                bidx = resolve_band_query(src, rdr.count, selection=selection)
                nest = nesting(rdr.transform, rdr.crs, dst_geobox) if isinstance(bidx, int) else None
                if nest is None:
                    return rio_read(src, cfg, dst_geobox, dst=dst, selection=selection)
                src_nodata = resolve_src_nodata(rdr.nodatavals[bidx - 1], cfg)
                out_dtype = resolve_dst_dtype(rdr.dtypes[bidx - 1], cfg)
                dst_nodata = resolve_dst_nodata(out_dtype, cfg, src_nodata)
                with rio_env(VSI_CACHE=False):
                    return read_nested(rdr, bidx, *nest, dst_geobox.shape, out_dtype, src_nodata, dst_nodata)
        except rasterio.errors.RasterioError:
            # the general reader raises or logs and skips as fail_on_error says, with odc-stac's own messages
            return rio_read(src, cfg, dst_geobox, dst=dst, selection=selection)


class NestedRioDriver(RioDriver):
    """:class:`odc.loader._rio.RioDriver` whose readers skip the warp on nested grids (``odc.stac.load(driver=...)``)."""

    def open(self, src, ctx: Any) -> NestedRioReader:
        return NestedRioReader(src, ctx)


__all__ = ["NestedRioDriver", "nesting", "read_nested"]
