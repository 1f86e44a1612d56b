"""Stage: change between class maps of two or more years — transition tables, a change map, a Sankey diagram."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Callable, Sequence

import dask
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from ..errors import ConfigError, LabelError, OutputExistsError
from ..io.rasters import map_codes, map_geobox, open_on_geobox
from ..io.rundir import resolve_map
from ..io.write import write_cog_from_dask
from ..legends import Legend, get_legend
from ..ops.change import change_legend_table, change_map, change_summary, row_area_m2, temporal_consistency, transitions
from ..plot import sankey
from ..report import write_report

#: Colour of "no change" in the change map.
NO_CHANGE_COLOUR = "#d9d9d9"


def _map_legend(legend, found: str | None, path) -> Legend:
    if legend is not None:
        return get_legend(legend)
    if found is not None:
        return found
    raise LabelError(f"{path} does not say its legend (lcup's maps carry a LEGEND tag); give it: --legend esa-worldcover "
                     "(or legend=... in Python)")


def open_maps(paths: Sequence[str | Path], *, legend=None, bbox=None, chunk_px: int = 1024):
    """Open class maps lazily on the first map's grid (cut to ``bbox``, in that map's CRS): maps on another grid are
    read onto it (nearest neighbour, window by window). A path may be a run's output folder or a Sentinel-2-tiled
    run's ``collection.json`` (:func:`lcup.io.rundir.resolve_map`: its class map or mosaic).

    Returns
    -------
    maps, geobox, legend
        ``[(y, x) dask arrays]``, the common grid, the maps' :class:`~lcup.legends.Legend`.
    """
    paths = [resolve_map(p) for p in paths]  # a run's folder or a tiled run's collection: its map or mosaic
    geobox, found = map_geobox(paths[0], bbox)
    leg = _map_legend(legend, found, paths[0])
    for p in paths:
        _check_legend(p, leg)
    maps = [open_on_geobox(p, geobox, chunks=chunk_px, resampling="nearest") for p in paths]
    return maps, geobox, leg


def _check_legend(path, leg: Legend) -> None:
    """Refuse a map in another legend than ``leg``: its LEGEND tag names another, or its codes (read from a
    decimated view, at most 512 px a side) are not ``leg``'s. Every pixel would otherwise count as no data."""
    _, tagged = map_geobox(path)
    if tagged is not None and tagged.name != leg.name:
        raise LabelError(f"{path} is a map in the legend {tagged.name!r}, not {leg.name!r}: maps are compared in one "
                         "legend; map them in one legend first (lcup run with the same labels.target_legend), or "
                         "compare maps of one legend")
    unknown = sorted(set(map_codes(path).tolist()) - set(leg.codes) - {0})
    if unknown:
        raise LabelError(f"{path} holds codes {unknown[:10]} that the legend {leg.name!r} does not have (its codes: "
                         f"{list(leg.codes)}); give the maps' own legend (--legend), or map them in one legend first")


def change(paths: Sequence[str | Path], out_dir: str | Path, *, labels: Sequence[str] | None = None, legend=None,
           bbox: tuple[float, float, float, float] | None = None, chunk_px: int = 1024,
           compute: Callable | None = None, overwrite: bool = False) -> dict:
    """Change between class maps of two or more years, written to ``out_dir``.

    Writes ``transitions.csv`` (every pair of consecutive maps, and first → last: pixels and hectares per
    from/to class), ``change.json`` (gross gain, loss, net change and persistence per class, in hectares; the
    share of pixels that flip and flip back with three maps or more), ``change_<first>_<last>.tif`` (a COG with
    one code per transition, named, in the to-class colour; 1 = no change, 0 = no data in either map) and
    ``sankey.png``. Areas come from each row's true pixel area, so geographic grids (EPSG:4326) are measured right.

    Parameters
    ----------
    paths
        Class maps (GeoTIFF/COG, any GDAL-readable file or URL), oldest first; maps on other grids are read onto
        the first one's.
    labels
        Names of the maps (e.g. years); default: the file names.
    legend
        The maps' legend (built-in name or mapping); default: the ``LEGEND`` tag lcup writes in its COGs.
    bbox
        ``(xmin, ymin, xmax, ymax)`` in the first map's CRS: analyse this part only.
    compute
        ``compute(*lazy) -> tuple``: how to compute (default ``dask.compute``; the CLI's shows a bar).

    Returns
    -------
    dict
        What ``change.json`` holds, plus ``outputs`` (paths).

    Examples
    --------
    >>> lcup.change(["map2020.tif", "map2021.tif"], "change-out", labels=["2020", "2021"])  # doctest: +SKIP
    """
    if len(paths) < 2:
        raise ConfigError("change needs two maps or more (oldest first)")
    labels = list(labels) if labels else [Path(str(p)).stem for p in paths]
    if len(labels) != len(paths):
        raise ConfigError(f"{len(paths)} maps but {len(labels)} labels; give one label per map")
    out = Path(out_dir)
    if (out / "change.json").exists() and not overwrite:
        raise OutputExistsError(f"{out / 'change.json'} exists; pass overwrite=True (CLI: --overwrite) or choose another folder")
    compute = compute or dask.compute
    maps, geobox, leg = open_maps(paths, legend=legend, bbox=bbox, chunk_px=chunk_px)  # checked before a file is written
    out.mkdir(parents=True, exist_ok=True)
    codes, names = leg.codes, leg.names()
    area = row_area_m2(list(geobox.transform)[:6], geobox.shape[0], geobox.crs.geographic)
    pairs = [(i, i + 1) for i in range(len(maps) - 1)] + ([(0, len(maps) - 1)] if len(maps) > 2 else [])
    lazy = [transitions(maps[i], maps[j], codes, area) for i, j in pairs]
    if len(maps) > 2:
        lazy.append(temporal_consistency(maps))
    results = compute(*lazy)
    result: dict = {"maps": [str(p) for p in paths], "labels": labels, "legend": leg.name, "grid": {
        "crs": str(geobox.crs), "shape": list(geobox.shape), "transform": list(geobox.transform)[:6]}, "pairs": []}
    rows = []
    for (i, j), m in zip(pairs, results):
        px, ha = m[0], m[1] / 1e4
        s = change_summary(ha, codes, names)
        result["pairs"].append({"from": labels[i], "to": labels[j], "hectares": s, "pixels_changed": float(px[1:, 1:].sum() - np.trace(px[1:, 1:])),
                                "matrix_pixels": px.astype(np.int64).tolist(), "matrix_hectares": ha.round(4).tolist()})
        for a, ca in enumerate([0, *codes]):
            for b, cb in enumerate([0, *codes]):
                if px[a, b]:
                    rows.append([labels[i], labels[j], ca, names.get(ca, "no data"), cb, names.get(cb, "no data"),
                                 int(px[a, b]), round(float(ha[a, b]), 4)])
    if len(maps) > 2:
        valid, changed, back = (int(v) for v in results[-1])
        result["temporal_consistency"] = {"valid_px": valid, "changed_px": changed, "flip_back_px": back,
                                          "flip_back_share": back / valid if valid else None}
    with open(out / "transitions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["from_map", "to_map", "from_code", "from_name", "to_code", "to_name", "pixels", "hectares"])
        w.writerows(rows)
    first_last = results[len(pairs) - 1]  # first → last: the only pair with two maps, the last pair with more
    table = change_legend_table(first_last[0], codes)
    colours = dict(leg.classes)
    change_leg = Legend("change", {1: ("no change", NO_CHANGE_COLOUR),
                                   **{c: (f"{names[f]} → {names[t]}", colours[t][1]) for c, f, t in table}})
    cog = out / f"change_{safe_label(labels[0])}_{safe_label(labels[-1])}.tif"
    cmap = change_map(maps[0], maps[-1], codes, table)
    write_cog_from_dask(xr.DataArray(cmap, dims=("y", "x")), cog, geobox, nodata=0, legend=change_leg)
    result["change_map"] = {"path": str(cog), "codes": {str(c): f"{names[f]} → {names[t]}" for c, f, t in table} | {"1": "no change"}}
    fig, ax = plt.subplots(figsize=(8, 6))
    sankey(first_last[1] / 1e4, leg, labels=(labels[0], labels[-1]), ax=ax)
    fig.savefig(out / "sankey.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    result["sankey"] = str(out / "sankey.png")
    result["outputs"] = {"transitions": str(out / "transitions.csv"), "change_map": str(cog), "summary": str(out / "change.json")}
    step = max(1, -(-max(geobox.shape) // 800))
    looks = compute(maps[-1][::step, ::step])[0]
    result["outputs"]["report"] = str(write_report(out / "report.html", {"name": f"change {labels[0]} → {labels[-1]}"}, leg,
                                                   class_map=looks, change=result, map_title=labels[-1]))
    (out / "change.json").write_text(json.dumps(result, indent=1, allow_nan=False))
    return result


def safe_label(label: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "-", str(label)).strip("-") or "map"
