"""Stage: apply a trained classifier to a feature cube, chunk by chunk."""

from __future__ import annotations

from typing import Mapping

import dask.array as da
import numpy as np
import xarray as xr
from dask.array.overlap import overlap
from odc.geo.xr import xr_coords

from ..config import OutputConfig
from ..legends import Legend, compact
from ..ops.blocks import map_blocks_across
from ..ops.fusion import coarse_prior, fuse_block
from ..ops.model import predict_block, smooth_block
from ..ops.segments import segment_block
from ..units import segment_halo_px
from . import section
from ._halo import map_with_halo


def _predict_chunk(block: np.ndarray, model, confidence: str) -> np.ndarray:
    return predict_block(block, model, confidence=confidence)


def _predict_chunk_fyx(block: np.ndarray, model, confidence: str, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    return predict_block(np.moveaxis(block, 0, -1), model, confidence=confidence, origin=origin)


def lattice_origin(feats: xr.DataArray) -> tuple[int, int]:
    """``feats``' first pixel as (row, column) counted from its CRS's origin in pixels: the same for a pixel
    whatever array (tile, chunk) it is the first of, so a strided network can align its blocks on it."""
    if "x" not in feats.coords or "y" not in feats.coords or feats.sizes["x"] < 2 or feats.sizes["y"] < 2:
        return (0, 0)
    x, y = feats["x"].values, feats["y"].values
    return (int(round(-float(y[0]) / abs(float(y[1] - y[0])))), int(round(float(x[0]) / abs(float(x[1] - x[0])))))


def predict(model, feats: xr.DataArray, *, legend: Legend, output: OutputConfig | Mapping | None = None,
            classes: list | None = None, geobox=None, smooth_px: int = 3, halo: int = 0,
            chunk_px: int | None = None, prior: da.Array | None = None, prior_strength: float = 0.0,
            segments: str = "none", segment_px: int = 30, segment_mix: float = 0.5, context_px: int = 0) -> xr.Dataset:
    """Lazy class, confidence and probabilities of ``feats`` under ``model``: one task per chunk.

    Parameters
    ----------
    model
        A fitted classifier, or a ``distributed`` future of one (scattered or persisted once, never embedded in
        every task).
    feats
        ``(y, x, feature)`` features (:func:`lcup.stages.features.features`), with an ``odc`` geobox.
    legend
        The legend of the map (its own codes; the model's classes are :func:`lcup.legends.compact` indices).
    output
        :class:`~lcup.config.OutputConfig`: probability encoding and confidence measure.
    classes
        The model's classes (needed when ``model`` is a future).
    geobox
        The output grid (default: ``feats.odc.geobox``); ``feats`` covers it padded by ``halo`` px.
    smooth_px
        Average the probabilities over this many pixels square, then classify again
        (:func:`lcup.ops.model.smooth_block`); 1 = off.
    halo
        Pixels of ``feats`` beyond ``geobox`` on each side (at least ``smooth_px // 2``, plus
        :func:`lcup.units.segment_halo_px` with ``segments``, for seamless tiles), cropped from the result.
    chunk_px
        Spatial chunks of the result (default: those of ``feats``), e.g. to match a Zarr store's.
    prior, prior_strength
        The coarse map as a prior on the output grid, ``(class, y, x)`` in the model's class order
        (:func:`coarse_prior_array`), and its strength: after smoothing, the probabilities become the posterior
        ``p × prior ** prior_strength`` (:func:`lcup.ops.fusion.fuse`), so that where the model has little to say
        the coarse class stands. 0 or no ``prior``: the model alone.
    segments, segment_px, segment_mix
        Segment-based regularisation after smoothing (``slic`` or ``felzenszwalb``; ``none``: off): every chunk of
        ``chunk_px`` on the output grid is segmented with a halo (:func:`lcup.ops.segments.segment_block`), so the
        result depends on the chunk grid, never on how the area is cut into tiles of whole chunks.

    context_px
        Pixels each side a pixel's prediction reads (a network's receptive field, :func:`lcup.stages.plan.context_px`;
        0 for per-pixel models): every chunk is predicted with that halo, so the map does not depend on the
        chunking. ``halo`` must include it.

    Returns
    -------
    xarray.Dataset
        ``class`` ``(y, x)`` in legend codes (uint8; uint16 for codes above 255; 0 = no data), ``confidence``
        ``(y, x)`` uint8 percent, and ``probability`` ``(class_code, y, x)`` (uint8 percent or float16).

    Examples
    --------
    >>> out = lcup.predict(clf, feats, legend=get_legend("lcup7"))  # doctest: +SKIP
    >>> out["class"].plot()  # doctest: +SKIP
    """
    oc = section(OutputConfig, output if output is not None else {"dir": "."})
    classes = list(model.classes_) if classes is None else list(classes)
    if context_px:  # (feature, y, x) blocks: the class axis takes the feature axis's place
        c = feats.data.chunks
        pred = map_with_halo(_predict_chunk_fyx, feats.data.transpose(2, 0, 1), int(context_px), axes=(1, 2),
                             out_chunks=((2 + len(classes),), c[0], c[1]), dtype=np.float32, model=model,
                             confidence=oc.confidence, origin=lattice_origin(feats))
    else:
        pred = map_blocks_across(_predict_chunk, feats.data, drop_axis=2, new_axis=0, new_size=2 + len(classes),
                                 dtype=np.float32, model=model, confidence=oc.confidence)
    r = int(smooth_px) // 2
    if r:
        cls_idx = np.asarray(classes)
        pred = pred.map_overlap(smooth_block, depth={0: 0, 1: r, 2: r}, boundary="none", classes=cls_idx,
                                window=int(smooth_px), confidence=oc.confidence, dtype=np.float32)
    if segments != "none":
        pred = _segmented(pred, feats.data, halo, r, np.asarray(classes), segments=segments, segment_px=segment_px,
                          segment_mix=segment_mix, confidence=oc.confidence, chunk_px=chunk_px or feats.data.chunks[0][0])
        halo = 0  # consumed: the result is on the output grid
    if halo:
        pred = pred[:, halo:-halo, halo:-halo]
    if halo or chunk_px:
        chunks = feats.data.chunks
        pred = pred.rechunk({1: chunk_px or chunks[0][0], 2: chunk_px or chunks[1][0]})
    if prior is not None and prior_strength > 0:
        if prior.shape != (len(classes),) + pred.shape[1:]:
            raise ValueError(f"prior has shape {prior.shape}, the prediction needs {(len(classes),) + pred.shape[1:]} (class, y, x)")
        pred = da.map_blocks(fuse_block, pred, prior.rechunk(((len(classes),),) + pred.chunks[1:]), np.asarray(classes),
                             strength=float(prior_strength), confidence=oc.confidence, dtype=np.float32)
    return output_dataset(pred, classes, feats.odc.geobox if geobox is None else geobox, legend, oc)


def _segment_chunk(pred: np.ndarray, feats: np.ndarray, classes, *, ring: int, halo: int, block_info=None, **kw) -> np.ndarray:
    out = segment_block(pred, feats.transpose(1, 2, 0), classes, **kw)  # features (feature, y, x) → (y, x, feature)
    (_, i, j), (_, ni, nj) = block_info[0]["chunk-location"], block_info[0]["num-chunks"]
    top, left = (halo if i else ring), (halo if j else ring)
    bottom, right = (halo if i < ni - 1 else ring), (halo if j < nj - 1 else ring)
    return out[:, top:out.shape[1] - bottom, left:out.shape[2] - right]


def _segmented(pred: da.Array, feats: da.Array, halo: int, r: int, classes: np.ndarray, *, segments: str, segment_px: int,
               segment_mix: float, confidence: str, chunk_px: int) -> da.Array:
    """Segment-based regularisation of ``pred`` (with ``halo`` px around the output grid, smoothed with radius ``r``)
    on the output grid's ``chunk_px`` chunks, each with the halo of :func:`lcup.units.segment_halo_px` (at the
    array's edge: what ``halo`` leaves after the smoothing's). Returns the result on the output grid (no halo)."""
    h = segment_halo_px(segment_px)
    g = max(0, min(h, halo - r))  # the ring kept: the outer chunks' halo; the smoothing's own edge effects are cut away
    cut = halo - g
    pred = pred[:, cut:pred.shape[1] - cut, cut:pred.shape[2] - cut]
    feats = feats[cut:feats.shape[0] - cut, cut:feats.shape[1] - cut]

    def grid(n_ring: int) -> tuple[tuple[int, ...], tuple[int, ...]]:  # the output grid's chunks, with and without the ring
        n = n_ring - 2 * g
        c = [chunk_px] * (n // chunk_px) + ([n % chunk_px] if n % chunk_px else [])
        ringed = list(c)
        ringed[0] += g
        ringed[-1] += g
        return tuple(ringed), tuple(c)

    (ych, yout), (xch, xout) = grid(pred.shape[1]), grid(pred.shape[2])
    p = overlap(pred.rechunk((pred.shape[0], ych, xch)), depth={0: 0, 1: h, 2: h}, boundary="none")
    f = overlap(feats.transpose(2, 0, 1).rechunk((feats.shape[2], ych, xch)), depth={0: 0, 1: h, 2: h}, boundary="none")
    out = da.map_blocks(_segment_chunk, p, f, classes, ring=g, halo=h, region_px=int(segment_px), method=segments,
                        mix=float(segment_mix), confidence=confidence, chunks=((pred.shape[0],), yout, xout), dtype=np.float32)
    return out


def coarse_prior_array(label: da.Array, classes, window_px: int) -> da.Array:
    """Lazy ``(class, y, x)`` float32 prior from the coarse map on the output grid (``labels(...)["label"]``, class
    indices, 0 = no data): the share of each class in the ``window_px`` square around each pixel, floored
    (:func:`lcup.ops.fusion.coarse_prior`). Chunked like ``label``, with a halo of ``window_px // 2``: the same
    values however the map is cut.

    Examples
    --------
    >>> prior = coarse_prior_array(lab["label"].data, model.classes_, 30)  # doctest: +SKIP
    """
    classes, w = [int(c) for c in classes], int(window_px)
    # the halo overlap() adds: none at the array's own edges, where the window holds what is there
    return map_with_halo(lambda b: coarse_prior(b, classes, w, floor=None), label, w // 2, out_axes=(1, 2),
                         out_chunks=((len(classes),),) + label.chunks, dtype=np.float32)


#: No data in the uint8 percent layers (confidence, probability): a value they cannot hold, so that 0 % stays 0 %.
NODATA_PERCENT = 255


def nodata_of(var: xr.DataArray):
    """The no-data value (the Zarr/CF ``_FillValue``) of an output variable: 0 for ``class`` (0 is no class),
    :data:`NODATA_PERCENT` for uint8 percentages, NaN for float probabilities."""
    if var.name == "class":
        return 0
    return NODATA_PERCENT if var.dtype == np.uint8 else np.nan


def output_dataset(pred, classes: list, geobox, legend: Legend, output: OutputConfig | Mapping | None = None) -> xr.Dataset:
    """The output variables from ``pred`` ``(2 + class, y, x)`` float32 (class index, confidence, probabilities;
    NaN = no data), encoded for writing: class in legend codes (0 = no data), percentages as uint8 (no data
    :data:`NODATA_PERCENT`: a genuine 0 % is a value), CF attributes."""
    oc = section(OutputConfig, output if output is not None else {"dir": "."})
    to_code = compact(legend)[1]
    cls = da.nan_to_num(pred[0]).astype(np.int64).map_blocks(lambda b: to_code[b], dtype=to_code.dtype)
    conf = da.where(da.isnan(pred[1]), NODATA_PERCENT, da.round(100 * pred[1])).astype(np.uint8)
    ds = xr.Dataset({"class": (("y", "x"), cls), "confidence": (("y", "x"), conf)},
                    coords=xr_coords(geobox, crs_coord_name="spatial_ref"))
    if oc.probabilities != "none":
        prob = pred[2:]
        prob = (da.where(da.isnan(prob), NODATA_PERCENT, da.round(100 * prob)).astype(np.uint8) if oc.probabilities == "uint8"
                else prob.astype(np.float16))
        ds["probability"] = (("class_code", "y", "x"), prob)
        ds = ds.assign_coords(class_code=to_code[np.asarray(classes, np.int64)])
        ds["probability"].attrs.update({"grid_mapping": "spatial_ref", "units": "percent" if oc.probabilities == "uint8" else "1",
                                        "long_name": "class probability"})
    ds["class"].attrs.update({"grid_mapping": "spatial_ref", "flag_values": legend.codes,
                              "flag_meanings": " ".join(n.replace(" ", "_") for n in legend.names().values()),
                              "long_name": "land cover class"})
    ds["confidence"].attrs.update({"grid_mapping": "spatial_ref", "units": "percent", "long_name": f"confidence ({oc.confidence})"})
    return ds


def probability_percent(ds: xr.Dataset, nodata: int = 255) -> xr.DataArray:
    """The ``probability`` layer of a map as uint8 percent ``(class_code, y, x)``, ``nodata`` where ``class`` is 0.

    What a multi-band GeoTIFF carries: 0 % is a valid probability, so no data gets its own value.

    Examples
    --------
    >>> p = probability_percent(xr.open_zarr("out/landcover.zarr"))  # doctest: +SKIP
    """
    p = ds["probability"]
    if p.dtype != np.uint8:
        p = (100 * p.astype(np.float32)).round().clip(0, 100).fillna(0).astype(np.uint8)
    return p.where(ds["class"] != 0, nodata).astype(np.uint8)
