"""The pipeline's stages as plain functions on xarray objects, each taking its own settings section.

``search → load → scene_filter → features → labels → sample → train → predict → write → score``. The
pipeline (:func:`lcup.run_pipeline`) is a recipe over these; notebooks call them directly (re-exported
from :mod:`lcup`). Lazy stays lazy: only :func:`scene_filter`, :func:`sample`, :func:`train` and the
writers compute.
"""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ValidationError

from ..config import format_errors
from ..errors import ConfigError

S = TypeVar("S", bound=BaseModel)


def section(cls: type[S], value: S | Mapping[str, Any] | None) -> S:
    """A settings section from itself, a mapping of its keys, or None (its defaults); validated."""
    if isinstance(value, cls):
        return value

    try:
        return cls.model_validate(dict(value or {}))
    except ValidationError as e:
        raise ConfigError(format_errors(e, cls.__name__).replace("(top level)", cls.__name__)) from None


from .features import feature_names, features  # noqa: E402
from .labels import labels, sample  # noqa: E402
from .load import load, scene_filter  # noqa: E402
from .predict import coarse_prior_array, predict  # noqa: E402
from .score import vanished_classes  # noqa: E402
from .search import check_items, grid, native_origin, search  # noqa: E402
from .tiles import windows_of  # noqa: E402
from .train import train, train_network  # noqa: E402
from .write import write  # noqa: E402

__all__ = ["check_items", "coarse_prior_array", "native_origin", "feature_names", "features", "grid", "labels", "load", "predict", "sample", "scene_filter",
           "search", "section", "train", "train_network", "vanished_classes", "windows_of", "write"]
