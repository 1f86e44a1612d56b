"""Stage: the coarse map on the output grid as training labels, and the training/validation sample."""

from __future__ import annotations

from typing import Mapping

import dask
import dask.array as da
import numpy as np
import xarray as xr
from odc.geo.xr import xr_coords

from ..config import LabelsConfig
from ..errors import ConfigError, LabelError
from ..io.rasters import cell_origin_px, open_on_geobox, open_stac_on_geobox, pixel_size_m
from ..legends import apply_crosswalk, compact, get_crosswalk, get_legend, to_internal
from ..ops.blocks import chunks_touched
from ..ops.labels import confidence_halo_px, erode_classes, label_confidence, label_statistics
from ..ops.sampling import min_train_validation_distance, stratified_sample
from ..units import grid_step, metres_to_px
from . import section

#: Chunks the training sample is drawn from (``labels.sample_chunks: auto``), on every path: the sample's
#: features then cost at most this many chunks, not the area, while still spread over all of it.
AUTO_SAMPLE_CHUNKS = 256

#: Side (px) of the squares the sample is drawn in, one generator each, whatever ``load.chunk_px``: the sample
#: (and so the model and the map) depends on the labels and the seed, never on the chunking. The default chunk
#: size, so that a default run reads no chunk more for it.
SAMPLE_LATTICE_PX = 512


def coarse_cell_m(labels: LabelsConfig, resolution: float) -> float:
    """Cell size of the label map, metres: as configured, else the file's; a STAC collection: ``resolution``."""
    return labels.coarse_resolution_m or (pixel_size_m(labels.path) if labels.path else resolution)


def label_halo_px(labels: LabelsConfig, resolution: float) -> int:
    """The halo (px) label confidence needs around a chunk; also the buffer around validation blocks."""
    return confidence_halo_px(coarse_cell_m(labels, resolution) / resolution)


def labels(geobox, labels: LabelsConfig | Mapping | None = None, *, chunk_px: int = 512, compute=None,
           figures: Mapping | None = None, inside: da.Array | None = None) -> xr.Dataset:
    """The coarse map on ``geobox`` in the target legend, eroded, with its label confidence: lazy.

    Each chunk reads its own window of the label map (any GDAL raster and CRS, or a STAC collection); erosion
    and confidence run with a halo, so memory is bounded by the chunk. One pass computes the figures, through
    ``compute`` (``callable(list) -> list``; default ``dask.compute``), unless ``figures`` gives them (an
    interrupted run's, on resume): then nothing is computed here. ``inside``: lazy ``(y, x)`` bool of the area's
    polygon (:func:`lcup.stages.area.inside_mask`); labels outside it are no data (never sampled, never counted).

    Returns
    -------
    xarray.Dataset
        ``label`` (the coarse class), ``usable`` (after erosion and ``min_confidence``; 0 = not sampled), both
        ``(y, x)`` uint8 class indices of :func:`lcup.legends.compact` (the legend's own codes when they fit
        uint8), and ``confidence`` ``(y, x)`` float32 0–1; attribute ``figures`` (pixel counts per stage and
        class, keyed by legend code; erosion and coarse cell in pixels).

    Examples
    --------
    >>> lab = lcup.labels(gb, {"path": "cgls.tif", "legend": "cgls-lc100", "erosion_m": 20})  # doctest: +SKIP
    >>> lab["usable"].plot()  # doctest: +SKIP
    """
    lc = section(LabelsConfig, labels)
    compute = compute or (lambda objs: list(dask.compute(*objs)))
    target = get_legend(lc.target_legend)
    if lc.stac is not None:
        st = lc.stac
        codes, _ = open_stac_on_geobox(st.catalog, st.collection, geobox, chunks=chunk_px, asset=st.asset,
                                       start=str(st.start or "1900-01-01"), end=str(st.end or "2100-12-31"), sign=st.sign)
    else:
        codes = open_on_geobox(lc.path, geobox, chunks=chunk_px)
    lab = codes.map_blocks(apply_crosswalk, to_internal(get_crosswalk(lc.legend, target, lc.crosswalk), target), dtype=np.uint8)
    if inside is not None:
        lab = da.where(inside, lab, np.uint8(0))
    res = abs(geobox.resolution.x)
    r = metres_to_px(lc.erosion_m, res)
    eroded = erode_classes(lab, r)
    cell_m = coarse_cell_m(lc, res)
    others = [open_on_geobox(o.path, geobox, chunks=chunk_px).map_blocks(
        apply_crosswalk, to_internal(get_crosswalk(o.legend, target), target), dtype=np.uint8) for o in lc.others]
    conf = label_confidence(lab, cell_m / res, others=others)
    if lc.fractions:  # purity: the labelled class's cover fraction in its coarse cell (CGLS-LC100 fraction layers...)
        conf = conf * _purity(lab, lc.fractions, target, geobox, chunk_px)
    usable = da.where(conf < lc.min_confidence, np.uint8(0), eroded) if lc.min_confidence > 0 else eroded
    if figures is not None:
        stats = {k: v for k, v in figures.items() if k not in ("erosion_px", "coarse_cell_px")}
        stats["class_px"] = {int(k): v for k, v in stats.get("class_px", {}).items()}
    else:
        (stats,) = compute([label_statistics(lab, eroded, usable, conf)])
    if stats["labelled_px"] == 0:  # nothing to learn from: not a matter of erosion or area size
        src = lc.path or f"the STAC collection {lc.stac.collection}"
        raise LabelError(f"the label map {src} has no data over the area: every pixel is its no-data value or a class the "
                         "crosswalk maps to 0 (labels.crosswalk); check the map's values there (gdalinfo -stats), its "
                         "no-data value, and the crosswalk")
    to_code = compact(target)[1]
    if figures is None:  # class indices to legend codes (given figures hold codes already)
        stats["class_px"] = {int(to_code[k]): v for k, v in stats["class_px"].items()}
    figures = {"erosion_px": r, "coarse_cell_px": round(cell_m / res, 2), **stats}
    dims = ("y", "x")
    return xr.Dataset({"label": (dims, lab), "usable": (dims, usable), "confidence": (dims, conf)},
                      coords=xr_coords(geobox, crs_coord_name="spatial_ref"),
                      attrs={"figures": figures, "cell_origin_px": cell_origin(lc, geobox)})


def _purity(lab: da.Array, fractions: Mapping[int, str], target, geobox, chunk_px: int) -> da.Array:
    """``(y, x)`` float32 0–1: the cover fraction (%) of each pixel's label class from its layer; 1 where the class
    has no layer or the layer has no data (above 100 %)."""
    index = to_internal({int(c): int(c) for c in fractions}, target)  # legend code → the labels' class index
    purity = da.ones(lab.shape, chunks=lab.chunks, dtype=np.float32)
    for code, path in fractions.items():
        if int(code) not in target.codes:
            raise ConfigError(f"labels.fractions names class {code}, which the target legend {target.name!r} lacks; its "
                              f"codes: {list(target.codes)}")
        fr = open_on_geobox(path, geobox, chunks=chunk_px, nodata=255).rechunk(lab.chunks).astype(np.float32)
        purity = da.where((lab == index[int(code)]) & (fr <= 100), fr / np.float32(100), purity)
    return purity


def sample(lab: xr.Dataset, labels: LabelsConfig | Mapping | None = None, *, cell_origin: tuple[int, int] = (0, 0),
           compute=None):
    """Stratified sample of ``lab["usable"]`` with spatially separated validation blocks, drawn square by square
    on a lattice of :data:`SAMPLE_LATTICE_PX` pixels (whatever the chunks of ``lab``).

    Blocks are whole coarse cells aligned on the coarse grid (its cell edges at rows/columns ``cell_origin``
    modulo the cell), a buffer of the confidence halo is kept free of training pixels around validation blocks,
    and blocks go back to training until every class can be learnt. The draw depends on the labels and
    ``labels.seed`` only. With ``labels.confidence_weights`` each sample carries its label confidence.

    Returns
    -------
    lcup.ops.sampling.Sample
        Positions, labels (class indices), validation flags and weights.
    """
    lc = section(LabelsConfig, labels)
    usable = lab["usable"].data.rechunk(SAMPLE_LATTICE_PX)
    res = grid_step(lab)
    sc = lc.sample_chunks
    return stratified_sample(
        usable, lc.n_per_class, lc.seed, min_per_class=lc.min_per_class, block_px=max(1, metres_to_px(lc.block_m, res)),
        validation_fraction=lc.validation_fraction, small_class_policy=lc.small_class_policy,
        max_chunks=sc if isinstance(sc, int) else (AUTO_SAMPLE_CHUNKS if sc == "auto" else None),
        values=lab["confidence"].data.rechunk(SAMPLE_LATTICE_PX) if lc.confidence_weights else None, compute=compute,
        cell_px=lab.attrs["figures"]["coarse_cell_px"], cell_origin=cell_origin, buffer_px=label_halo_px(lc, res),
    )


def sample_figures(smp, *, chunk_px: int, resolution_m: float) -> dict:
    """Figures of a sample (:func:`sample`) for the run's summary: training and validation counts (in total and per
    class index), the ``chunk_px`` chunks it falls in, and the smallest distance between a training and a
    validation pixel (m)."""
    def per_class(sel):
        return {int(c): int(n) for c, n in zip(*np.unique(smp.label[sel], return_counts=True))}

    dmin = min_train_validation_distance(smp)
    return {"train": int((~smp.validation).sum()), "validation": int(smp.validation.sum()),
            "chunks": chunks_touched(smp.iy, smp.ix, chunk_px),
            "min_train_validation_distance_m": dmin * resolution_m if np.isfinite(dmin) else None,
            "train_per_class": per_class(~smp.validation), "validation_per_class": per_class(smp.validation)}


def cell_origin(labels: LabelsConfig, geobox) -> tuple[int, int]:
    """Where the coarse map's cell edges fall on ``geobox``, ``(row, column)`` in output pixels, for the validation
    blocks (:func:`sample`); (0, 0) for a map from a STAC collection, in another CRS or rotated."""
    return cell_origin_px(labels.path, geobox) if labels.path else (0, 0)
