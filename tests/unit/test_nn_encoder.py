"""The U-Net on a ResNet encoder (``model.nn_encoder``): pretrained weights from a local file, clear errors for
files that do not fit, temperature scaling, and a map that does not depend on the chunking (the blocks align on the
encoder's stride)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr

from lcup.errors import ModelError

if os.environ.get("LCUP_REQUIRE_TORCH") == "1":  # CI installs the deep extra: fail rather than skip without it
    import torch
else:
    torch = pytest.importorskip("torch", reason="the network needs PyTorch: pip install 'lcup[deep]'")

from lcup.ops.nn import Window, _resnet, resnet_geometry, train_fcn  # noqa: E402


def _windows(rng, n=2, px=64, f=6):
    out = []
    for i in range(n):
        label = np.where(np.arange(px)[None, :] < px // 2, 1, 2).repeat(px, 0).astype(np.int64)
        x = rng.normal(size=(px, px, f)).astype(np.float32) + label[..., None] * 0.8
        train = np.ones((px, px), bool)
        val = np.zeros((px, px), bool)
        val[:, :8] = val[:, -8:] = True
        train &= ~val
        cell = (np.arange(px)[:, None] // 10 * 100 + np.arange(px)[None, :] // 10) + 10_000 * i
        out.append(Window(x, label, np.ones((px, px), bool), train, val, cell))
    return out


def _weights_file(tmp_path, encoder="resnet18", depth=2, in_ch=3, prefix="module."):
    torch.manual_seed(1)
    enc = _resnet(encoder, depth, in_ch)
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # statistics a random start would not have
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    sd = {prefix + k: v for k, v in enc.state_dict().items()} | {prefix + "fc.weight": torch.zeros(10, 512)}
    path = tmp_path / f"{encoder}.pth"
    torch.save({"state_dict": sd}, path)
    return path, enc.state_dict()


def test_the_encoder_starts_from_the_weights_file(tmp_path, rng):
    """A torchvision-layout state dict (in a ``state_dict`` wrapper, ``module.`` prefixed, with its classifier): the
    encoder starts from it; its batch-norm statistics stay the file's (frozen), its weights one Adam step away."""
    path, sd = _weights_file(tmp_path)
    model, info = train_fcn(_windows(rng), [1, 2], epochs=1, min_epochs=1, encoder="resnet18", depth=2, weights=str(path),
                            width=8, device="cpu")
    w = model.weights
    np.testing.assert_array_equal(w["encoder.layer2.0.bn1.running_mean"], sd["layer2.0.bn1.running_mean"].numpy())
    step = np.abs(w["encoder.conv1.weight"] - sd["conv1.weight"].numpy()).max()
    assert step < 0.01, step  # one step of lr 3e-3; a fresh random start differs by ~0.1
    assert model.encoder == "resnet18" and model.depth == 2 and model.stride == 8 and model.context_px == 72
    assert info["calibration"]["fitted"] > 0


@pytest.mark.parametrize("fault, message", [
    ("resnet50", r"does not fit a resnet18 cut after 2 stage\(s\): .*other shapes for \['layer1\.0\.conv1\.weight'"),
    ("text", r"cannot be read as PyTorch weights .*give a state dict saved with torch\.save"),
    ("no resnet", r"holds no ResNet \(resnet18\) weights: no conv1\.weight"),
])
def test_weights_that_do_not_fit_are_one_clear_error(fault, message, tmp_path, rng):
    if fault == "resnet50":
        path, _ = _weights_file(tmp_path, "resnet50", 2)
    elif fault == "text":
        path = tmp_path / "w.pth"
        path.write_text("not weights")
    else:
        path = tmp_path / "w.pth"
        torch.save({"linear.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ModelError, match=message):
        train_fcn(_windows(rng, n=1), [1, 2], epochs=1, encoder="resnet18", depth=2, weights=str(path), width=8, device="cpu")


def test_a_strided_network_maps_the_same_whatever_the_chunking(tmp_path, rng):
    """The U-Net's blocks start on multiples of its stride on a lattice from the CRS origin, and read its receptive
    field: chunks of 100, 108 and 150 px (the second chunk's window starting 4 px off the stride 8), the same bytes; a
    block read from a misaligned start gives the same values once aligned on the lattice."""
    from lcup.legends import get_legend
    from lcup.stages.predict import predict

    path, _ = _weights_file(tmp_path, depth=2)
    model, _ = train_fcn(_windows(rng, n=1), [1, 2], epochs=2, min_epochs=1, encoder="resnet18", depth=2,
                         weights=str(path), width=8, device="cpu")
    h = w = 150
    feats = xr.DataArray(rng.normal(size=(h, w, 6)).astype(np.float32), dims=("y", "x", "feature"),
                         coords={"y": 5_100_005.0 - 10 * np.arange(h), "x": 500_035.0 + 10 * np.arange(w)})
    maps = {}
    for c in (100, 108, 150):
        out = predict(model, feats.chunk({"y": c, "x": c, "feature": -1}), legend=get_legend("lcup7"), smooth_px=0,
                      context_px=model.context_px)
        maps[c] = out["probability"].values
    assert np.isfinite(maps[150]).all() and maps[150].std() > 0
    np.testing.assert_array_equal(maps[100], maps[150])
    np.testing.assert_array_equal(maps[108], maps[150])
    x = feats.values
    whole = model.predict_proba_image(x, origin=(0, 0))
    part = model.predict_proba_image(x[13:, 21:], origin=(13, 21))
    c = model.context_px
    np.testing.assert_array_equal(part[c:, c:], whole[13 + c:, 21 + c:])


def test_geometry_of_the_encoders():
    assert resnet_geometry("resnet18", 1) == (4, 32) and resnet_geometry("resnet50", 3) == (16, 176)


def test_temperature_scaling_tames_overconfident_logits(rng):
    """Logits 4× too sharp (the right class two times in three): the fitted temperature is about 4 and lowers the
    expected calibration error, so it is kept; well-calibrated logits keep about 1."""
    from lcup.ops.nn import fit_temperature

    n = 6000
    y = rng.integers(0, 3, n)
    right = rng.random(n) < 2 / 3
    pred = np.where(right, y, (y + rng.integers(1, 3, n)) % 3)
    z = np.full((n, 3), 0.0)
    z[np.arange(n), pred] = np.log(2 / 3 / (1 / 6))  # calibrated: p(pred) = 2/3
    cal = fit_temperature(torch.from_numpy(z), torch.from_numpy(y))
    assert 0.8 < cal["fitted"] < 1.25
    sharp = fit_temperature(torch.from_numpy(4 * z), torch.from_numpy(y))
    assert sharp["kept"] and 3.2 < sharp["temperature"] < 5 and sharp["ece_after"] < sharp["ece_before"] / 3
