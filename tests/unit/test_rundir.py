"""The output folder: checked before any work, one run at a time."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lcup.errors import ConfigError, OutputExistsError
from lcup.io.rundir import LOCK_NAME, output_lock, prepare_output_dir


def test_second_run_into_the_same_folder_is_refused(tmp_path):
    """Another process holds the folder: refused with an error naming it; after it ends the folder is free."""
    code = ("import sys, time; from pathlib import Path; from lcup.io.rundir import output_lock\n"
            "with output_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(30)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(OutputExistsError, match=r"another lcup run \(pid \d+ on .*\) is writing into"):
            with output_lock(tmp_path):
                pass
    finally:
        p.kill()  # like kill -9: the kernel releases the lock
        p.wait()
    time.sleep(0.1)
    with output_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


def test_output_dir_checks(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        prepare_output_dir(f, overwrite=False, resume=False)
    # a read-only folder: tests/integration/test_bad_runs.py mounts a read-only tmpfs (permissions do not stop root)


def test_existing_outputs_are_kept(tmp_path):
    (tmp_path / "landcover.zarr").mkdir()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        prepare_output_dir(tmp_path, overwrite=False, resume=False, outputs=("landcover.zarr",))
    assert prepare_output_dir(tmp_path, overwrite=True, resume=False, outputs=("landcover.zarr",)) is False
