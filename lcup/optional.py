"""Optional dependencies: imported where they are used, with one clear error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

#: The extras of ``pyproject.toml`` that bring each optional module.
EXTRAS = {"geopandas": "vector", "pyogrio": "vector", "planetary_computer": "pc", "dask_gateway": "gateway",
          "lightgbm": "lightgbm"}


def require(module: str, purpose: str) -> ModuleType:
    """``module`` imported, or :class:`~lcup.errors.MissingDependencyError` naming ``purpose`` and the extra to
    install (:data:`EXTRAS`).

    Examples
    --------
    >>> require("json", "reading JSON").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        fix = f"pip install 'lcup[{extra}]'" if extra else f"pip install {top}"
        raise MissingDependencyError(f"{purpose} needs {top}, which is not installed: {fix}") from None
