"""Spectral indices on surface reflectance.

Formulas follow Awesome Spectral Indices (Montero et al. 2023, the catalogue behind ``spyndex``);
they are written out here because ``spyndex`` drags in Earth Engine and plotting dependencies for
seven one-line formulas. Inputs are reflectance (0–1) with lcup band names.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import xarray as xr


def _nd(a, b):
    return (a - b) / (a + b)


#: ``name -> (required bands, formula)``
INDICES: dict[str, tuple[tuple[str, ...], Callable[..., xr.DataArray]]] = {
    "ndvi": (("nir", "red"), lambda nir, red: _nd(nir, red)),
    "evi": (("nir", "red", "blue"), lambda nir, red, blue: 2.5 * (nir - red) / (nir + 6.0 * red - 7.5 * blue + 1.0)),
    "ndwi": (("green", "nir"), lambda green, nir: _nd(green, nir)),
    "mndwi": (("green", "swir16"), lambda green, swir16: _nd(green, swir16)),
    "ndbi": (("swir16", "nir"), lambda swir16, nir: _nd(swir16, nir)),
    "nbr": (("nir", "swir22"), lambda nir, swir22: _nd(nir, swir22)),
    "savi": (("nir", "red"), lambda nir, red: 1.5 * (nir - red) / (nir + red + 0.5)),
    "ndre": (("nir", "rededge1"), lambda nir, rededge1: _nd(nir, rededge1)),
    "ndmi": (("nir", "swir16"), lambda nir, swir16: _nd(nir, swir16)),
}


def compute_indices(bands: Mapping[str, xr.DataArray], names: Sequence[str]) -> dict[str, xr.DataArray]:
    """Compute spectral indices from reflectance bands.

    Parameters
    ----------
    bands
        ``{band name: DataArray}`` of reflectance, any dims (e.g. ``(y, x, t)``), numpy or dask.
    names
        Index names, from :data:`INDICES`.

    Returns
    -------
    dict
        ``{index name: float32 DataArray}``, same dims as the bands.
    """
    from ..errors import MissingBandError

    out = {}
    for name in names:
        try:
            need, fn = INDICES[name]
        except KeyError:
            raise ValueError(f"unknown index {name!r}; available: {sorted(INDICES)}") from None
        missing = [b for b in need if b not in bands]
        if missing:
            raise MissingBandError(f"index {name!r} needs bands {missing}, which were not loaded; add them to load.bands")
        out[name] = fn(*(bands[b] for b in need)).astype("float32").rename(name)
    return out
