"""A fully convolutional network over the feature cube, trained from coarse labels (PyTorch: ``lcup[deep]``).

The network sees each pixel's features and those of its neighbours within :attr:`FCNModel.context_px` pixels
(a 1 × 1 convolution, then 3 × 3 convolutions dilated 1, 2, 4 … with residual connections, then a 1 × 1 head), so
the map can use spatial context at 10 m. It is trained the way coarse labels need (:func:`train_fcn`):

* pixel cross-entropy on the eroded, confident labels of the training blocks, classes balanced;
* a coarse-cell aggregate loss: the mean predicted class distribution over each coarse cell of the training
  blocks must give the cell's label a high probability (label super-resolution, Malkin et al. 2019), which lets
  the network learn *where* inside a cell the classes are;
* early stopping on the spatially separated validation blocks (their pixel loss), the best epoch kept.

Prediction needs PyTorch too; the saved model is plain arrays (:meth:`FCNModel.to_arrays`): no pickle. On CPU
one thread per task, as the forest; the result of a pixel depends on its receptive field only, so the map is the
same whatever the chunking (tested bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import MissingDependencyError, ModelError
from .accuracy import temperature_scaling


def require_torch():
    """PyTorch, imported on first use (optional: ``lcup[deep]``; ~1.5 s to import, so never at ``import lcup``), or
    lcup's error naming the extra."""
    try:
        import torch  # optional: lcup[deep]
    except ImportError:
        raise MissingDependencyError("model.kind fcn needs PyTorch, which is not installed: pip install 'lcup[deep]'") from None
    return torch


def context_px(dilations: Sequence[int]) -> int:
    """Pixels each side that a pixel's prediction reads (the receptive field's radius)."""
    return int(sum(int(d) for d in dilations))


#: ResNet encoders (torchvision's layout and parameter names, so that its state dicts load): ``(block, blocks per
#: stage)``; ``basic`` blocks have two 3 × 3 convolutions, ``bottleneck`` ones 1 × 1, 3 × 3, 1 × 1 (4× wider out).
RESNETS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)), "resnet50": ("bottleneck", (3, 4, 6, 3))}


def resnet_geometry(encoder: str, depth: int) -> tuple[int, int]:
    """``(stride, context)`` of a U-Net on ``encoder`` cut after ``depth`` stages (1–4): the coarsest feature map's
    stride (px; the windows a prediction reads start on multiples of it) and the pixels each side a pixel's
    prediction reads (its receptive field's radius, rounded up to the stride, plus one stride for that alignment).

    Examples
    --------
    >>> resnet_geometry("resnet18", 2)
    (8, 72)
    """
    block, blocks = RESNETS[encoder]
    rf, jump = 0, 1

    def conv(k: int, s: int = 1) -> None:
        nonlocal rf, jump
        rf += (k - 1) * jump
        jump *= s

    conv(7, 2)  # stem
    conv(3, 2)  # max-pool
    for stage in range(depth):
        for b in range(blocks[stage]):
            s = 2 if stage > 0 and b == 0 else 1
            if block == "basic":
                conv(3, s), conv(3)
            else:
                conv(1), conv(3, s), conv(1)
    for _ in range(depth + 1):  # the decoder: a 3 × 3 convolution at every level on the way up (and full resolution)
        jump //= 2
        conv(3)
    stride = 2 ** (depth + 1)
    radius = -(-(rf // 2 + 1) // stride) * stride
    return stride, radius + stride


def _resnet(encoder: str, depth: int, in_ch: int):
    """The first ``depth`` stages of a torchvision-layout ResNet (``conv1``, ``bn1``, ``layer1`` …): the module and
    the channels of its outputs at strides 2 (stem), 4, 8 … ."""
    torch = require_torch()
    nn = torch.nn
    block, blocks = RESNETS[encoder]
    expansion = 1 if block == "basic" else 4

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                               if stride != 1 or cin != cout else None)

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = self.bn2(self.conv2(h))
            return torch.relu(h + (x if self.downsample is None else self.downsample(x)))

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = width * 4
            self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
            self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                               if stride != 1 or cin != cout else None)

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = torch.relu(self.bn2(self.conv2(h)))
            h = self.bn3(self.conv3(h))
            return torch.relu(h + (x if self.downsample is None else self.downsample(x)))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = 64
            self.channels = [64]
            for i in range(depth):
                width = 64 * 2 ** i
                layers = []
                for b in range(blocks[i]):
                    stride = 2 if i > 0 and b == 0 else 1
                    layers.append(Basic(cin, width, stride) if block == "basic" else Bottleneck(cin, width, stride))
                    cin = width * expansion
                setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
                self.channels.append(cin)

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            outs = [h]
            h = self.maxpool(h)
            for i in range(depth):
                h = getattr(self, f"layer{i + 1}")(h)
                outs.append(h)
            return outs

    return Encoder()


def _unet(n_features: int, n_classes: int, width: int, encoder: str, depth: int, in_ch: int):
    """A U-Net on a ResNet encoder: a 1 × 1 projection of the features to the encoder's ``in_ch`` input channels
    (3 for ImageNet weights, 13 for Sentinel-2 ones: the encoder's first layer is kept as its weights have it), the
    encoder, and a decoder that upsamples ×2 (nearest), joins the skip of that level and applies a 3 × 3 convolution,
    up to full resolution, where the features themselves join (1 × 1)."""
    torch = require_torch()
    nn, F = torch.nn, torch.nn.functional

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.project = nn.Conv2d(n_features, in_ch, 1)
            self.encoder = _resnet(encoder, depth, in_ch)
            ch = self.encoder.channels  # strides 2, 4, 8 …
            self.up = nn.ModuleList()
            cin = ch[-1]
            for skip in reversed(ch[:-1]):
                self.up.append(nn.Conv2d(cin + skip, width, 3, padding=1))
                cin = width
            self.full = nn.Conv2d(n_features, width, 1)
            self.last = nn.Conv2d(cin + width, width, 3, padding=1)
            self.head = nn.Conv2d(width, n_classes, 1)

        def forward(self, x):
            feats = self.encoder(self.project(x))
            h = feats[-1]
            for conv, skip in zip(self.up, reversed(feats[:-1])):
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
                h = F.relu(conv(torch.cat([h, skip], 1)))
            h = F.interpolate(h, size=x.shape[-2:], mode="nearest")
            h = F.relu(self.last(torch.cat([h, F.relu(self.full(x))], 1)))
            return self.head(h)

    return UNet()


def load_encoder_weights(path, encoder: str) -> dict:
    """The parameters of a ResNet encoder from a local file: a PyTorch state dict (``.pt``/``.pth``, read with
    ``weights_only=True``: no code runs) or ``.safetensors``, as torchvision writes them (``conv1.weight``,
    ``layer1.0.bn1.running_mean`` …); a ``state_dict``/``model`` wrapper and ``module.``/``backbone.``/``encoder.``
    prefixes (self-supervised checkpoints) are unwrapped, the classifier (``fc.*``) dropped.

    Raises
    ------
    ModelError
        The file cannot be read, or holds no ResNet of ``encoder``'s layout, naming what is missing.
    """
    torch = require_torch()
    from pathlib import Path  # noqa: PLC0415 - only this reader needs it

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # optional: only for .safetensors weights

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - not a weights file, or a pickle with code in it: one clear line
        raise ModelError(f"model.nn_weights {path} cannot be read as PyTorch weights ({type(e).__name__}: "
                         f"{str(e)[:200]}); give a state dict saved with torch.save(model.state_dict(), ...) or a "
                         ".safetensors file") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise ModelError(f"model.nn_weights {path} holds a {type(sd).__name__}, not a state dict")
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "backbone.", "encoder.", "model."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if not k.startswith("fc.") and hasattr(v, "shape"):
            out[k] = v
    if "conv1.weight" not in out:
        raise ModelError(f"model.nn_weights {path} holds no ResNet ({encoder}) weights: no conv1.weight among "
                         f"{sorted(out)[:8]}; give a torchvision-layout ResNet state dict")
    return out


def _net(n_features: int, n_classes: int, width: int, dilations: Sequence[int]):
    torch = require_torch()
    nn, F = torch.nn, torch.nn.functional

    class ContextNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Conv2d(n_features, width, 1)
            self.blocks = nn.ModuleList([nn.Conv2d(width, width, 3, padding=int(d), dilation=int(d)) for d in dilations])
            self.head = nn.Conv2d(width, n_classes, 1)

        def forward(self, x):
            h = F.relu(self.inp(x))
            for b in self.blocks:
                h = h + F.relu(b(h))
            return self.head(h)

    return ContextNet()


def pick_device(device: str = "auto") -> str:
    """``cuda`` when asked for or, with ``auto``, when a GPU is present; else ``cpu``."""
    torch = require_torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@dataclass
class FCNModel:
    """A trained network with what it needs to predict: weights, the feature scaling and the classes.

    Attributes
    ----------
    weights
        Parameter name → float32 array.
    mean, std
        ``(feature,)`` scaling of the inputs, from the training windows.
    classes_
        Class indices of the outputs, in order (scikit-learn's attribute name).
    width, dilations
        The architecture: the dilated context network's (``encoder`` ``"none"``), or the U-Net decoder's width.
    encoder, depth, in_ch
        A ResNet encoder (:data:`RESNETS`) cut after ``depth`` stages, with ``in_ch`` input channels, or ``"none"``.
    temperature
        Divides the logits before the softmax (temperature scaling on the validation blocks; 1: none).
    history
        Per epoch: training loss, validation loss and validation accuracy (against the coarse labels).
    """

    weights: dict[str, np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    classes_: np.ndarray
    width: int
    dilations: tuple[int, ...]
    history: list[dict] = field(default_factory=list)
    encoder: str = "none"
    depth: int = 0
    in_ch: int = 3
    temperature: float = 1.0

    @property
    def stride(self) -> int:
        """The coarsest stride of the network (1 without an encoder): a block it predicts starts on a multiple."""
        return 1 if self.encoder == "none" else resnet_geometry(self.encoder, self.depth)[0]

    @property
    def context_px(self) -> int:
        return context_px(self.dilations) if self.encoder == "none" else resnet_geometry(self.encoder, self.depth)[1]

    def module(self, device: str = "cpu"):
        torch = require_torch()
        net = (_net(len(self.mean), len(self.classes_), self.width, self.dilations) if self.encoder == "none"
               else _unet(len(self.mean), len(self.classes_), self.width, self.encoder, self.depth, self.in_ch))
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.weights.items()})
        return net.to(device).eval()

    def predict_proba_image(self, features: np.ndarray, device: str = "cpu", origin: tuple[int, int] = (0, 0)) -> np.ndarray:
        """``(y, x, class)`` float64 probabilities of a ``(y, x, feature)`` block (NaN features read as the mean).

        On CPU with one thread (bounded like the forest: Dask runs one task per core). ``origin``: the block's first
        pixel on a lattice shared by every block of the map (row and column from the CRS origin): a strided network
        reads the block from the next multiple of its stride on, and padded to one at the end, so that a pixel's
        result does not depend on where the block starts (the rows before are the halo's: left at 0).
        """
        torch = require_torch()
        s = self.stride
        dy, dx = (-int(origin[0])) % s, (-int(origin[1])) % s
        x = _scaled(features[dy:, dx:], self.mean, self.std)
        h, w = x.shape[:2]
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)))
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                z = self.module(device)(torch.from_numpy(x).permute(2, 0, 1)[None].to(device))[0] / float(self.temperature)
                p = torch.softmax(z, 0).permute(1, 2, 0).cpu().numpy()[:h, :w]
        finally:
            torch.set_num_threads(prev)
        out = np.zeros(features.shape[:2] + (p.shape[2],), np.float64)
        out[dy:, dx:] = p
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays, for ``numpy.savez`` (read back with ``allow_pickle=False``)."""
        out = {f"w/{k}": v for k, v in self.weights.items()}
        out.update(mean=self.mean, std=self.std, classes=np.asarray(self.classes_), width=np.asarray(self.width),
                   dilations=np.asarray(self.dilations), encoder=np.asarray(self.encoder), depth=np.asarray(self.depth),
                   in_ch=np.asarray(self.in_ch), temperature=np.asarray(self.temperature))
        return out

    @classmethod
    def from_arrays(cls, arrays, history: list | None = None) -> "FCNModel":
        """The model of :meth:`to_arrays`'s arrays."""
        extra = {k: cast(arrays[k]) for k, cast in (("encoder", str), ("depth", int), ("in_ch", int), ("temperature", float))
                 if k in arrays}
        return cls(weights={k[2:]: np.asarray(arrays[k]) for k in arrays if k.startswith("w/")},
                   mean=np.asarray(arrays["mean"]), std=np.asarray(arrays["std"]), classes_=np.asarray(arrays["classes"]),
                   width=int(arrays["width"]), dilations=tuple(int(d) for d in arrays["dilations"]), history=history or [],
                   **extra)


def _scaled(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    x = (np.asarray(features, np.float32) - mean) / std
    return np.where(np.isfinite(x), x, np.float32(0)).astype(np.float32)


@dataclass
class Window:
    """One training window: the feature block and, on the same pixels, what the losses read.

    Attributes
    ----------
    x
        ``(y, x, feature)`` float32 features (NaN where no clear observation).
    label
        ``(y, x)`` class indices of the coarse map on the 10 m grid (0 = none).
    usable
        ``(y, x)`` bool: eroded, confident labels (pixel loss).
    train, validation
        ``(y, x)`` bool: in the training blocks (buffer excluded) / in the validation blocks.
    cell
        ``(y, x)`` int64 coarse-cell ids (aggregate loss), unique over all windows; -1 outside.
    """

    x: np.ndarray
    label: np.ndarray
    usable: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    cell: np.ndarray


def train_fcn(windows: Sequence[Window], classes: Sequence[int], *, width: int = 32, dilations: Sequence[int] = (1, 2, 4),
              epochs: int = 60, min_epochs: int = 10, patience: int = 10, lr: float = 3e-3, aggregate_weight: float = 1.0,
              seed: int = 0, device: str = "auto", threads: int | None = None, encoder: str = "none", depth: int = 2,
              weights: str | None = None, calibrate: bool = True) -> tuple[FCNModel, dict]:
    """Train a :class:`FCNModel` on ``windows`` of the feature cube (full-window batches, Adam).

    Parameters
    ----------
    windows
        :class:`Window` s; the validation pixels of the usable labels drive early stopping.
    classes
        The class indices to learn (those of the training sample).
    aggregate_weight
        Weight of the coarse-cell aggregate loss beside the pixel loss (0: pixel loss only).
    epochs, min_epochs, patience
        At most ``epochs``; stop when the validation loss has not improved for ``patience`` epochs after
        ``min_epochs``; the best epoch's weights are kept (the last when there is no validation pixel).
    device, threads
        ``auto``: a GPU when there is one; CPU threads for training (default: PyTorch's).
    encoder, depth, weights
        ``"none"``: the dilated context network (``width``, ``dilations``). Else a U-Net on that ResNet
        (:data:`RESNETS`) cut after ``depth`` stages, its encoder started from ``weights`` (a local state-dict file,
        :func:`load_encoder_weights`; nothing is downloaded) or at random; its batch-norm statistics stay the
        weights' (a few windows make a poor batch).
    calibrate
        Fit a temperature on the validation pixels (the one minimising their log-loss) and keep it where it lowers
        their expected calibration error (Guo et al. 2017).

    Returns
    -------
    model, info
        The model and ``{"epochs", "best_epoch", "device", "history", "calibration"}``.
    """
    torch = require_torch()
    device = pick_device(device)
    torch.manual_seed(int(seed))
    if threads:
        torch.set_num_threads(int(threads))
    classes = np.asarray(sorted(int(c) for c in classes))
    lut = np.full(max(int(classes.max()), max(int(w.label.max()) for w in windows)) + 1, -1, np.int64)
    lut[classes] = np.arange(len(classes))
    allx = np.concatenate([w.x.reshape(-1, w.x.shape[-1]) for w in windows])
    mean = np.nanmean(np.where(np.isfinite(allx), allx, np.nan), 0).astype(np.float32)
    std = (np.nanstd(np.where(np.isfinite(allx), allx, np.nan), 0) + 1e-6).astype(np.float32)
    mean, std = np.nan_to_num(mean), np.where(np.isfinite(std), std, 1).astype(np.float32)
    stride = 1 if encoder == "none" else resnet_geometry(encoder, depth)[0]
    data = [_tensors(_padded(w, stride), lut, mean, std, device) for w in windows]
    counts = np.bincount(np.concatenate([lut[w.label[w.usable & w.train]] for w in windows]) .clip(0), minlength=len(classes))
    cw = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max(1, (counts > 0).sum()), 0), dtype=torch.float32,
                      device=device)
    in_ch = 3
    if encoder == "none":
        net = _net(allx.shape[1], len(classes), width, dilations)
    else:
        sd = load_encoder_weights(weights, encoder) if weights else None
        in_ch = int(sd["conv1.weight"].shape[1]) if sd is not None else 3
        net = _unet(allx.shape[1], len(classes), width, encoder, depth, in_ch)
        if sd is not None:
            _start_encoder(net.encoder, sd, weights, encoder, depth)
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr, weight_decay=1e-4)
    best, best_state, bad, history = np.inf, None, 0, []
    for ep in range(int(epochs)):
        net.train()
        for m in net.modules():  # batch-norm statistics stay the encoder's weights'
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        opt.zero_grad()
        loss = sum(_loss(net, d, cw, aggregate_weight) for d in data) / len(data)
        loss.backward()
        opt.step()
        net.eval()
        with torch.no_grad():
            vl, n_ok, n = 0.0, 0, 0
            for d in data:
                lv, ok_, nv = _validation(net, d, cw)
                vl, n_ok, n = vl + lv * nv, n_ok + ok_, n + nv
        row = {"epoch": ep, "train_loss": float(loss.detach()), "validation_loss": vl / n if n else None,
               "validation_accuracy": n_ok / n if n else None}
        history.append(row)
        score = row["validation_loss"] if n else -ep  # no validation pixel: the last epoch
        if score < best - 1e-6 or ep < min_epochs:
            best, bad = min(best, score) if ep >= min_epochs else np.inf, 0
            best_state, best_ep = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, ep
        else:
            bad += 1
            if bad >= patience:
                break
    params = {k: v.numpy().astype(np.float32) for k, v in best_state.items() if not k.endswith("num_batches_tracked")}
    model = FCNModel(params, mean, std, classes, int(width), tuple(int(d) for d in dilations), history,
                     encoder=encoder, depth=int(depth) if encoder != "none" else 0, in_ch=in_ch)
    net.load_state_dict(best_state)
    calibration = _temperature(net.eval(), data) if calibrate else {"temperature": 1.0}
    model.temperature = calibration["temperature"]
    return model, {"epochs": len(history), "best_epoch": best_ep, "device": device, "history": history,
                   "calibration": calibration}


def _padded(w: Window, stride: int) -> Window:
    """``w`` grown at its far edges to a multiple of ``stride`` with pixels no loss reads."""
    h, wd = w.label.shape
    ph, pw = (-h) % stride, (-wd) % stride
    if not (ph or pw):
        return w
    pad = lambda a, v: np.pad(a, ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2), constant_values=v)  # noqa: E731
    return Window(pad(w.x, np.nan), pad(w.label, 0), pad(w.usable, False), pad(w.train, False), pad(w.validation, False),
                  pad(w.cell, -1))


def _start_encoder(enc, sd: dict, path, encoder: str, depth: int) -> None:
    """Load the stages of ``sd`` that ``enc`` has; a missing or misshapen parameter is a ModelError naming it."""
    torch = require_torch()
    own = enc.state_dict()
    missing = sorted(k for k in own if k not in sd and not k.endswith("num_batches_tracked"))
    wrong = sorted(k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        raise ModelError(f"model.nn_weights {path} does not fit a {encoder} cut after {depth} stage(s): "
                         + (f"missing {missing[:6]}" if missing else "")
                         + (f"{'; ' if missing else ''}other shapes for {wrong[:6]}" if wrong else "")
                         + f"; give the weights of a {encoder} (torchvision layout), or set model.nn_encoder to theirs")
    enc.load_state_dict({k: torch.as_tensor(sd[k]) for k in own if k in sd}, strict=False)


def _temperature(net, data: list) -> dict:
    """:func:`fit_temperature` on the validation pixels of the windows ``data``."""
    torch = require_torch()
    with torch.no_grad():
        z = [net(d["x"])[0][:, d["pix_va"]].T for d in data if bool(d["pix_va"].any())]
        y = [d["lab"][d["pix_va"]] for d in data if bool(d["pix_va"].any())]
    if not z:
        return {"temperature": 1.0, "reason": "no validation pixel"}
    return fit_temperature(torch.cat(z), torch.cat(y))


def fit_temperature(z, y) -> dict:
    """Temperature scaling (:func:`lcup.ops.accuracy.temperature_scaling`) of logits ``z`` ``(n, class)`` against
    class indices ``y``: ``softmax(z / T)`` is the softmax's probabilities scaled by ``T``."""
    torch = require_torch()
    p = torch.softmax(z.detach().double().cpu(), 1).numpy()
    return temperature_scaling(p, y.detach().cpu().numpy(), list(range(p.shape[1])))


def _tensors(w: Window, lut: np.ndarray, mean, std, device) -> dict:
    torch = require_torch()
    lab = lut[w.label]
    x = torch.from_numpy(_scaled(w.x, mean, std)).permute(2, 0, 1)[None].to(device)
    ok = np.isfinite(w.x).all(-1)
    pix_tr = w.usable & w.train & ok & (lab >= 0)
    pix_va = w.usable & w.validation & ok & (lab >= 0)
    # cells of the training blocks: every pixel of the cell in training, the cell's label its coarse class
    cell = np.where(w.train & ok & (lab >= 0), w.cell, -1)
    ids, inv = np.unique(cell, return_inverse=True)
    keep = ids >= 0
    inv = inv.reshape(cell.shape)
    cell_label = np.full(len(ids), -1, np.int64)
    for i in np.flatnonzero(keep):
        cell_label[i] = np.bincount(lab[inv == i]).argmax()
    t = lambda a, dt=torch.int64: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dt)  # noqa: E731
    return {"x": x, "lab": t(lab), "pix_tr": t(pix_tr, torch.bool), "pix_va": t(pix_va, torch.bool),
            "inv": t(inv.ravel()), "cell_ok": t(keep & (cell_label >= 0), torch.bool), "cell_label": t(cell_label.clip(0)),
            "n_cells": len(ids)}


def _loss(net, d: dict, cw, aggregate_weight: float):
    torch = require_torch()
    F = torch.nn.functional
    logp = F.log_softmax(net(d["x"])[0], 0)  # (class, y, x)
    k = logp.shape[0]
    m = d["pix_tr"]
    loss = F.nll_loss(logp[:, m].T, d["lab"][m], weight=cw) if m.any() else logp.sum() * 0
    if aggregate_weight and bool(d["cell_ok"].any()):
        p = logp.exp().reshape(k, -1)
        sums = torch.zeros(k, d["n_cells"], device=p.device).index_add_(1, d["inv"], p)
        n = torch.bincount(d["inv"], minlength=d["n_cells"]).clamp(min=1)
        mean = sums / n
        ok = d["cell_ok"]
        lab = d["cell_label"][ok]
        agg = -torch.log(mean[:, ok].gather(0, lab[None])[0] + 1e-6)
        wc = cw[lab]
        loss = loss + aggregate_weight * (agg * wc).sum() / wc.sum().clamp(min=1e-6)
    return loss


def _validation(net, d: dict, cw) -> tuple[float, int, int]:
    F = require_torch().nn.functional
    m = d["pix_va"]
    if not m.any():
        return 0.0, 0, 0
    logp = F.log_softmax(net(d["x"])[0], 0)[:, m].T
    y = d["lab"][m]
    return float(F.nll_loss(logp, y, weight=cw)), int((logp.argmax(1) == y).sum()), int(m.sum())


#: Rows a per-pixel network predicts at once; every batch is padded to it, so that a pixel's arithmetic is the same
#: whatever the chunk it comes in (the matrix products see one shape).
PIXEL_BATCH = 4096


def series_columns(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Split feature ``names`` into the smoothed series (``<variable>_t<step>``) and the rest: ``(series, other)``,
    ``series`` a ``(variable, step)`` array of column indices (variables in order of appearance, steps sorted),
    ``other`` the remaining columns.

    Examples
    --------
    >>> s, o = series_columns(["ndvi_mean", "ndvi_t00", "ndvi_t02", "ndbi_t00", "ndbi_t02"])
    >>> s.tolist(), o.tolist()
    ([[1, 2], [3, 4]], [0])
    """
    groups: dict[str, list[tuple[int, int]]] = {}
    other = []
    for i, n in enumerate(names):
        var, _, step = n.rpartition("_t")
        if var and step.isdigit():
            groups.setdefault(var, []).append((int(step), i))
        else:
            other.append(i)
    if not groups:
        return np.zeros((0, 0), np.int64), np.asarray(other, np.int64)
    steps = {len(v) for v in groups.values()}
    if len(steps) != 1:  # series of unequal lengths: the shortest steps are kept for all, the rest become plain features
        n = min(steps)
        for var, v in groups.items():
            other += [i for _, i in sorted(v)[n:]]
            groups[var] = sorted(v)[:n]
    return np.asarray([[i for _, i in sorted(v)] for v in groups.values()], np.int64), np.asarray(sorted(other), np.int64)


def _pixel_net(n_vars: int, n_steps: int, n_other: int, n_classes: int, width: int):
    torch = require_torch()
    nn = torch.nn

    class PixelNet(nn.Module):
        """TempCNN-style (Pelletier et al. 2019): 1-D convolutions over the time series, pooled, beside a dense layer
        over the other features."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv1d(n_vars, width, 5, padding=2), nn.ReLU(),
                                      nn.Conv1d(width, width, 5, padding=2), nn.ReLU())
            self.other = nn.Sequential(nn.Linear(n_other, width), nn.ReLU()) if n_other else None
            self.head = nn.Sequential(nn.Linear(2 * width + (width if n_other else 0), width), nn.ReLU(),
                                      nn.Linear(width, n_classes))

        def forward(self, s, o):
            h = self.conv(s)
            h = torch.cat([h.mean(-1), h.amax(-1)], 1)
            if self.other is not None:
                h = torch.cat([h, self.other(o)], 1)
            return self.head(h)

    return PixelNet()


@dataclass
class PixelNetModel:
    """A trained per-pixel temporal network, applied like a forest (``predict_proba`` on ``(sample, feature)``).

    Attributes
    ----------
    series, other
        Column indices of the features: ``(variable, step)`` series and the rest (:func:`series_columns`).
    """

    weights: dict[str, np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    classes_: np.ndarray
    width: int
    series: np.ndarray
    other: np.ndarray
    history: list[dict] = field(default_factory=list)
    temperature: float = 1.0

    def module(self, device: str = "cpu"):
        torch = require_torch()
        net = _pixel_net(self.series.shape[0], self.series.shape[1], len(self.other), len(self.classes_), self.width)
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.weights.items()})
        return net.to(device).eval()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(sample, class)`` float64 probabilities of finite ``(sample, feature)`` rows, :data:`PIXEL_BATCH` rows at a
        time on one CPU thread."""
        torch = require_torch()
        x = _scaled(X, self.mean, self.std)
        out = np.zeros((len(x), len(self.classes_)), np.float64)
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            net = self.module()
            with torch.no_grad():
                for s in range(0, len(x), PIXEL_BATCH):
                    b = np.zeros((PIXEL_BATCH, x.shape[1]), np.float32)
                    n = min(PIXEL_BATCH, len(x) - s)
                    b[:n] = x[s:s + n]
                    z = _pixel_forward(net, torch.from_numpy(b), self.series, self.other) / float(self.temperature)
                    out[s:s + n] = torch.softmax(z, 1)[:n].numpy()
        finally:
            torch.set_num_threads(prev)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_)[self.predict_proba(X).argmax(1)]

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {f"w/{k}": v for k, v in self.weights.items()}
        out.update(mean=self.mean, std=self.std, classes=np.asarray(self.classes_), width=np.asarray(self.width),
                   series=self.series, other=self.other, temperature=np.asarray(self.temperature))
        return out

    @classmethod
    def from_arrays(cls, arrays, history: list | None = None) -> "PixelNetModel":
        return cls(weights={k[2:]: np.asarray(arrays[k]) for k in arrays if k.startswith("w/")},
                   mean=np.asarray(arrays["mean"]), std=np.asarray(arrays["std"]), classes_=np.asarray(arrays["classes"]),
                   width=int(arrays["width"]), series=np.asarray(arrays["series"]), other=np.asarray(arrays["other"]),
                   history=history or [], temperature=float(arrays["temperature"]) if "temperature" in arrays else 1.0)


def _pixel_forward(net, x, series: np.ndarray, other: np.ndarray):
    torch = require_torch()
    s = x[:, torch.from_numpy(series.ravel())].reshape(len(x), *series.shape)
    return net(s, x[:, torch.from_numpy(other)] if len(other) else None)


def train_pixelnet(X: np.ndarray, y: np.ndarray, names: Sequence[str], *, X_val: np.ndarray | None = None,
                   y_val: np.ndarray | None = None, sample_weight: np.ndarray | None = None, width: int = 32,
                   epochs: int = 60, min_epochs: int = 5, patience: int = 10, batch: int = 256, lr: float = 2e-3,
                   seed: int = 0, device: str = "auto", calibrate: bool = True) -> tuple[PixelNetModel, dict]:
    """Train a :class:`PixelNetModel` on the training sample's features (rows with NaN left out), classes
    balanced, with early stopping on the validation sample's loss (the best epoch kept).

    Returns
    -------
    model, info
        ``info``: ``n_train``, ``n_dropped_nan``, ``epochs``, ``best_epoch``, ``device`` and ``history`` (training
        and validation loss, validation accuracy per epoch).
    """
    torch = require_torch()
    F = torch.nn.functional
    device = pick_device(device)
    torch.manual_seed(int(seed))
    rng = np.random.default_rng([int(seed), 3])
    series, other = series_columns(names)
    if not series.size:
        raise ValueError("a temporal network needs smoothed series among the features: set features.series")
    ok = np.isfinite(X).all(1)
    Xt, yt = X[ok].astype(np.float32), np.asarray(y)[ok]
    wt = np.ones(len(Xt), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)[ok]
    classes = np.unique(yt)
    idx = np.searchsorted(classes, yt)
    counts = np.bincount(idx, minlength=len(classes))
    cw = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(classes), dtype=torch.float32, device=device)
    mean, std = Xt.mean(0), Xt.std(0) + 1e-6
    xs = torch.from_numpy(_scaled(Xt, mean, std)).to(device)
    val = None
    if X_val is not None and len(X_val):
        vok = np.isfinite(X_val).all(1) & np.isin(y_val, classes)
        if vok.any():
            val = (torch.from_numpy(_scaled(X_val[vok], mean, std)).to(device),
                   torch.from_numpy(np.searchsorted(classes, np.asarray(y_val)[vok])).to(device))
    net = _pixel_net(series.shape[0], series.shape[1], len(other), len(classes), int(width)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr, weight_decay=1e-4)
    yi, wts = torch.from_numpy(idx).to(device), torch.from_numpy(wt).to(device)
    best, bad, history, best_state, best_ep = np.inf, 0, [], None, 0
    for ep in range(int(epochs)):
        net.train()
        total = 0.0
        for b in np.array_split(rng.permutation(len(xs)), max(1, len(xs) // batch)):
            bt = torch.from_numpy(b).to(device)
            opt.zero_grad()
            loss = (F.cross_entropy(_pixel_forward(net, xs[bt], series, other), yi[bt], weight=cw, reduction="none")
                    * wts[bt]).mean()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        net.eval()
        row = {"epoch": ep, "train_loss": total / len(xs), "validation_loss": None, "validation_accuracy": None}
        if val is not None:
            with torch.no_grad():
                z = _pixel_forward(net, val[0], series, other)
                row.update(validation_loss=float(F.cross_entropy(z, val[1], weight=cw)),
                           validation_accuracy=float((z.argmax(1) == val[1]).float().mean()))
        history.append(row)
        score = row["validation_loss"] if val is not None else -ep
        if score < best - 1e-6 or ep < min_epochs:
            best, bad = (score if ep >= min_epochs else np.inf), 0
            best_state, best_ep = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, ep
        else:
            bad += 1
            if bad >= patience:
                break
    model = PixelNetModel({k: v.numpy().astype(np.float32) for k, v in best_state.items()}, mean.astype(np.float32),
                          std.astype(np.float32), classes, int(width), series, other, history)
    calibration_ = {"temperature": 1.0, "reason": "no validation pixel"}
    if val is not None and calibrate:  # temperature scaling on the validation sample, kept where it lowers its ECE
        net.load_state_dict(best_state)
        with torch.no_grad():
            calibration_ = fit_temperature(_pixel_forward(net.eval(), val[0], series, other), val[1])
        model.temperature = calibration_["temperature"]
    return model, {"n_train": int(ok.sum()), "n_dropped_nan": int((~ok).sum()), "epochs": len(history), "best_epoch": best_ep,
                   "device": device, "history": history, "calibration": calibration_}
