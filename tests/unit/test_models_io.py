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
    assert b"pickle" not in p.read_bytes()[:100]
