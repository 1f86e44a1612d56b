"""The stages chained on lcup.testing's in-memory cube and label map: no synthetic year on disk."""

from __future__ import annotations

import numpy as np

import lcup
from lcup import testing
from lcup.legends import get_legend


def test_stages_recover_the_label_map_of_a_factory_cube(tmp_path):
    """Classes with their own spectra and season, labels without error: the chain labels → sample → features →
    train → predict maps them back, and a chunking of the cube changes no pixel."""
    gb = testing.geobox((96, 96))
    lab = testing.label_map(gb, classes=(1, 2, 3), cell_px=24, seed=1)
    path = testing.write_label_map(tmp_path / "labels.tif", lab, gb)
    legend = {"name": "three", "classes": {1: {"name": "a", "color": "#ff0000"}, 2: {"name": "b", "color": "#00ff00"},
                                           3: {"name": "c", "color": "#0000ff"}}}
    labels_cfg = {"path": str(path), "legend": legend, "target_legend": legend, "erosion_m": 0, "n_per_class": 300,
                  "block_m": 240}
    labs = lcup.labels(gb, labels_cfg, chunk_px=48)
    smp = lcup.sample(labs, labels_cfg)
    cube = testing.cube(gb, lab, dates=24, chunks=48)
    feats = lcup.features(cube, ("2024-01-01", "2024-12-31"))
    X = feats.data.vindex[smp.iy, smp.ix].compute()
    internal = get_legend(legend)
    clf, figures = lcup.train(X, smp, names=list(feats.feature.values), legend=internal, model={"n_estimators": 20})
    out = lcup.predict(clf, feats, legend=internal).compute()
    assert (out["class"].values == lab.values).mean() >= 0.99
    other = lcup.features(testing.cube(gb, lab, dates=24, chunks=32), ("2024-01-01", "2024-12-31"))
    np.testing.assert_array_equal(other.values, feats.values)
