"""On a terminal, `lcup demo` and `lcup run` show a bar for every long step (a real pseudo-terminal)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest
import yaml

from tests.conftest import scene_pipeline


def _on_pty(args: list[str], cwd, timeout: float = 300) -> str:
    """Run ``args`` with stdout and stderr on a pseudo-terminal; return what it printed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def test_demo_shows_a_bar(tmp_path):
    out = _on_pty([sys.executable, "-m", "lcup.cli", "demo", str(tmp_path / "d"), "--size", "64"], cwd=tmp_path)
    assert "generating dates [" in out and "] 73/73" in out


@pytest.mark.slow
def test_run_shows_bars_for_labels_sample_and_training(small_scene, tmp_path):
    cfg = scene_pipeline(small_scene, tmp_path / "out", **{"cluster": {"kind": "local", "n_workers": 1, "threads_per_worker": 2,
                                                                        "dashboard": None}, "truth": None})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    out = _on_pty([sys.executable, "-m", "lcup.cli", "run", str(tmp_path / "p.yaml")], cwd=tmp_path)
    for step in ("scene filter", "label statistics", "sample", "sampled features"):
        assert f"computing {step}" in out, step
    assert out.count("% Completed") >= 5  # distributed's bar: the steps above and the tiles
    assert "training a random forest on " in out and " samples: " in out
