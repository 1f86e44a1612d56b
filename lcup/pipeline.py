"""The lcup pipeline as a recipe of named stages: search → scene filter → plan → features → labels and sample →
fit (or a saved model) → predict and write → score → STAC outputs → report. Each stage is one call into
:mod:`lcup.stages`; the CLI is a thin layer over :func:`run_pipeline`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dask
import numpy as np
import rasterio
import xarray as xr

from .cluster import Runner, cluster_client, quiet_spurious_warnings, quiet_workers, starting_cluster, tune_workers
from .errors import LcupWarning, NoValidDataError, TileFailedWarning
from .io.models import load_model
from .io.rundir import RunSummary, output_lock, prepare_output_dir, relative_paths, resolve_map, tree_cpu_s
from .legends import get_legend
from .ops.change import temporal_consistency
from .report import write_report
from .stages.area import area_lonlat, default_mosaic_crs, inside_mask, s2_tiles, tile_config, tile_share
from .stages.audit import write_audit
from .stages.change import change, open_maps
from .stages.labels import labels, sample, sample_figures
from .stages.load import block_cache_figures, drop_decoded_blocks, non_finite_pixels, reused_dates, scene_filter, unreadable_reads
from .stages.mosaic import mosaic, mosaic_areas, overlap_agreement, tile_areas, tile_maps, write_collection, zone_vrts
from .stages.plan import (
    RunPlan,
    check_resume_settings,
    dates_of,
    describe,
    find_items,
    make_plan,
    source_profile,
    tiles_in_flight,
)
from .stages.score import probe_inputs, score_run
from .stages.search import check_items
from .stages.tiles import aoi_features, sample_features, training_windows
from .stages.train import fit, fit_pooled, model_file, saved_model
from .stages.write import predict_and_write, write_stac
from .stages.years import change_accuracy, smooth_years

if TYPE_CHECKING:
    from .config import PipelineConfig

__all__ = ["run_pipeline", "run_years", "run_tiles", "plan", "find_items"]

log = logging.getLogger("lcup")

#: The modules a run's workers import while the run searches: what their tasks run (numpy, xarray, odc-stac,
#: rasterio, scikit-learn and lcup's kernels, through the stages).
WORKER_MODULES = ("lcup.stages.tiles", "lcup.stages.predict", "lcup.ops._kernels")


def run_pipeline(cfg: PipelineConfig, *, client=None, progress: bool = True, model=None, previous: dict | None = None,
                 sample_only: bool = False) -> RunSummary:
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
    model, previous, sample_only
        What a Sentinel-2-tiled run (:func:`run_tiles`) gives each tile: the area's one fitted model to apply, the
        tile's figures from its sampling pass (kept dates, label figures, sample: reused), and ``sample_only`` to
        stop after the training sample and return the :class:`Prepared` run instead of a summary.

    Returns
    -------
    RunSummary
        Also written to ``<output.dir>/summary.json``.
    """
    if cfg.years:
        return run_years(cfg, client=client, progress=progress)
    if not sample_only and model is None:
        tiles = s2_tiles(cfg)
        if tiles is not None:
            return run_tiles(cfg, tiles, client=client, progress=progress)
    out = Path(cfg.output.dir)
    prepare_output_dir(out, overwrite=cfg.output.overwrite, resume=cfg.output.resume,
                       outputs=("landcover.zarr", "landcover_class.tif"))
    summary, runner = RunSummary.of(cfg), Runner(client, progress)
    previous = dict(previous or {})
    if cfg.output.resume:  # what can be compared before any work (the items and dates are, after the search)
        check_resume_settings(out / "landcover.zarr", relative_paths(summary.parameters, out))
        done = RunSummary.load(out / "summary.json")
        if done is not None and done.status == "done" and (out / "landcover.zarr").exists():
            log.info("%s: the run has finished already (summary.json): nothing left to do", out)
            done.figures["resumed"] = "nothing left to do"
            return done
        # an interrupted run of the same settings: what it found is reused, not computed again
        previous = previous or (done.figures if done is not None else {})
    with output_lock(out):
        summary.autosave(out)  # saved now and after every stage: a run killed outright leaves what it had done
        try:
            if client is None and cfg.cluster.kind != "none":
                # the cluster starts (processes spawned, lcup imported in the workers) while this process searches
                with starting_cluster(cfg.cluster, warm=WORKER_MODULES) as c:
                    return _run_quietly(cfg, c, progress, summary, previous, model, sample_only)
            return _run_quietly(cfg, client, progress, summary, previous, model, sample_only)
        except BaseException as e:
            clear = summary.failed(e, out)
            if clear is not None:
                raise clear from None
            raise
        finally:
            drop_decoded_blocks(runner)


def _run_quietly(cfg: PipelineConfig, client, progress: bool, summary: RunSummary, previous: dict, model=None,
                 sample_only: bool = False):
    """:func:`_run` with this process's warnings quieted; ``client``: a Client, None, or a ``Future`` of one (a
    cluster still starting: waited for after the search, the first stage that needs it)."""
    with warnings.catch_warnings():
        quiet_spurious_warnings()  # here too: the threaded scheduler (cluster.kind: none) runs tasks in this process
        return _run(cfg, client, progress, summary, previous, model, sample_only)


def _ready(cfg: PipelineConfig, client, progress: bool, summary: RunSummary) -> Runner:
    """The run's runner on its client (waited for if still starting), set up for the run: figures, quiet and tuned
    workers, no blocks left from another run."""
    if isinstance(client, Future):
        client = client.result()
    runner = Runner(client, progress)
    if client is not None:
        summary.figures["cluster"] = runner.describe()
        quiet_workers(client)
        if cfg.cluster.tune_malloc:
            tune_workers(client)
    drop_decoded_blocks(runner)  # a given cluster's workers may hold another run's blocks: counts start here
    return runner


@dataclass
class Prepared:
    """A run up to its training sample (:func:`_prepare`): what training and prediction start from."""

    plan: RunPlan
    runner: Runner
    feats: xr.DataArray | None
    lab: xr.Dataset | None
    smp: object
    X: np.ndarray | None
    windows: list | None
    model: object
    model_source: str | None
    clock: tuple[float, float, float]  # perf_counter, tree CPU seconds and wall time at the start


def _prepare(cfg: PipelineConfig, client, progress: bool, summary: RunSummary, previous: dict, model=None) -> Prepared:
    """The stages before training: search, cluster, scene filter, plan, features, labels and sample (with the
    sample's features when a model is to be trained). ``model``: a fitted model to apply (a tiled run's one
    model), else the saved one if any (:func:`lcup.stages.train.saved_model`)."""
    clock = (time.perf_counter(), tree_cpu_s(), time.time())
    profile = source_profile(cfg)
    with summary.stage("search"):
        geobox, items = find_items(cfg, profile)
        summary.figures.update(items=len(items), grid={"crs": str(geobox.crs), "shape": list(geobox.shape),
                                                       "resolution": cfg.aoi.resolution})
        if cfg.source.check_assets:
            items, summary.figures["skipped_assets"] = check_items(items, provider=profile, bands=cfg.load.bands,
                                                                   on_error=cfg.source.on_error, scl=cfg.clean.mask != "none")
        probe_inputs(cfg, geobox)  # the truth is needed at the end, the labels after the scene filter: probed now
    with summary.stage("cluster"):  # started beside the search: what is left of its start-up
        runner = _ready(cfg, client, progress, summary)
    with summary.stage("scene filter"):
        dates, info = reused_dates(previous, items) or scene_filter(
            items, geobox, provider=profile, clean=cfg.clean, chunk_px=cfg.load.chunk_px, on_error=cfg.source.on_error,
            compute=lambda a: runner.compute(a, "scene filter"), bands=cfg.load.bands, block_cache_mb=cfg.load.block_cache_mb)
        summary.figures.update(info)
    plan = make_plan(cfg, geobox, items, dates, profile=profile, cluster_memory=runner.memory,
                     clustered=runner.client is not None)
    model_source = "the area's model (one model for all tiles)" if model is not None else None
    if model is None:
        model, model_source = saved_model(plan)
    summary.figures.update(digest=plan.digest["digest"], n_features=len(plan.names), graph_per_tile=plan.tiled,
                           features_persisted=plan.persist and not plan.tiled and runner.client is not None)
    with summary.stage("clean+features (graph)"):  # on the per-tile path this happens tile by tile, later
        feats = aoi_features(plan, runner)
    lab, smp, X, windows = _sample(plan, feats, runner, summary, need_features=model is None, previous=previous)
    return Prepared(plan, runner, feats, lab, smp, X, windows, model, model_source, clock)


def _run(cfg: PipelineConfig, client, progress: bool, summary: RunSummary, previous: dict, model=None,
         sample_only: bool = False):
    """The stages of :func:`run_pipeline`, on ``client`` (None: the threaded scheduler); ``previous``: the figures
    of the interrupted run this one resumes (its kept dates, label figures and sample are reused), or ``{}``.
    ``sample_only``: stop after the training sample and return the :class:`Prepared` run (a tiled run pools the
    tiles' samples into one model)."""
    p = _prepare(cfg, client, progress, summary, previous, model=model)
    plan, runner, model, lab = p.plan, p.runner, p.model, p.lab
    (t_start, cpu_start, wall_start), profile = p.clock, plan.profile
    if sample_only:
        summary.status = "sampled"
        summary.save(plan.out)
        return p
    with summary.stage("train"):
        if model is None:
            model, figures = fit(plan, p.X, p.smp, lab, windows=p.windows, progress=progress)
            summary.figures.update(figures)
        else:
            summary.figures["model"] = {"resumed_from" if cfg.model.path is None else "applied": p.model_source}
            log.info("  using the saved model %s", p.model_source)
    with summary.stage("predict+write"):
        result, figures, outputs, tile_entries = predict_and_write(plan, model, lab, p.feats, runner, summary.parameters)
        summary.figures.update(figures)
        summary.outputs.update(outputs)
    # what the reads met, named before the map's gaps are (their cause, if any)
    summary.figures.update(unreadable_reads=unreadable_reads(runner, wall_start, plan.items, profile),
                           non_finite_pixels=non_finite_pixels(runner, wall_start, plan.items, profile))
    with summary.stage("score"):
        summary.figures.update(score_run(plan, result, lab, runner))
        if lab is not None and cfg.output.cog:  # where the coarse map is wrong, per coarse cell
            audit = write_audit(plan, result, lab, plan.out / "coarse_audit.tif")
            if audit is not None:
                summary.figures["coarse_audit"] = audit
                summary.outputs["coarse_audit"] = audit["path"]
    _finish(plan, summary, runner, t_start, cpu_start, tile_entries)
    if cfg.output.report:
        summary.outputs["report"] = str(_report(plan, summary, result, lab, runner))
        summary.save(plan.out)
    return summary


def _sample(plan: RunPlan, feats, runner: Runner, summary: RunSummary, need_features: bool, previous: dict):
    """The coarse labels on the grid, the training sample drawn from them and its features (when a model is to be
    trained): ``(lab, smp, X, windows)`` (the network's training windows with ``model.kind: fcn``), all None without
    labels (``model.path`` alone). With a saved model and an interrupted run's figures (``previous``), the labels
    stay lazy (the prior and the scores read them later) and no sample is drawn."""
    cfg = plan.cfg
    if cfg.labels is None:
        return None, None, None, None
    if not need_features and "labels" in previous and "samples" in previous:
        with summary.stage("labels"):
            lab = labels(plan.geobox, cfg.labels, chunk_px=cfg.load.chunk_px, figures=previous["labels"],
                         inside=inside_mask(plan.area, plan.geobox, cfg.load.chunk_px))
            summary.figures.update(labels=lab.attrs["figures"], samples=previous["samples"])
            log.info("  label figures and sample reused from the interrupted run (the model is saved)")
        return lab, None, None, None
    with summary.stage("labels"):
        lab = labels(plan.geobox, cfg.labels, chunk_px=cfg.load.chunk_px, inside=inside_mask(plan.area, plan.geobox, cfg.load.chunk_px),
                     compute=lambda a: runner.compute(a, "label statistics"))
        summary.figures["labels"] = lab.attrs["figures"]
        # positions first, drawn chunk by chunk (per-chunk seeds), then only their features are gathered;
        # the draw depends on the labels and the seed only, never on the path or the cluster
        smp = sample(lab, cfg.labels, cell_origin=lab.attrs["cell_origin_px"],
                     compute=lambda a: runner.compute(a, "sample"))
        X, windows = None, None
        if need_features:  # a saved model (this run's, same digest, or model.path) needs no features
            in_flight = tiles_in_flight(cfg, runner.threads, runner.client is not None)
            X = sample_features(plan, smp, feats, runner, in_flight=in_flight)
            if cfg.model.kind == "fcn":  # a network learns from windows of the cube, not from pixels alone
                windows = training_windows(plan, smp, lab, runner)
        summary.figures["samples"] = sample_figures(smp, chunk_px=cfg.load.chunk_px, resolution_m=cfg.aoi.resolution)
    return lab, smp, X, windows


def _finish(plan: RunPlan, summary: RunSummary, runner: Runner, t_start: float, cpu_start: float, tile_entries) -> None:
    """The run's last figures (block cache, total time and cores), its STAC outputs and ``summary.json``."""
    bc = summary.figures["block_cache"] = block_cache_figures(runner)
    if bc["hit_rate"] is not None:
        log.info("  decoded COG blocks: %d read, %.0f %% of block reads served again (at most %.0f of %.0f MiB held)%s",
                 bc["misses"], 100 * bc["hit_rate"], bc["peak_mb"], bc["size_mb"],
                 "; a larger load.block_cache_mb or a smaller output.tile_px would decode less"
                 if bc["peak_mb"] >= 0.99 * bc["size_mb"] and bc["hit_rate"] < 0.5 else "")
    summary.timings["total"] = round(time.perf_counter() - t_start, 3)
    summary.figures.setdefault("cores_used", {})["total"] = round((tree_cpu_s() - cpu_start) / summary.timings["total"], 2)
    summary.outputs["summary"] = str(plan.out / "summary.json")
    if plan.cfg.output.stac_item:
        summary.outputs.update(write_stac(plan, summary.outputs, tile_entries))
    summary.status = "done"
    summary.save(plan.out)


#: Longest side of the quicklooks in report.html, pixels.
QUICKLOOK_PX = 800


def _report(plan: RunPlan, summary: RunSummary, result: xr.Dataset, lab, runner: Runner) -> Path:
    """``report.html`` from the summary and decimated quicklooks of the map and the coarse map (a few hundred px)."""
    step = max(1, -(-max(plan.geobox.shape) // QUICKLOOK_PX))
    arrays = [result["class"].data[::step, ::step]]
    if lab is not None:
        to_code = plan.to_code
        arrays.append(lab["label"].data[::step, ::step].map_blocks(lambda b: to_code[b], dtype=to_code.dtype))
    looks = runner.compute(arrays, "quicklooks", progress=False)
    audit = None
    if "coarse_audit" in summary.outputs:  # a coarse-cell raster: small, read whole
        with rasterio.open(summary.outputs["coarse_audit"]) as src:
            k = max(1, -(-max(src.height, src.width) // QUICKLOOK_PX))
            audit = src.read(1, out_shape=(-(-src.height // k), -(-src.width // k)))
    return write_report(plan.out / "report.html", json.loads(summary.to_json()), plan.target, class_map=looks[0],
                        coarse_map=looks[1] if lab is not None else None, pixel_ha=plan.pixel_ha, audit=audit)


def run_years(cfg: PipelineConfig, *, client=None, progress: bool = True) -> RunSummary:
    """A map per year of ``cfg.years`` on one grid, then the change between them.

    The first year trains the model (on the coarse map, which describes one year: the first) and is scored
    against the truth if given; later years apply that model (``model.path``), so a change between maps is a
    change in the imagery, not in the model. Each year is a whole run in ``<output.dir>/<year>/`` (resumable,
    with its own summary and report); the change outputs of :func:`lcup.stages.change.change` go to
    ``<output.dir>/change/``. Returns a summary of the whole, also written to ``<output.dir>/summary.json``.
    """
    if client is None and cfg.cluster.kind != "none":
        with cluster_client(cfg.cluster) as c:
            return run_years(cfg, client=c, progress=progress)
    for y in cfg.years:  # every year's imagery found before the first map: a year without any fails in seconds
        find_items(cfg.for_year(y))
    t0, out = time.perf_counter(), Path(cfg.output.dir)
    whole = RunSummary(cfg.name, parameters=json.loads(cfg.model_dump_json()))
    whole.figures["years"] = {}
    model_path = None
    for y in cfg.years:
        log.info("══ year %d ══", y)
        s = run_pipeline(cfg.for_year(y, model_path=model_path), client=client, progress=progress)
        model_path = model_path or str(model_file(out / str(y)))
        whole.figures["years"][y] = {k: s.figures[k] for k in ("predicted_class_px", "consistency", "validation", "truth")
                                     if k in s.figures} | {"summary": s.outputs["summary"]}
        whole.timings[str(y)] = s.timings.get("total")
        if y == cfg.years[0]:
            whole.figures.update({k: s.figures[k] for k in ("validation", "truth", "consistency") if k in s.figures})
    labels_y = [str(y) for y in cfg.years]
    maps = [resolve_map(out / y) for y in labels_y]  # a year's class map, or its mosaic for a Sentinel-2-tiled area
    stores = [out / y / "landcover.zarr" for y in labels_y]
    compute = (lambda *lazy: tuple(client.compute(list(lazy), sync=True))) if client is not None else None
    truths = ([cfg.truth.path.replace("{year}", y) for y in labels_y] if cfg.truth is not None and "{year}" in cfg.truth.path
              else None)
    if cfg.years_smoothing != "none" and (cfg.output.probabilities == "none" or not all(z.exists() for z in stores)):
        warnings.warn("years_smoothing needs each year's class probabilities on one grid (output.probabilities: uint8 or "
                      "float16; a Sentinel-2-tiled area has them per tile only): the years are compared unsmoothed",
                      LcupWarning, stacklevel=2)
    elif cfg.years_smoothing == "hmm" or cfg.years_smoothing == "flicker" and len(cfg.years) > 2:  # a flicker needs 3 years
        with whole.stage("years smoothing"):
            raw = maps
            maps = smooth_years(stores, out / "change" / "smoothed", labels=labels_y,
                                legend=get_legend(cfg.target_legend()), cost=cfg.years_change_cost, method=cfg.years_smoothing)
            whole.figures["years_smoothing"] = {"method": cfg.years_smoothing, "change_cost": cfg.years_change_cost,
                                                "maps": [str(p) for p in maps], **_smoothing_figures(raw, maps, cfg, compute)}
            whole.outputs["smoothed_maps"] = str(out / "change" / "smoothed")
    with whole.stage("change"):
        res = change(maps, out / "change", labels=labels_y, chunk_px=cfg.load.chunk_px, compute=compute, overwrite=True)
        if truths is not None:
            whole.figures["change_accuracy"] = change_accuracy(maps, truths, labels=labels_y, chunk_px=cfg.load.chunk_px,
                                                               seed=cfg.model.seed, compute=compute)
            if "years_smoothing" in whole.figures:  # the yearly maps as they were: what the smoothing changed
                whole.figures["change_accuracy_unsmoothed"] = change_accuracy(
                    raw, truths, labels=labels_y, chunk_px=cfg.load.chunk_px, seed=cfg.model.seed, compute=compute)
            for a in whole.figures["change_accuracy"]:
                log.info("  change %s → %s against the truths: producer's accuracy %.2f, user's %.2f; area of change %.1f ± "
                         "%.1f ha (census %.1f ha)", a["from"], a["to"], a["change"]["producer_accuracy"] or 0,
                         a["change"]["user_accuracy"] or 0, a["area_of_change_ha"]["estimate"] or 0,
                         a["area_of_change_ha"]["ci"] or 0, a["area_of_change_ha"]["census"] or 0)
    whole.figures["change"] = {"pairs": [{k: p[k] for k in ("from", "to", "hectares")} for p in res["pairs"]],
                               **({"temporal_consistency": res["temporal_consistency"]} if "temporal_consistency" in res else {})}
    for p in res["pairs"]:
        log.info("  %s → %s: %.1f %% of the mapped area changed", p["from"], p["to"], 100 * (p["hectares"]["share_changed"] or 0))
    whole.outputs.update({"change": str(out / "change"), **{f"map_{y}": str(out / str(y)) for y in cfg.years},
                          "summary": str(out / "summary.json")})
    whole.timings["total"] = round(time.perf_counter() - t0, 3)
    whole.status = "done"
    whole.save(out)
    return whole


def run_tiles(cfg: PipelineConfig, tiles: list, *, client=None, progress: bool = True) -> RunSummary:
    """A run cut into Sentinel-2 tiles (:func:`lcup.stages.area.s2_tiles`): each tile on its own UTM grid, one model
    for the area, one mosaic.

    1. **One sample**: each tile is searched, filtered and labelled on its own grid and draws its share of the
       training sample (its part of the area); the samples are pooled and one model is trained
       (:func:`lcup.stages.train.fit_pooled`), saved as ``<output.dir>/model.skops``.
    2. **Every tile** is predicted and written with that model in ``<output.dir>/tiles/<id>/`` (a whole run there:
       Zarr store, COGs, item, summary; resumable), one after the other, each spreading its chunks over the
       cluster; a tile that fails is tried again (``output.tile_retries``), then reported while the others go on.
    3. **One product**: ``mosaic.tif`` in ``output.mosaic_crs`` (:func:`lcup.stages.mosaic.mosaic`, the overlap rule
       of that module), ``tiles_<EPSG>.vrt`` per UTM zone, ``collection.json`` (a STAC Collection, an item per tile),
       class areas counted once on the tiles' own grids, and how far overlapping tiles agree.

    ``--resume`` reuses the saved model and each tile's finished work. Returns the whole run's summary (also
    ``<output.dir>/summary.json``); ``figures["tiles"]`` has each tile's figures or error.
    """
    if client is None and cfg.cluster.kind != "none":
        with cluster_client(cfg.cluster) as c:
            return run_tiles(cfg, tiles, client=c, progress=progress)
    out = Path(cfg.output.dir)
    prepare_output_dir(out, overwrite=cfg.output.overwrite, resume=cfg.output.resume, outputs=("mosaic.tif", "collection.json"))
    t0 = time.perf_counter()
    whole = RunSummary.of(cfg)
    area = area_lonlat(cfg.aoi)
    shares = tile_share(tiles, area)
    tiles = [t for t in tiles if shares[t.id] > 0]
    cfgs = {t.id: tile_config(cfg, t, share=shares[t.id], out_dir=str(out / "tiles" / t.id)) for t in tiles}
    whole.figures["s2_tiles"] = {t.id: {"crs": t.crs, "share_of_area": round(shares[t.id], 4)} for t in tiles}
    log.info("%d Sentinel-2 tiles, each on its own grid: %s", len(tiles), ", ".join(f"{t.id} ({t.crs})" for t in tiles))
    with output_lock(out):
        whole.autosave(out)
        try:
            failed: dict[str, str] = {}
            model = _area_model(cfg, cfgs, out, client, progress, whole, failed)
            done = _tiles_with(model, cfg, cfgs, client, progress, whole, failed)
            if not done:
                raise NoValidDataError(f"no tile of the area could be mapped: {failed}")
            with whole.stage("mosaic"):
                whole.figures.update(_product(cfg, done, area, out, whole))
        except BaseException as e:
            clear = whole.failed(e, out)
            if clear is not None:
                raise clear from None
            raise
    whole.timings["total"] = round(time.perf_counter() - t0, 3)
    whole.status = "done" if not failed else "done with failed tiles"
    whole.save(out)
    return whole


def _with_retries(fn, tid: str, retries: int, what: str):
    """``fn()`` tried ``1 + retries`` times: ``(result, None)``, or ``(None, error text)`` after the last failure."""
    err = None
    for attempt in range(retries + 1):
        try:
            return fn(attempt), None
        except Exception as e:  # any failure of one tile (a worker's error may come back re-wrapped): retried, then reported
            err = f"{type(e).__name__}: {e}"
            log.warning("tile %s failed (%s, try %d of %d): %s", tid, what, attempt + 1, retries + 1, e)
    return None, err


def _area_model(cfg: PipelineConfig, cfgs: dict, out: Path, client, progress: bool, whole: RunSummary, failed: dict):
    """The tiled run's one model: ``model.path``'s (None here: each tile loads and checks it), one saved by an
    interrupted run (``--resume``), or one trained on the tiles' pooled samples; tiles whose sampling fails (after
    their retries) go into ``failed`` and are left out."""
    if cfg.model.path is not None:  # a saved model: each tile's run loads and checks it (lcup.stages.train.saved_model)
        return None
    saved = model_file(out)
    if cfg.output.resume and saved is not None:
        log.info("  using the area's model saved by the interrupted run: %s", saved)
        return load_model(saved)[0]
    parts = []
    with whole.stage("sample"):
        for k, (tid, c) in enumerate(cfgs.items(), 1):
            log.info("══ tile %s (%d/%d): training sample ══", tid, k, len(cfgs))
            fresh = c.model_copy(update={"output": c.output.model_copy(update={"overwrite": True, "resume": False})})
            p, err = _with_retries(lambda _: run_pipeline(fresh, client=client, progress=progress, sample_only=True), tid,
                                   cfg.output.tile_retries, "training sample")
            if err is not None:
                failed[tid] = err
                continue
            parts.append((p.plan, p.smp, p.X, p.lab, p.windows))
    if not parts:
        raise NoValidDataError(f"no tile of the area could be sampled: {failed}")
    with whole.stage("train"):
        first = parts[0][0]
        out_plan = dataclasses.replace(first, cfg=first.cfg.model_copy(update={"output": cfg.output}))
        model, figures = fit_pooled(parts, out_plan, progress=progress)
        whole.figures.update({k: v for k, v in figures.items() if k in ("model", "validation", "refinement", "importance")})
    return model


def _tiles_with(model, cfg: PipelineConfig, cfgs: dict, client, progress: bool, whole: RunSummary, failed: dict) -> dict:
    """Predict and write every tile not in ``failed`` with ``model``; ``{tile id: summary}`` of those done (the
    others, after their retries, go into ``failed``)."""
    done = {}
    whole.figures["tiles"] = {}
    with whole.stage("tiles"):
        for k, (tid, c) in enumerate(cfgs.items(), 1):
            if tid not in failed:
                previous = (RunSummary.load(Path(c.output.dir) / "summary.json") or RunSummary(c.name)).figures

                def attempt(n, c=c, tid=tid, previous=previous):
                    log.info("══ tile %s (%d/%d): map%s ══", tid, k, len(cfgs), f", try {n + 1}" if n else "")
                    resume = cfg.output.resume or n > 0
                    ci = c.model_copy(update={"output": c.output.model_copy(update={"resume": resume, "overwrite": not resume})})
                    return run_pipeline(ci, client=client, progress=progress, model=model, previous=previous)

                s, err = _with_retries(attempt, tid, cfg.output.tile_retries, "map")
                if err is None:
                    done[tid] = s
                else:
                    failed[tid] = err
            whole.figures["tiles"][tid] = ({"error": failed[tid]} if tid in failed else
                                           {k2: done[tid].figures.get(k2) for k2 in ("predicted_class_px", "nodata_px", "area_px", "consistency")}
                                           | {"truth_oa": ((done[tid].figures.get("truth") or {}).get("prediction_10m") or {}).get("overall_accuracy")})
            whole.autosave(Path(cfg.output.dir))
    if failed:
        warnings.warn(f"{len(failed)} of {len(cfgs)} tiles failed and are not in the mosaic: "
                      + "; ".join(f"{t}: {e}" for t, e in failed.items()) + "; fix the cause and run again with --resume",
                      TileFailedWarning, stacklevel=3)
    return done


def _product(cfg: PipelineConfig, done: dict, area, out: Path, whole: RunSummary) -> dict:
    """The tiled run's mosaic, VRTs, collection and figures (areas counted once, overlap agreement)."""
    legend = get_legend(cfg.target_legend())
    maps = tile_maps({tid: s.outputs["cog"] for tid, s in done.items()})
    crs = cfg.output.mosaic_crs if cfg.output.mosaic_crs != "auto" else default_mosaic_crs(area)
    res = cfg.output.mosaic_resolution or cfg.aoi.resolution
    path, gb = mosaic(maps, area, out / "mosaic.tif", crs=crs, resolution_m=res, legend=legend, chunk_px=max(1024, cfg.load.chunk_px * 2))
    vrts = zone_vrts(maps, out)
    agree = overlap_agreement(maps, gb, chunk_px=max(1024, cfg.load.chunk_px * 2))
    tiles_ha = tile_areas(maps, legend, chunk_px=max(1024, cfg.load.chunk_px * 2))
    mosaic_ha = mosaic_areas(path, legend, chunk_px=max(1024, cfg.load.chunk_px * 2))
    entries = []
    for tm in maps:
        s = done[tm.id]
        rel = {k: os.path.relpath(s.outputs[k2], out) for k, k2 in (("cog", "cog"), ("confidence", "confidence_cog"), ("zarr", "zarr"))
               if k2 in s.outputs}
        entries.append({"tile": tm.id, "geobox": tm.geobox, "assets": rel})
    assets = {"mosaic": "mosaic.tif", **{p.stem: p.name for p in vrts}}
    if model_file(out) is not None:
        assets["model"] = model_file(out).name
    coll = write_collection(out, collection_id=f"lcup-{cfg.name}", tiles=entries, legend=legend, start=cfg.period[0],
                            end=cfg.period[1], assets=assets)
    whole.outputs.update(mosaic=str(path), collection=str(coll), vrts=[str(p) for p in vrts], summary=str(out / "summary.json"))
    total_t, total_m = sum(tiles_ha.values()), sum(mosaic_ha.values())
    log.info("  mosaic %s (%s, %g m): %.1f ha mapped; the tiles' own grids: %.1f ha (%+.3f %%); overlapping tiles agree on "
             "%s of %d px", path.name, crs, res, total_m, total_t, 100 * (total_m / total_t - 1) if total_t else 0.0,
             f"{100 * agree['agreement']:.1f} %" if agree["agreement"] is not None else "-", agree["overlap_px"])
    return {"mosaic": {"crs": crs, "resolution": res, "shape": list(gb.shape)}, "class_ha_tiles": tiles_ha,
            "class_ha_mosaic": mosaic_ha, "overlap": agree}


def _smoothing_figures(raw: list, smoothed: list, cfg: PipelineConfig, compute) -> dict:
    """Flip-back and change shares of the yearly maps before and after the smoothing (3 years or more)."""
    if len(raw) < 3:
        return {}
    compute = compute or dask.compute
    a, _, _ = open_maps(raw, chunk_px=cfg.load.chunk_px)
    b, _, _ = open_maps(smoothed, chunk_px=cfg.load.chunk_px)
    before, after = compute(temporal_consistency(a), temporal_consistency(b))
    fig = {k: {"flip_back_share": float(v[2] / v[0]) if v[0] else None, "changed_share": float(v[1] / v[0]) if v[0] else None}
           for k, v in (("before", before), ("after", after))}
    log.info("  years smoothed (%s, change cost %g): pixels that change and change back %.2f %% → %.2f %%",
             cfg.years_smoothing, cfg.years_change_cost, 100 * (fig["before"]["flip_back_share"] or 0), 100 * (fig["after"]["flip_back_share"] or 0))
    return fig


def plan(cfg: PipelineConfig) -> str:
    """Dry run: search the catalog and describe the work (grid, tiles, chunks, memory per task) without loading
    pixels (:func:`lcup.stages.plan.describe` of the plan over every date found)."""
    tiles = s2_tiles(cfg)
    if tiles is None:
        geobox, items = find_items(cfg)
        return describe(make_plan(cfg, geobox, items, dates_of(items)))
    shares = tile_share(tiles, area_lonlat(cfg.aoi))
    parts = [f"{len(tiles)} Sentinel-2 tile{'s' if len(tiles) > 1 else ''}, each on its own UTM grid, one model, one mosaic "
             f"({cfg.output.mosaic_crs if cfg.output.mosaic_crs != 'auto' else default_mosaic_crs(area_lonlat(cfg.aoi))}):"]
    for t in tiles:
        c = tile_config(cfg, t, share=shares[t.id], out_dir=str(Path(cfg.output.dir) / "tiles" / t.id))
        geobox, items = find_items(c)
        parts.append(f"── tile {t.id} ({t.crs}, {100 * shares[t.id]:.0f} % of the area) ──")
        parts.append(describe(make_plan(c, geobox, items, dates_of(items))))
    return "\n".join(parts)
