"""ONNX Runtime against PyTorch for the networks' prediction on a worker: one 512 px chunk with its halo, one thread.

Issue 27 left the choice to a measurement: workers may predict through ONNX Runtime if that keeps PyTorch off them
and is faster on CPU. Both sides run the same trained-shape network (``lcup.ops.nn``'s context network and the
U-Net on resnet18, random weights) on the same block, inside the timer, in alternating order; the ratio is ONNX
Runtime's time over PyTorch's (below 1: ONNX Runtime faster). Needs ``onnx`` and ``onnxruntime`` beside lcup[deep].

    python benchmarks/bench_onnx.py --rounds 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--features", type=int, default=120)
    args = p.parse_args(argv)
    import onnxruntime as ort
    import torch

    from lcup.ops.nn import _net, _unet, resnet_geometry

    torch.set_num_threads(1)
    torch.manual_seed(0)
    nets = {"context network (width 32, dilations 1-2-4)": (_net(args.features, 7, 32, (1, 2, 4)), 7),
            "U-Net on resnet18, 2 stages": (_unet(args.features, 7, 32, "resnet18", 2, 3), resnet_geometry("resnet18", 2)[1])}
    out = {}
    for name, (net, halo) in nets.items():
        net.eval()
        side = 512 + 2 * halo
        side += (-side) % 8
        x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, args.features, side, side)).astype(np.float32))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "net.onnx"
            torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["z"], dynamo=False)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            times = {"torch": [], "onnxruntime": []}

            def run_torch():
                with torch.no_grad():
                    return net(x).numpy()

            def run_ort():
                return sess.run(None, {"x": x.numpy()})[0]

            a, b = run_torch(), run_ort()  # warm both
            for r in range(args.rounds):
                for key, fn in (("torch", run_torch), ("onnxruntime", run_ort))[:: 1 if r % 2 == 0 else -1]:
                    t0 = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - t0)
        ratio = [o / t for o, t in zip(times["onnxruntime"], times["torch"])]
        out[name] = {"block_px": side, "torch_s": float(np.median(times["torch"])), "onnxruntime_s": float(np.median(times["onnxruntime"])),
                     "ratio_median": float(np.median(ratio)), "ratio_range": [float(min(ratio)), float(max(ratio))],
                     "max_abs_diff": float(np.abs(a - b).max())}
        print(f"{name}: {side}² px block, torch {out[name]['torch_s']:.2f} s, onnxruntime {out[name]['onnxruntime_s']:.2f} s, "
              f"ratio {out[name]['ratio_median']:.2f} ({min(ratio):.2f}–{max(ratio):.2f}), max |diff| {out[name]['max_abs_diff']:.1e}")
    return out


if __name__ == "__main__":
    main()
