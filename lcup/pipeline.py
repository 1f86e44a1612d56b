"""The lcup pipeline as a recipe of named stages: search → scene filter → plan → features → labels and sample →
fit (or a saved model) → predict and write → score → STAC outputs → report. Each stage is one call into
:mod:`lcup.stages`; the CLI is a thin layer over :func:`run_pipeline`.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from .cluster import Runner, cluster_client, quiet_spurious_warnings, quiet_workers, starting_cluster, tune_workers
from .io.rundir import RunSummary, output_lock, prepare_output_dir, relative_paths, tree_cpu_s
from .report import write_report
from .stages.area import inside_mask
from .stages.change import change
from .stages.labels import labels, sample, sample_figures
from .stages.load import block_cache_figures, drop_decoded_blocks, non_finite_pixels, reused_dates, scene_filter, unreadable_reads
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
from .stages.train import fit, model_file, saved_model
from .stages.write import predict_and_write, write_stac

if TYPE_CHECKING:
    from .config import PipelineConfig

__all__ = ["run_pipeline", "run_years", "plan", "find_items"]

log = logging.getLogger("lcup")

#: The modules a run's workers import while the run searches: what their tasks run (numpy, xarray, odc-stac,
#: rasterio, scikit-learn and lcup's kernels, through the stages).
WORKER_MODULES = ("lcup.stages.tiles", "lcup.stages.predict", "lcup.ops._kernels")


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
    if cfg.years:
        return run_years(cfg, client=client, progress=progress)
    out = Path(cfg.output.dir)
    prepare_output_dir(out, overwrite=cfg.output.overwrite, resume=cfg.output.resume,
                       outputs=("landcover.zarr", "landcover_class.tif"))
    summary, runner = RunSummary.of(cfg), Runner(client, progress)
    previous: dict = {}
    if cfg.output.resume:  # what can be compared before any work (the items and dates are, after the search)
        check_resume_settings(out / "landcover.zarr", relative_paths(summary.parameters, out))
        done = RunSummary.load(out / "summary.json")
        if done is not None and done.status == "done" and (out / "landcover.zarr").exists():
            log.info("%s: the run has finished already (summary.json): nothing left to do", out)
            done.figures["resumed"] = "nothing left to do"
            return done
        # an interrupted run of the same settings: what it found is reused, not computed again
        previous = done.figures if done is not None else {}
    with output_lock(out):
        summary.autosave(out)  # saved now and after every stage: a run killed outright leaves what it had done
        try:
            if client is None and cfg.cluster.kind != "none":
                # the cluster starts (processes spawned, lcup imported in the workers) while this process searches
                with starting_cluster(cfg.cluster, warm=WORKER_MODULES) as c:
                    return _run_quietly(cfg, c, progress, summary, previous)
            return _run_quietly(cfg, client, progress, summary, previous)
        except BaseException as e:
            clear = summary.failed(e, out)
            if clear is not None:
                raise clear from None
            raise
        finally:
            drop_decoded_blocks(runner)


def _run_quietly(cfg: PipelineConfig, client, progress: bool, summary: RunSummary, previous: dict) -> RunSummary:
    """:func:`_run` with this process's warnings quieted; ``client``: a Client, None, or a ``Future`` of one (a
    cluster still starting: waited for after the search, the first stage that needs it)."""
    with warnings.catch_warnings():
        quiet_spurious_warnings()  # here too: the threaded scheduler (cluster.kind: none) runs tasks in this process
        return _run(cfg, client, progress, summary, previous)


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


def _run(cfg: PipelineConfig, client, progress: bool, summary: RunSummary, previous: dict) -> RunSummary:
    """The stages of :func:`run_pipeline`, on ``client`` (None: the threaded scheduler); ``previous``: the figures
    of the interrupted run this one resumes (its kept dates, label figures and sample are reused), or ``{}``."""
    t_start, cpu_start, profile, wall_start = time.perf_counter(), tree_cpu_s(), source_profile(cfg), time.time()
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
    model, model_source = saved_model(plan)
    summary.figures.update(digest=plan.digest["digest"], n_features=len(plan.names), graph_per_tile=plan.tiled,
                           features_persisted=plan.persist and not plan.tiled and runner.client is not None)
    with summary.stage("clean+features (graph)"):  # on the per-tile path this happens tile by tile, later
        feats = aoi_features(plan, runner)
    lab, smp, X, windows = _sample(plan, feats, runner, summary, need_features=model is None, previous=previous)
    with summary.stage("train"):
        if model is None:
            model, figures = fit(plan, X, smp, lab, windows=windows, progress=progress)
            summary.figures.update(figures)
        else:
            summary.figures["model"] = {"resumed_from" if cfg.model.path is None else "applied": model_source}
            log.info("  using the saved model %s", model_source)
    with summary.stage("predict+write"):
        result, figures, outputs, tile_entries = predict_and_write(plan, model, lab, feats, runner, summary.parameters)
        summary.figures.update(figures)
        summary.outputs.update(outputs)
    # what the reads met, named before the map's gaps are (their cause, if any)
    summary.figures.update(unreadable_reads=unreadable_reads(runner, wall_start, plan.items, profile),
                           non_finite_pixels=non_finite_pixels(runner, wall_start, plan.items, profile))
    with summary.stage("score"):
        summary.figures.update(score_run(plan, result, lab, runner))
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
    return write_report(plan.out / "report.html", json.loads(summary.to_json()), plan.target, class_map=looks[0],
                        coarse_map=looks[1] if lab is not None else None, pixel_ha=plan.pixel_ha)


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
    with whole.stage("change"):
        compute = (lambda *lazy: tuple(client.compute(list(lazy), sync=True))) if client is not None else None
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
    whole.save(out)
    return whole


def plan(cfg: PipelineConfig) -> str:
    """Dry run: search the catalog and describe the work (grid, tiles, chunks, memory per task) without loading
    pixels (:func:`lcup.stages.plan.describe` of the plan over every date found)."""
    geobox, items = find_items(cfg)
    return describe(make_plan(cfg, geobox, items, dates_of(items)))
