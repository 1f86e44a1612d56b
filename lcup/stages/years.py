"""Stage: maps of several years that agree with each other, and how right their change is.

:func:`smooth_years` re-decides the yearly classes from the yearly class probabilities each run wrote (the Zarr
store's ``probability``): ``flicker`` (:func:`lcup.ops.years.remove_flicker`) takes back a one-year change of class
that the years either side do not share unless that year's evidence is strong, and touches nothing else; ``hmm``
(:func:`lcup.ops.years.viterbi_years`) re-decides every pixel's whole sequence, a change costing ``cost`` nats.
:func:`change_accuracy` scores the change between maps against a truth per year: producer's and user's accuracy of
change / no change and the area of change with a 95 % confidence interval from a stratified sample of the truths
(Olofsson et al. 2014), beside the census.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import dask
import dask.array as da
import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from ..errors import ConfigError
from ..io.write import write_cog_from_dask
from ..legends import Legend
from ..ops.accuracy import confusion_blocks, report_from_confusion
from ..ops.years import remove_flicker, viterbi_years
from .change import open_maps
from .score import sample_area_estimates

__all__ = ["smooth_years", "change_accuracy"]

log = logging.getLogger("lcup")


def _smooth_block(prob: np.ndarray, cls: np.ndarray, codes: np.ndarray, cost: float, scale: float, method: str) -> np.ndarray:
    valid = (cls > 0) & (prob != 255).all(1) if prob.dtype == np.uint8 else (cls > 0) & np.isfinite(prob).all(1)
    p = np.where(valid[:, None], prob.astype(np.float32) / scale, np.float32(1.0))
    if method == "hmm":
        path = viterbi_years(p, cost, valid=valid)
    else:  # from the written classes: their probabilities are rounded, and a tie may have gone either way
        lut = np.zeros(max(int(codes.max()), int(cls.max())) + 1, np.int64)
        lut[codes] = np.arange(len(codes))
        path = remove_flicker(p, cost, valid=valid, classes=lut[cls])
    return np.where(cls > 0, codes[path], 0).astype(cls.dtype)


def smooth_years(stores: Sequence[str | Path], out_dir: str | Path, *, labels: Sequence[str], legend: Legend,
                 cost: float, method: str = "hmm") -> list[Path]:
    """The yearly maps re-decided together (:mod:`lcup.ops.years`), written as ``landcover_class_<label>.tif`` in
    ``out_dir``; returns their paths.

    Parameters
    ----------
    stores
        The years' ``landcover.zarr`` (one grid; written with ``output.probabilities``), oldest first.
    cost
        Cost of a change of class between consecutive years, nats.

    Raises
    ------
    ConfigError
        If a store has no probabilities (``output.probabilities: none``) or another grid.
    """
    dss = [xr.open_zarr(s, consolidated=False, mask_and_scale=False) for s in stores]
    for s, ds in zip(stores, dss):
        if "probability" not in ds:
            raise ConfigError(f"{s} holds no class probabilities: years_smoothing needs them (output.probabilities: uint8)")
        if ds["class"].shape != dss[0]["class"].shape or list(ds["class_code"].values) != list(dss[0]["class_code"].values):
            raise ConfigError(f"{s} is on another grid or has other classes than {stores[0]}; the years must share both")
    codes = np.asarray(dss[0]["class_code"].values, np.int64)
    scale = 100.0 if dss[0]["probability"].dtype == np.uint8 else 1.0
    prob = da.stack([ds["probability"].data for ds in dss])  # (year, class, y, x)
    cls = da.stack([ds["class"].data for ds in dss])  # (year, y, x)
    prob = prob.rechunk({0: -1, 1: -1})
    cls = cls.rechunk({0: -1, 1: prob.chunks[2], 2: prob.chunks[3]})
    smoothed = da.map_blocks(lambda p, c: _smooth_block(p, c, codes, cost, scale, method), prob, cls, drop_axis=1, dtype=cls.dtype,
                             chunks=cls.chunks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    attrs = dss[0].attrs
    geobox = GeoBox(dss[0]["class"].shape, Affine(*attrs["transform"][:6]), attrs["crs"])
    paths = []
    for k, label in enumerate(labels):  # chunk by chunk, on the active client's workers if there is one
        p = out / f"landcover_class_{label}.tif"
        write_cog_from_dask(xr.DataArray(smoothed[k], dims=("y", "x")), p, geobox, nodata=0, legend=legend,
                            band_names=[f"land cover class {label} (years smoothed)"])
        paths.append(p)
    return paths


def _change_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(n - 1)] + ([(0, n - 1)] if n > 2 else [])


def change_accuracy(maps: Sequence[str | Path], truths: Sequence[str | Path], *, labels: Sequence[str], chunk_px: int = 1024,
                    n_per_stratum: int = 100, seed: int = 0, compute: Callable | None = None) -> list[dict]:
    """How right the change between maps is, against a truth map per year: for each pair of consecutive years (and
    first → last), over the pixels both maps and both truths label, producer's and user's accuracy of *change*
    and of *no change*, and the area of change estimated from a stratified random sample of ``n_per_stratum``
    truth pixels per map stratum (change / no change; Olofsson et al. 2014) with its 95 % interval, beside the
    census (every truth pixel).

    Returns
    -------
    list of dict
        Per pair: ``from``, ``to``, ``n``, ``change`` and ``no_change`` (``producer_accuracy``, ``user_accuracy``),
        ``area_of_change_ha`` (``mapped``, ``estimate``, ``ci``, ``census``, ``covered``).
    """
    compute = compute or dask.compute
    arrays, geobox, _ = open_maps([*maps, *truths], chunk_px=chunk_px)
    m, t = arrays[: len(maps)], arrays[len(maps):]
    pixel_ha = abs(geobox.resolution.x * geobox.resolution.y) / 1e4
    lazy, pairs = [], _change_pairs(len(maps))
    for i, j in pairs:
        ok = (m[i] > 0) & (m[j] > 0) & (t[i] > 0) & (t[j] > 0)
        truth = da.where(ok, da.where(t[i] != t[j], 2, 1), 0).astype(np.uint8)
        mapped = da.where(ok, da.where(m[i] != m[j], 2, 1), 0).astype(np.uint8)
        lazy.append(confusion_blocks(truth, mapped, [1, 2]))
    out = []
    for (i, j), cm in zip(pairs, compute(*lazy)):
        rep = report_from_confusion(cm, [1, 2], {1: "no change", 2: "change"})
        est = sample_area_estimates(rep, pixel_ha=pixel_ha, n_per_class=n_per_stratum, seed=seed)
        pc = rep["per_class"]
        ch = est["classes"].get(2, {})
        out.append({"from": labels[i], "to": labels[j], "n": rep["n"],
                    "change": {"producer_accuracy": pc[2]["producer_accuracy"], "user_accuracy": pc[2]["user_accuracy"]},
                    "no_change": {"producer_accuracy": pc[1]["producer_accuracy"], "user_accuracy": pc[1]["user_accuracy"]},
                    "area_of_change_ha": {"mapped": ch.get("map_ha"), "estimate": ch.get("area_ha"), "ci": ch.get("area_ci_ha"),
                                          "census": ch.get("census_ha"), "covered": ch.get("covered")}})
    return out
