"""Helpers shared by the benchmarks: interleaved timing, medians with their spread, CPU and memory readings.

These machines are noisy (±30 % run to run): routes are timed in turn, round after round, in one process, and
compared by the median of their rounds, with the min–max beside it — never one best-of-N against another taken
minutes later.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Callable


def interleave(routes: dict[str, Callable[[], object]], rounds: int = 3, warmup: bool = True) -> dict[str, list[float]]:
    """Time every route once per round, in turn, the order reversed every other round (A B C, C B A, A B C, ...):
    ``{name: [seconds per round]}``. No route always runs first (cold caches) or last (a warmed machine).

    With ``warmup``, each route runs once first, untimed (compilation, caches, imports).
    """
    if warmup:
        for fn in routes.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in routes}
    for r in range(rounds):
        order = list(routes.items()) if r % 2 == 0 else list(routes.items())[::-1]
        for k, fn in order:
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of ``values``."""
    s = sorted(values)
    n = len(s)
    med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    return {"median": med, "min": s[0], "max": s[-1]}


def ratio_spread(num: list[float], den: list[float]) -> dict[str, float]:
    """Per-round ratios ``num[i] / den[i]`` (rounds run side by side): their median and min–max."""
    return spread([a / b for a, b in zip(num, den)])


class CPUMeter:
    """Wall time, CPU seconds (this process and its children) and cores used over a ``with`` block."""

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.c0 = _cpu_s()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = _cpu_s() - self.c0
        self.cores = self.cpu / self.wall if self.wall else float("nan")
        return False


def _cpu_s() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
