"""Small test data for the stages, made in memory in milliseconds: a grid, a coarse label map and a Sentinel-2 cube
shaped as :func:`lcup.stages.load.load` returns it, so a stage test needs no synthetic year on disk (as
``odc.stac.testing`` and ``odc.geo.testutils`` do for their packages).

Examples
--------
>>> from lcup import testing
>>> gb = testing.geobox((64, 64))
>>> lab = testing.label_map(gb, classes=(1, 2, 3), cell_px=16)
>>> cube = testing.cube(gb, lab, dates=12)
>>> sorted(cube.data_vars)[:3], cube.sizes["time"]
(['blue', 'green', 'nir'], 12)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

#: Bands of :func:`cube` (Earth Search's names), with a dry-season / green-season reflectance per class kind.
BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")

#: (bare reflectance, green reflectance) per band for a few kinds of cover: the cube's pixels go from the first
#: to the second over a seasonal curve whose amplitude depends on the class.
_SPECTRA = np.array([
    [[0.06, 0.03], [0.09, 0.06], [0.11, 0.04], [0.22, 0.40], [0.25, 0.20], [0.18, 0.10]],  # vegetation
    [[0.07, 0.06], [0.09, 0.08], [0.10, 0.09], [0.18, 0.22], [0.22, 0.21], [0.17, 0.16]],  # sparse
    [[0.04, 0.04], [0.05, 0.05], [0.04, 0.04], [0.03, 0.03], [0.02, 0.02], [0.01, 0.01]],  # water
    [[0.12, 0.12], [0.14, 0.14], [0.16, 0.16], [0.22, 0.22], [0.28, 0.28], [0.24, 0.24]],  # built-up / bare
], np.float32)


def geobox(shape: tuple[int, int] = (64, 64), *, resolution: float = 10.0, crs: str = "EPSG:32633",
           origin: tuple[float, float] = (500_000.0, 5_100_000.0)) -> GeoBox:
    """A north-up grid of ``shape`` ``(y, x)`` pixels of ``resolution`` m whose top-left corner is ``origin``."""
    x0, y1 = origin
    return GeoBox.from_bbox((x0, y1 - shape[0] * resolution, x0 + shape[1] * resolution, y1), crs, resolution=resolution)


def label_map(gb: GeoBox | None = None, *, classes: Sequence[int] = (1, 2, 3), cell_px: int = 10, seed: int = 0) -> xr.DataArray:
    """A coarse-looking ``(y, x)`` uint8 label map on ``gb``: square cells of ``cell_px`` pixels, each one class of
    ``classes`` drawn at random (every class present when there are enough cells)."""
    gb = gb or geobox()
    rng = np.random.default_rng(seed)
    ny, nx = -(-gb.shape[0] // cell_px), -(-gb.shape[1] // cell_px)
    cells = rng.choice(np.asarray(classes, np.uint8), size=ny * nx)
    cells[: min(len(classes), cells.size)] = np.asarray(classes, np.uint8)[: min(len(classes), cells.size)]
    cells = rng.permutation(cells).reshape(ny, nx)
    data = np.kron(cells, np.ones((cell_px, cell_px), np.uint8))[: gb.shape[0], : gb.shape[1]]
    return xr.DataArray(data, dims=("y", "x"), coords=xr_coords(gb), name="label")


def write_label_map(path: str | Path, labels: xr.DataArray, gb: GeoBox) -> Path:
    """``labels`` (:func:`label_map`) written as a GeoTIFF on ``gb`` (0 = no data), for :func:`lcup.stages.labels.labels`."""
    path = Path(path)
    with rasterio.open(path, "w", driver="GTiff", width=gb.shape[1], height=gb.shape[0], count=1, dtype="uint8",
                       crs=str(gb.crs), transform=gb.transform, nodata=0) as dst:
        dst.write(np.asarray(labels.values, np.uint8), 1)
    return path


def cube(gb: GeoBox | None = None, labels: xr.DataArray | None = None, *, dates: int = 24, year: int = 2024,
         cloud_fraction: float = 0.15, noise: float = 0.01, chunks: int = 32, seed: int = 0) -> xr.Dataset:
    """A Sentinel-2 cube as :func:`lcup.stages.load.load` returns it: ``(time, y, x)`` uint16 DN of :data:`BANDS`
    (reflectance = DN × 1e-4 − 0.1, Earth Search's baseline-4 scaling, as per-date ``scale_<band>`` and
    ``offset_<band>`` coordinates), ``scl`` (4 = vegetation, 9 = cloud high probability on ``cloud_fraction`` of
    the pixels of each date) and ``items``, Dask-backed in ``chunks`` px squares.

    Each class of ``labels`` (default :func:`label_map`) has its own spectra and season, so a model can learn it.
    ``dates`` acquisitions are spread evenly over ``year``.
    """
    gb = gb or geobox()
    labels = label_map(gb, seed=seed) if labels is None else labels
    rng = np.random.default_rng(seed)
    times = pd.date_range(dt.datetime(year, 1, 5, 10, 30), dt.datetime(year, 12, 25, 10, 30), periods=dates).as_unit("ns")
    doy = times.dayofyear.to_numpy(np.float32)
    lab = np.asarray(labels.values, np.int64)
    kind = lab % len(_SPECTRA)
    peak = 120 + 15 * (lab % 5)  # each class greens up on its own day of year
    season = np.exp(-0.5 * ((doy[:, None, None] - peak[None]) / 45.0) ** 2).astype(np.float32)  # (time, y, x)
    data = {}
    for b in range(len(BANDS)):
        bare, green = _SPECTRA[kind, b, 0], _SPECTRA[kind, b, 1]
        refl = bare[None] + (green - bare)[None] * season + rng.normal(0, noise, season.shape).astype(np.float32)
        data[BANDS[b]] = np.clip((refl + 0.1) * 1e4, 1, 65535).astype(np.uint16)
    scl = np.where(rng.random(season.shape) < cloud_fraction, 9, 4).astype(np.uint8)
    coords = {"time": times.values, **xr_coords(gb)}
    ds = xr.Dataset({k: (("time", "y", "x"), v) for k, v in data.items()} | {"scl": (("time", "y", "x"), scl)},
                    coords=coords).chunk({"time": -1, "y": chunks, "x": chunks})
    ds["scl"].attrs["halo_px"] = 0
    per_date = {f"{k}_{b}": ("time", np.full(dates, v, np.float64)) for b in BANDS for k, v in (("scale", 1e-4), ("offset", -0.1))}
    return ds.assign_coords(per_date | {"items": ("time", [f"S2X_TEST_{t:%Y%m%d}" for t in times])})
