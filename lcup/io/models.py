"""Save and load models without pickle, with feature names, legend and lcup version beside them: forests with
skops (``model.skops``), networks as plain arrays (``model.npz``, read with ``allow_pickle=False``)."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__
from ..errors import ModelError
from ..ops.nn import FCNModel, PixelNetModel

#: The networks, saved as plain arrays, by the ``kind`` their metadata names.
NETWORKS = {"fcn": FCNModel, "tempcnn": PixelNetModel}

#: The model files a run may write into its output folder, by kind of model.
MODEL_FILES = ("model.skops", "model.npz")


def model_file(folder: str | Path) -> Path | None:
    """The model file of a run's output folder (:data:`MODEL_FILES`), or None."""
    return next((Path(folder) / n for n in MODEL_FILES if (Path(folder) / n).exists()), None)

#: Types beyond skops' own defaults that the models lcup writes need (scikit-learn forests, LightGBM);
#: :func:`load_model` refuses a file naming any other, so a crafted file cannot run code.
TRUSTED_TYPES: frozenset[str] = frozenset({
    "sklearn.tree._tree.Tree",
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
})


def save_model(model, path: str | Path, *, feature_names: Sequence[str], legend: dict, **extra) -> Path:
    """Write ``model`` to ``path`` (skops; a network: ``path`` with the suffix ``.npz``) and ``<file>.json`` with its
    metadata (``extra`` keys too, e.g. the grid resolution and bands it was trained on); returns the model file."""
    import skops.io as sio  # deferred: skops imports scikit-learn's array-API shims (all of torch when installed, ~1.5 s)

    path = Path(path)
    network = next((k for k, cls in NETWORKS.items() if isinstance(model, cls)), None)
    if network is not None:
        path = path.with_suffix(".npz")
        extra = {**extra, "kind": network, "history": model.history}
    tmp = path.with_name(path.name + ".partial")
    try:
        if network is not None:
            with open(tmp, "wb") as f:
                np.savez(f, **model.to_arrays())
        else:
            sio.dump(model, tmp)
        tmp.replace(path)  # whole or not at all
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"lcup_version": __version__, "feature_names": list(feature_names), "legend": legend,
            "classes": [int(c) for c in model.classes_], **extra}
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(meta, indent=1))
    return path


def load_model(path: str | Path, *, expected_features: Sequence[str] | None = None):
    """Load a skops model and its metadata; check the feature names when ``expected_features`` is given.

    Raises
    ------
    ModelError
        If the file is missing or not a skops file, names a type outside :data:`TRUSTED_TYPES`, or the
        model was trained on other features than the cube it is applied to.
    """
    import skops.io as sio  # deferred: skops imports scikit-learn's array-API shims (all of torch when installed, ~1.5 s)

    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {path} does not exist; train a model first (lcup run) or fix the path")
    meta_path = path.with_suffix(path.suffix + ".json")
    if not meta_path.exists():
        raise ModelError(f"{meta_path} (the model's feature names and legend) is missing; keep it beside {path.name}")
    meta = json.loads(meta_path.read_text())
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as arrays:
                model = NETWORKS[meta.get("kind", "fcn")].from_arrays(dict(arrays), history=meta.get("history"))
        except Exception as e:  # noqa: BLE001 - not an array archive, or pickled objects inside: one clear line
            raise ModelError(f"{path} is not a model file lcup wrote ({type(e).__name__}: {e}); save networks with "
                             "lcup.io.models.save_model") from None
        _check_features(path, meta, expected_features)
        return model, meta
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as e:  # noqa: BLE001 - not a skops file at all
        newer = re.search(r"saved with skops protocol (\d+).*supports protocols up to (\d+)", str(e))
        if newer:
            raise ModelError(f"{path} was saved by a newer skops (protocol {newer.group(1)}; this skops {sio_version()} "
                             f"reads up to {newer.group(2)}): upgrade it (pip install -U skops) or retrain here") from None
        raise ModelError(f"{path} is not a skops model file ({type(e).__name__}: {e}); save models with lcup.io.models.save_model") from None
    foreign = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if foreign:
        raise ModelError(
            f"model file {path} asks to load types lcup never writes: {foreign}; refusing to load it (a crafted model "
            f"file can run code). lcup trusts only {sorted(TRUSTED_TYPES)}; retrain with lcup or inspect the file with "
            "skops.io.get_untrusted_types"
        )
    model = sio.load(path, trusted=[t for t in untrusted if t in TRUSTED_TYPES])
    _check_features(path, meta, expected_features)
    return model, meta


def sio_version() -> str:
    """The installed skops version."""
    return importlib.metadata.version("skops")


def _check_features(path: Path, meta: dict, expected_features: Sequence[str] | None) -> None:
    if expected_features is not None and list(expected_features) != meta["feature_names"]:
        a, b = set(meta["feature_names"]), set(expected_features)
        raise ModelError(
            f"model {path} was trained on {len(a)} features, the cube has {len(b)}; "
            f"missing from the cube: {sorted(a - b)[:10]}, unknown to the model: {sorted(b - a)[:10]}; "
            "use the same features settings as for training, or retrain"
        )
