"""Stage: the features of a run's tiles, from the :class:`~lcup.stages.plan.RunPlan`.

Each tile (or the whole AOI) is loaded with a ring of pixels around it for the prediction's smoothing and a
halo for the neighbourhood features and the cloud mask's dilation, so its features equal those of the same
pixels in any other tiling. The training sample's features are gathered tile by tile on the per-tile path.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import xarray as xr

from .. import cluster
from ..cluster import Runner, take_first_done
from ..errors import NoValidDataError
from ..io.stac import bbox_overlaps, lonlat_bbox
from ..ops.blocks import chunks_touched
from ..ops.nn import Window
from ..progress import bar
from ..units import metres_to_px, padded_chunks
from .features import features, neighbourhood_halo_px
from .load import items_on, load
from .plan import RunPlan

log = logging.getLogger("lcup")


def tile_features(plan: RunPlan, ys: slice, xs: slice, at=None) -> xr.DataArray | None:
    """Lazy features ``(y, x, feature)`` of the tile ``(ys, xs)`` of the plan's grid (or the whole AOI) and a ring
    of ``plan.ring`` pixels around it, from its own graph.

    Only the items meeting the tile and its halo are loaded; SCL is read with the halo the cloud-mask dilation
    needs; the dates are the AOI's. The features equal those of the same pixels in any other tiling. None when
    no item meets the tile or it has none of the dates. ``at``: ``(rows, columns)`` of pixels of the tile ring
    included (as in the returned array): only their features, ``(sample, feature)``.
    """
    cfg, ring = plan.cfg, plan.ring
    nb = neighbourhood_halo_px(cfg.features, cfg.aoi.resolution)  # loaded beyond the ring, cropped after
    tile_geobox = plan.geobox[ys, xs]
    gb = tile_geobox.pad(ring + nb) if ring + nb else tile_geobox
    halo = metres_to_px(cfg.clean.dilation_m, cfg.aoi.resolution) if plan.scl else 0
    lb = lonlat_bbox(gb.pad(halo) if halo else gb)
    # the tile's items on the kept dates only: a dropped scene is never read
    mine = [it for it in items_on(list(plan.items), plan.dates) if it.bbox is None or bbox_overlaps(it.bbox, lb)]
    if not mine:
        return None
    # as many chunks as the tile itself has, each a few pixels larger: the ring adds no sliver chunks to read
    c = cfg.load.chunk_px
    chunks = tuple(padded_chunks(n, c, ring + nb) for n in tile_geobox.shape) if ring + nb else None
    cube = load(mine, gb, provider=plan.profile, load=cfg.load, on_error=cfg.source.on_error, halo=halo,
                scl=plan.scl, chunks=chunks)
    if at is not None:
        feats = features(cube, cfg.period, clean=cfg.clean, features=cfg.features, dates=plan.dates,
                         at=(np.asarray(at[0]) + nb, np.asarray(at[1]) + nb))
    else:
        feats = features(cube, cfg.period, clean=cfg.clean, features=cfg.features, dates=plan.dates)
        feats = feats.isel(y=slice(nb, -nb), x=slice(nb, -nb)) if nb and feats is not None else feats
    if feats is not None and list(feats.feature.values) != list(plan.names):
        raise RuntimeError(f"the features are {list(feats.feature.values)}, not the configured {list(plan.names)}")
    return feats


def aoi_features(plan: RunPlan, runner: Runner) -> xr.DataArray | None:
    """The whole AOI's lazy features (kept in the cluster's memory when the plan persists them), or None on the
    per-tile path, where each tile builds its own.

    Raises
    ------
    NoValidDataError
        If no item meets the AOI on the kept dates.
    """
    if plan.tiled:
        return None
    feats = tile_features(plan, slice(0, plan.geobox.shape[0]), slice(0, plan.geobox.shape[1]))
    if feats is None:
        raise NoValidDataError("no item meets the AOI on the kept dates; check the AOI and the period")
    if plan.persist and runner.client is not None:
        feats = runner.persist(feats, "features")
    return feats


def sample_features(plan: RunPlan, smp, feats: xr.DataArray | None, runner: Runner, in_flight: int = 1) -> np.ndarray:
    """The features ``(sample, feature)`` of the sampled pixels ``smp`` (:func:`lcup.stages.labels.sample`):
    indexed out of the AOI's features, or gathered tile by tile on the per-tile path (:func:`gather_tiled`)."""
    if feats is not None:
        return runner.compute(feats.data.vindex[smp.iy + plan.ring, smp.ix + plan.ring], "sampled features")
    return gather_tiled(plan, smp, runner, in_flight=in_flight)


def gather_tiled(plan: RunPlan, smp, runner: Runner, in_flight: int = 1) -> np.ndarray:
    """The sample's features on the per-tile path. Each tile's features reach ``plan.ring`` px beyond it; only
    the sampled pixels' features are computed (their chunks are read whole), so the tiles' prediction later
    repeats little. On a cluster, tiles are submitted one after the other, oldest first, with ``in_flight``
    tiles' sampled chunks (at least one per worker thread) pending at any time: no thread waits for a tile's last
    chunk. Without one, tiles are gathered together until their sampled chunks give every thread one."""
    X = np.full((len(smp.iy), len(plan.names)), np.nan, np.float32)
    in_tile = [np.nonzero((smp.iy >= ys.start) & (smp.iy < ys.stop) & (smp.ix >= xs.start) & (smp.ix < xs.stop))[0]
               for _, ys, xs in plan.tiles]
    tick = _ticker(sum(len(sel) > 0 for sel in in_tile), runner.progress)
    pending: dict = {}  # future → (rows of X, its sampled chunks)
    batch: list = []  # without a cluster: (rows of X, lazy features, chunks) computed together
    submit, chunk_px = runner.submitter(), plan.cfg.load.chunk_px

    def into_rows(key, values):
        X[key[0]] = values
        tick()

    for (_, ys, xs), sel in zip(plan.tiles, in_tile):
        iy, ix = smp.iy[sel] - ys.start, smp.ix[sel] - xs.start
        # only the sampled pixels' features: their chunks are read and masked, the per-pixel work is theirs alone
        ft = tile_features(plan, ys, xs, at=(iy + plan.ring, ix + plan.ring)) if len(sel) else None
        if ft is None:
            continue
        if submit is not None:
            pending[submit(ft.data)] = (sel, chunks_touched(iy, ix, chunk_px))
            while len(pending) >= in_flight and sum(c for _, c in pending.values()) >= runner.threads:
                take_first_done(pending, into_rows)
            continue
        batch.append((sel, ft.data, chunks_touched(iy, ix, chunk_px)))
        if sum(b[2] for b in batch) >= runner.threads:
            _flush(batch, X, runner)
    while pending:
        take_first_done(pending, into_rows)
    _flush(batch, X, runner)
    return X


def _flush(batch: list, X: np.ndarray, runner: Runner) -> None:
    """A batch of tiles' sampled features computed together, each into its rows of ``X``; the batch emptied."""
    if batch:
        for (sel, _, _), v in zip(batch, runner.compute([b[1] for b in batch], "sampled features")):
            X[sel] = v
    batch.clear()


def _ticker(n_tiles: int, progress: bool):
    """A callable counting sampled tiles: a bar on a terminal, a line every PROGRESS_EVERY_S s off one."""
    t0, count = time.perf_counter(), [0, time.perf_counter()]

    def tick():
        count[0] += 1
        if progress:
            bar(count[0], n_tiles, "sampled features (tiles)")
        elif time.perf_counter() - count[1] >= cluster.PROGRESS_EVERY_S or count[0] == n_tiles:
            count[1] = time.perf_counter()
            log.info("  sampled features: %.0f s, %d of %d tiles", count[1] - t0, count[0], n_tiles)

    return tick


def window_spans(smp, shape: tuple[int, int], size: int, n: int) -> list[tuple[slice, slice]]:
    """``(rows, columns)`` of the ``n`` squares of ``size`` px on the grid's lattice holding the most sampled pixels of
    ``smp`` (ties by position), in lattice order: the choice depends on the sample only."""
    h, w = shape
    keys, counts = np.unique((smp.iy // size) * (w // size + 1) + smp.ix // size, return_counts=True)
    chosen = np.sort(keys[np.lexsort((keys, -counts))][:n])
    return [(slice(r * size, min(h, (r + 1) * size)), slice(c * size, min(w, (c + 1) * size)))
            for r, c in (divmod(int(k), w // size + 1) for k in chosen)]


def training_windows(plan: RunPlan, smp, lab: xr.Dataset, runner: Runner) -> list[Window]:
    """The network's training windows (``model.kind: fcn``): up to ``model.nn_windows`` squares of
    ``model.nn_window_px`` on a lattice of the grid, those holding the most sampled pixels (ties by position: the
    choice depends on the sample only), each with its features and a ring of :attr:`RunPlan.ring` pixels, so
    the pixels at a window's edge see their neighbours as at prediction.

    Each :class:`~lcup.ops.nn.Window` carries the coarse labels, the usable (eroded, confident) labels, the
    sample's spatial split (training blocks less their buffer; validation blocks) and the coarse cells.
    """
    cfg = plan.cfg
    spans = window_spans(smp, plan.geobox.shape, cfg.model.nn_window_px, cfg.model.nn_windows)
    feats = [tile_features(plan, ys, xs) for ys, xs in spans]
    spans, feats = zip(*[(sp, f) for sp, f in zip(spans, feats) if f is not None]) if any(f is not None for f in feats) else ((), ())
    blocks = runner.compute([f.data for f in feats], "training windows") if feats else []
    cell, origin = lab.attrs["figures"]["coarse_cell_px"], lab.attrs["cell_origin_px"]
    return [_window(np.asarray(b), ys, xs, plan.ring, lab, smp.split, cell, origin) for (ys, xs), b in zip(spans, blocks)]


def _window(x: np.ndarray, ys: slice, xs: slice, ring: int, lab: xr.Dataset, split, cell_px: float,
            origin: tuple[int, int]) -> Window:
    """A :class:`~lcup.ops.nn.Window` of features ``x`` over rows ``ys``, columns ``xs`` and ``ring`` pixels around."""
    h, w = lab.sizes["y"], lab.sizes["x"]
    yy, xx = np.arange(ys.start - ring, ys.stop + ring), np.arange(xs.start - ring, xs.stop + ring)
    iny, inx = (yy >= 0) & (yy < h), (xx >= 0) & (xx < w)
    inside = iny[:, None] & inx[None, :]
    sy, sx = slice(int(yy[iny][0]), int(yy[iny][-1]) + 1), slice(int(xx[inx][0]), int(xx[inx][-1]) + 1)
    label = np.zeros(inside.shape, np.int64)
    usable = np.zeros(inside.shape, bool)
    label[np.ix_(iny, inx)] = lab["label"].data[sy, sx].compute()
    usable[np.ix_(iny, inx)] = lab["usable"].data[sy, sx].compute() > 0
    gy, gx = np.meshgrid(np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1), indexing="ij")
    if split is not None:
        isval, ok = split.split(gy.ravel(), gx.ravel())
        isval, ok = isval.reshape(inside.shape), ok.reshape(inside.shape)
    else:
        isval, ok = np.zeros(inside.shape, bool), np.ones(inside.shape, bool)
    c = max(1, int(round(cell_px)))
    oy, ox = origin[0] % c, origin[1] % c  # cell edges at rows oy + k c, columns ox + k c: ids from 0
    cell = np.where(inside, ((gy - oy) // c + 1) * (w // c + 3) + (gx - ox) // c + 1, -1)
    return Window(x=x, label=label, usable=usable, train=inside & ~isval & ok, validation=inside & isval, cell=cell)


def windows_of(feats: xr.DataArray, lab: xr.Dataset, smp, *, window_px: int = 256, max_windows: int = 16,
               ring: int = 7) -> list[Window]:
    """Training windows (:class:`~lcup.ops.nn.Window`) from a feature cube a notebook holds, as
    :func:`training_windows` takes them in a run: the ``max_windows`` squares of ``window_px`` holding the most
    sampled pixels, each with ``ring`` pixels of neighbours (NaN beyond the cube).

    Parameters
    ----------
    feats
        ``(y, x, feature)`` features (:func:`lcup.features`) on the grid of ``lab``.
    lab, smp
        :func:`lcup.labels` and :func:`lcup.sample` of that grid.
    ring
        At least the network's :attr:`~lcup.ops.nn.FCNModel.context_px` (``sum(model.nn_dilations)``).

    Examples
    --------
    >>> wins = lcup.windows_of(feats, lab, s, window_px=128)  # doctest: +SKIP
    >>> net, figures = lcup.train_network(wins, s, legend=get_legend("lcup7"), model={"kind": "fcn"})  # doctest: +SKIP
    >>> out = lcup.predict(net, feats, legend=get_legend("lcup7"), context_px=net.context_px)  # doctest: +SKIP
    """
    cell, origin = lab.attrs["figures"]["coarse_cell_px"], lab.attrs.get("cell_origin_px", (0, 0))
    out = []
    for ys, xs in window_spans(smp, (feats.sizes["y"], feats.sizes["x"]), window_px, max_windows):
        y0, x0 = max(0, ys.start - ring), max(0, xs.start - ring)
        block = np.asarray(feats.isel(y=slice(y0, ys.stop + ring), x=slice(x0, xs.stop + ring)).values, np.float32)
        x = np.full((ys.stop - ys.start + 2 * ring, xs.stop - xs.start + 2 * ring, block.shape[-1]), np.nan, np.float32)
        x[y0 - (ys.start - ring):y0 - (ys.start - ring) + block.shape[0], x0 - (xs.start - ring):x0 - (xs.start - ring) + block.shape[1]] = block
        out.append(_window(x, ys, xs, ring, lab, smp.split, cell, origin))
    return out
