"""Stage: the run plan, decided once from the settings, the items found and the dates kept.

A :class:`RunPlan` holds everything the later stages would otherwise derive again from the settings: the grid,
the items and dates, the resolved provider profile, the legends, the feature names, the tiling and whether the
features are kept in the cluster's memory, and the digest of what determines the map (checked on resume).
``lcup plan`` describes the same plan (:func:`describe`) without loading a pixel.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from odc.geo.crs import CRS

from ..config import PipelineConfig, fcn_context_px
from ..errors import EmptySearchError, GridError, OutputExistsError
from ..io.stac import item_code, item_tile, items_crs
from ..io.write import tile_slices
from ..legends import Legend, compact, get_legend
from ..ops.s2grid import tile as s2tile
from ..ops.temporal import regular_grid
from ..providers import BANDS, ProviderProfile, get_profile, with_probability_mask
from ..units import metres_to_px, segment_halo_px
from .area import aoi_extent, area_in
from .features import feature_names, neighbourhood_halo_px
from .labels import AUTO_SAMPLE_CHUNKS, label_halo_px
from .search import grid, native_origin, search

log = logging.getLogger("lcup")


@dataclass(frozen=True)
class RunPlan:
    """What a run will do, decided once (:func:`make_plan`); every stage after the scene filter reads it.

    Attributes
    ----------
    cfg
        The run's settings.
    geobox
        The output grid (``odc.geo.geobox.GeoBox``), ``(y, x)``.
    items, dates
        The Sentinel-2 items found and the acquisition dates the scene filter kept.
    profile
        The provider profile the run reads with (:func:`source_profile`).
    target, internal, to_code
        The output legend; the same classes as internal indices 1..k (what labels, samples and models use) and
        the codes of those indices (``to_code[i]``).
    names
        Feature names, in the model's order.
    tile_px, tiles
        Tile size (whole chunks) and the tiles ``(id, rows, columns)`` of the grid.
    ring
        Pixels of features computed beyond each tile for the probability smoothing and segments.
    persist, tiled
        Whether the AOI's features are kept in the cluster's memory, and whether each tile is a unit of work with
        its own graph (load → features → predict → write).
    digest
        ``{"digest", "parts"}`` of what determines the map (:func:`run_digest`).
    area
        The area's polygon in the grid's CRS (WKB; ``aoi.geometry``), or None: the whole grid is mapped.
    """

    cfg: PipelineConfig
    geobox: object
    items: tuple
    dates: np.ndarray
    profile: ProviderProfile
    target: Legend
    internal: Legend
    to_code: np.ndarray
    names: tuple[str, ...]
    tile_px: int
    tiles: tuple
    ring: int
    persist: bool
    tiled: bool
    digest: dict
    area: bytes | None = None

    @property
    def scl(self) -> bool:
        """Whether a cloud mask is read (``clean.mask`` is not ``none``)."""
        return self.cfg.clean.mask != "none"

    @property
    def out(self) -> Path:
        """The output folder."""
        return Path(self.cfg.output.dir)

    @property
    def zarr_path(self) -> Path:
        return self.out / "landcover.zarr"

    @property
    def pixel_ha(self) -> float:
        """Area of one output pixel, hectares."""
        return abs(self.geobox.resolution.x * self.geobox.resolution.y) / 1e4


def source_profile(cfg: PipelineConfig) -> ProviderProfile:
    """The provider profile the run reads with: ``source.provider``'s, its mask slot read from
    ``clean.probability_asset`` when ``clean.mask`` is ``probability``."""
    if cfg.clean.mask == "probability":
        return with_probability_mask(cfg.source.provider, cfg.clean.probability_asset)
    return get_profile(cfg.source.provider)


def find_items(cfg: PipelineConfig, profile: ProviderProfile | None = None):
    """The output grid of the AOI and the Sentinel-2 items covering it in the period: ``(geobox, items)``.

    ``profile``: :func:`source_profile` of ``cfg``, when the caller has it already.
    """
    profile = profile or source_profile(cfg)
    bbox, bbox_crs = aoi_extent(cfg.aoi)
    grid_crs, origin = cfg.aoi.grid_crs, cfg.aoi.origin
    if cfg.aoi.tile is not None:  # one Sentinel-2 tile: its own UTM zone and pixel lattice
        t = s2tile(cfg.aoi.tile)
        grid_crs, origin = grid_crs or t.crs, origin or t.origin
    geobox = grid(bbox, crs=bbox_crs, grid_crs=grid_crs, resolution=cfg.aoi.resolution, origin=origin)
    need = minimum_side_px(cfg)
    if min(geobox.shape) < need:
        raise GridError(f"the area is {geobox.shape[0]} × {geobox.shape[1]} px at {cfg.aoi.resolution} m; lcup needs at "
                        f"least {need} px a side (its label, smoothing and context halos reach {need - 1} px): "
                        f"enlarge the area (aoi.bbox / aoi.geometry) to at least {need * cfg.aoi.resolution:g} m a side")
    items = search(cfg.source.catalog, geobox, *cfg.period, provider=profile, collection=cfg.source.collection,
                   max_cloud_cover=cfg.source.max_cloud_cover, page_size=cfg.source.page_size, bands=cfg.load.bands,
                   scl=cfg.clean.mask != "none", allowed_hosts=cfg.source.allowed_hosts)
    if cfg.aoi.tile is not None:  # the tile's own items: a neighbour's scenes would be warped onto this grid
        items = own_tile_items(items, cfg.aoi.tile, str(geobox.crs))
    if cfg.aoi.grid_crs is None:  # the zone of the imagery itself (the Sentinel-2 grid's exceptions included)
        centre = geobox.extent.to_crs("EPSG:4326").centroid.coords[0]
        own = items_crs(items, centre)
        if own is not None and CRS(own) != geobox.crs:
            log.info("grid: %s, the CRS of the items over the area (not %s, the UTM zone of its longitude)", own, geobox.crs)
            geobox = grid(bbox, crs=bbox_crs, grid_crs=own, resolution=cfg.aoi.resolution, origin=origin)
    if origin is None and cfg.aoi.align == "native":
        origin = native_origin(items, geobox)  # the data's own pixel grid
        if origin is not None:
            geobox = grid(bbox, crs=bbox_crs, grid_crs=str(geobox.crs), resolution=cfg.aoi.resolution, origin=origin)
    return geobox, items


def own_tile_items(items, tile_id: str, crs: str) -> list:
    """The items of Sentinel-2 tile ``tile_id``: those naming it (:func:`lcup.io.stac.item_tile`), and those naming
    no tile that are on the tile's CRS ``crs``.

    Raises
    ------
    EmptySearchError
        If no item is the tile's.
    """
    mine = [it for it in items if (item_tile(it) or "") == tile_id
            or item_tile(it) is None and (item_code(it) is None or CRS(item_code(it)) == CRS(crs))]
    if not mine:
        raise EmptySearchError(f"none of the {len(items)} items found over tile {tile_id} is that tile's own (their tiles: "
                               f"{sorted({item_tile(it) or '?' for it in items})[:8]}); check aoi.tiles and the catalog")
    return mine


def context_px(cfg: PipelineConfig) -> int:
    """Pixels each side a pixel's class probabilities read: the network's receptive field (``model.kind: fcn``),
    0 for per-pixel models."""
    return fcn_context_px(cfg.model) if cfg.model.kind == "fcn" else 0


def minimum_side_px(cfg: PipelineConfig) -> int:
    """The smallest side (px) of an area lcup can map: one more than the widest halo a chunk is computed with (the
    labels' erosion and confidence, the prediction's ring, the neighbourhood features)."""
    res = cfg.aoi.resolution
    halos = [prediction_halo_px(cfg) + neighbourhood_halo_px(cfg.features, res)]
    if cfg.labels is not None:
        halos += [metres_to_px(cfg.labels.erosion_m, res), label_halo_px(cfg.labels, res)]
    return max(halos) + 1


def prediction_halo_px(cfg: PipelineConfig) -> int:
    """Pixels of features computed beyond a tile's edge for the network's receptive field (:func:`context_px`),
    the probability smoothing (``model.smooth_px``) and the segments (``model.segments``)."""
    return (context_px(cfg) + cfg.model.smooth_px // 2
            + (segment_halo_px(cfg.model.segment_px) if cfg.model.segments != "none" else 0))


def tile_px(cfg: PipelineConfig) -> int:
    """``output.tile_px`` rounded down to whole chunks (at least one)."""
    c = cfg.load.chunk_px
    return max(c, cfg.output.tile_px // c * c)


def tiles_in_flight(cfg: PipelineConfig, threads: int, clustered: bool) -> int:
    """``output.tiles_in_flight``, with auto resolved: one chunk per worker thread (``threads``), plus one tile (1
    without a cluster)."""
    if cfg.output.tiles_in_flight != "auto":
        return max(1, int(cfg.output.tiles_in_flight))
    if not clustered:
        return 1
    chunks_per_tile = max(1, (tile_px(cfg) // cfg.load.chunk_px) ** 2)
    return -(-threads // chunks_per_tile) + 1


def make_plan(cfg: PipelineConfig, geobox, items, dates, *, profile: ProviderProfile | None = None,
              cluster_memory: float = 0.0, clustered: bool = False) -> RunPlan:
    """The :class:`RunPlan` of ``cfg`` over ``geobox`` with ``items`` and the kept ``dates``.

    ``cluster_memory`` (bytes) and ``clustered`` (a ``distributed`` cluster computes the run) decide whether the
    features are kept in memory (``features.persist: auto``: under 30 % of the cluster's memory) and so whether
    each tile has its own graph. Both paths give the same map.
    """
    target = get_legend(cfg.target_legend())
    internal, to_code = compact(target)
    names = tuple(feature_names(cfg.load.bands, cfg.period, clean=cfg.clean, features=cfg.features))
    tpx = tile_px(cfg)
    tiles = tuple(tile_slices(geobox.shape, tpx))
    nbytes = geobox.shape[0] * geobox.shape[1] * len(names) * 4
    persist = bool(cfg.features.persist == "always"
                   or (cfg.features.persist == "auto" and cluster_memory and nbytes < 0.3 * cluster_memory))
    # Large AOIs: every tile is a unit of work with its own graph (load → features → predict → write), so
    # the graph never grows with the AOI. Both paths give the same features: same dates, same halo.
    tiled = len(tiles) > 1 and not (persist and clustered)
    return RunPlan(cfg=cfg, geobox=geobox, items=tuple(items), dates=np.asarray(dates), profile=profile or source_profile(cfg),
                   target=target, internal=internal, to_code=to_code, names=names, tile_px=tpx, tiles=tiles,
                   ring=prediction_halo_px(cfg), persist=persist, tiled=tiled, digest=run_digest(cfg, items, dates),
                   area=area_in(cfg, geobox.crs))


#: Sections and keys that do not change the map (where and how it is written, on which cluster).
_DIGEST_IGNORES = ("output", "cluster", "name", "truth")


def run_digest(cfg: PipelineConfig, items, dates) -> dict:
    """What determines the map: the parameters (less output/cluster), the items and the kept dates.

    Returns ``{"digest": sha256, "parts": {key: sha256}}``; a resume compares the parts to name what
    changed.
    """
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


def check_resume_settings(zarr_path: Path, parameters: dict) -> None:
    """Before any work: refuse to resume into a store written with other settings that change the map, naming the
    keys (``section.key``) that differ. ``parameters``: the run's (redacted, as the store keeps them); the items
    and dates are compared later, by :func:`check_resume`.

    Raises
    ------
    OutputExistsError
        If a setting that changes the map differs from the store's.
    """
    if not Path(zarr_path).exists():
        return
    old = zarr.open_group(str(zarr_path), mode="r").attrs.get("parameters")
    if old is None:
        return  # an older store: the digest check after the search decides
    a, b = _flat(old), _flat(parameters)
    differ = sorted(k for k in set(a) | set(b) if k.split(".")[0] not in _DIGEST_IGNORES and a.get(k) != b.get(k))
    if differ:
        raise OutputExistsError(
            f"{zarr_path} was written with other settings; resuming would mix two maps. These differ: {differ}; "
            "restore them, or start again with --overwrite (or another output.dir)")


def _flat(params: dict) -> dict:
    """``{"section.key": value}`` of a pipeline's parameters (top-level values as they are)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": json.dumps(vv, sort_keys=True, default=str) for kk, vv in v.items()})
        else:
            out[k] = json.dumps(v, sort_keys=True, default=str)
    return out


def check_resume(zarr_path: Path, digest: dict) -> None:
    """Refuse to resume into a store written with anything else that changes the map."""
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


def describe(plan: RunPlan) -> str:
    """The plan in words, as ``lcup plan`` prints it: grid, tiles, chunks, memory per task, prediction, labels."""
    return "\n".join([*_data_lines(plan), *_extra_lines(plan.cfg), *_work_lines(plan)])


def _data_lines(plan: RunPlan) -> list[str]:
    cfg, geobox, c = plan.cfg, plan.geobox, plan.cfg.load.chunk_px
    n_t, n_b = len({str(d)[:10] for d in plan.dates}), len(cfg.load.bands)
    n_grid = len(regular_grid(cfg.period[0], cfg.period[1], cfg.clean.step_days))
    n_feat, mib = len(plan.names), 1024**2
    mem = memory_estimate(plan)
    dn, series, feats = mem["dn_input"], mem["series"], mem["features"]
    decoded = sum(geobox.shape[0] * geobox.shape[1] * (cfg.aoi.resolution / BANDS[b][2]) ** 2 * 2 for b in cfg.load.bands)
    decoded = n_t * (decoded + (geobox.shape[0] * geobox.shape[1] * (cfg.aoi.resolution / 20) ** 2 if plan.scl else 0))
    return [
        f"pipeline {cfg.name!r}: {len(plan.items)} items on {n_t} dates from {cfg.source.catalog}",
        f"grid: {geobox.shape[0]} × {geobox.shape[1]} px at {cfg.aoi.resolution} m in {geobox.crs} "
        f"({geobox.shape[0] * geobox.shape[1] * cfg.aoi.resolution**2 / 1e6:.1f} km²)",
        f"tiles: {len(plan.tiles)} of up to {plan.tile_px} × {plan.tile_px} px; chunks: {c} × {c} px "
        f"({-(-geobox.shape[0] // c) * -(-geobox.shape[1] // c)} chunks)",
        f"time grid: {n_grid} steps of {cfg.clean.step_days:g} days; features per pixel: {n_feat}",
        f"memory per task (one {mem['chunk'][0]} × {mem['chunk'][1]} px chunk): DN input {dn / mib:.0f} MiB, smoothed "
        f"series {series / mib:.0f} MiB, features {feats / mib:.0f} MiB; peak ≈ {mem['task'] / mib:.0f} MiB per thread",
        f"memory per worker: ≈ {mem['worker'] / mib:.0f} MiB (lcup and its libraries {mem['baseline'] / mib:.0f} MiB + "
        f"{mem['threads']} thread(s) × one task; decoded COG blocks come on top, up to load.block_cache_mb)",
        f"read: ≈ {decoded / 1024**3:.2f} GiB of decoded pixels from the COGs ({n_t} dates × {n_b} bands"
        f"{' + SCL' if plan.scl else ''} over the area; whole blocks of the files, so a little more)",
    ]


def memory_estimate(plan: RunPlan, threads: int | None = None) -> dict:
    """The memory a run needs, bytes: per task (one chunk, as large as the grid allows: a grid smaller than
    ``load.chunk_px`` has smaller chunks) and per worker (the libraries a worker imports, measured as this
    process's resident memory, plus ``threads`` tasks: ``cluster.threads_per_worker``, default every core).

    Returns ``{"chunk", "dn_input", "series", "features", "task", "baseline", "threads", "worker"}``.
    """
    import os

    import psutil

    cfg, geobox, c = plan.cfg, plan.geobox, plan.cfg.load.chunk_px
    h, w = min(c, geobox.shape[0]) + 2 * plan.ring, min(c, geobox.shape[1]) + 2 * plan.ring
    n_t, n_b = len({str(d)[:10] for d in plan.dates}), len(cfg.load.bands)
    n_grid = len(regular_grid(cfg.period[0], cfg.period[1], cfg.clean.step_days))
    n_vars = n_b + len(cfg.features.indices) + len(cfg.features.custom_indices)
    dn, series, feats = n_t * (n_b * 2 + 1) * h * w, n_vars * n_grid * h * w * 4, len(plan.names) * h * w * 4
    threads = threads or cfg.cluster.threads_per_worker or os.cpu_count() or 1
    n_chunks = -(-geobox.shape[0] // c) * -(-geobox.shape[1] // c)
    threads = max(1, min(threads, n_chunks))  # no more tasks at once than there are chunks
    baseline = psutil.Process().memory_info().rss
    task = dn + series + feats
    return {"chunk": (h, w), "dn_input": dn, "series": series, "features": feats, "task": task, "baseline": baseline,
            "threads": threads, "worker": baseline + threads * task}


def _extra_lines(cfg: PipelineConfig) -> list[str]:
    extras = []
    if cfg.features.neighbourhood_m:
        extras.append(f"neighbourhood features: {'/'.join(cfg.features.neighbourhood_stats)} of every feature in "
                      f"{', '.join(f'{m:g}' for m in cfg.features.neighbourhood_m)} m windows "
                      f"(a {neighbourhood_halo_px(cfg.features, cfg.aoi.resolution)} px halo per tile)")
    if cfg.model.refine_rounds and cfg.labels is not None:
        extras.append(f"label refinement: {cfg.model.refine_rounds} round(s), relabelling training samples at "
                      f"≥ {cfg.model.refine_threshold:g} probability to classes within one coarse cell")
    return extras


def _work_lines(plan: RunPlan) -> list[str]:
    cfg, geobox, n_feat = plan.cfg, plan.geobox, len(plan.names)
    prior = (f"weighted by the coarse map's class shares over {cfg.model.coarse_prior_cells} coarse cell(s) around each "
             f"pixel, to the power {cfg.model.coarse_prior:g} (model.coarse_prior)"
             if cfg.labels is not None and cfg.model.coarse_prior > 0 else "the model alone (no coarse-map prior)")
    segments = (f"then over {cfg.model.segments} segments of ~{cfg.model.segment_px} px (mix {cfg.model.segment_mix:g}), "
                if cfg.model.segments != "none" else "")
    chunks = ("all chunks" if cfg.labels is None or cfg.labels.sample_chunks == "all" else
              f"{cfg.labels.sample_chunks} random chunks" if isinstance(cfg.labels.sample_chunks, int) else
              f"{AUTO_SAMPLE_CHUNKS} random chunks (all when there are fewer)")
    labels = (f"model: the saved {cfg.model.path} (no labels, no training)" if cfg.labels is None else
              f"labels: read chunk by chunk with a {max(metres_to_px(cfg.labels.erosion_m, cfg.aoi.resolution), label_halo_px(cfg.labels, cfg.aoi.resolution))} px halo; "
              f"sample: up to {cfg.labels.n_per_class} training pixels per class from {chunks}")
    return [
        f"feature cube for the AOI: {geobox.shape[0] * geobox.shape[1] * n_feat * 4 / 1024**3:.2f} GiB "
        f"(features.persist: {cfg.features.persist}; kept in memory when under 30 % of the cluster's memory, "
        "otherwise each tile is loaded, featured, predicted and written from its own graph)",
        f"prediction: class probabilities averaged over {cfg.model.smooth_px} × {cfg.model.smooth_px} px, "
        f"{segments}then {prior}",
        f"{labels}; tiles in flight on a cluster: {cfg.output.tiles_in_flight}",
    ]


def dates_of(items) -> list[str]:
    """The acquisition dates of ``items``, sorted and unique (what ``lcup plan`` counts without a scene filter)."""
    return sorted({str(it.datetime)[:10] for it in items})
