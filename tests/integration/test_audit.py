"""Where the coarse map is wrong (issue 30): coarse_audit.tif, per coarse cell, against a count by hand."""

from __future__ import annotations

import warnings

import numpy as np
import rasterio

from lcup.config import load_config
from lcup.errors import LcupWarning
from lcup.legends import apply_crosswalk, get_crosswalk, get_legend
from lcup.pipeline import run_pipeline
from tests.conftest import scene_pipeline


def test_coarse_audit_counts_confident_disagreement_per_coarse_cell(small_scene, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        s = run_pipeline(load_config(scene_pipeline(small_scene, tmp_path / "o", **{"model.n_estimators": 20})), progress=False)
    out = tmp_path / "o"
    with rasterio.open(out / "coarse_audit.tif") as a, rasterio.open(out / "landcover_class.tif") as c, \
            rasterio.open(out / "landcover_confidence.tif") as f, rasterio.open(small_scene["dir"] / "coarse_cgls_100m.tif") as k:
        share, best = a.read()
        cls, conf, coarse = c.read(1), f.read(1), k.read(1)
        assert a.res == (100.0, 100.0) and a.crs == c.crs
        assert (a.transform.c, a.transform.f) == (c.transform.c, c.transform.f)  # on the coarse map's cell edges
        assert "confidence" in a.descriptions[0]
    label = np.repeat(np.repeat(apply_crosswalk(coarse, get_crosswalk("cgls-lc100", get_legend("lcup7"))), 10, 0), 10, 1)
    assert share.shape == (cls.shape[0] // 10, cls.shape[1] // 10)
    for i in range(share.shape[0]):
        for j in range(share.shape[1]):
            sl = np.s_[10 * i:10 * i + 10, 10 * j:10 * j + 10]
            ok = (cls[sl] > 0) & (label[sl] > 0) & (conf[sl] != 255)
            other = ok & (cls[sl] != label[sl]) & (conf[sl] >= 60)
            if not ok.any():
                assert share[i, j] == 255
                continue
            assert share[i, j] == round(100 * other.sum() / ok.sum()), (i, j)
            if other.any():
                vals, n = np.unique(cls[sl][other], return_counts=True)
                assert best[i, j] == vals[n.argmax()]
            else:
                assert best[i, j] == 0
    fig = s.figures["coarse_audit"]
    assert fig["cells"] == int((share != 255).sum()) and fig["cells_over_half"] == int(((share > 50) & (share != 255)).sum())
    assert s.outputs["coarse_audit"].endswith("coarse_audit.tif")
    report = (out / "report.html").read_text()
    assert "Where the coarse map is wrong" in report and "coarse cells have more than half" in report


def test_doubtful_labels_are_listed_where_they_are(small_scene, tmp_path):
    """The training samples whose coarse label the label refinement changed or confident learning flagged, with
    their place and both classes (issue 30): each row's coarse class is the coarse map's there."""
    import pandas as pd

    cfg = scene_pipeline(small_scene, tmp_path / "o", **{"model.n_estimators": 20, "model.refine_rounds": 1,
                                                         "model.clean_labels": True, "output.report": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LcupWarning)
        s = run_pipeline(load_config(cfg), progress=False)
    d = s.figures["doubtful_labels"]
    df = pd.read_csv(d["path"])
    assert d["relabelled"] == s.figures["refinement"]["changed"] and d["flagged"] == s.figures["label_cleaning"]["n_flagged"]
    assert len(df) >= max(d["relabelled"], d["flagged"]) and len(df) > 0
    moved = df.by.str.contains("refinement")
    assert moved.sum() == d["relabelled"] and (df.coarse_class[moved] != df.refined_class[moved]).all()
    assert (df.coarse_class[~moved] == df.refined_class[~moved]).all()
    with rasterio.open(small_scene["dir"] / "coarse_cgls_100m.tif") as k:
        coarse = apply_crosswalk(k.read(1), get_crosswalk("cgls-lc100", get_legend("lcup7")))
        inv = ~k.transform
    c, r = inv * (df.x.values, df.y.values)
    np.testing.assert_array_equal(coarse[np.floor(r).astype(int), np.floor(c).astype(int)], df.coarse_class.values)
    gpd = __import__("geopandas")
    g = gpd.read_file(d["gpkg"])
    assert len(g) == len(df) and g.crs.to_epsg() == 32633
