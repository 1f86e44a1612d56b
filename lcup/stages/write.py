"""Stage: write a map (from :func:`lcup.stages.predict.predict`) as Zarr and COGs, and the run's STAC outputs.

:func:`write` is the one-call version for a notebook; :func:`predict_and_write` is the run's: the plan's map
predicted and written tile by tile (resumable), then the COGs, the tiles' COGs and the STAC Item and catalog.
"""

from __future__ import annotations

import json
import logging
import warnings
from functools import partial
from pathlib import Path

import dask.array as da
import numpy as np
import odc.geo.xr  # noqa: F401 - the .odc accessor
import xarray as xr

from .. import __version__
from ..cluster import Runner
from ..errors import OutputExistsError
from ..io.models import model_file
from ..io.rundir import jsonable, relative_paths
from ..io.write import cf_axes, write_cog_from_dask, write_output_item, write_tile_catalog, write_tiles_zarr
from ..legends import Legend
from .area import chunk_touches, inside_mask
from .plan import RunPlan, context_px, tiles_in_flight
from .predict import NODATA_PERCENT, coarse_prior_array, nodata_of, output_dataset, predict, probability_percent
from .tiles import tile_features

log = logging.getLogger("lcup")


def write(ds: xr.Dataset, folder: str | Path, *, legend: Legend, geobox=None, zarr: bool = True, cog: bool = True,
          overwrite: bool = False) -> dict[str, Path]:
    """Compute and write ``ds`` into ``folder``: ``landcover.zarr`` (Zarr v3) and ``landcover_class.tif`` (a COG).

    Chunk by chunk: the map is never held whole in memory, and computed once (the COG is written from the Zarr
    store when both are asked for). The pipeline writes tile by tile instead
    (:func:`lcup.io.write.write_tiles_zarr`), resumable; this is the one-call version for a notebook.

    Returns
    -------
    dict
        ``{"zarr": path, "cog": path}`` of what was written.

    Raises
    ------
    OutputExistsError
        If an output exists and ``overwrite`` is False.

    Examples
    --------
    >>> lcup.write(out, "my-map", legend=get_legend("lcup7"))  # doctest: +SKIP
    """
    folder = Path(folder)
    for name, wanted in (("landcover.zarr", zarr), ("landcover_class.tif", cog)):  # refused before anything is computed
        if wanted and (folder / name).exists() and not overwrite:
            raise OutputExistsError(f"{folder / name} exists; pass overwrite=True or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    geobox = ds.odc.geobox if geobox is None else geobox
    if zarr:
        p = folder / "landcover.zarr"
        enc = {v: {"_FillValue": nodata_of(ds[v])} for v in ds.data_vars}
        with warnings.catch_warnings():  # consolidated metadata is not in the Zarr v3 spec: chosen, so opening is quiet
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            cf_axes(ds.drop_attrs(deep=False)).to_zarr(p, mode="w", encoding=enc, consolidated=True, zarr_format=3)
        paths["zarr"] = p
        ds = xr.open_zarr(p, mask_and_scale=False)  # the COG reads the written map: the prediction is computed once
    if cog:
        p = folder / "landcover_class.tif"
        write_cog_from_dask(ds["class"], p, geobox, nodata=0, legend=legend)
        paths["cog"] = p
    return paths


def predict_and_write(plan: RunPlan, model, lab: xr.Dataset | None, feats: xr.DataArray | None, runner: Runner,
                      parameters: dict) -> tuple[xr.Dataset, dict, dict, list[dict]]:
    """Predict the plan's map with ``model`` and write it: the Zarr store tile by tile (resumable), the COGs, and
    on a tiled grid the tiles' COGs.

    One predict path for both modes: the AOI's features ``feats`` when the plan keeps them, else each tile's own
    graph (:func:`lcup.stages.tiles.tile_features`), predicted with the same settings and the coarse-map prior of
    ``lab`` (None: no labels, the model alone). ``parameters`` go into the store's attributes.

    Returns
    -------
    result, figures, outputs, tile_entries
        The written store opened lazily (codes, no masking), figures (``tiles``, ``coarse_prior``), output paths
        by key, and the tiles' catalog entries (empty for one tile).
    """
    cfg, geobox, figures = plan.cfg, plan.geobox, {}
    classes = list(model.classes_)
    prior, strength = None, cfg.model.coarse_prior if lab is not None else 0.0
    if strength > 0:  # the coarse map as evidence beside the model (lcup.ops.fusion)
        window = max(1, int(round(cfg.model.coarse_prior_cells * lab.attrs["figures"]["coarse_cell_px"])))
        prior = coarse_prior_array(lab["label"].data, classes, window)
        figures["coarse_prior"] = {"strength": strength, "window_px": window}
    run_predict = partial(predict, runner.share(model), legend=plan.target, output=cfg.output, classes=classes,
                          smooth_px=cfg.model.smooth_px, halo=plan.ring, chunk_px=cfg.load.chunk_px, context_px=context_px(cfg),
                          prior_strength=strength, segments=cfg.model.segments, segment_px=cfg.model.segment_px,
                          segment_mix=cfg.model.segment_mix)
    inside = inside_mask(plan.area, geobox, cfg.load.chunk_px)
    if plan.tiled:
        c = cfg.load.chunk_px
        ds = output_dataset(da.zeros((2 + len(classes), *geobox.shape), chunks=((2 + len(classes),), c, c), dtype=np.float32),
                            classes, geobox, plan.target, cfg.output)  # the store's template: never computed

        def tile_data(tid, ys, xs):
            if not chunk_touches(plan.area, geobox[ys, xs]):  # wholly outside the area: never read, predicted or written
                return None
            ft = tile_features(plan, ys, xs)
            if ft is None:
                return None
            part = run_predict(ft, geobox=geobox[ys, xs], prior=None if prior is None else prior[:, ys, xs])
            return part if inside is None else outside_as_nodata(part, inside[ys, xs])
    else:
        ds, tile_data = run_predict(feats, geobox=geobox, prior=prior), None
        ds = ds if inside is None else outside_as_nodata(ds, inside)
    figures["tiles"] = _write_store(plan, ds, tile_data, runner, parameters)
    result = xr.open_zarr(plan.zarr_path, mask_and_scale=False, consolidated=False)
    outputs = {"zarr": str(plan.zarr_path), **(write_cogs(plan, result) if cfg.output.cog else {})}
    entries = []
    if len(plan.tiles) > 1 and (cfg.output.tile_cogs or cfg.output.stac_item):
        entries = write_tile_outputs(plan, result)
        figures["tiles"]["without_valid_data"] = [t["tile"] for t in entries if t["valid_px"] == 0]
    return result, figures, outputs, entries


def outside_as_nodata(ds: xr.Dataset, inside: da.Array) -> xr.Dataset:
    """``ds`` with every variable's no-data value (:func:`lcup.stages.predict.nodata_of`) outside the area
    (``inside``: ``(y, x)`` bool)."""
    keep = xr.DataArray(inside, dims=("y", "x"))
    out = ds.copy()
    for v in ds.data_vars:
        out[v] = xr.where(keep, ds[v], nodata_of(ds[v]), keep_attrs=True).astype(ds[v].dtype).transpose(*ds[v].dims)
    return out


def _write_store(plan: RunPlan, ds: xr.Dataset, tile_data, runner: Runner, parameters: dict) -> dict:
    """``ds`` (or ``tile_data``'s tiles) into the Zarr store, tile by tile; the figures of the tiles written."""
    cfg, geobox = plan.cfg, plan.geobox
    attrs = {"lcup_version": __version__, "legend": plan.target.to_dict(), "items": [i.id for i in plan.items],
             "transform": list(geobox.transform)[:6], "crs": str(geobox.crs), "seed": cfg.model.seed,
             "parameters": relative_paths(parameters, plan.out), "lcup_digest": plan.digest}
    in_flight = min(len(plan.tiles), tiles_in_flight(cfg, runner.threads, runner.client is not None))
    written, skipped = write_tiles_zarr(
        ds, plan.zarr_path, tile_px=plan.tile_px, attrs=json.loads(json.dumps(attrs, default=jsonable)),
        overwrite=cfg.output.overwrite, resume=cfg.output.resume, compute=runner.compute, tile_data=tile_data,
        submit=runner.submitter(), in_flight=in_flight,
        on_done=lambda tid, n, total: log.info("  tile %s written (%d/%d)", tid, n, total), zarr_format=cfg.output.zarr_format,
        nodata={v: nodata_of(ds[v]) for v in ds.data_vars})
    return {"written": written, "skipped_already_done": skipped, "tile_px": plan.tile_px, "in_flight": in_flight}


def write_cogs(plan: RunPlan, result: xr.Dataset) -> dict[str, str]:
    """The class and confidence COGs (and with ``output.probability_cog`` the probability COG) of the written
    store ``result``, chunk by chunk; their paths by output key."""
    out, geobox, outputs = plan.out, plan.geobox, {}
    write_cog_from_dask(result["class"], out / "landcover_class.tif", geobox, nodata=0, legend=plan.target,
                        band_names=["land cover class"])
    outputs["cog"] = str(out / "landcover_class.tif")
    write_cog_from_dask(result["confidence"], out / "landcover_confidence.tif", geobox, nodata=NODATA_PERCENT,
                        overview_resampling="average", band_names=["confidence (%): probability of the mapped class"])
    outputs["confidence_cog"] = str(out / "landcover_confidence.tif")
    if plan.cfg.output.probability_cog:
        names = plan.target.names()
        write_cog_from_dask(probability_percent(result), out / "landcover_probability.tif", geobox, nodata=255,
                            overview_resampling="average", band_names=[f"{names[int(c)]} (%)" for c in result["class_code"].values])
        outputs["probability_cog"] = str(out / "landcover_probability.tif")
    return outputs


def write_tile_outputs(plan: RunPlan, result: xr.Dataset) -> list[dict]:
    """Per-tile class COGs (``tiles/<id>/landcover_class.tif``, with ``output.tile_cogs``) and the entries of the
    tile catalog."""
    cfg, out, entries = plan.cfg, plan.out, []
    for tid, ys, xs in plan.tiles:
        cls = result["class"].isel(y=ys, x=xs).load()  # one tile of uint8: bounded; read once for count and COG
        n_valid = int(np.count_nonzero(cls.values))
        if n_valid == 0:
            log.warning("tile %s has no pixel with a valid observation: written as nodata (0)", tid)
        assets = {"zarr": "landcover.zarr"}
        if cfg.output.tile_cogs:
            rel = Path("tiles") / tid / "landcover_class.tif"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            write_cog_from_dask(cls, out / rel, plan.geobox[ys, xs], nodata=0, legend=plan.target)
            assets["cog"] = str(rel)
        entries.append({"id": f"lcup-{cfg.name}-{tid}", "tile": tid, "geobox": plan.geobox[ys, xs], "assets": assets,
                        "region": {"y": [ys.start, ys.stop], "x": [xs.start, xs.stop]}, "valid_px": n_valid})
    return entries


def write_stac(plan: RunPlan, outputs: dict[str, str], tile_entries: list[dict]) -> dict[str, str]:
    """The run's STAC Item (``item.json``: its outputs as assets, ``derived_from`` the source items) and, for a
    tiled grid, the tile catalog (``catalog.json``); their paths by output key."""
    cfg, out = plan.cfg, plan.out
    assets = {k: str(Path(v).relative_to(out)) for k, v in outputs.items() if k in ("zarr", "cog", "summary")}
    if "cog" in assets:  # the class COG's side-cars (colour table with transparency, class names, QGIS style)
        cog = Path(outputs["cog"])
        assets.update({k: p.name for k, p in (("cog_aux", cog.with_name(cog.name + ".aux.xml")), ("cog_qml", cog.with_suffix(".qml")))
                       if p.exists()})
    for key in ("confidence", "probability"):
        if f"{key}_cog" in outputs:
            assets[key] = str(Path(outputs[f"{key}_cog"]).relative_to(out))
    saved = model_file(out)
    if saved is not None:
        assets["model"] = saved.name
    written = {"stac_item": str(write_output_item(
        out, item_id=f"lcup-{cfg.name}", geobox=plan.geobox, legend=plan.target, start=cfg.period[0], end=cfg.period[1],
        assets=assets, properties={"lcup:version": __version__, "lcup:source_items": len(plan.items)},
        derived_from=[h for h in (it.get_self_href() for it in plan.items) if h]))}
    if len(plan.tiles) > 1:
        written["catalog"] = str(write_tile_catalog(
            out, catalog_id=f"lcup-{cfg.name}", tiles=tile_entries, legend=plan.target, start=cfg.period[0],
            end=cfg.period[1], description=f"lcup run {cfg.name!r}: {len(plan.tiles)} tiles of {plan.tile_px} px"))
    return written
