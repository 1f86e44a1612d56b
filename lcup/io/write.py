"""Write rasters: COGs (small arrays in memory, large ones windowed) and Zarr stores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.transform import Affine

if TYPE_CHECKING:
    from ..legends import Legend


def _profile(arr: np.ndarray, transform, epsg_or_crs, nodata) -> dict:
    crs = f"EPSG:{epsg_or_crs}" if isinstance(epsg_or_crs, int) else epsg_or_crs
    return {
        "driver": "COG",
        "height": arr.shape[-2],
        "width": arr.shape[-1],
        "count": 1 if arr.ndim == 2 else arr.shape[0],
        "dtype": arr.dtype.name,
        "crs": crs,
        "transform": transform if isinstance(transform, Affine) else Affine(*transform[:6]),
        "nodata": nodata,
        "compress": "DEFLATE",
        "predictor": 2 if arr.dtype.kind in "ui" else 3,
        "blocksize": 256,
        "overview_resampling": "nearest",
    }


def write_cog_array(
    path: str | Path,
    arr: np.ndarray,
    transform,
    crs: int | str,
    nodata: float | int | None = 0,
    legend: "Legend | None" = None,
) -> Path:
    """Write an in-memory ``(y, x)`` or ``(band, y, x)`` array as a Cloud-Optimized GeoTIFF.

    For categorical maps give ``legend``: it embeds a colour table and class names (GDAL metadata
    ``CLASS_<code>=<name>``), and overviews use nearest resampling.
    """
    path = Path(path)
    prof = _profile(arr, transform, crs, nodata)
    if legend is not None:
        prof["overview_resampling"] = "nearest"
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr if arr.ndim == 3 else arr[None])
        if legend is not None and arr.dtype == np.uint8:
            dst.write_colormap(1, {0: (0, 0, 0, 0), **legend.colours()})
            dst.update_tags(**{f"CLASS_{c}": n for c, n in legend.names().items()}, LEGEND=legend.name)
    return path


def write_zarr(ds, path: str | Path, *, overwrite: bool = False, attrs: dict | None = None) -> Path:
    """Write a georeferenced Dataset to Zarr with CF ``spatial_ref`` and run metadata in the attributes.

    The template (metadata, coordinates) is written first with ``compute=False``, then the data chunk
    by chunk, so memory is bounded by the chunk size.
    """
    import json

    from ..errors import OutputExistsError

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; set output.overwrite: true (CLI: --overwrite) to replace it")
    ds = ds.copy()
    if attrs:
        ds.attrs.update({k: (v if isinstance(v, (str, int, float)) else json.dumps(v)) for k, v in attrs.items()})
    mode = "w" if overwrite else "w-"
    delayed = ds.to_zarr(path, mode=mode, compute=False, consolidated=True)
    delayed.compute()
    return path


def write_cog_from_dask(
    arr,
    path: str | Path,
    geobox,
    *,
    nodata: int | float | None = 0,
    legend: "Legend | None" = None,
    overview_resampling: str = "nearest",
) -> Path:
    """Write a (possibly dask-backed) ``(y, x)`` DataArray as a COG without holding it in memory.

    Blocks are computed one chunk at a time into a tiled GTiff, which ``rio_cogeo.cog_translate``
    turns into a COG with overviews (``nearest`` by default: class maps must not be averaged), an
    embedded colour table and class names.
    """
    import tempfile

    import dask.array as da
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    path = Path(path)
    data = arr.data if isinstance(arr.data, da.Array) else da.from_array(np.asarray(arr), chunks=1024)
    h, w = data.shape
    prof = {
        "driver": "GTiff", "height": h, "width": w, "count": 1, "dtype": data.dtype.name,
        "crs": str(geobox.crs), "transform": geobox.transform, "nodata": nodata,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "DEFLATE",
    }
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_tif = Path(tmp) / "stage.tif"
        with rasterio.open(tmp_tif, "w", **prof) as dst:
            y0 = 0
            for cy in data.chunks[0]:
                x0 = 0
                for cx in data.chunks[1]:
                    block = np.asarray(data[y0 : y0 + cy, x0 : x0 + cx].compute())
                    dst.write(block, 1, window=rasterio.windows.Window(x0, y0, cx, cy))
                    x0 += cx
                y0 += cy
        out_prof = cog_profiles.get("deflate")
        out_prof.update(blockxsize=256, blockysize=256, predictor=2 if data.dtype.kind in "ui" else 3)
        extra = {}
        cmap = None
        if legend is not None:
            cmap = {0: (0, 0, 0, 0), **legend.colours()}
            extra = {f"CLASS_{c}": n for c, n in legend.names().items()}
            extra["LEGEND"] = legend.name
        cog_translate(
            str(tmp_tif), str(path), out_prof, nodata=nodata, overview_resampling=overview_resampling,
            quiet=True, colormap=cmap, additional_cog_metadata=extra or None, in_memory=False,
        )
    return path
