"""Models saved with skops (no pickle) with their feature names, legend and version."""

import numpy as np
import pytest

from lcup.errors import ModelError
from lcup.io.models import load_model, save_model
from lcup.ops.model import train_random_forest


def test_roundtrip_and_feature_mismatch(tmp_path, rng):
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + 1
    model, info = train_random_forest(X, y, params={"n_estimators": 5, "n_jobs": 1})
    assert info["n_train"] == 200
    p = save_model(model, tmp_path / "m.skops", feature_names=["a", "b", "c"], legend={"name": "x", "classes": {}})
    m2, meta = load_model(p, expected_features=["a", "b", "c"])
    np.testing.assert_array_equal(m2.predict(X), model.predict(X))
    assert meta["lcup_version"] and meta["classes"] == [1, 2]
    with pytest.raises(ModelError, match=r"missing from the cube: \['c'\]"):
        load_model(p, expected_features=["a", "b"])
    # a skops archive: a JSON schema of the objects, no pickled member, and only types lcup trusts inside
    import zipfile

    import skops.io as sio

    from lcup.io.models import TRUSTED_TYPES

    with zipfile.ZipFile(p) as z:
        assert "schema.json" in z.namelist() and not [n for n in z.namelist() if n.endswith((".pkl", ".pickle"))]
    assert set(sio.get_untrusted_types(file=p)) <= TRUSTED_TYPES


@pytest.mark.parametrize("kind", ["random_forest", "lightgbm"])
def test_both_model_kinds_behind_one_interface(kind, tmp_path, rng):
    pytest.importorskip("lightgbm") if kind == "lightgbm" else None
    from lcup.ops.model import predict_block, train_model

    X = rng.normal(size=(600, 5)).astype(np.float32)
    y = np.where(X[:, 0] + X[:, 1] > 0, 3, 1)
    X[:5, 2] = np.nan  # dropped and counted
    model, info = train_model(X, y, kind=kind, params={"n_estimators": 20}, sample_weight=np.ones(600), seed=0)
    assert info["n_dropped_nan"] == 5 and list(model.classes_) == [1, 3]
    out = predict_block(X[5:105].reshape(10, 10, 5), model, confidence="margin")
    assert out.shape == (4, 10, 10) and set(np.unique(out[0])) <= {1.0, 3.0}
    assert (out[1] >= 0).all() and (out[1] <= 1).all()
    assert (out[0].ravel() == y[5:105]).mean() > 0.85
    p = save_model(model, tmp_path / "m.skops", feature_names=list("abcde"), legend={"name": "x", "classes": {}})
    m2, _ = load_model(p)
    np.testing.assert_array_equal(m2.predict(X[5:]), model.predict(X[5:]))


def test_crafted_model_file_is_refused_naming_the_type(tmp_path, rng):
    """A skops file naming a callable lcup never writes (here ``builtins.eval`` inside a transformer)
    would run code if every type it names were trusted: lcup refuses it and names the type."""
    import json

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    p = tmp_path / "evil.skops"
    sio.dump(FunctionTransformer(func=eval), p)
    (tmp_path / "evil.skops.json").write_text(json.dumps({"feature_names": [], "legend": {}, "classes": []}))
    assert any("eval" in t for t in sio.get_untrusted_types(file=p))
    with pytest.raises(ModelError, match=r"refusing to load it.*eval|eval.*refusing to load it"):
        load_model(p)
    (tmp_path / "junk.skops").write_bytes(b"not a zip")
    (tmp_path / "junk.skops.json").write_text("{}")
    with pytest.raises(ModelError, match="not a skops model file"):
        load_model(tmp_path / "junk.skops")
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing.skops")


def test_stac_class_names_are_valid_for_every_built_in_legend():
    """The classification extension wants names matching ^[0-9A-Za-z-_]+$: a slug, the full name as title."""
    import re

    from odc.geo.geobox import GeoBox

    from lcup.io.write import _output_item
    from lcup.legends import LEGENDS

    gb = GeoBox.from_bbox((500000, 5000000, 501000, 5001000), "EPSG:32633", resolution=10)
    import datetime as dt

    for legend in LEGENDS.values():
        it = _output_item(item_id="x", geobox=gb, legend=legend, start=dt.date(2024, 1, 1), end=dt.date(2024, 12, 31),
                          assets={"cog": "a.tif"})
        classes = it.assets["cog"].extra_fields["classification:classes"]
        assert all(re.fullmatch(r"[0-9A-Za-z\-_]+", c["name"]) for c in classes), legend.name
        assert {c["title"] for c in classes[1:]} == set(legend.names().values())


def test_model_saved_by_a_newer_skops_says_so(tmp_path, rng):
    """A skops file of a later protocol (was: 'not a skops model file'): named as a newer skops's, with the fix."""
    import json
    import zipfile

    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=2, random_state=0).fit(rng.random((20, 3)), np.arange(20) % 2)
    p = save_model(model, tmp_path / "m.skops", feature_names=["a", "b", "c"], legend={"name": "x", "classes": {}})
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    schema = json.loads(members["schema.json"])
    members["schema.json"] = json.dumps({**schema, "protocol": 99}).encode()
    with zipfile.ZipFile(p, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(ModelError, match=r"m\.skops was saved by a newer skops \(protocol 99; this skops [\d.]+ reads up "
                                         r"to \d+\): upgrade it \(pip install -U skops\) or retrain here"):
        load_model(p)
