"""Stage: write a map (from :func:`lcup.stages.predict.predict`) as Zarr and a class COG."""

from __future__ import annotations

import warnings
from pathlib import Path

import xarray as xr

from ..legends import Legend


def write(ds: xr.Dataset, folder: str | Path, *, legend: Legend, geobox=None, zarr: bool = True, cog: bool = True,
          overwrite: bool = False) -> dict[str, Path]:
    """Compute and write ``ds`` into ``folder``: ``landcover.zarr`` (Zarr v3) and ``landcover_class.tif`` (a COG).

    Chunk by chunk: the map is never held whole in memory. The pipeline writes tile by tile instead
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
    import odc.geo.xr  # noqa: F401 - the .odc accessor

    from ..errors import OutputExistsError
    from ..io.write import write_cog_from_dask

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    if zarr:
        p = folder / "landcover.zarr"
        if p.exists() and not overwrite:
            raise OutputExistsError(f"{p} exists; pass overwrite=True or choose another folder")
        from ..io.write import _cf_axes

        enc = {v: {"_FillValue": 0} for v in ds.data_vars}
        with warnings.catch_warnings():  # consolidated metadata is not in the Zarr v3 spec: chosen, so opening is quiet
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            _cf_axes(ds.drop_attrs(deep=False)).to_zarr(p, mode="w", encoding=enc, consolidated=True, zarr_format=3)
        paths["zarr"] = p
    if cog:
        p = folder / "landcover_class.tif"
        if p.exists() and not overwrite:
            raise OutputExistsError(f"{p} exists; pass overwrite=True or choose another folder")
        write_cog_from_dask(ds["class"], p, ds.odc.geobox if geobox is None else geobox, nodata=0, legend=legend)
        paths["cog"] = p
    return paths
