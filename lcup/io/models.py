"""Save and load models with skops (no pickle), with feature names, legend and lcup version beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import ModelError


def save_model(model, path: str | Path, *, feature_names: Sequence[str], legend: dict) -> Path:
    """Write ``model`` to ``path`` (skops) and ``path.json`` with its metadata."""
    import skops.io as sio

    from .. import __version__

    path = Path(path)
    sio.dump(model, path)
    meta = {"lcup_version": __version__, "feature_names": list(feature_names), "legend": legend,
            "classes": [int(c) for c in model.classes_]}
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(meta, indent=1))
    return path


def load_model(path: str | Path, *, expected_features: Sequence[str] | None = None):
    """Load a skops model and its metadata; check the feature names when ``expected_features`` is given.

    Raises
    ------
    ModelError
        If the model was trained on other features than the cube it is applied to.
    """
    import skops.io as sio

    path = Path(path)
    meta = json.loads(path.with_suffix(path.suffix + ".json").read_text())
    untrusted = sio.get_untrusted_types(file=path)
    model = sio.load(path, trusted=untrusted)
    if expected_features is not None and list(expected_features) != meta["feature_names"]:
        a, b = set(meta["feature_names"]), set(expected_features)
        raise ModelError(
            f"model {path} was trained on {len(a)} features, the cube has {len(b)}; "
            f"missing from the cube: {sorted(a - b)[:10]}, unknown to the model: {sorted(b - a)[:10]}; "
            "use the same features settings as for training, or retrain"
        )
    return model, meta
