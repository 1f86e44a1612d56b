"""Command line: a thin layer over the Python API.

    lcup demo DIR            generate the synthetic demo scene
    lcup run PIPELINE.yaml   run a pipeline
    lcup validate PIPELINE   check a pipeline file without running it
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path


def _demo(args) -> int:
    from .synthetic import SceneSpec, write_demo

    spec = SceneSpec(size=(args.size, args.size), year=args.year, seed=args.seed)
    t0 = time.perf_counter()
    print(f"lcup demo: generating a {args.size}×{args.size} px scene ({len(spec.dates)} dates) in {args.out}")
    cat = write_demo(args.out, spec, overwrite=args.overwrite)
    print(f"lcup demo: wrote {cat} in {time.perf_counter() - t0:.0f} s")
    return 0


def _run(args) -> int:
    from .config import load_config
    from .pipeline import run_pipeline

    overrides = {}
    if args.overwrite:
        overrides["output.overwrite"] = True
    if args.resume:
        overrides["output.resume"] = True
    if args.output:  # relative to where the command runs, not to the pipeline file
        overrides["output.dir"] = str(Path(args.output).resolve())
    if args.model:
        overrides["model.path"] = str(Path(args.model).resolve())
    cfg = load_config(args.pipeline, overrides=overrides)
    summary = run_pipeline(cfg, progress=not args.quiet and sys.stdout.isatty())
    f = summary.figures
    print(f"lcup run: done in {summary.timings['total']:.0f} s; outputs in {cfg.output.dir}")
    if "skipped" in f.get("validation", {}):
        print(f"  {f['validation']['skipped']}")
    elif "validation" in f:
        print(f"  validation on held-out blocks (coarse labels): OA {f['validation']['overall_accuracy']:.3f}, kappa {f['validation']['kappa']:.3f}")
    if "consistency" in f and f["consistency"]["agreement"] is not None:
        print(f"  agreement with the coarse map it learned from: {100 * f['consistency']['agreement']:.1f} % of its labelled pixels")
    if "truth" in f:
        t = f["truth"]
        if "coarse_map_upsampled" in t:
            print(f"  against the 10 m truth: prediction OA {t['prediction_10m']['overall_accuracy']:.3f} vs coarse map "
                  f"OA {t['coarse_map_upsampled']['overall_accuracy']:.3f} ({t['oa_gain_points']:+.1f} points)")
        else:
            print(f"  against the 10 m truth: prediction OA {t['prediction_10m']['overall_accuracy']:.3f}")
    tiles = f.get("tiles", {})
    if tiles.get("without_valid_data"):
        print(f"  {len(tiles['without_valid_data'])} tile(s) had no valid observation and hold nodata: {tiles['without_valid_data']}")
    if "catalog" in summary.outputs:
        print(f"  tile catalog: {summary.outputs['catalog']}")
    print(f"  summary: {summary.outputs['summary']}")
    return 0


def _plan(args) -> int:
    from .config import load_config
    from .pipeline import plan

    print(plan(load_config(args.pipeline)))
    return 0


def _validate(args) -> int:
    from .config import load_config

    cfg = load_config(args.pipeline)
    print(f"{args.pipeline}: valid pipeline {cfg.name!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lcup", description="Coarse land cover to 10 m with Sentinel-2 time series")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"lcup {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("demo", help="generate the synthetic demo scene (no internet needed)")
    p.add_argument("out", nargs="?", default="demo-data", help="output folder (default: demo-data)")
    p.add_argument("--size", type=int, default=1024, help="scene side in 10 m pixels (default 1024)")
    p.add_argument("--year", type=int, default=2024)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(fn=_demo)
    p = sub.add_parser("run", help="run a pipeline file")
    p.add_argument("pipeline")
    p.add_argument("--output", help="override output.dir")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (finished tiles are skipped)")
    p.add_argument("--model", help="apply this saved model (model.skops of an earlier run) instead of training; "
                                   "labels are then optional (sets model.path)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=_run)
    p = sub.add_parser("plan", help="dry run: print the grid, tiles, chunks and memory per task, do no work")
    p.add_argument("pipeline")
    p.set_defaults(fn=_plan)
    p = sub.add_parser("validate", help="check a pipeline file without running it")
    p.add_argument("pipeline")
    p.set_defaults(fn=_validate)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    lg = logging.getLogger("lcup")
    lg.addHandler(handler)
    lg.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from .errors import LcupError
    from .redact import redact_text

    try:
        return args.fn(args)
    except LcupError as e:
        print(f"lcup: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - never a raw traceback from inside a library (-v shows it)
        if args.verbose:
            raise
        print(f"lcup: unexpected error: {type(e).__name__}: {redact_text(str(e))}\n"
              "  run again with -v to see where it happened, and report it with the pipeline file", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lcup: interrupted; summary.json in the output folder says what was done (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
