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


class _Counting:
    """A model that counts the pixels it is asked about (through lcup's prediction)."""

    def __init__(self, model):
        self.model, self.classes_, self.n = model, model.classes_, 0

    def predict_proba(self, X):
        self.n += len(X)
        return self.model.predict_proba(X)


def test_write_computes_the_prediction_once(tmp_path):
    """lcup.write of a lazy prediction writes the Zarr store and the class COG from one computation (the COG was
    computed again from the graph: 4× the time of the store in the walkthrough)."""
    import dask
    import rasterio
    import xarray as xr

    gb = testing.geobox((64, 64))
    lab = testing.label_map(gb, classes=(1, 2, 3), cell_px=16)
    with dask.config.set(scheduler="threads"):
        feats = lcup.features(testing.cube(gb, lab, dates=12, chunks=32), ("2024-01-01", "2024-12-31"),
                              features={"stats": ["mean"], "series": []}).persist()
    X = feats.values.reshape(-1, feats.sizes["feature"])
    from sklearn.ensemble import RandomForestClassifier

    model = _Counting(RandomForestClassifier(5, random_state=0).fit(X[::7], lab.values.ravel()[::7]))
    legend = {"name": "three", "classes": {c: {"name": n, "color": "#808080"} for c, n in ((1, "a"), (2, "b"), (3, "c"))}}
    out = lcup.predict(model, feats, legend=get_legend(legend), smooth_px=1)
    with dask.config.set(scheduler="threads"):  # in this process, whatever client another test left as the default
        paths = lcup.write(out, tmp_path / "m", legend=get_legend(legend))
    assert model.n == 64 * 64  # every pixel once
    with rasterio.open(paths["cog"]) as src:
        np.testing.assert_array_equal(src.read(1), xr.open_zarr(paths["zarr"])["class"].values)
