"""lcup: coarse land-cover maps to 10 m with machine learning on Sentinel-2 time series.

Importing lcup never starts a cluster nor imports the CLI.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from .redact import RedactingFilter

__version__ = "0.1.0"


def _numba_cache_outside_the_package() -> None:
    """Compiled-kernel caches go to the user's cache folder, never into ``site-packages/lcup``: a cache folder
    left there by a regular install shadows a later editable install (``pip install -e``)."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        os.environ["NUMBA_CACHE_DIR"] = str(base / "lcup" / "numba")


_numba_cache_outside_the_package()

from .config import PipelineConfig, load_config  # noqa: E402
from .errors import LcupError  # noqa: E402


def _install_log_redaction() -> None:
    lg = logging.getLogger("lcup")
    if not any(isinstance(f, RedactingFilter) for f in lg.filters):
        lg.addFilter(RedactingFilter())


_install_log_redaction()


def run_pipeline(cfg, **kwargs):
    """Run a pipeline (a :class:`PipelineConfig` or a path to a YAML file); see :func:`lcup.pipeline.run_pipeline`."""
    from .pipeline import run_pipeline as _run  # deferred: import lcup stays light

    if not isinstance(cfg, PipelineConfig):
        cfg = load_config(cfg)
    return _run(cfg, **kwargs)


def write_demo(out_dir, spec=None, **kwargs):
    """Generate the synthetic demo scene; see :func:`lcup.synthetic.write_demo`."""
    from .synthetic import write_demo as _w  # deferred: import lcup stays light

    return _w(out_dir, spec, **kwargs)


#: The stages, for notebooks: ``lcup.search(...)``, ``lcup.load(...)`` ... (imported on first use, so that
#: ``import lcup`` stays light).
STAGES = ("grid", "search", "load", "scene_filter", "features", "feature_names", "labels", "sample", "train",
          "windows_of", "train_network",
          "coarse_prior_array", "predict",
          "write")


#: The analyst's functions: ``lcup.change(...)``, ``lcup.zonal(...)``, ``lcup.design(...)``, ``lcup.area(...)``,
#: ``lcup.write_report(...)``, from the module named.
ANALYSIS = {"change": "lcup.stages.change", "zonal": "lcup.stages.zonal", "design": "lcup.stages.reference",
            "area": "lcup.stages.reference", "write_report": "lcup.report"}


def __getattr__(name: str):
    if name in STAGES:
        return getattr(importlib.import_module("lcup.stages"), name)
    if name in ANALYSIS:
        return getattr(importlib.import_module(ANALYSIS[name]), name)
    if name in ("plot", "stages"):
        return importlib.import_module(f"lcup.{name}")
    raise AttributeError(f"module 'lcup' has no attribute {name!r}")


__all__ = ["__version__", "LcupError", "PipelineConfig", "load_config", "run_pipeline", "write_demo", *STAGES, *ANALYSIS]


def __dir__() -> list[str]:
    """What ``import lcup`` offers, the stages and analyses imported on first use included (notebook completion)."""
    return sorted({*globals(), *__all__, "plot", "stages"})
