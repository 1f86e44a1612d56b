"""Stage: reference samples — design a stratified random sample on a map, and estimate areas with confidence
intervals from a labelled sample (Olofsson et al. 2014)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import dask
import dask.array as da
import numpy as np
import pandas as pd
import rasterio

from ..errors import ConfigError, LcupWarning, OutputExistsError, ReadError
from ..io.rundir import resolve_map
from ..legends import apply_crosswalk, get_crosswalk, get_legend
from ..ops.area import allocate, sample_size, stratified_estimates
from ..ops.change import code_index, row_area_m2
from ..ops.zonal import zone_class_area
from ..optional import require
from .change import open_maps


def _class_area(cls: da.Array, codes, geobox) -> da.Array:
    """Lazy ``(2, K + 1)``: pixels and m² of no data then each of ``codes``."""
    area = row_area_m2(list(geobox.transform)[:6], geobox.shape[0], geobox.crs.geographic)
    ones = da.ones(cls.shape, chunks=cls.chunks, dtype=np.int32)
    return zone_class_area(ones, cls, codes, 1, area)[:, 1]


def _block_counts(block, lut, n):
    k = len(lut)
    return np.bincount(lut[np.clip(block, 0, k - 1)].ravel(), minlength=n)[None, None]


def _pick(block, lut, wanted, seed, y0, x0):
    """``wanted[k]`` random pixels of class index ``k`` in ``block``: rows, columns (of the map), class index."""
    k = len(lut)
    idx = lut[np.clip(block, 0, k - 1)]
    rng = np.random.default_rng(seed)
    out = []
    for c, m in enumerate(wanted):
        if m:
            flat = np.flatnonzero(idx == c)
            pick = np.sort(rng.choice(flat, size=int(m), replace=False))
            out.append(np.stack([pick // block.shape[1] + y0, pick % block.shape[1] + x0, np.full(len(pick), c)], 1))
    return np.concatenate(out) if out else np.zeros((0, 3), np.int64)


def design(map_path: str | Path, output: str | Path, *, users_accuracy: float | Mapping[int, float] = 0.8,
           target_se: float = 0.01, min_per_class: int = 50, n: int | None = None, legend=None, bbox=None, seed: int = 0,
           chunk_px: int = 1024, compute: Callable | None = None, overwrite: bool = False) -> dict:
    """A stratified random reference sample on a class map, for users who will label their own validation points.

    The total size follows Olofsson et al. (2014, eq. 13) from the anticipated user's accuracies and a target
    standard error of the overall accuracy (or ``n``); :func:`lcup.ops.area.allocate` splits it across the map
    classes (a minimum per class, the rest proportional). Points are pixel centres drawn at random without
    replacement within each class, chunk by chunk (per-chunk counts, then a seeded draw in the chunks that got
    points): the same points for the same seed and ``chunk_px``, whatever the scheduler or cluster.

    Writes ``output`` (GeoPackage, or GeoJSON/CSV by extension) with ``id``, ``map_class``, ``map_name``, ``x``,
    ``y`` (in the map's CRS) and an empty ``reference`` column to fill in; then :func:`area` estimates from it.

    Returns
    -------
    dict
        ``n``, ``per_class`` {code: points}, ``weights``, ``output``.

    Examples
    --------
    >>> lcup.design("out/landcover_class.tif", "points.gpkg", users_accuracy=0.85, target_se=0.01)  # doctest: +SKIP
    """
    gpd = require("geopandas", "a reference sample's points")

    output = Path(output)
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} exists; pass overwrite=True (CLI: --overwrite) or choose another name")
    if not 0 < target_se < 0.5:
        raise ConfigError(f"target standard error {target_se} must be between 0 and 0.5 (e.g. 0.01)")
    compute = compute or dask.compute
    (cls,), geobox, leg = open_maps([map_path], legend=legend, bbox=bbox, chunk_px=chunk_px)
    codes, names = leg.codes, leg.names()
    lut = code_index(codes)
    nk = len(codes) + 1
    counts = da.map_blocks(_block_counts, cls, lut, nk, new_axis=[2], dtype=np.int64,
                           chunks=((1,) * len(cls.chunks[0]), (1,) * len(cls.chunks[1]), (nk,)))
    (counts,) = compute(counts)
    strata = counts.sum((0, 1))[1:]
    if not strata.any():
        raise ConfigError(f"{map_path} has no pixel of the legend's classes ({leg.name}) in the area")
    ua = np.array([float(users_accuracy.get(c, 0.8)) if isinstance(users_accuracy, Mapping) else float(users_accuracy)
                   for c in codes])
    if not ((ua > 0) & (ua < 1)).all():
        raise ConfigError("anticipated user's accuracies must lie between 0 and 1 (e.g. 0.8)")
    total = int(n) if n is not None else sample_size(strata, ua, target_se)
    per_class = np.minimum(allocate(total, strata, min_per_class), strata)
    rng = np.random.default_rng([seed, 11])
    flat = counts.reshape(-1, nk)
    wanted = np.zeros_like(flat)
    for k in range(len(codes)):
        if per_class[k]:
            wanted[:, k + 1] = rng.multivariate_hypergeometric(flat[:, k + 1], int(per_class[k]))
    y_off = np.cumsum((0,) + cls.chunks[0])
    x_off = np.cumsum((0,) + cls.chunks[1])
    nbx = len(cls.chunks[1])
    picks = [dask.delayed(_pick)(cls.blocks[b // nbx, b % nbx], lut, wanted[b], [seed, 12, b], y_off[b // nbx], x_off[b % nbx])
             for b in np.flatnonzero(wanted.sum(1))]
    rows = np.concatenate(compute(*picks)) if picks else np.zeros((0, 3), np.int64)
    xs, ys = geobox.transform * (rows[:, 1] + 0.5, rows[:, 0] + 0.5)
    code_of = np.array([0, *codes])
    gdf = gpd.GeoDataFrame({"id": np.arange(1, len(rows) + 1), "map_class": code_of[rows[:, 2]],
                            "map_name": [names[c] for c in code_of[rows[:, 2]]], "x": xs, "y": ys, "reference": None},
                           geometry=gpd.points_from_xy(xs, ys), crs=geobox.crs.to_wkt())
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        output.unlink()
    if output.suffix == ".csv":
        gdf.drop(columns="geometry").to_csv(output, index=False)
    else:
        gdf.to_file(output, driver="GeoJSON" if output.suffix in (".geojson", ".json") else "GPKG")
    return {"n": int(len(rows)), "per_class": {int(c): int(m) for c, m in zip(codes, per_class) if m},
            "weights": {int(c): float(w) for c, w in zip(codes, strata / strata.sum())}, "output": str(output)}


def read_points(path: str | Path, crs, *, points_crs: str | None = None):
    """A labelled point file (GeoPackage, GeoJSON, Shapefile, GeoParquet, or CSV with x/y or lon/lat columns) in
    ``crs``. A CSV's coordinates are in ``points_crs`` (default: EPSG:4326 for lon/lat, else the map's CRS)."""
    gpd = require("geopandas", "a reference sample's points")

    path = Path(path)
    try:
        if path.suffix == ".csv":
            df = pd.read_csv(path)
            cols = {c.lower(): c for c in df.columns}
            xy = next(((cols[a], cols[b]) for a, b in (("x", "y"), ("lon", "lat"), ("longitude", "latitude")) if a in cols and b in cols), None)
            if xy is None:
                raise ConfigError(f"{path}: a CSV of points needs x/y or lon/lat columns; it has {list(df.columns)}")
            src_crs = points_crs or ("EPSG:4326" if xy[0].lower().startswith("lon") else crs)
            gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df[xy[0]], df[xy[1]]), crs=src_crs)
        else:
            gdf = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    except ConfigError:
        raise
    except Exception as e:
        raise ReadError(f"cannot read points {path}: {e}; give a GeoPackage, GeoJSON, Shapefile, GeoParquet or CSV") from None
    if gdf.crs is None:
        raise ConfigError(f"points {path} have no CRS; set one")
    return gdf.to_crs(crs)


def area(map_path: str | Path, points: str | Path, *, class_column: str = "reference", legend=None,
         reference_legend=None, output: str | Path | None = None, points_crs: str | None = None, chunk_px: int = 1024,
         compute: Callable | None = None) -> dict:
    """Class areas with 95 % confidence intervals and area-adjusted accuracies from a labelled reference sample.

    The map's classes are the strata (their areas measured on the map, chunk by chunk, true pixel areas on any
    grid); each point's map class is read at its location; ``class_column`` holds its reference class (codes of
    the map's legend, or of ``reference_legend``, crosswalked). Assumes a stratified random sample by map class,
    as :func:`design` draws (Olofsson et al. 2014). Writes ``output`` (JSON; a CSV table beside it) when given.

    Returns
    -------
    dict
        ``n``, ``overall_accuracy`` (± ``overall_accuracy_ci``), ``classes`` {code: name, map_ha, area_ha,
        area_ci_ha, user's/producer's accuracy ± CI}, ``unused_points`` (off the map, no data, or no label).

    Examples
    --------
    >>> lcup.area("out/landcover_class.tif", "points.gpkg", class_column="reference")  # doctest: +SKIP
    """
    compute = compute or dask.compute
    (cls,), geobox, leg = open_maps([map_path], legend=legend, chunk_px=chunk_px)
    codes, names = leg.codes, leg.names()
    pts = read_points(points, geobox.crs.to_wkt(), points_crs=points_crs)
    if class_column not in pts.columns:
        raise ConfigError(f"points {points} have no column {class_column!r}; columns: {[c for c in pts.columns if c != 'geometry']}")
    ref = pts[class_column].to_numpy()
    ok = np.array([v is not None and v == v and str(v).strip() != "" for v in ref])
    ref_codes = np.zeros(len(ref), np.int64)
    ref_codes[ok] = np.asarray([int(float(v)) for v in ref[ok]], np.int64)
    if reference_legend is not None:
        ref_codes = apply_crosswalk(ref_codes, get_crosswalk(get_legend(reference_legend), leg), nodata=0).astype(np.int64)
    unknown = sorted(set(ref_codes[ok].tolist()) - set(codes) - {0})
    if unknown:  # classes the map never shows (e.g. a transition a change map missed): strata of no mapped area
        warnings.warn(f"reference classes {unknown} are not in the map's legend {leg.name} ({codes}): estimated as classes "
                      "the map never shows (from its omission errors); if they are another legend's codes, give "
                      "reference_legend (CLI: --reference-legend) to crosswalk them", LcupWarning, stacklevel=2)
        names = {**names, **{c: f"class {c} (not in the map)" for c in unknown}}
    all_codes = sorted(set(codes) | set(unknown))
    with rasterio.open(str(resolve_map(map_path))) as src:
        xy = list(zip(pts.geometry.x, pts.geometry.y))
        map_codes = np.array([v[0] for v in src.sample(xy, masked=False)], np.int64) if xy else np.zeros(0, np.int64)
    lut = code_index(all_codes)
    mi, ri = lut[np.clip(map_codes, 0, len(lut) - 1)], lut[np.clip(ref_codes, 0, len(lut) - 1)]
    use = ok & (mi > 0) & (ri > 0)
    k = len(all_codes)
    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (mi[use] - 1, ri[use] - 1), 1)
    if use.sum() < 2:
        raise ConfigError(f"only {int(use.sum())} labelled point(s) fall on mapped pixels: check the points' CRS and {class_column!r}")
    (ca,) = compute(_class_area(cls, all_codes, geobox))
    map_ha = ca[1][1:] / 1e4
    est = stratified_estimates(counts, map_ha, classes=all_codes)
    res = {"n": int(use.sum()), "unused_points": int(len(pts) - use.sum()), "overall_accuracy": est["overall_accuracy"],
           "overall_accuracy_ci": 1.96 * est["overall_accuracy_se"], "counts": counts.tolist(), "classes": {
               int(c["class"]): {"name": names[c["class"]], "n": int(counts[j].sum()), "map_ha": c["map_area"], "area_ha": c["area"],
                                 "area_ci_ha": c["area_ci"], "user_accuracy": c["user_accuracy"],
                                 "user_accuracy_ci": 1.96 * c["user_accuracy_se"], "producer_accuracy": c["producer_accuracy"],
                                 "producer_accuracy_ci": 1.96 * c["producer_accuracy_se"]}
               for j, c in enumerate(est["classes"])}}
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(res, indent=1, allow_nan=True).replace("NaN", "null"))
        pd.DataFrame([{"class_code": c, **v} for c, v in res["classes"].items()]).to_csv(output.with_suffix(".csv"), index=False)
    return res


__all__: Sequence[str] = ["area", "design", "read_points"]
