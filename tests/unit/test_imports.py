"""Pure compute never imports I/O, cluster or CLI code; importing lcup starts nothing."""

import subprocess
import sys


def test_ops_import_is_pure():
    code = (
        "import sys, lcup.ops.temporal, lcup.ops.cloud, lcup.ops.labels, lcup.ops.features, lcup.ops.model, lcup.ops.accuracy;"
        "bad=[m for m in ('distributed','pystac_client','lcup.io','lcup.cli','lcup.cluster','rasterio') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_lcup_starts_no_cluster():
    code = "import sys, lcup; print([m for m in ('distributed','lcup.cli') if m in sys.modules]); sys.exit(1 if 'distributed' in sys.modules else 0)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_lcup_and_validating_a_pipeline_stay_light(tmp_path):
    """``import lcup`` and ``load_config`` (the vocabulary lives in lcup.vocab) load neither numba, dask.array nor
    scipy: a notebook or ``lcup validate`` starts in a fraction of a second."""
    cat = tmp_path / "catalog.json"
    cat.write_text("{}")
    lab = tmp_path / "l.tif"
    lab.write_text("")
    code = (
        "import sys, lcup\n"
        f"lcup.load_config({{'source': {{'catalog': {str(cat)!r}}}, 'aoi': {{'bbox': [14.5, 45.8, 14.6, 45.9]}}, 'year': 2024,"
        f" 'labels': {{'path': {str(lab)!r}, 'legend': 'cgls-lc100'}}, 'output': {{'dir': 'o'}}}})\n"
        "bad = [m for m in ('numba', 'dask.array', 'scipy', 'xarray', 'distributed') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
