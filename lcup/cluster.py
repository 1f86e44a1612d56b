"""Dask clusters: a LocalCluster by default, an existing scheduler, or Dask Gateway."""

from __future__ import annotations

import ctypes.util
import getpass
import importlib
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
import warnings
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import dask
import distributed
import numpy as np
import xarray as xr
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin
from rasterio.errors import NotGeoreferencedWarning

from .config import ClusterConfig
from .errors import LcupError

log = logging.getLogger("lcup")

#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc(mmap_threshold: int = 32 * 2**20, trim_threshold: int = 128 * 2**20) -> bool:
    """Let glibc reuse freed memory for mid-sized arrays in this process (a no-op elsewhere than glibc).

    distributed's Nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting any trim
    threshold switches off glibc's dynamic mmap threshold, so every array over 128 KiB is a fresh
    ``mmap`` whose pages fault in again on each use. scikit-learn's forest allocates an
    ``(n, n_classes)`` array per tree: measured here, ``predict_proba`` ran 25–40 % slower under that
    setting. This raises the mmap threshold to ``mmap_threshold`` bytes and trims the heap only above
    ``trim_threshold`` bytes, which restores the speed; memory still returns to the OS past that.

    Returns
    -------
    bool
        True when both settings were applied.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    except (OSError, AttributeError):
        return False


class MallocTuning(WorkerPlugin):
    """Worker plugin that runs :func:`tune_malloc` in every worker, present and future."""

    name = "lcup-malloc-tuning"

    def setup(self, worker=None) -> None:
        tune_malloc()


def quiet_spurious_warnings() -> None:
    """Ignore rasterio's ``NotGeoreferencedWarning`` from in-memory reprojection, in this process.

    odc-geo reprojects numpy arrays through GDAL MEM datasets and rasterio then warns "Dataset has no
    geotransform" although both sides are georeferenced and the result is right (odc-geo#131,
    odc-stac#145). Only that warning raised in ``rasterio.warp`` is ignored: opening a file that has
    no georeferencing still warns.
    """
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.warp")


class QuietWarnings(WorkerPlugin):
    """Worker plugin that runs :func:`quiet_spurious_warnings` in every worker, present and future, and makes worker
    processes ignore SIGINT: Ctrl-C in a terminal reaches the whole process group, and each worker printed a
    KeyboardInterrupt traceback (34 lines) before lcup's one line; the client's process closes them instead."""

    name = "lcup-quiet-warnings"

    def setup(self, worker=None) -> None:
        quiet_spurious_warnings()
        if multiprocessing.parent_process() is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a worker process of its own (never the client's process)


def quiet_workers(client) -> None:
    """Register :class:`QuietWarnings` on the cluster of ``client``."""
    client.register_plugin(QuietWarnings(), name=QuietWarnings.name)


def tune_workers(client) -> dict:
    """Register :class:`MallocTuning` on the cluster of ``client``; returns ``{worker: applied}``."""
    client.register_plugin(MallocTuning(), name=MallocTuning.name)
    return client.run(tune_malloc)


@contextmanager
def cluster_client(cfg: ClusterConfig | None = None) -> Iterator["object | None"]:
    """Yield a ``distributed.Client`` for the configured cluster, closed on exit.

    ``kind: none`` yields None (the threaded scheduler in this process).
    """
    cfg = cfg or ClusterConfig()
    if cfg.kind == "none":
        yield None
        return

    if cfg.kind == "local":
        threads = cfg.threads_per_worker or max(1, (os.cpu_count() or 1) // cfg.n_workers)
        cluster = LocalCluster(
            n_workers=cfg.n_workers, threads_per_worker=threads, memory_limit=cfg.memory_limit,
            # CRITICAL: a worker's heartbeat racing the scheduler's shutdown logs a benign ERROR traceback; task
            # failures still reach the client as exceptions
            dashboard_address=cfg.dashboard, silence_logs=logging.CRITICAL,
        )
        client = Client(cluster)
        log.info("started LocalCluster: %d worker(s) × %d thread(s)%s", cfg.n_workers, threads,
                 f"; dashboard: {client.dashboard_link}" if cfg.dashboard else "")
        try:
            yield client
        finally:
            client.close()
            cluster.close()
    elif cfg.kind == "address":
        if not cfg.address:
            raise LcupError("cluster.kind is 'address' but cluster.address is empty; give the scheduler address, e.g. tcp://10.0.0.5:8786")
        try:
            client = Client(cfg.address, timeout="20s")
        except OSError as e:
            raise LcupError(f"cannot reach the Dask scheduler at {cfg.address}: {e}; is it running?") from e
        try:
            yield client
        finally:
            client.close()
    elif cfg.kind == "gateway":
        try:
            from dask_gateway import Gateway  # optional: lcup[gateway]
        except ImportError as e:
            raise LcupError("cluster.kind is 'gateway' but dask-gateway is not installed: pip install 'lcup[gateway]'") from e
        auth = None
        if cfg.gateway_auth == "basic":
            from dask_gateway.auth import BasicAuth  # optional: lcup[gateway]

            auth = BasicAuth(username=os.environ.get("DASK_GATEWAY_USER", getpass.getuser()),
                             password=os.environ.get("DASK_GATEWAY_PASSWORD"))
        elif cfg.gateway_auth != "default":
            auth = cfg.gateway_auth
        gateway = Gateway(cfg.address, auth=auth) if cfg.address else Gateway(auth=auth)
        try:
            try:
                options = gateway.cluster_options()
                for k, v in cfg.gateway_options.items():
                    setattr(options, k, v)
                cluster = gateway.new_cluster(options)
            except Exception as e:  # noqa: BLE001 - aiohttp/HTTP errors differ by version; say what failed
                text = str(e)
                if "401" in text or "403" in text or "Unauthorized" in text or "Forbidden" in text:
                    raise LcupError(f"the Dask Gateway at {cfg.address} refused the credentials ({text}); "
                                    "check cluster.gateway_auth and DASK_GATEWAY_USER / DASK_GATEWAY_PASSWORD") from e
                raise LcupError(f"cannot reach the Dask Gateway at {cfg.address}: {text}; check cluster.address and that the gateway is running") from e
            cluster.scale(cfg.n_workers)
            client = cluster.get_client()
            client.wait_for_workers(1, timeout=300)
            try:
                yield client
            finally:
                client.close()
                cluster.shutdown()
                _forget_loop(cluster.gateway)
        finally:
            gateway.close()  # explicitly: Gateway.__del__ fails when the loop is already gone
            _forget_loop(gateway)


def _warm_up(modules: tuple[str, ...]) -> None:
    """Import ``modules`` (what a worker's tasks run: numpy, xarray, odc-stac, rasterio, scikit-learn, lcup's
    kernels, through the modules that import them) now."""
    for name in modules:
        importlib.import_module(name)


@contextmanager
def starting_cluster(cfg: ClusterConfig, warm: tuple[str, ...] = ()) -> Iterator[Future]:
    """:func:`cluster_client` started in a thread, its workers warmed up by importing the modules ``warm`` names
    (the caller's: the cluster knows nothing of the pipeline): yields a ``Future``
    of the client, so the caller works (searches a catalog, probes assets) while worker processes start. On exit
    the cluster is closed, waited for first if it is still starting; a failure to start is raised by the
    future's ``result()``, where the caller first needs the client.

    Examples
    --------
    >>> with starting_cluster(ClusterConfig(kind="none")) as fut:
    ...     print(fut.result())
    None
    """
    with ExitStack() as stack, ThreadPoolExecutor(1, thread_name_prefix="lcup-cluster") as pool:
        def start():
            client = stack.enter_context(cluster_client(cfg))
            if client is not None and warm:
                client.run(_warm_up, tuple(warm))
            return client

        fut = pool.submit(start)
        try:
            yield fut
        finally:
            wait([fut])  # then the stack closes what it started, here


def _forget_loop(gateway) -> None:
    """Make a closed ``dask_gateway.Gateway``'s ``__del__`` a no-op: it closes again, and raises once the loop is gone
    (an unraisable RuntimeError at garbage collection, which can land inside other C code: CPython 3.11 then fails
    an unrelated ``compile`` with "AST constructor recursion depth mismatch")."""
    try:
        del gateway._loop_runner
    except AttributeError:
        pass


#: Seconds between progress lines when not on a terminal (batch jobs, CI, nohup).
PROGRESS_EVERY_S = 30.0


def _task_states(dask_scheduler=None) -> dict:
    counts: dict = {}
    for ts in dask_scheduler.tasks.values():
        counts[ts.state] = counts.get(ts.state, 0) + 1
    return counts


@dataclass(frozen=True)
class Runner:
    """Where a run's graphs are computed: ``client`` (a ``distributed.Client``, or None for the threaded
    scheduler in this process), with progress bars on a terminal (``progress``) or a log line every
    :data:`PROGRESS_EVERY_S` seconds off one.

    Examples
    --------
    >>> import dask.array as da
    >>> int(Runner(None).compute(da.ones(4, chunks=2).sum(), "sum"))
    4
    """

    client: Any = None
    progress: bool = False

    @property
    def threads(self) -> int:
        """Worker threads of the cluster (1 for the threaded scheduler, which spreads a task's chunks itself)."""
        return sum(self.client.nthreads().values()) if self.client is not None else 1

    @property
    def memory(self) -> float:
        """The cluster's memory limit in bytes (0 without a cluster or without limits)."""
        if self.client is None:
            return 0.0
        try:
            info = self.client.scheduler_info()["workers"]
            return float(sum(w.get("memory_limit", 0) or 0 for w in info.values()))
        except Exception:  # noqa: BLE001 - a scheduler without memory limits: do not persist
            return 0.0

    def compute(self, obj, label: str, progress: bool | None = None):
        """``obj`` (a dask collection, or a list of them) computed, with progress as set (``progress`` overrides)."""
        if self.client is None:
            return dask.compute(obj)[0] if not isinstance(obj, (list, tuple)) else dask.compute(*obj)
        fut = self.client.compute(obj)
        if self.progress if progress is None else progress:
            log.info("  computing %s", label)
            distributed.progress(fut, notebook=False)
            print(flush=True)
        else:
            self.heartbeat(fut, label)
        return self.client.gather(fut)

    def heartbeat(self, fut, label: str) -> None:
        """Wait for ``fut`` (a future or a list of them), logging elapsed time and the cluster's task counts every
        :data:`PROGRESS_EVERY_S` seconds, so a long stage is never silent in a batch log."""
        futs = fut if isinstance(fut, (list, tuple)) else [fut]
        t0 = time.perf_counter()
        while True:
            try:
                distributed.wait(futs, timeout=PROGRESS_EVERY_S)
                return
            except TimeoutError:
                st = self.client.run_on_scheduler(_task_states)
                done = st.get("memory", 0) + st.get("released", 0) + st.get("forgotten", 0)
                todo = sum(st.get(k, 0) for k in ("waiting", "processing", "queued", "no-worker"))
                log.info("  %s: %.0f s, %d tasks done, %d to go (%.0f %%)", label, time.perf_counter() - t0, done, todo,
                         100 * done / max(1, done + todo))

    def persist(self, arr: xr.DataArray, label: str) -> xr.DataArray:
        """``arr`` kept in the cluster's memory, under a key of this call's own.

        The same graph persisted by an earlier run in this client may still be being released by the scheduler;
        a shared key would then be lost under us. Persisted on the run's client, not the default scheduler.
        """
        arr = arr.copy(data=arr.data.map_blocks(np.asarray, dtype=arr.dtype, name=f"lcup-{label}-{uuid.uuid4().hex}"))
        arr = self.client.persist(arr)
        if self.progress:
            distributed.progress(arr.data, notebook=False)
            print(flush=True)
            distributed.wait(arr.data)
        else:
            self.heartbeat(distributed.futures_of(arr), label)
        return arr

    def submitter(self) -> Callable | None:
        """``client.compute`` with falling priorities (None without a cluster): the tiles in flight finish one after
        the other, oldest first, rather than all at once, so the next tile starts while the others keep the
        threads busy."""
        if self.client is None:
            return None
        order = itertools.count()
        return lambda obj: self.client.compute(obj, priority=-next(order))

    def share(self, obj):
        """``obj`` (a model) as the tasks receive it: on a cluster, a persisted task that holds it.

        Unlike ``client.scatter`` (data the scheduler cannot rebuild), a persisted task can be recomputed
        from its spec when the workers holding it die, so a killed worker (or all of them) does not fail
        the run. It is replicated to every worker once, never embedded in each task.
        """
        if self.client is None:
            return obj
        with warnings.catch_warnings():  # sent once, on purpose: not the "large graph" distributed warns of
            warnings.filterwarnings("ignore", message="Sending large graph")
            (fut,) = distributed.futures_of(self.client.persist(dask.delayed(obj, pure=False, traverse=False)))
        self.client.replicate([fut])
        return fut

    def run_everywhere(self, func: Callable) -> list:
        """``func()`` here and in every worker: the results, this process's first (a worker gone or a closed
        client leaves only this process's)."""
        out = [func()]
        if self.client is not None:
            try:
                out += list(self.client.run(func).values())
            except Exception:  # noqa: BLE001 - a worker gone or a closed client
                pass
        return out

    def describe(self) -> dict:
        """Workers, threads and memory (bytes) of the cluster, for the run's summary."""
        return {"workers": len(self.client.nthreads()), "threads": self.threads, "memory_bytes": self.memory}


def take_first_done(pending: dict, on_result: Callable[[Any, Any], None]) -> None:
    """Wait for the first of the ``pending`` futures (``{future: key}``) to finish; ``on_result(key, result)`` for
    each finished, which is released."""
    done, _ = distributed.wait(list(pending), return_when="FIRST_COMPLETED")
    for fut in done:
        key = pending.pop(fut)
        on_result(key, fut.result())
        fut.release()
