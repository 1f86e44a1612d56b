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
from typing import Any, Callable

import dask
import dask.array as da
import numpy as np
import xarray as xr

from . import __version__
from .config import PipelineConfig
from .errors import EmptyClassWarning, LowCoverageWarning, NoValidDataError
from .legends import compact, get_legend
from .ops.accuracy import report_from_confusion
from .ops.temporal import regular_grid
from .progress import bar, ticking
from .stages.features import neighbourhood_halo_px, feature_names, features
from .stages.labels import AUTO_SAMPLE_CHUNKS, label_halo_px, labels, sample
from .stages.load import items_on, load, scene_filter
from .stages.predict import coarse_prior_array, output_dataset, predict, probability_percent
from .stages.score import (class_counts, class_profiles, consistency, consistency_figures, relabel, sample_area_estimates,
                           truth_confusions, vanished_classes)
from .stages.search import check_items, grid, native_origin, search
from .stages.train import refine, train
from .units import metres_to_px, padded_chunks
from .vocab import INDEX_BANDS

log = logging.getLogger("lcup")

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


def _tree_cpu_s() -> float:
    """CPU seconds (user + system) of this process and its descendants, living or reaped: a LocalCluster's
    workers and nannies are child processes, so the stages' cores used are measured on this machine."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:  # ended between the listing and the reading
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


@contextmanager
def _stage(summary: RunSummary, name: str):
    log.info("▶ %s", name)
    t0, c0 = time.perf_counter(), _tree_cpu_s()
    yield
    wall, cpu = time.perf_counter() - t0, _tree_cpu_s() - c0
    summary.timings[name] = round(wall, 3)
    cores = summary.figures.setdefault("cores_used", {})
    cores[name] = round(cpu / wall, 2) if wall > 0 else None
    log.info("✔ %s (%.1f s, %.2f cores on this machine)", name, wall, cores[name] or 0.0)


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
    else:
        _heartbeat(client, fut, label)
    return client.gather(fut)


#: Seconds between progress lines when not on a terminal (batch jobs, CI, nohup).
PROGRESS_EVERY_S = 30.0


def _task_states(dask_scheduler=None) -> dict:
    counts: dict = {}
    for ts in dask_scheduler.tasks.values():
        counts[ts.state] = counts.get(ts.state, 0) + 1
    return counts


def _heartbeat(client, fut, label: str) -> None:
    """Off a terminal: wait for ``fut``, logging elapsed time and the cluster's task counts every
    :data:`PROGRESS_EVERY_S` seconds, so a long stage is never silent in a batch log."""
    from distributed import wait

    futs = fut if isinstance(fut, (list, tuple)) else [fut]
    t0 = time.perf_counter()
    while True:
        try:
            wait(futs, timeout=PROGRESS_EVERY_S)
            return
        except TimeoutError:
            st = client.run_on_scheduler(_task_states)
            done = st.get("memory", 0) + st.get("released", 0) + st.get("forgotten", 0)
            todo = sum(st.get(k, 0) for k in ("waiting", "processing", "queued", "no-worker"))
            log.info("  %s: %.0f s, %d tasks done, %d to go (%.0f %%)", label, time.perf_counter() - t0, done, todo,
                     100 * done / max(1, done + todo))


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

    if cfg.years:
        return run_years(cfg, client=client, progress=progress)
    out = Path(cfg.output.dir)
    prepare_output_dir(out, overwrite=cfg.output.overwrite, resume=cfg.output.resume,
                                 outputs=("landcover.zarr", "landcover_class.tif"))
    summary = RunSummary(cfg.name, parameters=redact(json.loads(cfg.model_dump_json())))
    summary.figures["versions"] = _versions()
    with output_lock(out):
        try:
            if client is None and cfg.cluster.kind != "none":
                from .cluster import starting_cluster

                # the cluster starts (processes spawned, lcup imported in the workers) while this process searches
                with starting_cluster(cfg.cluster) as c:
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
        finally:
            _drop_decoded_blocks(client)


def _drop_decoded_blocks(client) -> None:
    """Free the decoded COG blocks (:data:`lcup.io.nested.BLOCKS`) and their counts here and in the workers of
    ``client`` (a cluster a run started is closed with them)."""
    from .io.nested import clear_blocks

    clear_blocks()
    if client is not None:
        try:
            client.run(clear_blocks)
        except Exception:  # noqa: BLE001 - a worker gone or a closed client: nothing left to free there
            pass


def _block_cache_figures(client) -> dict:
    """The run's decoded-block cache over this process and the workers: blocks served again (``hits``) and decoded
    (``misses``), the share served again, the size allowed and the most held by one process (MiB), and the reads
    that waited for a block another thread was decoding (``waits``, their thread-seconds ``wait_s``)."""
    from .io.nested import cache_stats

    stats = [cache_stats()]
    if client is not None:
        try:
            stats += list(client.run(cache_stats).values())
        except Exception:  # noqa: BLE001 - figures only
            pass
    hits, misses = sum(s["hits"] for s in stats), sum(s["misses"] for s in stats)
    return {"hits": hits, "misses": misses, "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
            "size_mb": round(max(s["max_bytes"] for s in stats) / 2**20, 1),
            "peak_mb": round(max(s["peak_bytes"] for s in stats) / 2**20, 1),
            "waits": sum(s["waits"] for s in stats), "wait_s": round(sum(s["wait_s"] for s in stats), 1)}


def _versions() -> dict:
    """The versions that decide a run's result and speed, for the run record."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"lcup": __version__}
    for pkg in ("dask", "distributed", "xarray", "odc-stac", "odc-geo", "numba", "numpy", "scikit-learn", "rasterio", "zarr"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    try:
        import rasterio

        out["GDAL"] = rasterio.__gdal_version__
    except ImportError:
        pass
    return out


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
    text = " ".join(f"{type(x).__module__}.{type(x).__name__}: {x}" for x in chain).lower()
    if "rasterio" in text or "cple_" in text or "tiffread" in text:
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
    """:func:`_run` with this process's warnings quieted; ``client``: a Client, None, or a ``Future`` of one (a
    cluster still starting: waited for after the search, the first stage that needs it)."""
    from .cluster import quiet_spurious_warnings

    with warnings.catch_warnings():
        quiet_spurious_warnings()  # here too: the threaded scheduler (cluster.kind: none) runs tasks in this process
        return _run(cfg, client, progress, summary)


def _ready(cfg: PipelineConfig, client, summary: RunSummary):
    """The run's client (waited for if still starting), set up for the run: figures, quiet and tuned workers,
    no blocks left from another run."""
    from concurrent.futures import Future

    from .cluster import quiet_workers, tune_workers

    if isinstance(client, Future):
        client = client.result()
    if client is not None:
        summary.figures["cluster"] = {"workers": len(client.nthreads()), "threads": _threads(client),
                                      "memory_bytes": _cluster_memory(client)}
        quiet_workers(client)
        if cfg.cluster.tune_malloc:
            tune_workers(client)
    _drop_decoded_blocks(client)  # a given cluster's workers may hold another run's blocks: counts start here
    return client


def source_profile(cfg: PipelineConfig):
    """The provider profile the run reads with: ``source.provider``'s, its mask slot read from
    ``clean.probability_asset`` when ``clean.mask`` is ``probability``."""
    from .providers import get_profile, with_probability_mask

    if cfg.clean.mask == "probability":
        return with_probability_mask(cfg.source.provider, cfg.clean.probability_asset)
    return get_profile(cfg.source.provider)


def find_items(cfg: PipelineConfig):
    """The output grid of the AOI and the Sentinel-2 items covering it in the period: ``(geobox, items)``."""
    geobox = grid(cfg.aoi.bbox, crs=cfg.aoi.crs, grid_crs=cfg.aoi.grid_crs, resolution=cfg.aoi.resolution,
                  origin=cfg.aoi.origin)
    items = search(cfg.source.catalog, geobox, *cfg.period, provider=source_profile(cfg), collection=cfg.source.collection,
                   max_cloud_cover=cfg.source.max_cloud_cover, page_size=cfg.source.page_size, bands=cfg.load.bands,
                   scl=cfg.clean.mask != "none")
    if cfg.aoi.origin is None and cfg.aoi.align == "native":
        origin = native_origin(items, geobox)  # the data's own pixel grid
        if origin is not None:
            geobox = grid(cfg.aoi.bbox, crs=cfg.aoi.crs, grid_crs=cfg.aoi.grid_crs, resolution=cfg.aoi.resolution, origin=origin)
    return geobox, items


def prediction_halo_px(cfg: PipelineConfig) -> int:
    """Pixels of features computed beyond a tile's edge for the probability smoothing (``model.smooth_px``) and
    the segments (``model.segments``)."""
    from .ops.segments import segment_halo_px

    return cfg.model.smooth_px // 2 + (segment_halo_px(cfg.model.segment_px) if cfg.model.segments != "none" else 0)


def tile_features(cfg: PipelineConfig, tile_geobox, items, dates, at=None) -> xr.DataArray | None:
    """Lazy features ``(y, x, feature)`` of one tile (or the whole AOI) and a ring of
    :func:`prediction_halo_px` pixels around it, from its own graph.

    Only the items meeting the tile and its halo are loaded; SCL is read with the halo the cloud-mask dilation
    needs; ``dates`` are the AOI's. The features equal those of the same pixels in any other tiling. None when
    no item meets the tile or it has none of ``dates``. ``at``: ``(rows, columns)`` of pixels of the tile ring
    included (as in the returned array): only their features, ``(sample, feature)``.
    """
    from .io.stac import bbox_overlaps, lonlat_bbox

    ring = prediction_halo_px(cfg)
    nb = neighbourhood_halo_px(cfg.features, cfg.aoi.resolution)  # loaded beyond the ring, cropped after
    gb = tile_geobox.pad(ring + nb) if ring + nb else tile_geobox
    halo = metres_to_px(cfg.clean.dilation_m, cfg.aoi.resolution) if cfg.clean.mask != "none" else 0
    lb = lonlat_bbox(gb.pad(halo) if halo else gb)
    # the tile's items on the kept dates only: a dropped scene is never read
    mine = [it for it in items_on(items, dates) if it.bbox is None or bbox_overlaps(it.bbox, lb)]
    if not mine:
        return None
    # as many chunks as the tile itself has, each a few pixels larger: the ring adds no sliver chunks to read
    c = cfg.load.chunk_px
    chunks = tuple(padded_chunks(n, c, ring + nb) for n in tile_geobox.shape) if ring + nb else None
    cube = load(mine, gb, provider=source_profile(cfg), load=cfg.load, on_error=cfg.source.on_error, halo=halo,
                scl=cfg.clean.mask != "none", chunks=chunks)
    if at is not None:
        return features(cube, cfg.period, clean=cfg.clean, features=cfg.features, dates=dates,
                        at=(np.asarray(at[0]) + nb, np.asarray(at[1]) + nb))
    feats = features(cube, cfg.period, clean=cfg.clean, features=cfg.features, dates=dates)
    return feats.isel(y=slice(nb, -nb), x=slice(nb, -nb)) if nb and feats is not None else feats


def _run(cfg: PipelineConfig, client, progress: bool, summary: RunSummary) -> RunSummary:
    """The stages of :func:`run_pipeline`, on ``client`` (None: the threaded scheduler)."""
    from .io.models import load_model, save_model
    from .io.rasters import cell_origin_px
    from .io.write import tile_slices, write_cog_from_dask, write_tiles_zarr

    out = Path(cfg.output.dir)
    zarr_path, cog_path = out / "landcover.zarr", out / "landcover_class.tif"
    t_start, cpu_start = time.perf_counter(), _tree_cpu_s()
    target = get_legend(cfg.target_legend())
    internal, to_code = compact(target)  # labels, samples and the model use internal (uint8) indices

    def compute(label):
        return lambda obj: _compute(obj, client, label, progress)

    with _stage(summary, "search"):
        geobox, items = find_items(cfg)
        summary.figures["items"] = len(items)
        summary.figures["grid"] = {"crs": str(geobox.crs), "shape": list(geobox.shape), "resolution": cfg.aoi.resolution}
        if cfg.source.check_assets:
            items, summary.figures["skipped_assets"] = check_items(items, provider=source_profile(cfg), bands=cfg.load.bands,
                                                                   on_error=cfg.source.on_error, scl=cfg.clean.mask != "none")
    with _stage(summary, "cluster"):  # started beside the search: what is left of its start-up
        client = _ready(cfg, client, summary)

    with _stage(summary, "scene filter"):
        dates, info = scene_filter(items, geobox, provider=source_profile(cfg), clean=cfg.clean, chunk_px=cfg.load.chunk_px,
                                   on_error=cfg.source.on_error, compute=compute("scene filter"), bands=cfg.load.bands,
                                   block_cache_mb=cfg.load.block_cache_mb)
        summary.figures.update(info)

    digest = run_digest(cfg, items, dates)
    summary.figures["digest"] = digest["digest"]
    names = feature_names(cfg.load.bands, cfg.period, clean=cfg.clean, features=cfg.features)
    resumed_model = None
    if cfg.output.resume and zarr_path.exists():
        check_resume(zarr_path, digest)
        if (out / "model.skops").exists():
            resumed_model, _ = load_model(out / "model.skops")
    if cfg.model.path is not None:  # train once, apply anywhere: the saved model, checked against this cube
        resumed_model = _saved_model(cfg, names)
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

    ring = prediction_halo_px(cfg)  # features reach this far beyond each tile, for the probability smoothing

    def features_of(tid, ys, xs, at=None):
        return _checked_names(tile_features(cfg, geobox[ys, xs], items, dates, at=at), names)

    with _stage(summary, "clean+features (graph)"):  # on the per-tile path this happens tile by tile, later
        if not tiled:
            feats = features_of("all", slice(0, geobox.shape[0]), slice(0, geobox.shape[1]))
            if feats is None:
                raise NoValidDataError("no item meets the AOI on the kept dates; check the AOI and the period")
        if feats is not None and persist and client is not None:
            feats = _persist(feats, client, progress)

    lab = None  # without labels (model.path alone) there is nothing to sample, train or compare with
    if cfg.labels is not None:
        with _stage(summary, "labels"):
            lab = labels(geobox, cfg.labels, chunk_px=cfg.load.chunk_px, compute=compute("label statistics"))
            summary.figures["labels"] = lab.attrs["figures"]
            # positions first, drawn chunk by chunk (per-chunk seeds), then only their features are gathered;
            # the draw depends on the labels and the seed only, never on the path or the cluster
            smp = sample(lab, cfg.labels, cell_origin=cell_origin_px(cfg.labels.path, geobox) if cfg.labels.path else (0, 0),
                         compute=compute("sample"))
            if resumed_model is not None:
                X = None  # a saved model (this run's, same digest, or model.path) is used: no features to gather
            elif not tiled:
                X = _compute(feats.data.vindex[smp.iy + ring, smp.ix + ring], client, "sampled features", progress)
            else:
                X = _gather_tiled(smp, tiles, features_of, client, len(names), cfg.load.chunk_px, ring, progress,
                                  in_flight=_tiles_in_flight(cfg, client, tile_px))
            summary.figures["samples"] = _sample_figures(smp, cfg)

    with _stage(summary, "train"):
        if resumed_model is not None:
            model = resumed_model
            source = cfg.model.path or str(out / "model.skops")
            summary.figures["model"] = {"resumed_from" if cfg.model.path is None else "applied": source}
            log.info("  using the saved model %s", source)
        else:
            train_smp = smp
            if cfg.model.refine_rounds:
                with ticking(f"refining the training labels ({cfg.model.refine_rounds} rounds)", enabled=progress):
                    train_smp, refinement = refine(X, smp, lab, model=cfg.model)
                summary.figures["refinement"] = _refinement_figures(refinement, to_code)
            with ticking(f"training a {cfg.model.kind.replace('_', ' ')} on {len(smp.label):,} samples", enabled=progress):
                model, figures = train(X, train_smp, names=names, legend=internal, model=cfg.model)
            if "classes" in figures.get("validation", {}) and internal is not target:
                figures["validation"] = relabel(figures["validation"], to_code)
            summary.figures.update(figures)
            swir = [v for v in cfg.features.series if v != "ndvi" and any(b.startswith("swir") for b in INDEX_BANDS.get(v, ()))]
            grid_dates = [str(d.date()) for d in regular_grid(cfg.period[0], cfg.period[1], cfg.clean.step_days)]
            summary.figures["profiles"] = class_profiles(X, smp.label, names, to_code, ["ndvi", *swir[:1]], grid_dates)
            save_model(model, out / "model.skops", feature_names=names, legend=target.to_dict(),
                       resolution=cfg.aoi.resolution, bands=list(cfg.load.bands), period=[str(d) for d in cfg.period])

    with _stage(summary, "predict+write"):
        model_ref = _share_model(model, client)
        classes = list(model.classes_)
        prior, strength = None, cfg.model.coarse_prior if lab is not None else 0.0
        if strength > 0:  # the coarse map as evidence beside the model (lcup.ops.fusion)
            window = max(1, int(round(cfg.model.coarse_prior_cells * lab.attrs["figures"]["coarse_cell_px"])))
            prior = coarse_prior_array(lab["label"].data, classes, window)
            summary.figures["coarse_prior"] = {"strength": strength, "window_px": window}
        if tiled:
            c = cfg.load.chunk_px
            ds = output_dataset(da.zeros((2 + len(classes), *geobox.shape), chunks=((2 + len(classes),), c, c), dtype=np.float32),
                                classes, geobox, target, cfg.output)  # the store's template: never computed

            def tile_data(tid, ys, xs):
                ft = features_of(tid, ys, xs)
                return None if ft is None else predict(model_ref, ft, legend=target, output=cfg.output, classes=classes,
                                                       geobox=geobox[ys, xs], smooth_px=cfg.model.smooth_px, halo=ring,
                                                       chunk_px=cfg.load.chunk_px, prior=None if prior is None else prior[:, ys, xs],
                                                       prior_strength=strength, segments=cfg.model.segments,
                                                       segment_px=cfg.model.segment_px, segment_mix=cfg.model.segment_mix)
        else:
            ds = predict(model_ref, feats, legend=target, output=cfg.output, classes=classes, geobox=geobox,
                         smooth_px=cfg.model.smooth_px, halo=ring, chunk_px=cfg.load.chunk_px, prior=prior,
                         prior_strength=strength, segments=cfg.model.segments,
                         segment_px=cfg.model.segment_px, segment_mix=cfg.model.segment_mix)
            tile_data = None
        attrs = {"lcup_version": __version__, "legend": target.to_dict(), "items": [i.id for i in items],
                 "transform": list(geobox.transform)[:6], "crs": str(geobox.crs), "seed": cfg.model.seed,
                 "parameters": summary.parameters, "lcup_digest": digest}
        in_flight = min(len(tiles), _tiles_in_flight(cfg, client, tile_px))
        written, skipped_tiles = write_tiles_zarr(
            ds, zarr_path, tile_px=tile_px, attrs=json.loads(json.dumps(attrs, default=_jsonable)),
            overwrite=cfg.output.overwrite, resume=cfg.output.resume,
            compute=lambda obj, label: _compute(obj, client, label, progress), tile_data=tile_data,
            submit=_by_submission(client) if client is not None else None, in_flight=in_flight,
            on_done=lambda tid, n, total: log.info("  tile %s written (%d/%d)", tid, n, total),
            zarr_format=cfg.output.zarr_format,
        )
        summary.figures["tiles"] = {"written": written, "skipped_already_done": skipped_tiles, "tile_px": tile_px,
                                    "in_flight": in_flight}
        summary.outputs["zarr"] = str(zarr_path)
        result = xr.open_zarr(zarr_path, mask_and_scale=False, consolidated=False)
        if cfg.output.cog:
            write_cog_from_dask(result["class"], cog_path, geobox, nodata=0, legend=target)
            summary.outputs["cog"] = str(cog_path)
            conf_path = out / "landcover_confidence.tif"
            write_cog_from_dask(result["confidence"], conf_path, geobox, nodata=0, overview_resampling="average")
            summary.outputs["confidence_cog"] = str(conf_path)
            if cfg.output.probability_cog:
                prob_path = out / "landcover_probability.tif"
                write_cog_from_dask(probability_percent(result), prob_path, geobox, nodata=255, overview_resampling="average",
                                    band_names=[target.names()[int(c)] for c in result["class_code"].values])
                summary.outputs["probability_cog"] = str(prob_path)
        if len(tiles) > 1 and (cfg.output.tile_cogs or cfg.output.stac_item):
            tile_entries = _write_tile_outputs(cfg, result, geobox, tiles, out, target)
            summary.figures["tiles"]["without_valid_data"] = [t["tile"] for t in tile_entries if t["valid_px"] == 0]

    with _stage(summary, "score"):
        # class counts chunk by chunk; the whole map is read only when a truth map is given to score against
        counts = _compute(class_counts(result["class"].data, target), client, "class counts", False)
        summary.figures["predicted_class_px"] = {int(c): int(n) for c, n in enumerate(counts) if n}
        _warn_gaps(summary, counts, geobox, target)
        if lab is not None:  # the upsampling consistency: the one figure a run without a reference has
            cons = consistency_figures(_compute(consistency(result["class"].data, lab["label"].data, target), client,
                                                "consistency", False), target)
            summary.figures["consistency"] = cons
            log.info("  the 10 m map agrees with the coarse map on %.1f %% of its labelled pixels", 100 * (cons["agreement"] or 0))
        if cfg.truth is not None:
            coarse = lab["label"].data if lab is not None else da.zeros_like(result["class"].data, dtype=np.uint8)
            cm_pred, cm_coarse = _compute(list(truth_confusions(cfg.truth.path, cfg.truth.legend, geobox, result["class"].data,
                                                                coarse, target, chunk_px=cfg.load.chunk_px)),
                                          client, "accuracy against the truth", False)
            pred_rep = report_from_confusion(cm_pred, target.codes, target.names())
            summary.figures["truth"] = {"prediction_10m": pred_rep}
            log.info("  against the 10 m truth: prediction OA %.3f (kappa %.3f)", pred_rep["overall_accuracy"], pred_rep["kappa"])
            summary.figures["area"] = sample_area_estimates(pred_rep, pixel_ha=_pixel_ha(geobox), seed=cfg.model.seed,
                                                            n_per_class=cfg.truth.area_sample_per_class)
            if lab is not None:
                coarse_rep = report_from_confusion(cm_coarse, target.codes, target.names())
                summary.figures["truth"].update(coarse_map_upsampled=coarse_rep,
                                                oa_gain_points=100 * (pred_rep["overall_accuracy"] - coarse_rep["overall_accuracy"]))
                log.info("  coarse map OA %.3f (kappa %.3f) | gain %+.1f points", coarse_rep["overall_accuracy"],
                         coarse_rep["kappa"], summary.figures["truth"]["oa_gain_points"])

    bc = summary.figures["block_cache"] = _block_cache_figures(client)
    if bc["hit_rate"] is not None:
        log.info("  decoded COG blocks: %d read, %.0f %% of block reads served again (at most %.0f of %.0f MiB held)%s",
                 bc["misses"], 100 * bc["hit_rate"], bc["peak_mb"], bc["size_mb"],
                 "; a larger load.block_cache_mb or a smaller output.tile_px would decode less"
                 if bc["peak_mb"] >= 0.99 * bc["size_mb"] and bc["hit_rate"] < 0.5 else "")
    summary.timings["total"] = round(time.perf_counter() - t_start, 3)
    summary.figures.setdefault("cores_used", {})["total"] = round((_tree_cpu_s() - cpu_start) / summary.timings["total"], 2)
    summary.outputs["summary"] = str(out / "summary.json")
    if cfg.output.stac_item:
        from .io.write import write_output_item

        assets = {k: str(Path(v).relative_to(out)) for k, v in summary.outputs.items() if k in ("zarr", "cog", "summary")}
        for key in ("confidence", "probability"):
            if f"{key}_cog" in summary.outputs:
                assets[key] = str(Path(summary.outputs[f"{key}_cog"]).relative_to(out))
        assets["model"] = "model.skops"
        summary.outputs["stac_item"] = str(write_output_item(
            out, item_id=f"lcup-{cfg.name}", geobox=geobox, legend=target, start=cfg.period[0], end=cfg.period[1],
            assets=assets, properties={"lcup:version": __version__, "lcup:source_items": len(items)},
            derived_from=[h for h in (it.get_self_href() for it in items) if h]))
        if len(tiles) > 1:
            from .io.write import write_tile_catalog

            summary.outputs["catalog"] = str(write_tile_catalog(
                out, catalog_id=f"lcup-{cfg.name}", tiles=tile_entries, legend=target, start=cfg.period[0], end=cfg.period[1],
                description=f"lcup run {cfg.name!r}: {len(tiles)} tiles of {tile_px} px"))
    summary.status = "done"
    (out / "summary.json").write_text(summary.to_json())
    if cfg.output.report:
        summary.outputs["report"] = str(_report(out, summary, result, lab, geobox, target, to_code, client))
        (out / "summary.json").write_text(summary.to_json())
    return summary


def run_years(cfg: PipelineConfig, *, client=None, progress: bool = True) -> RunSummary:
    """A map per year of ``cfg.years`` on one grid, then the change between them.

    The first year trains the model (on the coarse map, which describes one year: the first) and is scored
    against the truth if given; later years apply that model (``model.path``), so a change between maps is a
    change in the imagery, not in the model. Each year is a whole run in ``<output.dir>/<year>/`` (resumable,
    with its own summary and report); the change outputs of :func:`lcup.stages.change.change` go to
    ``<output.dir>/change/``. Returns a summary of the whole, also written to ``<output.dir>/summary.json``.
    """
    from .stages.change import change

    if client is None and cfg.cluster.kind != "none":
        from .cluster import cluster_client

        with cluster_client(cfg.cluster) as c:
            return run_years(cfg, client=c, progress=progress)
    t0 = time.perf_counter()
    out = Path(cfg.output.dir)
    whole = RunSummary(cfg.name, parameters=json.loads(cfg.model_dump_json()))
    whole.figures["years"] = {}
    model_path = None
    for y in cfg.years:
        log.info("══ year %d ══", y)
        s = run_pipeline(cfg.for_year(y, model_path=model_path), client=client, progress=progress)
        model_path = model_path or str(out / str(y) / "model.skops")
        whole.figures["years"][y] = {k: s.figures[k] for k in ("predicted_class_px", "consistency", "validation", "truth")
                                     if k in s.figures} | {"summary": s.outputs["summary"]}
        whole.timings[str(y)] = s.timings.get("total")
        if y == cfg.years[0]:
            whole.figures.update({k: s.figures[k] for k in ("validation", "truth", "consistency") if k in s.figures})
    with _stage(whole, "change"):
        if client is not None:
            def compute(*lazy):
                return tuple(client.compute(list(lazy), sync=True))
        else:
            compute = None
        res = change([out / str(y) / "landcover_class.tif" for y in cfg.years], out / "change", labels=[str(y) for y in cfg.years],
                     chunk_px=cfg.load.chunk_px, compute=compute, overwrite=True)
    whole.figures["change"] = {"pairs": [{k: p[k] for k in ("from", "to", "hectares")} for p in res["pairs"]],
                               **({"temporal_consistency": res["temporal_consistency"]} if "temporal_consistency" in res else {})}
    for p in res["pairs"]:
        log.info("  %s → %s: %.1f %% of the mapped area changed", p["from"], p["to"], 100 * (p["hectares"]["share_changed"] or 0))
    whole.outputs.update({"change": str(out / "change"), **{f"map_{y}": str(out / str(y)) for y in cfg.years},
                          "summary": str(out / "summary.json")})
    whole.timings["total"] = round(time.perf_counter() - t0, 3)
    whole.status = "done"
    (out / "summary.json").write_text(whole.to_json())
    return whole


def _pixel_ha(geobox) -> float:
    return abs(geobox.resolution.x * geobox.resolution.y) / 1e4


#: Longest side of the quicklooks in report.html, pixels.
QUICKLOOK_PX = 800


def _report(out: Path, summary: RunSummary, result: xr.Dataset, lab, geobox, target, to_code, client) -> Path:
    """``report.html`` from the summary and decimated quicklooks of the map and the coarse map (a few hundred px)."""
    from .report import write_report

    step = max(1, -(-max(geobox.shape) // QUICKLOOK_PX))
    arrays = [result["class"].data[::step, ::step]]
    if lab is not None:
        arrays.append(lab["label"].data[::step, ::step].map_blocks(lambda b: to_code[b], dtype=to_code.dtype))
    looks = _compute(arrays, client, "quicklooks", False)
    return write_report(out / "report.html", json.loads(summary.to_json()), target, class_map=looks[0],
                        coarse_map=looks[1] if lab is not None else None, pixel_ha=_pixel_ha(geobox))


def _saved_model(cfg: PipelineConfig, names: list[str]):
    """The model of ``model.path``, after checking it fits this run: features (bands, indices, statistics, time
    grid), grid resolution."""
    from .errors import ModelError
    from .io.models import load_model

    model, meta = load_model(cfg.model.path, expected_features=names)
    res = meta.get("resolution")
    if res is not None and abs(float(res) - cfg.aoi.resolution) > 1e-9:
        raise ModelError(f"model {cfg.model.path} was trained at {res} m, this grid is {cfg.aoi.resolution} m; set "
                         f"aoi.resolution: {res} or train a model at {cfg.aoi.resolution} m")
    return model


def _persist(feats: xr.DataArray, client, progress: bool) -> xr.DataArray:
    """The AOI's features kept in the cluster's memory, under a key of this run's own.

    The same graph persisted by an earlier run in this client may still be being released by the scheduler;
    a shared key would then be lost under us. Persisted on ``client``, not the default scheduler.
    """
    import uuid

    from distributed import wait

    feats = feats.copy(data=feats.data.map_blocks(np.asarray, dtype=feats.dtype, name=f"lcup-features-{uuid.uuid4().hex}"))
    feats = client.persist(feats)
    if progress:
        from distributed import progress as dprogress

        dprogress(feats.data, notebook=False)
        print(flush=True)
    if progress:
        wait(feats.data)
    else:
        from distributed import futures_of

        _heartbeat(client, futures_of(feats), "features")
    return feats


def _gather_tiled(smp, tiles, features_of, client, n_features: int, chunk_px: int, ring: int = 0,
                  progress: bool = False, in_flight: int = 1) -> np.ndarray:
    """The sample's features on the per-tile path. Each tile's features reach ``ring`` px beyond it; only the
    sampled pixels' features are computed (their chunks are read whole), so the tiles' prediction later repeats
    little. On a cluster, tiles are submitted one after the other, oldest first, with ``in_flight`` tiles'
    sampled chunks (at least one per worker thread) pending at any time: no thread waits for a tile's last chunk.
    Without one, tiles are gathered together until their sampled chunks give every thread one."""
    X = np.full((len(smp.iy), n_features), np.nan, np.float32)
    in_tile = [np.nonzero((smp.iy >= ys.start) & (smp.iy < ys.stop) & (smp.ix >= xs.start) & (smp.ix < xs.stop))[0]
               for _, ys, xs in tiles]
    n_sampled = sum(len(sel) > 0 for sel in in_tile)
    sels, lazies, n_chunks = [], [], 0
    pending: dict = {}  # future → (rows of X, its sampled chunks)
    submit = _by_submission(client) if client is not None else None
    t0, count = time.perf_counter(), [0, time.perf_counter()]

    def tile_done():  # a bar on a terminal, a line every PROGRESS_EVERY_S s off one
        count[0] += 1
        if progress:
            bar(count[0], n_sampled, "sampled features (tiles)")
        elif time.perf_counter() - count[1] >= PROGRESS_EVERY_S or count[0] == n_sampled:
            count[1] = time.perf_counter()
            log.info("  sampled features: %.0f s, %d of %d tiles", count[1] - t0, count[0], n_sampled)

    def flush(sels, lazies):  # without a cluster: a batch computed together, its features into their rows
        for sel_, v in zip(sels, _compute(lazies, client, "sampled features", progress) if lazies else []):
            X[sel_] = v

    for (tid, ys, xs), sel in zip(tiles, in_tile):
        iy, ix = smp.iy[sel] - ys.start, smp.ix[sel] - xs.start
        # only the sampled pixels' features: their chunks are read and masked, the per-pixel work is theirs alone
        ft = features_of(tid, ys, xs, at=(iy + ring, ix + ring)) if len(sel) else None
        if ft is None:
            continue
        if submit is not None:
            pending[submit(ft.data)] = (sel, _n_chunks(iy, ix, chunk_px))
            while len(pending) >= in_flight and sum(c for _, c in pending.values()) >= _threads(client):
                _take_first_done(pending, X, tile_done)
            continue
        sels.append(sel)
        lazies.append(ft.data)
        n_chunks += _n_chunks(iy, ix, chunk_px)
        if n_chunks >= _threads(client):
            flush(sels, lazies)
            sels, lazies, n_chunks = [], [], 0
    while pending:
        _take_first_done(pending, X, tile_done)
    flush(sels, lazies)
    return X


def _take_first_done(pending: dict, X: np.ndarray, on_done: Callable[[], None]) -> None:
    """Wait for the first of the ``pending`` futures to finish; its features into their rows of ``X``."""
    from distributed import wait

    done, _ = wait(list(pending), return_when="FIRST_COMPLETED")
    for fut in done:
        sel, _ = pending.pop(fut)
        X[sel] = fut.result()
        fut.release()
        on_done()


def _refinement_figures(info: dict, to_code) -> dict:
    """Label refinement figures with the legend's codes for the internal class indices."""
    rounds = [{"relabelled": r["relabelled"], "to": {int(to_code[int(c)]): n for c, n in r["to"].items()}}
              for r in info.get("rounds", [])]
    return {**info, "rounds": rounds}


def _sample_figures(smp, cfg: PipelineConfig) -> dict:
    from .ops.labels import min_train_validation_distance

    def per_class(sel):
        return {int(c): int(n) for c, n in zip(*np.unique(smp.label[sel], return_counts=True))}

    dmin = min_train_validation_distance(smp)
    return {"train": int((~smp.validation).sum()), "validation": int(smp.validation.sum()),
            "chunks": _n_chunks(smp.iy, smp.ix, cfg.load.chunk_px),
            "min_train_validation_distance_m": dmin * cfg.aoi.resolution if np.isfinite(dmin) else None,
            "train_per_class": per_class(~smp.validation), "validation_per_class": per_class(smp.validation)}


def _warn_gaps(summary: RunSummary, counts: np.ndarray, geobox, target) -> None:
    """Warn about pixels without a prediction and about coarse classes (nearly) missing from the map."""
    n_px = geobox.shape[0] * geobox.shape[1]
    n_nodata = int(counts[0])
    summary.figures["nodata_px"] = n_nodata
    if n_nodata > 0.01 * n_px:
        warnings.warn(f"{n_nodata} of {n_px} pixels ({100 * n_nodata / n_px:.1f} %) have no prediction: no clear, finite "
                      "observation (NaN, inf and nodata values count as missing) on the kept dates, or outside the imagery; "
                      "widen the period or lower clean.min_valid_fraction", LowCoverageWarning, stacklevel=3)
    if "labels" not in summary.figures:
        return
    lost = vanished_classes(summary.figures["labels"]["class_px"], summary.figures["predicted_class_px"])
    if lost:
        summary.figures["vanished_classes"] = lost
        names = target.names()
        warnings.warn("classes of the coarse map nearly missing from the 10 m map: " + "; ".join(
            f"{c} {names.get(int(c), '')!r}: {v['map_px']} px against {v['coarse_px']} px in the coarse map" for c, v in lost.items())
            + "; check their training samples (summary.json: samples, labels) or raise labels.n_per_class",
            EmptyClassWarning, stacklevel=3)


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
    if cfg.model.path:  # the applied model's bytes, not its file name
        parts["model_file"] = hashlib.sha256(Path(cfg.model.path).read_bytes()).hexdigest()
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
    n_vars = n_b + len(cfg.features.indices) + len(cfg.features.custom_indices)
    n_feat = len(feature_names(cfg.load.bands, cfg.period, clean=cfg.clean, features=cfg.features))
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
        f"prediction: class probabilities averaged over {cfg.model.smooth_px} × {cfg.model.smooth_px} px, "
        + (f"then over {cfg.model.segments} segments of ~{cfg.model.segment_px} px (mix {cfg.model.segment_mix:g}), "
           if cfg.model.segments != "none" else "")
        + "then "
        + (f"weighted by the coarse map's class shares over {cfg.model.coarse_prior_cells} coarse cell(s) around each "
           f"pixel, to the power {cfg.model.coarse_prior:g} (model.coarse_prior)"
           if cfg.labels is not None and cfg.model.coarse_prior > 0 else "the model alone (no coarse-map prior)"),
        (f"model: the saved {cfg.model.path} (no labels, no training)" if cfg.labels is None else
         f"labels: read chunk by chunk with a {max(metres_to_px(cfg.labels.erosion_m, cfg.aoi.resolution), label_halo_px(cfg.labels, cfg.aoi.resolution))} px halo; "
         f"sample: up to {cfg.labels.n_per_class} training pixels per class from "
         + ("all chunks" if cfg.labels.sample_chunks == "all" else
            f"{cfg.labels.sample_chunks} random chunks" if isinstance(cfg.labels.sample_chunks, int) else
            f"{AUTO_SAMPLE_CHUNKS} random chunks (all when there are fewer)"))
        + f"; tiles in flight on a cluster: {cfg.output.tiles_in_flight}",
    ]
    extras = []
    if cfg.features.neighbourhood_m:
        extras.append(f"neighbourhood features: {'/'.join(cfg.features.neighbourhood_stats)} of every feature in "
                      f"{', '.join(f'{m:g}' for m in cfg.features.neighbourhood_m)} m windows "
                      f"(a {neighbourhood_halo_px(cfg.features, cfg.aoi.resolution)} px halo per tile)")
    if cfg.model.refine_rounds and cfg.labels is not None:
        extras.append(f"label refinement: {cfg.model.refine_rounds} round(s), relabelling training samples at "
                      f"≥ {cfg.model.refine_threshold:g} probability to classes within one coarse cell")
    lines[5:5] = extras
    return "\n".join(lines)


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


def _by_submission(client):
    """``client.compute`` with falling priorities: the tiles in flight finish one after the other, oldest first,
    rather than all at once, so the next tile starts while the others still keep the threads busy."""
    import itertools

    order = itertools.count()
    return lambda obj: client.compute(obj, priority=-next(order))


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
