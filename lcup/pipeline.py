"""The lcup pipeline as a recipe of named stages: search → load → clean → features → labels →
train → predict → write → score. The CLI is a thin layer over :func:`run_pipeline`.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from . import __version__
from .config import PipelineConfig
from .errors import EmptyClassWarning, LowCoverageWarning, NoValidDataError
from .legends import apply_crosswalk, compact, get_crosswalk, get_legend, to_internal
from .ops.accuracy import accuracy_report
from .ops.cloud import keep_dates, scl_valid_mask, valid_fraction
from .ops.features import temporal_features
from .ops.indices import compute_indices
from .ops.labels import erode_classes, label_confidence, label_statistics, stratified_sample_chunked
from .ops.model import confident_learning_filter, predict_block, train_model
from .ops.temporal import interpolate_smooth, regular_grid
from .providers import SCL, get_profile
from .units import metres_to_px

log = logging.getLogger("lcup")

#: Chunks the training sample is drawn from (``labels.sample_chunks: auto``), on every path: the sample's
#: features then cost at most this many chunks, not the AOI, while still spread over all of it.
AUTO_SAMPLE_CHUNKS = 256


@dataclass
class RunSummary:
    """What a run did: figures, timings per stage (s), parameters. Saved as ``summary.json``."""

    name: str
    timings: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)

    status: str = "running"
    error: str | None = None

    def to_json(self) -> str:
        """Strict JSON (NaN and inf as null), credentials masked."""
        from .redact import redact

        return json.dumps(_finite(redact(json.loads(json.dumps(self.__dict__, default=_jsonable)))), indent=2, allow_nan=False)


def _finite(obj):
    """``obj`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


@contextmanager
def _stage(summary: RunSummary, name: str):
    log.info("▶ %s", name)
    t0 = time.perf_counter()
    yield
    summary.timings[name] = round(time.perf_counter() - t0, 3)
    log.info("✔ %s (%.1f s)", name, summary.timings[name])


def _compute(obj, client, label: str, progress: bool):
    """Compute on the cluster (with a progress bar on a terminal) or the local scheduler."""
    if client is None:
        return dask.compute(obj)[0] if not isinstance(obj, (list, tuple)) else dask.compute(*obj)
    fut = client.compute(obj)
    if progress:
        from distributed import progress as dprogress

        log.info("  computing %s", label)
        dprogress(fut, notebook=False)
        print(flush=True)
    return client.gather(fut)


def scene_filter(cfg: PipelineConfig, geobox, items, summary: RunSummary | None = None, compute=None) -> np.ndarray:
    """The dates kept for the whole AOI: those whose clear fraction reaches ``clean.min_valid_fraction``.

    Decided once for the AOI and handed to every tile, so neighbouring tiles interpolate from the same
    dates and the map does not depend on the tiling. The fraction is the share of pixels whose SCL is
    not in ``clean.invalid_scl`` (no dilation), counted on the AOI's grid coarsened to at most
    :data:`SCENE_FILTER_PX` pixels a side: one read of SCL whose cost does not grow with the AOI.

    ``compute(dask_array) -> numpy array`` runs the one computation (default: the current scheduler).

    Returns
    -------
    numpy.ndarray
        ``datetime64`` dates kept (as in the cube's ``time`` coordinate).

    Raises
    ------
    NoValidDataError
        If no date is clear enough.
    """
    side = max(geobox.shape)
    gb = geobox if side <= SCENE_FILTER_PX else geobox.zoom_to((max(1, geobox.shape[0] * SCENE_FILTER_PX // side),
                                                                 max(1, geobox.shape[1] * SCENE_FILTER_PX // side)))
    scl = open_cube(cfg, gb, items, bands=[]).data[SCL]
    frac = valid_fraction(scl_valid_mask(scl, cfg.clean.invalid_scl))
    frac = frac.copy(data=compute(frac.data) if compute else frac.data.compute())
    keep = keep_dates(frac.values, cfg.clean.min_valid_fraction)
    if summary is not None:
        summary.figures["dates_found"] = int(len(keep))
        summary.figures["dates_kept"] = int(keep.sum())
        summary.figures["mean_valid_fraction"] = float(frac.mean()) if len(keep) else 0.0
    if (~keep).any():
        dropped = [str(t)[:10] for t in frac.time.values[~keep]]
        warnings.warn(
            f"dropped {len(dropped)} of {len(keep)} dates with a clear fraction below {cfg.clean.min_valid_fraction}: {dropped}",
            LowCoverageWarning, stacklevel=2,
        )
        if summary is not None:
            summary.figures["dates_dropped"] = dropped
    if keep.sum() == 0:
        raise NoValidDataError(
            f"no date has a clear fraction of at least {cfg.clean.min_valid_fraction} (best {frac.values.max():.3f}); "
            "lower clean.min_valid_fraction or widen the period"
        )
    return frac.time.values[keep]


#: Side (px) of the coarsened grid the scene filter counts clear pixels on.
SCENE_FILTER_PX = 1024


def build_features(cfg: PipelineConfig, cube, dates=None) -> xr.DataArray | None:
    """Clean (mask, interpolate, smooth), compute indices and features: lazy ``(y, x, feature)``.

    Parameters
    ----------
    cfg
        The pipeline (``clean`` and ``features`` sections).
    cube
        From :func:`open_cube`; its SCL reaches ``cube.halo`` px beyond the grid, so that the cloud-mask
        dilation sees the clouds across a tile's edge.
    dates
        The dates to use (:func:`scene_filter`); None: all dates of the cube.

    Returns
    -------
    xarray.DataArray or None
        ``(y, x, feature)`` float32, chunked like the cube; None if the cube has none of ``dates``.
    """
    ds = cube.data
    res = abs(cube.geobox.resolution.x)
    dil_px = metres_to_px(cfg.clean.dilation_m, res)
    idx = np.arange(ds.sizes["time"]) if dates is None else np.nonzero(np.isin(ds.time.values, dates))[0]
    if len(idx) == 0:
        return None
    h = cube.halo
    valid = scl_valid_mask(cube.scl.isel(time=idx), cfg.clean.invalid_scl, dil_px)
    if h:
        valid = valid.isel(y=slice(h, -h), x=slice(h, -h)).chunk({"y": ds.chunks["y"], "x": ds.chunks["x"]})
    start, end = cfg.period
    grid = regular_grid(start, end, cfg.clean.step_days)
    series = {}
    for b in cfg.load.bands:
        series[b] = interpolate_smooth(
            ds[b].isel(time=idx), valid, grid,
            scale=cube.scale[b][idx], offset=cube.offset[b][idx],
            window=cfg.clean.savgol_window, polyorder=cfg.clean.savgol_polyorder,
            max_gap_days=cfg.clean.max_gap_days, hold_ends=cfg.clean.hold_ends,
        )
    series.update(compute_indices(series, cfg.features.indices))
    feats = temporal_features(series, stats=cfg.features.stats, series_vars=cfg.features.series, series_every=cfg.features.series_every)
    return feats.chunk({"feature": -1})


def feature_names_for(cfg: PipelineConfig) -> list[str]:
    """The names of the features :func:`build_features` makes for ``cfg``, without building anything."""
    from .ops.features import feature_names

    n_grid = len(regular_grid(*cfg.period, cfg.clean.step_days))
    variables = list(cfg.load.bands) + list(cfg.features.indices)
    return feature_names(variables, cfg.features.stats, cfg.features.series, range(0, n_grid, max(1, cfg.features.series_every)))


def feature_halo_px(cfg: PipelineConfig) -> int:
    """Pixels beyond a tile's edge its features depend on (the cloud-mask dilation)."""
    return metres_to_px(cfg.clean.dilation_m, cfg.aoi.resolution)


def tile_features(cfg: PipelineConfig, tile_geobox, items, dates) -> xr.DataArray | None:
    """Lazy features ``(y, x, feature)`` of one tile (or the whole AOI), from its own graph.

    Only the items whose footprint meets the tile and its halo are loaded; ``dates`` are the AOI's
    (:func:`scene_filter`). The features equal those of the same pixels computed over any other
    tiling. None when the tile has no data: no item meets it, or it has none of ``dates``.
    """
    from .io.stac import bbox_overlaps, lonlat_bbox

    halo = feature_halo_px(cfg)
    lb = lonlat_bbox(tile_geobox.pad(halo) if halo else tile_geobox)
    mine = [it for it in items if it.bbox is None or bbox_overlaps(it.bbox, lb)]
    if not mine:
        return None
    return build_features(cfg, open_cube(cfg, tile_geobox, mine, halo=halo), dates)


def prepare_labels(cfg: PipelineConfig, geobox, compute=None) -> tuple[da.Array, da.Array, da.Array, dict]:
    """Coarse map on the 10 m grid in the target legend: lazy ``(labels, usable, confidence)`` and figures.

    Labels are uint8 class indices of :func:`lcup.legends.compact` (the legend's own codes when they fit
    uint8); ``figures["class_px"]`` is keyed by the legend's own codes.

    All three are ``(y, x)`` Dask arrays chunked like the features (``load.chunk_px``); each chunk reads
    its own window of the label map, and erosion and confidence run with a halo (``map_overlap``), so
    memory is bounded by the chunk, not the AOI. ``usable`` is ``labels`` after erosion and the
    minimum-confidence filter (0 = not sampled). The figures (pixel counts per stage and class) take
    one pass, through ``compute`` (``callable(list) -> list``; default ``dask.compute``).
    """
    from .io.rasters import open_on_geobox, open_stac_on_geobox

    compute = compute or (lambda objs: list(dask.compute(*objs)))
    c = cfg.load.chunk_px
    target = get_legend(cfg.labels.target_legend)
    if cfg.labels.stac is not None:
        st = cfg.labels.stac
        codes, _ = open_stac_on_geobox(st.catalog, st.collection, geobox, chunks=c, asset=st.asset,
                                       start=str(st.start or "1900-01-01"), end=str(st.end or "2100-12-31"), sign=st.sign)
    else:
        codes = open_on_geobox(cfg.labels.path, geobox, chunks=c)
    labels = codes.map_blocks(apply_crosswalk, to_internal(get_crosswalk(cfg.labels.legend, target, cfg.labels.crosswalk), target),
                              dtype=np.uint8)
    res = abs(geobox.resolution.x)
    r = metres_to_px(cfg.labels.erosion_m, res)
    eroded = erode_classes(labels, r)
    coarse_m = _coarse_cell_m(cfg)
    others = [open_on_geobox(o.path, geobox, chunks=c).map_blocks(apply_crosswalk, to_internal(get_crosswalk(o.legend, target), target),
                                                                  dtype=np.uint8) for o in cfg.labels.others]
    conf = label_confidence(labels, coarse_m / res, others=others)
    usable = da.where(conf < cfg.labels.min_confidence, np.uint8(0), eroded) if cfg.labels.min_confidence > 0 else eroded
    (stats,) = compute([label_statistics(labels, eroded, usable, conf)])
    info = {"erosion_px": r, "coarse_cell_px": round(coarse_m / res, 2), **stats}
    to_code = compact(target)[1]
    info["class_px"] = {int(to_code[k]): v for k, v in info["class_px"].items()}
    return labels, usable, conf, info


def find_items(cfg: PipelineConfig):
    """The output grid of the AOI and the Sentinel-2 items covering it in the period: ``(geobox, items)``."""
    from .io.stac import asset_keys, geobox_for_aoi, lonlat_bbox, search_items

    geobox = geobox_for_aoi(cfg.aoi.bbox, cfg.aoi.grid_crs, cfg.aoi.resolution, cfg.aoi.crs)
    start, end = cfg.period
    items = search_items(cfg.source.catalog, get_profile(cfg.source.provider), lonlat_bbox(geobox),
                         f"{start}T00:00:00Z", f"{end}T23:59:59Z", collection=cfg.source.collection,
                         max_cloud_cover=cfg.source.max_cloud_cover, limit=cfg.source.page_size)
    asset_keys(items, get_profile(cfg.source.provider), list(cfg.load.bands) + [SCL])  # every band there, before any work
    return geobox, items


def open_cube(cfg: PipelineConfig, geobox=None, items=None, *, halo: int = 0, bands=None):
    """Lazily load the configured bands and SCL of ``items`` onto ``geobox`` (found from ``cfg`` if not given).

    SCL is loaded on ``geobox`` padded by ``halo`` px (``cube.scl``, ``cube.halo``) so neighbourhood
    operations on the mask see across the edge; ``bands`` (default ``load.bands``) on ``geobox`` itself.
    """
    import odc.stac

    from .io.stac import GDAL_HTTP_ENV, load_cube

    if geobox is None or items is None:
        geobox, items = find_items(cfg)
    # odc-stac captures these GDAL settings into the graph and restores them in every task,
    # so workers need no global setup.
    odc.stac.configure_rio(cloud_defaults=True, **GDAL_HTTP_ENV)
    bands = list(cfg.load.bands) if bands is None else list(bands)
    kw = dict(chunk_px=cfg.load.chunk_px, resampling=cfg.load.resampling, fail_on_error=cfg.source.on_error == "fail")
    profile = get_profile(cfg.source.provider)
    if halo or not bands:
        cube = load_cube(items, profile, bands, geobox, **kw) if bands else None
        scl_cube = load_cube(items, profile, [SCL], geobox.pad(halo) if halo else geobox, **kw)
        if cube is None:
            cube = scl_cube
        elif not np.array_equal(cube.data.time.values, scl_cube.data.time.values):
            raise RuntimeError("the SCL and reflectance loads gave different dates")
        cube.scl, cube.halo = scl_cube.data[SCL], halo
        return cube
    cube = load_cube(items, profile, bands + [SCL], geobox, **kw)
    cube.scl, cube.halo = cube.data[SCL], 0
    return cube


def run_pipeline(cfg: PipelineConfig, *, client=None, progress: bool = True) -> RunSummary:
    """Run a whole pipeline.

    The output folder is checked and locked first (a second run into it at the same time is refused);
    a run that fails still writes ``summary.json`` with the error and the stages it finished.

    Parameters
    ----------
    cfg
        Validated configuration (:func:`lcup.config.load_config`).
    client
        A ``distributed.Client`` to use; None starts the cluster of ``cfg.cluster`` for the run.
    progress
        Show progress bars for the long computations.

    Returns
    -------
    RunSummary
        Also written to ``<output.dir>/summary.json``.
    """
    from .io.rundir import output_lock, prepare_output_dir
    from .redact import redact

    out = Path(cfg.output.dir)
    prepare_output_dir(out, overwrite=cfg.output.overwrite, resume=cfg.output.resume,
                                 outputs=("landcover.zarr", "landcover_class.tif"))
    summary = RunSummary(cfg.name, parameters=redact(json.loads(cfg.model_dump_json())))
    with output_lock(out):
        try:
            if client is None and cfg.cluster.kind != "none":
                from .cluster import cluster_client

                with cluster_client(cfg.cluster) as c:
                    return _run_on(cfg, c, progress, summary)
            return _run_on(cfg, client, progress, summary)
        except BaseException as e:
            summary.status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            clear = _clear_error(e, out)
            summary.error = f"{type(clear or e).__name__}: {clear or e}"
            _remove_empty_files(out)
            try:
                (out / "summary.json").write_text(summary.to_json())
            except OSError:  # e.g. the disk is full: the error itself matters more
                _remove_empty_files(out)
            if clear is not None:
                raise clear from None
            raise


def _clear_error(e: BaseException, out: Path):
    """An :class:`~lcup.errors.LcupError` for a failure from inside a library that a user can act on, or None.

    Disk full and read-only file systems become a :class:`~lcup.errors.WriteError`; a raster that fails to
    decode while the cube is computed (corrupt inside, past the pre-flight probe) a
    :class:`~lcup.errors.ReadError`.
    """
    import errno

    from .errors import LcupError, ReadError, WriteError

    if isinstance(e, LcupError) or not isinstance(e, Exception):
        return None
    chain, cur = [], e
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for x in chain:
        if isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return WriteError(f"cannot write the outputs into {out}: {x.strerror or x}; free some space or choose "
                              "another output.dir (CLI: --output DIR), then run again with --resume")
    text = " ".join(f"{type(x).__module__}.{type(x).__name__}: {x}" for x in chain)
    if "rasterio" in text or "CPLE_" in text or "TIFFRead" in text:
        return ReadError(f"a raster could not be read while computing: {chain[0]}; if a source file is damaged, set "
                         "source.on_error: skip to treat unreadable assets as missing, or fix the file")
    return None


def _remove_empty_files(out: Path) -> None:
    """A failed run leaves no 0-byte file behind (a write interrupted by a full disk)."""
    for p in out.rglob("*"):
        try:
            if p.is_file() and p.stat().st_size == 0 and p.name != ".lcup.lock":
                p.unlink()
        except OSError:
            pass


def _run_on(cfg: PipelineConfig, client, progress: bool, summary: RunSummary) -> RunSummary:
    from .cluster import quiet_spurious_warnings, quiet_workers, tune_workers

    if client is not None:
        quiet_workers(client)
        if cfg.cluster.tune_malloc:
            tune_workers(client)
    with warnings.catch_warnings():
        quiet_spurious_warnings()  # here too: the threaded scheduler (cluster.kind: none) runs tasks in this process
        return _run(cfg, client, progress, summary)


def _run(cfg: PipelineConfig, client, progress: bool, summary: RunSummary) -> RunSummary:
    """The stages of :func:`run_pipeline`, on ``client`` (None: the threaded scheduler)."""
    from .io.models import load_model, save_model
    from .io.write import tile_slices, write_cog_from_dask

    out = Path(cfg.output.dir)
    zarr_path, cog_path = out / "landcover.zarr", out / "landcover_class.tif"
    t_start = time.perf_counter()
    target = get_legend(cfg.labels.target_legend)
    internal, to_code = compact(target)  # labels, samples and the model use internal (uint8) indices

    with _stage(summary, "search"):
        geobox, items = find_items(cfg)
        summary.figures["items"] = len(items)
        summary.figures["grid"] = {"crs": str(geobox.crs), "shape": list(geobox.shape), "resolution": cfg.aoi.resolution}
        if cfg.source.check_assets:
            items = _check_items(cfg, items, summary)

    with _stage(summary, "scene filter"):
        dates = scene_filter(cfg, geobox, items, summary, compute=lambda obj: _compute(obj, client, "scene filter", False))

    digest = run_digest(cfg, items, dates)
    summary.figures["digest"] = digest["digest"]
    resumed_model = None
    if cfg.output.resume and zarr_path.exists():
        check_resume(zarr_path, digest)
        if (out / "model.skops").exists():
            resumed_model, _ = load_model(out / "model.skops")

    names = feature_names_for(cfg)
    summary.figures["n_features"] = len(names)
    tile_px = _tile_px(cfg)
    tiles = tile_slices(geobox.shape, tile_px)
    nbytes = geobox.shape[0] * geobox.shape[1] * len(names) * 4
    mem = _cluster_memory(client)
    persist = cfg.features.persist == "always" or (cfg.features.persist == "auto" and mem and nbytes < 0.3 * mem)
    # Large AOIs: every tile is a unit of work with its own graph (load → features → predict → write), so
    # the graph never grows with the AOI. Both paths give the same features: same dates, same halo.
    tiled = len(tiles) > 1 and not (persist and client is not None)
    summary.figures["features_persisted"] = bool(persist and not tiled)
    summary.figures["graph_per_tile"] = tiled
    feats = None

    def features_of(tid, ys, xs):
        return _checked_names(tile_features(cfg, geobox[ys, xs], items, dates), names)

    with _stage(summary, "clean+features (graph)"):  # on the per-tile path this happens tile by tile, later
        if not tiled:
            feats = features_of("all", slice(0, geobox.shape[0]), slice(0, geobox.shape[1]))
            if feats is None:
                raise NoValidDataError("no item meets the AOI on the kept dates; check the AOI and the period")
        if feats is not None and persist and client is not None:
            # a key of this run's own: the same graph persisted by an earlier run in this client may still be
            # being released by the scheduler, and a shared key would then be lost under us
            import uuid

            feats = feats.copy(data=feats.data.map_blocks(np.asarray, dtype=feats.dtype, name=f"lcup-features-{uuid.uuid4().hex}"))
            feats = client.persist(feats)  # on this client, not the default scheduler (another client may be newer)
            if progress:
                from distributed import progress as dprogress

                dprogress(feats.data, notebook=False)
                print(flush=True)
            from distributed import wait

            wait(feats.data)

    with _stage(summary, "labels"):
        labels, usable, conf, linfo = prepare_labels(cfg, geobox, compute=lambda objs: _compute(objs, client, "label statistics", False))
        summary.figures["labels"] = linfo
        block_px = max(1, metres_to_px(cfg.labels.block_m, cfg.aoi.resolution))
        # positions first, drawn chunk by chunk (per-chunk seeds), then only their features are gathered;
        # the draw depends on the labels and the seed only, never on the path or the cluster
        sc = cfg.labels.sample_chunks
        sample = stratified_sample_chunked(
            usable, cfg.labels.n_per_class, cfg.labels.seed,
            min_per_class=cfg.labels.min_per_class, block_px=block_px,
            validation_fraction=cfg.labels.validation_fraction, small_class_policy=cfg.labels.small_class_policy,
            max_chunks=sc if isinstance(sc, int) else (AUTO_SAMPLE_CHUNKS if sc == "auto" else None),
            values=conf if cfg.labels.confidence_weights else None,  # the weights, read in the same pass
            compute=lambda objs: _compute(objs, client, "sample", False),
            # blocks of whole coarse cells on the coarse grid, and a buffer of the confidence halo (≥ 1 cell)
            cell_px=linfo["coarse_cell_px"], cell_origin=_cell_origin(cfg, geobox), buffer_px=_label_halo(cfg),
        )
        if resumed_model is not None:
            X = None  # the saved model of this very run (same digest) is used: no features to gather
        elif not tiled:
            X = _compute(feats.data.vindex[sample.iy, sample.ix], client, "sampled features", False)
        else:
            X = np.full((len(sample.iy), len(names)), np.nan, np.float32)
            # tiles are gathered together until their sampled chunks give every worker thread one
            sels, lazies, n_chunks = [], [], 0
            for k, (tid, ys, xs) in enumerate(tiles):
                sel = np.nonzero((sample.iy >= ys.start) & (sample.iy < ys.stop) & (sample.ix >= xs.start) & (sample.ix < xs.stop))[0]
                ft = features_of(tid, ys, xs) if len(sel) else None
                if ft is not None:
                    iy, ix = sample.iy[sel] - ys.start, sample.ix[sel] - xs.start
                    sels.append(sel)
                    lazies.append(ft.data.vindex[iy, ix])
                    n_chunks += _n_chunks(iy, ix, cfg.load.chunk_px)
                if lazies and (n_chunks >= _threads(client) or k == len(tiles) - 1):
                    for sel, v in zip(sels, _compute(lazies, client, "sampled features", False)):
                        X[sel] = v
                    sels, lazies, n_chunks = [], [], 0
        from .ops.labels import min_train_validation_distance

        dmin = min_train_validation_distance(sample)
        summary.figures["samples"] = {"train": int((~sample.validation).sum()), "validation": int(sample.validation.sum()),
                                      "chunks": _n_chunks(sample.iy, sample.ix, cfg.load.chunk_px),
                                      "min_train_validation_distance_m": dmin * cfg.aoi.resolution if np.isfinite(dmin) else None,
                                      "train_per_class": {int(c): int(n) for c, n in zip(*np.unique(sample.label[~sample.validation], return_counts=True))},
                                      "validation_per_class": {int(c): int(n) for c, n in zip(*np.unique(sample.label[sample.validation], return_counts=True))}}

    with _stage(summary, "train"):
        if resumed_model is not None:
            model = resumed_model
            summary.figures["model"] = {"resumed_from": str(out / "model.skops")}
            log.info("  resuming with the saved model %s (same parameters, items and dates)", out / "model.skops")
        else:
            model = _train_and_validate(cfg, X, sample, names, internal, summary)
            if "validation" in summary.figures and internal is not target:
                summary.figures["validation"] = _relabel(summary.figures["validation"], to_code)
            save_model(model, out / "model.skops", feature_names=names, legend=target.to_dict())

    with _stage(summary, "predict+write"):
        from .io.write import write_tiles_zarr

        model_ref = _share_model(model, client)
        classes = list(model.classes_)
        if tiled:
            c = cfg.load.chunk_px
            ds = output_dataset(da.zeros((2 + len(classes), *geobox.shape), chunks=((2 + len(classes),), c, c), dtype=np.float32),
                                classes, geobox, target, cfg, to_code)  # the store's template: never computed

            def tile_data(tid, ys, xs):
                ft = features_of(tid, ys, xs)
                return None if ft is None else prediction_dataset(ft, model_ref, classes, geobox[ys, xs], target, cfg, to_code)
        else:
            ds = prediction_dataset(feats, model_ref, classes, geobox, target, cfg, to_code)
            tile_data = None
        attrs = {"lcup_version": __version__, "legend": target.to_dict(), "items": [i.id for i in items],
                 "transform": list(geobox.transform)[:6], "crs": str(geobox.crs), "seed": cfg.model.seed,
                 "parameters": summary.parameters, "lcup_digest": digest}
        in_flight = min(len(tiles), _tiles_in_flight(cfg, client, tile_px))
        written, skipped_tiles = write_tiles_zarr(
            ds, zarr_path, tile_px=tile_px, attrs=json.loads(json.dumps(attrs, default=_jsonable)),
            overwrite=cfg.output.overwrite, resume=cfg.output.resume,
            compute=lambda obj, label: _compute(obj, client, label, progress), tile_data=tile_data,
            submit=client.compute if client is not None else None, in_flight=in_flight,
            on_done=(lambda tid, n, total: log.info("  tile %s written (%d/%d)", tid, n, total)) if in_flight > 1 else None,
        )
        summary.figures["tiles"] = {"written": written, "skipped_already_done": skipped_tiles, "tile_px": tile_px,
                                    "in_flight": in_flight}
        summary.outputs["zarr"] = str(zarr_path)
        result = xr.open_zarr(zarr_path, mask_and_scale=False, consolidated=False)
        if cfg.output.cog:
            write_cog_from_dask(result["class"], cog_path, geobox, nodata=0, legend=target)
            summary.outputs["cog"] = str(cog_path)
        if len(tiles) > 1 and (cfg.output.tile_cogs or cfg.output.stac_item):
            tile_entries = _write_tile_outputs(cfg, result, geobox, tiles, out, target)
            summary.figures["tiles"]["without_valid_data"] = [t["tile"] for t in tile_entries if t["valid_px"] == 0]

    with _stage(summary, "score"):
        # class counts chunk by chunk; the whole map is read only when a truth map is given to score against
        counts = _compute(da.bincount(result["class"].data.ravel(), minlength=int(to_code.max()) + 1), client, "class counts", False)
        summary.figures["predicted_class_px"] = {int(c): int(n) for c, n in enumerate(counts) if n}
        n_px = geobox.shape[0] * geobox.shape[1]
        n_nodata = int(counts[0])
        summary.figures["nodata_px"] = n_nodata
        if n_nodata > 0.01 * n_px:
            warnings.warn(f"{n_nodata} of {n_px} pixels ({100 * n_nodata / n_px:.1f} %) have no prediction: no clear, finite "
                          "observation (NaN, inf and nodata values count as missing) on the kept dates, or outside the imagery; "
                          "widen the period or lower clean.min_valid_fraction", LowCoverageWarning, stacklevel=2)
        lost = vanished_classes(linfo["class_px"], summary.figures["predicted_class_px"])  # both in legend codes
        if lost:
            summary.figures["vanished_classes"] = lost
            names_ = target.names()
            warnings.warn("classes of the coarse map nearly missing from the 10 m map: " + "; ".join(
                f"{c} {names_.get(int(c), '')!r}: {v['map_px']} px against {v['coarse_px']} px in the coarse map" for c, v in lost.items())
                + "; check their training samples (summary.json: samples, labels) or raise labels.n_per_class",
                EmptyClassWarning, stacklevel=2)
        if cfg.truth is not None:
            from .io.rasters import open_on_geobox
            from .ops.accuracy import confusion_blocks, report_from_confusion

            truth = open_on_geobox(cfg.truth.path, geobox, chunks=cfg.load.chunk_px).map_blocks(
                apply_crosswalk, get_crosswalk(cfg.truth.legend, target), dtype=to_code.dtype)
            coarse = labels.map_blocks(lambda b: to_code[b], dtype=to_code.dtype)  # internal indices → legend codes
            cm_pred, cm_coarse = _compute([confusion_blocks(truth, result["class"].data, target.codes),
                                           confusion_blocks(truth, coarse, target.codes)], client, "accuracy against the truth", False)
            pred_rep = report_from_confusion(cm_pred, target.codes, target.names())
            coarse_rep = report_from_confusion(cm_coarse, target.codes, target.names())
            summary.figures["truth"] = {
                "prediction_10m": pred_rep,
                "coarse_map_upsampled": coarse_rep,
                "oa_gain_points": 100 * (pred_rep["overall_accuracy"] - coarse_rep["overall_accuracy"]),
            }
            log.info("  against the 10 m truth: prediction OA %.3f (kappa %.3f) | coarse map OA %.3f (kappa %.3f) | gain %+.1f points",
                     pred_rep["overall_accuracy"], pred_rep["kappa"], coarse_rep["overall_accuracy"], coarse_rep["kappa"],
                     summary.figures["truth"]["oa_gain_points"])

    summary.timings["total"] = round(time.perf_counter() - t_start, 3)
    summary.outputs["summary"] = str(out / "summary.json")
    if cfg.output.stac_item:
        from .io.write import write_output_item

        assets = {k: str(Path(v).relative_to(out)) for k, v in summary.outputs.items() if k in ("zarr", "cog", "summary")}
        assets["model"] = "model.skops"
        summary.outputs["stac_item"] = str(write_output_item(
            out, item_id=f"lcup-{cfg.name}", geobox=geobox, legend=target, start=cfg.period[0], end=cfg.period[1],
            assets=assets, properties={"lcup:version": __version__, "lcup:source_items": len(items)}))
        if len(tiles) > 1:
            from .io.write import write_tile_catalog

            summary.outputs["catalog"] = str(write_tile_catalog(
                out, catalog_id=f"lcup-{cfg.name}", tiles=tile_entries, legend=target, start=cfg.period[0], end=cfg.period[1],
                description=f"lcup run {cfg.name!r}: {len(tiles)} tiles of {tile_px} px"))
    summary.status = "done"
    (out / "summary.json").write_text(summary.to_json())
    return summary


def _relabel(report: dict, to_code: np.ndarray) -> dict:
    """An accuracy report over internal indices, keyed by the legend's codes."""
    code = {i: int(to_code[i]) for i in range(1, len(to_code))}
    out = dict(report)
    out["classes"] = [code[c] for c in report["classes"]]
    out["confusion_columns"] = [code.get(c, c) if isinstance(c, int) else c for c in report["confusion_columns"]]
    out["per_class"] = {code[c]: v for c, v in report["per_class"].items()}
    return out


def vanished_classes(coarse_px: dict, map_px: dict, ratio: float = 0.1) -> dict:
    """Classes of the coarse map missing from the 10 m map or under ``ratio`` of their coarse area.

    ``{code: {"coarse_px": n, "map_px": m}}`` for each such class (pixel counts on the output grid).
    """
    return {int(c): {"coarse_px": int(n), "map_px": int(map_px.get(int(c), 0))}
            for c, n in coarse_px.items() if int(c) and map_px.get(int(c), 0) < ratio * n}


#: Sections and keys that do not change the map (where and how it is written, on which cluster).
_DIGEST_IGNORES = ("output", "cluster", "name", "truth")


def run_digest(cfg: PipelineConfig, items, dates) -> dict:
    """What determines the map: the parameters (less output/cluster), the items and the kept dates.

    Returns ``{"digest": sha256, "parts": {key: sha256}}``; a resume compares the parts to name what
    changed.
    """
    import hashlib

    params = json.loads(cfg.model_dump_json())
    parts = {k: v for k, v in params.items() if k not in _DIGEST_IGNORES}
    parts["items"] = sorted(it.id for it in items)
    parts["dates"] = [str(d)[:10] for d in dates]

    def h(obj) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]

    hashed = {k: h(v) for k, v in sorted(parts.items())}
    return {"digest": h(hashed), "parts": hashed}


def check_resume(zarr_path: Path, digest: dict) -> None:
    """Refuse to resume into a store written with anything else that changes the map."""
    import zarr

    from .errors import OutputExistsError

    old = zarr.open_group(str(zarr_path), mode="r").attrs.get("lcup_digest")
    if old is None:
        raise OutputExistsError(f"{zarr_path} was not written by this version of lcup (no lcup_digest); it cannot be "
                                "resumed: use --overwrite or another output.dir")
    if old["digest"] != digest["digest"]:
        differ = sorted(k for k in set(old["parts"]) | set(digest["parts"]) if old["parts"].get(k) != digest["parts"].get(k))
        raise OutputExistsError(
            f"{zarr_path} was written with other settings or data; resuming would mix two maps. These differ: {differ}; "
            "restore them, or start again with --overwrite (or another output.dir)"
        )


def _train_and_validate(cfg: PipelineConfig, X: np.ndarray, sample, names: list[str], target, summary: RunSummary):
    """Train on the training blocks, report on the validation blocks; returns the model (``n_jobs=1``)."""
    tr = ~sample.validation
    weights = sample.value
    if cfg.model.clean_labels:
        ok = np.isfinite(X).all(1)
        keep = np.ones(len(X), bool)
        sel = tr & ok
        k, cinfo = confident_learning_filter(X[sel], sample.label[sel], seed=cfg.model.seed)
        keep[np.nonzero(sel)[0][~k]] = False
        summary.figures["label_cleaning"] = cinfo
        log.info("  confident learning flagged %d of %d training samples", cinfo["n_flagged"], int(sel.sum()))
        tr = tr & keep
    if cfg.model.kind == "random_forest":
        params = {"n_estimators": cfg.model.n_estimators, "max_depth": cfg.model.max_depth,
                  "min_samples_leaf": cfg.model.min_samples_leaf, "max_features": cfg.model.max_features,
                  "class_weight": cfg.model.class_weight, **cfg.model.params}
    else:
        params = {"class_weight": cfg.model.class_weight, "max_depth": cfg.model.max_depth, **cfg.model.params}
    model, minfo = train_model(X[tr], sample.label[tr], kind=cfg.model.kind, params=params, seed=cfg.model.seed,
                               sample_weight=None if weights is None else weights[tr])
    summary.figures["model"] = minfo
    imp = np.asarray(model.feature_importances_, float)
    imp = imp / imp.sum() if imp.sum() > 0 else imp
    summary.figures["feature_importance_top"] = dict(sorted(zip(names, map(float, imp)), key=lambda kv: -kv[1])[:15])
    n_val_classes = len(np.unique(sample.label[sample.validation]))
    if n_val_classes < 2:
        why = ("the area holds a single validation block or none" if not sample.validation.any() else
               f"the validation blocks hold {n_val_classes} class only")
        summary.figures["validation"] = {"skipped": f"no spatial validation: {why}; make labels.block_m smaller than the "
                                                    "area (several blocks of several classes) or score against a truth map"}
        warnings.warn(summary.figures["validation"]["skipped"], EmptyClassWarning, stacklevel=2)
    else:
        Xv = X[sample.validation]
        ok = np.isfinite(Xv).all(1)
        pv = np.zeros(len(Xv), np.uint8)
        if ok.any():
            pv[ok] = model.predict(Xv[ok])
        summary.figures["validation"] = accuracy_report(sample.label[sample.validation], pv, target.codes, target.names())
        if cfg.model.permutation_importance and ok.sum() > 10:
            from sklearn.inspection import permutation_importance

            n = min(2000, int(ok.sum()))
            pi = permutation_importance(model, Xv[ok][:n], sample.label[sample.validation][ok][:n], n_repeats=3,
                                        random_state=cfg.model.seed, n_jobs=1)
            summary.figures["permutation_importance_top"] = dict(
                sorted(zip(names, map(float, pi.importances_mean)), key=lambda kv: -kv[1])[:15])
        log.info("  spatial-block validation (against the coarse labels): OA %.3f kappa %.3f",
                 summary.figures["validation"]["overall_accuracy"], summary.figures["validation"]["kappa"])
    model.set_params(n_jobs=1)  # one thread per task: Dask already runs one task per core
    return model


def _share_model(model, client):
    """The model as the prediction tasks receive it: on a cluster, a persisted task that holds it.

    Unlike ``client.scatter`` (data the scheduler cannot rebuild), a persisted task can be recomputed
    from its spec when the workers holding it die, so a killed worker (or all of them) does not fail
    the run. It is replicated to every worker once, never embedded in each prediction task.
    """
    if client is None:
        return model
    from distributed import futures_of

    with warnings.catch_warnings():  # the model is sent once, on purpose: not the "large graph" distributed warns of
        warnings.filterwarnings("ignore", message="Sending large graph")
        (fut,) = futures_of(client.persist(dask.delayed(model, pure=False, traverse=False)))
    client.replicate([fut])
    return fut


def plan(cfg: PipelineConfig) -> str:
    """Dry run: search the catalog and describe the work (grid, tiles, chunks, memory per task) without loading pixels."""
    from .io.write import tile_slices
    geobox, items = find_items(cfg)
    start, end = cfg.period
    days = {str(it.datetime)[:10] for it in items}
    n_t, n_b = len(days), len(cfg.load.bands)
    n_grid = len(regular_grid(start, end, cfg.clean.step_days))
    n_vars = n_b + len(cfg.features.indices)
    n_feat = len(feature_names_for(cfg))
    c = cfg.load.chunk_px
    tile_px = _tile_px(cfg)
    tiles = tile_slices(geobox.shape, tile_px)
    mib = 1024**2
    dn = n_t * (n_b * 2 + 1) * c * c
    series = n_vars * n_grid * c * c * 4
    feats = n_feat * c * c * 4
    lines = [
        f"pipeline {cfg.name!r}: {len(items)} items on {n_t} dates from {cfg.source.catalog}",
        f"grid: {geobox.shape[0]} × {geobox.shape[1]} px at {cfg.aoi.resolution} m in {geobox.crs} "
        f"({geobox.shape[0] * geobox.shape[1] * cfg.aoi.resolution**2 / 1e6:.1f} km²)",
        f"tiles: {len(tiles)} of up to {tile_px} × {tile_px} px; chunks: {c} × {c} px "
        f"({-(-geobox.shape[0] // c) * -(-geobox.shape[1] // c)} chunks)",
        f"time grid: {n_grid} steps of {cfg.clean.step_days:g} days; features per pixel: {n_feat}",
        f"memory per task (one chunk): DN input {dn / mib:.0f} MiB, smoothed series {series / mib:.0f} MiB, "
        f"features {feats / mib:.0f} MiB; peak ≈ {(dn + series + feats) / mib:.0f} MiB per thread",
        f"feature cube for the AOI: {geobox.shape[0] * geobox.shape[1] * n_feat * 4 / 1024**3:.2f} GiB "
        f"(features.persist: {cfg.features.persist}; kept in memory when under 30 % of the cluster's memory, "
        "otherwise each tile is loaded, featured, predicted and written from its own graph)",
        f"labels: read chunk by chunk with a {max(metres_to_px(cfg.labels.erosion_m, cfg.aoi.resolution), _label_halo(cfg))} px halo; "
        f"sample: up to {cfg.labels.n_per_class} training pixels per class from "
        + ("all chunks" if cfg.labels.sample_chunks == "all" else
           f"{cfg.labels.sample_chunks} random chunks" if isinstance(cfg.labels.sample_chunks, int) else
           f"{AUTO_SAMPLE_CHUNKS} random chunks (all when there are fewer)")
        + f"; tiles in flight on a cluster: {cfg.output.tiles_in_flight}",
    ]
    return "\n".join(lines)


def _label_halo(cfg: PipelineConfig) -> int:
    """The halo (px) label confidence needs around a chunk."""
    from .ops.labels import confidence_halo_px

    return confidence_halo_px(_coarse_cell_m(cfg) / cfg.aoi.resolution)


def _cell_origin(cfg: PipelineConfig, geobox) -> tuple[int, int]:
    """Where the label map's cell edges fall on the output grid (0, 0 for a STAC collection or another CRS)."""
    from .io.rasters import cell_origin_px

    return cell_origin_px(cfg.labels.path, geobox) if cfg.labels.path else (0, 0)


def _coarse_cell_m(cfg: PipelineConfig) -> float:
    """Cell size of the label map, metres: as configured, else the file's; a STAC collection: the output grid's."""
    from .io.rasters import pixel_size_m

    return cfg.labels.coarse_resolution_m or (pixel_size_m(cfg.labels.path) if cfg.labels.path else cfg.aoi.resolution)


def _check_items(cfg: PipelineConfig, items, summary: RunSummary):
    """Probe the assets; skip-and-report or fail with the list, by ``source.on_error``."""
    from .errors import ReadError, SkippedAssetWarning
    from .io.stac import check_assets

    kept, skipped = check_assets(items, get_profile(cfg.source.provider), list(cfg.load.bands) + [SCL])
    summary.figures["skipped_assets"] = skipped
    if skipped:
        listing = "; ".join(f"{s['item']}/{s['band']} ({s['href']}): {s['error'][:120]}" for s in skipped[:10])
        if cfg.source.on_error == "fail":
            raise ReadError(
                f"{len(skipped)} asset(s) cannot be read: {listing}"
                + (" ..." if len(skipped) > 10 else "")
                + "; fix the files or set source.on_error: skip to leave them out (they are then listed in summary.json)"
            )
        warnings.warn(f"skipped {len(skipped)} unreadable asset(s): {listing}", SkippedAssetWarning, stacklevel=3)
        if not kept:
            raise ReadError(f"no readable item left after skipping {len(skipped)} asset(s): {listing}")
    return kept


def _checked_names(feats: xr.DataArray | None, names: list[str]) -> xr.DataArray | None:
    """``feats`` unchanged, after checking its feature names are those the model is trained and saved with."""
    if feats is not None and list(feats.feature.values) != names:
        raise RuntimeError(f"the features are {list(feats.feature.values)}, not the configured {names}")
    return feats


def _write_tile_outputs(cfg: PipelineConfig, result: xr.Dataset, geobox, tiles, out: Path, target) -> list[dict]:
    """Per-tile class COGs (``tiles/<id>/landcover_class.tif``) and the entries of the tile catalog."""
    from .io.write import write_cog_from_dask

    entries = []
    for tid, ys, xs in tiles:
        cls = result["class"].isel(y=ys, x=xs).load()  # one tile of uint8: bounded; read once for count and COG
        n_valid = int(np.count_nonzero(cls.values))
        if n_valid == 0:
            log.warning("tile %s has no pixel with a valid observation: written as nodata (0)", tid)
        assets = {"zarr": "landcover.zarr"}
        if cfg.output.tile_cogs:
            rel = Path("tiles") / tid / "landcover_class.tif"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            write_cog_from_dask(cls, out / rel, geobox[ys, xs], nodata=0, legend=target)
            assets["cog"] = str(rel)
        entries.append({"id": f"lcup-{cfg.name}-{tid}", "tile": tid, "geobox": geobox[ys, xs], "assets": assets,
                        "region": {"y": [ys.start, ys.stop], "x": [xs.start, xs.stop]}, "valid_px": n_valid})
    return entries


def _predict_chunk(block: np.ndarray, model, confidence: str) -> np.ndarray:
    return predict_block(block, model, confidence=confidence)


def prediction_dataset(feats: xr.DataArray, model_ref, classes: list, geobox, target, cfg: PipelineConfig,
                       to_code: np.ndarray | None = None) -> xr.Dataset:
    """Lazy outputs ``class`` (uint8), ``confidence`` (uint8 percent) and ``probability`` ``(class, y, x)``.

    One ``map_blocks`` task per chunk; the model is passed as a reference (a future scattered once to
    every worker), never embedded in the tasks.
    """

    k = len(classes)
    pred = da.map_blocks(
        _predict_chunk, feats.data, model_ref, cfg.output.confidence, drop_axis=2, new_axis=0,
        chunks=((2 + k,),) + feats.data.chunks[:2], dtype=np.float32,
    )
    return output_dataset(pred, classes, geobox, target, cfg, to_code)


def output_dataset(pred, classes: list, geobox, target, cfg: PipelineConfig, to_code: np.ndarray | None = None) -> xr.Dataset:
    """The output variables from ``pred`` ``(2 + class, y, x)`` float32 (class, confidence, probabilities; NaN = no data).

    ``classes`` are the model's internal indices; ``to_code`` (:func:`lcup.legends.compact`) turns them into the
    legend's codes, written as uint8, or uint16 for codes above 255.
    """
    from odc.geo.xr import xr_coords

    to_code = compact(target)[1] if to_code is None else to_code
    cls = da.nan_to_num(pred[0]).astype(np.int64).map_blocks(lambda b: to_code[b], dtype=to_code.dtype)
    conf = da.nan_to_num(da.round(100 * pred[1])).astype(np.uint8)
    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    ds = xr.Dataset({"class": (("y", "x"), cls), "confidence": (("y", "x"), conf)}, coords=coords)
    if cfg.output.probabilities != "none":
        prob = pred[2:]
        prob = da.nan_to_num(da.round(100 * prob)).astype(np.uint8) if cfg.output.probabilities == "uint8" else prob.astype(np.float16)
        ds["probability"] = (("class_code", "y", "x"), prob)
        ds = ds.assign_coords(class_code=to_code[np.asarray(classes, np.int64)])
        ds["probability"].attrs.update({"grid_mapping": "spatial_ref", "units": "percent" if cfg.output.probabilities == "uint8" else "1",
                                        "long_name": "class probability"})
    ds["class"].attrs.update({"grid_mapping": "spatial_ref", "flag_values": target.codes,
                              "flag_meanings": " ".join(n.replace(" ", "_") for n in target.names().values()),
                              "long_name": "land cover class"})
    ds["confidence"].attrs.update({"grid_mapping": "spatial_ref", "units": "percent", "long_name": f"confidence ({cfg.output.confidence})"})
    return ds


def _n_chunks(iy: np.ndarray, ix: np.ndarray, chunk_px: int) -> int:
    """How many ``chunk_px`` chunks the pixels ``(iy, ix)`` fall in."""
    return len(set(zip((iy // chunk_px).tolist(), (ix // chunk_px).tolist())))


def _tiles_in_flight(cfg: PipelineConfig, client, tile_px: int) -> int:
    """``output.tiles_in_flight``, with auto resolved: one chunk per worker thread, plus one tile (1 without a cluster)."""
    if cfg.output.tiles_in_flight != "auto":
        return max(1, int(cfg.output.tiles_in_flight))
    if client is None:
        return 1
    chunks_per_tile = max(1, (tile_px // cfg.load.chunk_px) ** 2)
    return -(-_threads(client) // chunks_per_tile) + 1


def _threads(client) -> int:
    """Worker threads of the cluster (1 for the threaded scheduler in this process, which spreads a task's chunks itself)."""
    return sum(client.nthreads().values()) if client is not None else 1


def _tile_px(cfg: PipelineConfig) -> int:
    """``output.tile_px`` rounded down to whole chunks (at least one)."""
    c = cfg.load.chunk_px
    return max(c, cfg.output.tile_px // c * c)


def _cluster_memory(client) -> float:
    if client is None:
        return 0.0
    try:
        info = client.scheduler_info()["workers"]
        return float(sum(w.get("memory_limit", 0) or 0 for w in info.values()))
    except Exception:  # noqa: BLE001 - a scheduler without memory limits: do not persist
        return 0.0
