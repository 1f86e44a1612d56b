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
