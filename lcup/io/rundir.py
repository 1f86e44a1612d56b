"""The output folder of a run: checked before any work, locked while a run writes into it, and the run's record
(``summary.json``: figures, timings and cores used per stage, parameters)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import psutil
import rasterio

from .. import __version__
from ..errors import ConfigError, LcupError, OutputExistsError, clear_error
from ..redact import redact

log = logging.getLogger("lcup")

LOCK_NAME = ".lcup.lock"


def resolve_map(path: str | Path) -> Path:
    """The class map a path names: a raster as it is; a run's output folder → its ``landcover_class.tif``; a
    Sentinel-2-tiled run's folder or its ``collection.json`` → its ``mosaic.tif``.

    Raises
    ------
    ConfigError
        If a folder or collection holds no class map.
    """
    p = Path(path)
    if "://" in str(path):
        return p
    folder = p.parent if p.name == "collection.json" else p if p.is_dir() else None
    if folder is None:
        return p
    for name in ("mosaic.tif", "landcover_class.tif"):
        if (folder / name).exists():
            return folder / name
    raise ConfigError(f"{path} holds no class map (mosaic.tif or landcover_class.tif); give a map file or an lcup "
                      "run's output folder")


def prepare_output_dir(out: Path, *, overwrite: bool, resume: bool, outputs: Sequence[str] = ()) -> bool:
    """Check that ``out`` can take a run's outputs, and create it; returns whether it was created.

    Raises
    ------
    ConfigError
        If ``out`` is a file or cannot be written (read-only, no permission).
    OutputExistsError
        If one of ``outputs`` exists in ``out`` and neither ``overwrite`` nor ``resume`` is set.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output.dir {out} is a file, not a folder; choose a folder (CLI: --output DIR)")
    if not (overwrite or resume):
        for name in outputs:
            if (out / name).exists():
                raise OutputExistsError(
                    f"{out / name} exists; set output.overwrite: true (CLI: --overwrite) to replace it, output.resume: true "
                    "(CLI: --resume) to continue an interrupted run, or choose another output.dir"
                )
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output.dir {out}: {e.strerror or e}; choose a folder you can write to") from None
    if not os.access(out, os.W_OK | os.X_OK):
        if created:
            out.rmdir()
        raise ConfigError(f"output.dir {out} is not writable; choose a folder you can write to (CLI: --output DIR)")
    return created


@contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``out`` for a run; a second run into the same folder is refused.

    An OS file lock (``flock``): released by the kernel when the process ends, even by ``kill -9``,
    so an interrupted run never leaves a stale lock behind for ``--resume``.

    Raises
    ------
    OutputExistsError
        If another run holds the lock.
    """
    path = Path(out) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise OutputExistsError(
            f"another lcup run ({holder}) is writing into {out}; wait for it to finish or choose another output.dir"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield path
    finally:
        try:
            path.unlink()
        except OSError:
            pass
        os.close(fd)


def remove_empty_files(out: Path) -> None:
    """A failed run leaves no 0-byte file behind in ``out`` (a write interrupted by a full disk)."""
    for p in Path(out).rglob("*"):
        try:
            if p.is_file() and p.stat().st_size == 0 and p.name != LOCK_NAME:
                p.unlink()
        except OSError:
            pass


def relative_paths(obj: Any, out: Path | str) -> Any:
    """``obj`` (JSON-like) with every string that is an absolute local path inside ``out`` made relative to it
    (``out`` itself: ``"."``), so that what a run writes still holds when its folder is moved or published.

    Examples
    --------
    >>> relative_paths({"dir": "/runs/a", "cog": "/runs/a/map.tif", "labels": "/data/cgls.tif"}, "/runs/a")
    {'dir': '.', 'cog': 'map.tif', 'labels': '/data/cgls.tif'}
    """
    root = os.path.abspath(str(out))
    if isinstance(obj, dict):
        return {k: relative_paths(v, root) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [relative_paths(v, root) for v in obj]
    if isinstance(obj, str) and os.path.isabs(obj) and "\n" not in obj:
        p = os.path.abspath(obj)
        if p == root or p.startswith(root + os.sep):
            return os.path.relpath(p, root)
    return obj


@dataclass
class RunSummary:
    """What a run did: figures, timings per stage (s), parameters. Saved as ``summary.json``."""

    name: str
    timings: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)

    status: str = "running"
    error: str | None = None

    @classmethod
    def of(cls, cfg) -> "RunSummary":
        """A new summary of the run of ``cfg`` (a :class:`~lcup.config.PipelineConfig`): its parameters with
        credentials masked, and the versions that decide the result."""
        summary = cls(cfg.name, parameters=redact(json.loads(cfg.model_dump_json())))
        summary.figures["versions"] = versions()
        return summary

    def failed(self, e: BaseException, out: Path) -> LcupError | None:
        """Record the failure ``e`` of the run writing into ``out`` (status ``failed``, or ``interrupted`` for Ctrl-C)
        and save the summary, leaving no 0-byte file behind; returns lcup's clear error for ``e`` when it came from
        inside a library (:func:`~lcup.errors.clear_error`), to raise in its place."""
        self.status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        clear = clear_error(e, out)
        self.error = f"{type(clear or e).__name__}: {clear or e}"
        remove_empty_files(out)
        try:
            self.save(out)
        except OSError:  # e.g. the disk is full: the error itself matters more
            remove_empty_files(out)
        return clear

    def to_json(self) -> str:
        """Strict JSON (NaN and inf as null), credentials masked."""
        fields = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return json.dumps(_finite(redact(json.loads(json.dumps(fields, default=jsonable)))), indent=2, allow_nan=False)

    def autosave(self, out: Path) -> None:
        """Save into ``out`` now and at the end of every :meth:`stage`."""
        self._out = Path(out)
        self.save(out)

    @classmethod
    def load(cls, path: Path) -> "RunSummary | None":
        """The summary saved at ``path`` (``summary.json``), or None when there is none or it cannot be read; its
        outputs as paths from here (they are saved relative to the run's folder)."""
        try:
            d = json.loads(Path(path).read_text())
            s = cls(**{k: d[k] for k in ("name", "timings", "figures", "outputs", "parameters", "status", "error") if k in d})
        except (OSError, ValueError, TypeError):
            return None
        s.outputs = {k: v if "://" in v or os.path.isabs(v) else str(Path(path).parent / v) for k, v in s.outputs.items()}
        return s

    def save(self, out: Path) -> Path:
        """Write ``summary.json`` into ``out``, paths inside ``out`` relative to it (:func:`relative_paths`); returns
        its path."""
        path = Path(out) / "summary.json"
        d = json.loads(self.to_json())
        d.update({k: relative_paths(d[k], out) for k in ("outputs", "parameters", "figures")})
        path.write_text(json.dumps(d, indent=2, allow_nan=False))
        return path

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name``: its wall time (s) into ``timings`` and its cores used on this machine
        (:func:`tree_cpu_s` over wall time) into ``figures["cores_used"]``, each logged."""
        log.info("▶ %s", name)
        t0, c0 = time.perf_counter(), tree_cpu_s()
        yield
        wall, cpu = time.perf_counter() - t0, tree_cpu_s() - c0
        self.timings[name] = round(wall, 3)
        cores = self.figures.setdefault("cores_used", {})
        cores[name] = round(cpu / wall, 2) if wall > 0 else None
        if getattr(self, "_out", None) is not None:
            self.save(self._out)
        log.info("✔ %s (%.1f s, %.2f cores on this machine)", name, wall, cores[name] or 0.0)


def _finite(obj):
    """``obj`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def jsonable(o):
    """``o`` as JSON can hold it (``json.dumps(..., default=jsonable)``): numpy scalars and arrays as numbers and
    lists, anything else as its string."""
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def tree_cpu_s() -> float:
    """CPU seconds (user + system) of this process and its descendants, living or reaped: a LocalCluster's
    workers and nannies are child processes, so the stages' cores used are measured on this machine."""
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:  # ended between the listing and the reading
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def versions() -> dict:
    """The versions that decide a run's result and speed, for the run record."""
    out = {"lcup": __version__}
    for pkg in ("dask", "distributed", "xarray", "odc-stac", "odc-geo", "numba", "numpy", "scikit-learn", "rasterio", "zarr"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    out["GDAL"] = rasterio.__gdal_version__
    return out
