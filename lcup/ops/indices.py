"""Spectral indices on surface reflectance.

Formulas follow Awesome Spectral Indices (Montero et al. 2023, the catalogue behind ``spyndex``);
they are written out here because ``spyndex`` drags in Earth Engine and plotting dependencies for
seven one-line formulas. Inputs are reflectance (0–1) with lcup band names.
"""

from __future__ import annotations

import ast
import operator
from typing import Callable, Mapping, Sequence

import xarray as xr

from ..errors import MissingBandError
from ..vocab import INDEX_BANDS, formula_bands, index_bands


def _nd(a, b):
    return (a - b) / (a + b)


_FORMULAS: dict[str, Callable[..., xr.DataArray]] = {
    "ndvi": lambda nir, red: _nd(nir, red),
    "evi": lambda nir, red, blue: 2.5 * (nir - red) / (nir + 6.0 * red - 7.5 * blue + 1.0),
    "ndwi": lambda green, nir: _nd(green, nir),
    "mndwi": lambda green, swir16: _nd(green, swir16),
    "ndbi": lambda swir16, nir: _nd(swir16, nir),
    "nbr": lambda nir, swir22: _nd(nir, swir22),
    "savi": lambda nir, red: 1.5 * (nir - red) / (nir + red + 0.5),
    "ndre": lambda nir, rededge1: _nd(nir, rededge1),
    "ndmi": lambda nir, swir16: _nd(nir, swir16),
}

#: ``name -> (required bands, formula)``; the bands come from :data:`lcup.vocab.INDEX_BANDS`
INDICES: dict[str, tuple[tuple[str, ...], Callable[..., xr.DataArray]]] = {
    name: (bands, _FORMULAS[name]) for name, bands in INDEX_BANDS.items()
}


def compute_indices(bands: Mapping[str, xr.DataArray], names: Sequence[str]) -> dict[str, xr.DataArray]:
    """Compute spectral indices from reflectance bands.

    Parameters
    ----------
    bands
        ``{band name: DataArray}`` of reflectance, any dims (e.g. ``(y, x, t)``), numpy or dask.
    names
        Index names, from :data:`INDICES`. A band an index needs may be stood in for by another
        (:data:`lcup.vocab.BAND_FALLBACKS`: B8A for B08).

    Returns
    -------
    dict
        ``{index name: float32 DataArray}``, same dims as the bands.
    """
    out = {}
    for name in names:
        try:
            need, fn = INDICES[name]
        except KeyError:
            raise ValueError(f"unknown index {name!r}; available: {sorted(INDICES)}") from None
        use, missing = index_bands(name, bands)
        if missing:
            raise MissingBandError(f"index {name!r} needs bands {missing}, which were not loaded; add them to load.bands")
        out[name] = fn(*(bands[b] for b in use)).astype("float32").rename(name)
    return out


def formula_index(bands: Mapping[str, xr.DataArray], name: str, expr: str) -> xr.DataArray:
    """A custom index from an arithmetic formula of band names (:func:`lcup.vocab.formula_bands`), float32.

    Examples
    --------
    >>> formula_index(bands, "ndvi_b8a", "(nir08 - red) / (nir08 + red)")  # doctest: +SKIP
    """
    missing = [b for b in formula_bands(expr) if b not in bands]
    if missing:
        raise MissingBandError(f"index {name!r} ({expr}) needs bands {missing}, which were not loaded; add them to load.bands")
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp):
            return ops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp):
            return ops[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Name):
            return bands[node.id]
        return node.value

    return ev(ast.parse(expr, mode="eval")).astype("float32").rename(name)
