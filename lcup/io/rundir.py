"""The output folder of a run: checked before any work, locked while a run writes into it."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import ConfigError, OutputExistsError

LOCK_NAME = ".lcup.lock"


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
    import fcntl

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
