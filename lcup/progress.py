"""Feedback for long steps on a terminal: a bar when the amount of work is known, a ticking clock when not.

Off a terminal (batch jobs, CI, nohup) both are silent: the pipeline logs progress lines instead
(:data:`lcup.cluster.PROGRESS_EVERY_S`).
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, TextIO


def on_tty(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stdout, where the bars go) is a terminal."""
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def bar(done: int, total: int, label: str, *, width: int = 30, stream: TextIO | None = None) -> None:
    """Draw ``label [#####.....] done/total`` in place on ``stream`` (default stdout); a newline at the end.

    Examples
    --------
    >>> import io
    >>> s = io.StringIO()
    >>> bar(3, 4, "dates", width=8, stream=s)
    >>> s.getvalue()
    '\\r  dates [######--] 3/4'
    """
    stream = stream or sys.stdout
    n = round(width * done / max(1, total))
    stream.write(f"\r  {label} [{'#' * n}{'-' * (width - n)}] {done}/{total}" + ("\n" if done >= total else ""))
    stream.flush()


@contextmanager
def ticking(label: str, *, enabled: bool = True, every_s: float = 0.5, stream: TextIO | None = None) -> Iterator[None]:
    """While the block runs, show ``label: 12 s`` in place on a terminal (for steps with no count, e.g. fitting).

    Examples
    --------
    >>> with ticking("training", enabled=False):
    ...     pass
    """
    stream = stream or sys.stdout
    if not enabled:
        yield
        return
    stop = threading.Event()
    t0 = time.perf_counter()

    def tick():
        while not stop.wait(every_s):
            stream.write(f"\r  {label}: {time.perf_counter() - t0:.0f} s")
            stream.flush()

    th = threading.Thread(target=tick, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()
        stream.write(f"\r  {label}: {time.perf_counter() - t0:.1f} s\n")
        stream.flush()
