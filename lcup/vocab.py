"""The vocabulary of pipeline settings: names and codes only, no heavy imports.

Configuration checks (:mod:`lcup.config`) read these tables; the compute modules (:mod:`lcup.ops`) build on
them, so ``import lcup`` stays light (no numba, dask.array or scipy).
"""

from __future__ import annotations

import ast

#: SCL classes treated as invalid by default: no data, saturated/defective, cloud shadow,
#: cloud medium and high probability, thin cirrus. Snow (11) is kept valid unless asked.
DEFAULT_INVALID_SCL: tuple[int, ...] = (0, 1, 3, 8, 9, 10)

#: SCL classes that the mask dilation grows: cloud shadow, cloud medium/high probability, thin cirrus.
CLOUD_SHADOW_SCL: tuple[int, ...] = (3, 8, 9, 10)

#: Per-pixel summary statistics of a series, in kernel code order (:func:`lcup.ops._kernels.series_stats`).
STAT_NAMES: tuple[str, ...] = ("mean", "std", "min", "max", "p10", "p50", "p90", "amplitude", "doy_max")

#: Spectral indices and the bands each needs (formulas in :mod:`lcup.ops.indices`).
INDEX_BANDS: dict[str, tuple[str, ...]] = {
    "ndvi": ("nir", "red"),
    "evi": ("nir", "red", "blue"),
    "ndwi": ("green", "nir"),
    "mndwi": ("green", "swir16"),
    "ndbi": ("swir16", "nir"),
    "nbr": ("nir", "swir22"),
    "savi": ("nir", "red"),
    "ndre": ("nir", "rededge1"),
    "ndmi": ("nir", "swir16"),
}

#: Stand-ins for a band an index needs when the band itself is not loaded: Sentinel-2 B8A (``nir08``, 20 m,
#: narrow NIR) for B08 (``nir``), as catalogs without B08 have it.
BAND_FALLBACKS: dict[str, tuple[str, ...]] = {"nir": ("nir08",)}


def index_bands(name: str, loaded) -> tuple[list[str], list[str]]:
    """The bands index ``name`` reads given the ``loaded`` ones (with :data:`BAND_FALLBACKS`), and those missing."""
    use, missing = [], []
    for b in INDEX_BANDS[name]:
        alt = [a for a in (b, *BAND_FALLBACKS.get(b, ())) if a in loaded]
        (use if alt else missing).append(alt[0] if alt else b)
    return use, missing


def formula_bands(expr: str) -> list[str]:
    """The band names a custom index formula reads, after checking it is plain arithmetic.

    Allowed: band names, numbers, ``+ - * / **``, unary minus and parentheses (nothing is called or imported).

    Examples
    --------
    >>> formula_bands("(nir08 - red) / (nir08 + red + 0.5)")
    ['nir08', 'red']
    """
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"index formula {expr!r} is not an expression: {e.msg}") from None
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in names:
                names.append(node.id)
        elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Load, ast.Add, ast.Sub,
                                   ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)) or (
                isinstance(node, ast.Constant) and not isinstance(node.value, (int, float))):
            raise ValueError(f"index formula {expr!r}: only band names, numbers, + - * / ** and parentheses are allowed")
    return names
