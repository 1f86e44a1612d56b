"""Command line: a thin layer over the Python API.

    lcup demo DIR            generate the synthetic demo scene
    lcup run PIPELINE.yaml   run a pipeline
    lcup validate PIPELINE   check a pipeline file without running it
    lcup plan PIPELINE       dry run: grid, tiles, chunks, memory per task
    lcup change A B [...]    change between maps of two or more years
    lcup zonal MAP [...] ZONES --by NAME   class areas per zone
    lcup design MAP          a stratified random reference sample to label
    lcup area MAP POINTS     class areas with confidence intervals from labelled points

Every subcommand takes -v, -q and --set KEY=VALUE (any pipeline key); exit codes: see EXIT_*.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
import warnings
from pathlib import Path

import yaml

from . import __version__
from .config import load_config
from .errors import ConfigError, LcupError, LcupWarning, OutputExistsError
from .progress import on_tty
from .redact import redact_text
from .template import TEMPLATE, schema

#: Exit codes: 0 done; 1 an lcup error (bad input, unreadable data: the message names the fix); 2 a usage error
#: (argparse); 70 an unexpected error (a bug: -v shows the traceback); 130 interrupted (Ctrl-C).
EXIT_LCUP_ERROR, EXIT_USAGE, EXIT_UNEXPECTED, EXIT_INTERRUPTED = 1, 2, 70, 130


def _demo(args) -> int:
    from .synthetic import (  # deferred: each subcommand imports what it runs (lcup --version and validate stay fast)
        SceneSpec,
        write_demo,
        write_two_zone_demo,
    )

    spec = SceneSpec(size=(args.size, args.size), year=args.year, seed=args.seed, years=args.years, difficulty=args.difficulty)
    t0 = time.perf_counter()
    if args.two_zones:
        print(f"lcup demo: generating a {args.size}×{args.size} px scene across the UTM zone 32/33 boundary ({len(spec.dates)} "
              f"dates, each Sentinel-2 tile's items on its own grid, an area polygon across the boundary) in {args.out}")
        cat = write_two_zone_demo(args.out, spec, overwrite=args.overwrite, progress=not args.quiet)
        print(f"lcup demo: wrote {cat} and {Path(cat).parent / 'area.geojson'} in {time.perf_counter() - t0:.0f} s")
        return 0
    span = f"{args.year}" if args.years == 1 else f"{args.year}–{args.year + args.years - 1}, land changing each year"
    hard = ", hard: small features, close classes, mixed pixels, a misregistered coarse map" if args.difficulty == "hard" else ""
    print(f"lcup demo: generating a {args.size}×{args.size} px scene ({len(spec.dates)} dates a year, {span}{hard}) in {args.out}")
    cat = write_demo(args.out, spec, overwrite=args.overwrite, progress=not args.quiet)
    print(f"lcup demo: wrote {cat} in {time.perf_counter() - t0:.0f} s")
    return 0


def _run(args) -> int:
    from .pipeline import run_pipeline  # deferred: each subcommand imports what it runs

    overrides = {}
    if args.overwrite:
        overrides["output.overwrite"] = True
    if args.resume:
        overrides["output.resume"] = True
    overrides.update(_parse_sets(args.set))
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
    for p in f.get("change", {}).get("pairs", []):
        h = p["hectares"]
        print(f"  change {p['from']} → {p['to']}: {h['changed']:,.1f} ha ({100 * (h['share_changed'] or 0):.1f} % of the mapped area)")
    if "change" in summary.outputs:
        print(f"  maps per year in {cfg.output.dir}/<year>/, change outputs in {summary.outputs['change']}")
    tiles = f.get("tiles", {})
    if tiles.get("without_valid_data"):
        print(f"  {len(tiles['without_valid_data'])} tile(s) had no valid observation and hold nodata: {tiles['without_valid_data']}")
    if "catalog" in summary.outputs:
        print(f"  tile catalog: {summary.outputs['catalog']}")
    if "report" in summary.outputs:
        print(f"  report: {summary.outputs['report']}")
    print(f"  summary: {summary.outputs['summary']}")
    return 0


def _dask_compute(quiet: bool):
    """``compute(*lazy)`` on the threaded scheduler, with dask's bar on a terminal."""
    import dask  # deferred: each subcommand imports what it runs

    def compute(*lazy):
        if quiet or not on_tty():
            return dask.compute(*lazy)
        from dask.diagnostics import ProgressBar  # deferred: each subcommand imports what it runs

        with ProgressBar():
            return dask.compute(*lazy)

    return compute


def _change(args) -> int:
    from .stages.change import change  # deferred: each subcommand imports what it runs

    r = change(args.maps, args.output, labels=args.labels, legend=args.legend, bbox=args.bbox, chunk_px=args.chunk_px,
               compute=_dask_compute(getattr(args, "quiet", False)), overwrite=args.overwrite)
    for p in r["pairs"]:
        h = p["hectares"]
        print(f"lcup change: {p['from']} → {p['to']}: {h['changed']:,.1f} ha of {h['total']:,.1f} ha changed "
              f"({100 * (h['share_changed'] or 0):.2f} %)")
    if "temporal_consistency" in r:
        print(f"  pixels that change and change back: {100 * (r['temporal_consistency']['flip_back_share'] or 0):.2f} %")
    print(f"  outputs in {args.output}: transitions.csv, change.json, {Path(r['change_map']['path']).name}"
          + (", sankey.png" if "sankey" in r else ""))
    return 0


def _zonal(args) -> int:
    from .stages.zonal import zonal  # deferred: each subcommand imports what it runs

    t = zonal(args.maps, args.zones, args.output, by=args.by, labels=args.labels, legend=args.legend, bbox=args.bbox,
              chunk_px=args.chunk_px, compute=_dask_compute(getattr(args, "quiet", False)), overwrite=args.overwrite)
    print(f"lcup zonal: {t['zone'].nunique()} zones × {t['map'].nunique()} map(s) → {args.output} "
          f"(and {Path(args.output).with_suffix('.csv')})")
    return 0


def _design(args) -> int:
    from .stages.reference import design  # deferred: each subcommand imports what it runs

    r = design(args.map, args.output, users_accuracy=args.users_accuracy, target_se=args.target_se, n=args.n,
               min_per_class=args.min_per_class, legend=args.legend, bbox=args.bbox, seed=args.seed, chunk_px=args.chunk_px,
               compute=_dask_compute(getattr(args, "quiet", False)), overwrite=args.overwrite)
    print(f"lcup design: {r['n']} points → {r['output']} (per class: {r['per_class']}); label their 'reference' column, "
          f"then: lcup area {args.map} {r['output']}")
    return 0


def _area(args) -> int:
    from .stages.reference import area  # deferred: each subcommand imports what it runs

    r = area(args.map, args.points, class_column=args.class_column, legend=args.legend, reference_legend=args.reference_legend,
             output=args.output, points_crs=args.points_crs, chunk_px=args.chunk_px,
             compute=_dask_compute(getattr(args, "quiet", False)))
    print(f"lcup area: {r['n']} reference points ({r['unused_points']} unused); overall accuracy "
          f"{r['overall_accuracy']:.3f} ± {r['overall_accuracy_ci']:.3f} (95 %)")
    print(f"  {'class':<28} {'mapped ha':>12} {'estimated ha':>14} {'± 95 % CI':>11} {'user':>7} {'producer':>9}")
    for c, v in r["classes"].items():
        print(f"  {str(c) + ' ' + v['name']:<28} {v['map_ha']:>12,.1f} {v['area_ha']:>14,.1f} {v['area_ci_ha']:>11,.1f} "
              f"{v['user_accuracy']:>7.3f} {v['producer_accuracy']:>9.3f}")
    if args.output:
        print(f"  written to {args.output} and {Path(args.output).with_suffix('.csv')}")
    return 0


def _parse_sets(pairs) -> dict:
    """``--set key=value`` pairs as config overrides; values are read as YAML (numbers, lists, true/false)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r} is not key=value; e.g. --set model.n_estimators=200")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _init(args) -> int:
    p = Path(args.path)
    if p.exists() and not args.overwrite:
        raise OutputExistsError(f"{p} exists; choose another name or pass --overwrite")
    p.write_text(TEMPLATE)
    print(f"lcup init: wrote {p}; set the keys marked 'set this', then: lcup validate {p}")
    return 0


def _schema(args) -> int:
    print(json.dumps(schema(), indent=1))
    return 0


def _plan(args) -> int:
    from .pipeline import plan  # deferred: each subcommand imports what it runs

    print(plan(load_config(args.pipeline, overrides=_parse_sets(args.set))))
    return 0


def _validate(args) -> int:
    from .stages.area import aoi_extent
    from .stages.score import probe_inputs  # deferred: each subcommand imports what it runs
    from .stages.search import grid

    cfg = load_config(args.pipeline, overrides=_parse_sets(args.set))
    bbox, crs = aoi_extent(cfg.aoi)
    probe_inputs(cfg, grid(bbox, crs=crs, grid_crs=cfg.aoi.grid_crs, resolution=cfg.aoi.resolution))
    print(f"{args.pipeline}: valid pipeline {cfg.name!r}; its label and truth maps open and meet the area")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lcup", description="Coarse land cover to 10 m with Sentinel-2 time series")

    parser.add_argument("--version", action="version", version=f"lcup {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    common.add_argument("--set", action="append", metavar="KEY=VALUE", default=argparse.SUPPRESS,
                        help="override any pipeline key, e.g. --set model.n_estimators=200 (repeatable)")
    p = sub.add_parser("demo", help="generate the synthetic demo scene (no internet needed)", parents=[common])
    p.add_argument("out", nargs="?", default="demo-data", help="output folder (default: demo-data)")
    p.add_argument("--size", type=_at_least(64, "pixels: a scene of a few 100 m coarse cells"), default=1024,
                   help="scene side in 10 m pixels, at least 64 (default 1024)")
    p.add_argument("--year", type=int, default=2024)
    p.add_argument("--years", type=_at_least(1, "year"), default=1, help="consecutive years to generate (default 1); later years change "
                   "the land and get their own truth_10m_<year>.tif")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--difficulty", choices=["easy", "hard"], default="easy", help="hard: hedges, ponds and farm "
                   "buildings, intensively mown grassland, mixed pixels, and a coarse map misregistered by half a cell "
                   "with grassland under-mapped regionally (default easy)")
    p.add_argument("--two-zones", action="store_true", help="a scene across the boundary of UTM zones 32 and 33: two "
                   "Sentinel-2 tiles, each with its items on its own grid, a coarse map in EPSG:3035 and area.geojson "
                   "(pipelines/demo-two-zones.yaml maps it tile by tile and mosaics it)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(fn=_demo)
    p = sub.add_parser("run", help="run a pipeline file", parents=[common])
    p.add_argument("pipeline")
    p.add_argument("--output", help="override output.dir")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (finished tiles are skipped)")
    p.add_argument("--model", help="apply this saved model (model.skops of an earlier run) instead of training; "
                                   "labels are then optional (sets model.path)")
    p.set_defaults(fn=_run)
    p = sub.add_parser("plan", help="dry run: print the grid, tiles, chunks and memory per task, do no work", parents=[common])
    p.add_argument("pipeline")
    p.set_defaults(fn=_plan)
    maps = argparse.ArgumentParser(add_help=False)
    maps.add_argument("--labels", nargs="+", help="a name per map, e.g. --labels 2020 2021 (default: file names)")
    maps.add_argument("--legend", help="the maps' legend (built-in name), if they do not carry lcup's LEGEND tag")
    maps.add_argument("--bbox", nargs=4, type=float, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                      help="analyse this part only (in the first map's CRS)")
    maps.add_argument("--chunk-px", type=int, default=1024, help="chunk side in pixels (default 1024)")
    maps.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p = sub.add_parser("change", help="change between maps of two or more years: transitions, change map, Sankey",
                       parents=[common, maps])
    p.add_argument("maps", nargs="+", help="class maps, oldest first (on one grid, or read onto the first one's)")
    p.add_argument("-o", "--output", default="change-output", help="output folder (default: change-output)")
    p.set_defaults(fn=_change)
    p = sub.add_parser("zonal", help="area and share of every class per zone (GeoPackage/GeoParquet/CSV)", parents=[common, maps])
    p.add_argument("maps", nargs="+", help="class maps (several years: their change per zone too)")
    p.add_argument("zones", help="zone polygons, after the maps: GeoPackage, GeoJSON, Shapefile or GeoParquet")
    p.add_argument("--by", required=True, help="the zones' name column")
    p.add_argument("-o", "--output", default="zonal.gpkg", help="output .gpkg, .parquet or .csv (default: zonal.gpkg)")
    p.set_defaults(fn=_zonal)
    one = argparse.ArgumentParser(add_help=False)
    one.add_argument("--legend", help="the map's legend (built-in name), if it does not carry lcup's LEGEND tag")
    one.add_argument("--chunk-px", type=int, default=1024, help="chunk side in pixels (default 1024)")
    p = sub.add_parser("design", help="a stratified random reference sample on a map, for your own validation points",
                       parents=[common, one])
    p.add_argument("map", help="class map (COG/GeoTIFF)")
    p.add_argument("-o", "--output", default="reference-points.gpkg", help="points: .gpkg, .geojson or .csv")
    p.add_argument("--target-se", type=float, default=0.01, help="target standard error of the overall accuracy (default 0.01)")
    p.add_argument("--users-accuracy", type=float, default=0.8, help="anticipated user's accuracy of every class (default 0.8)")
    p.add_argument("--min-per-class", type=int, default=50, help="points at least per class (default 50)")
    p.add_argument("-n", type=int, help="total points (instead of --target-se)")
    p.add_argument("--bbox", nargs=4, type=float, metavar=("XMIN", "YMIN", "XMAX", "YMAX"), help="in the map's CRS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(fn=_design)
    p = sub.add_parser("area", help="class areas with 95 %% confidence intervals from labelled reference points",
                       parents=[common, one])
    p.add_argument("map", help="class map (COG/GeoTIFF)")
    p.add_argument("points", help="labelled points: GeoPackage, GeoJSON, GeoParquet, or CSV with x/y or lon/lat")
    p.add_argument("--class-column", default="reference", help="the points' reference class column (default: reference)")
    p.add_argument("--reference-legend", help="legend of the reference classes if not the map's (crosswalked)")
    p.add_argument("--points-crs", help="CRS of a CSV's x/y (default: EPSG:4326 for lon/lat, else the map's)")
    p.add_argument("-o", "--output", help="write the estimates as JSON (and a CSV table beside it)")
    p.set_defaults(fn=_area)
    p = sub.add_parser("init", help="write a commented pipeline template", parents=[common])
    p.add_argument("path", nargs="?", default="pipeline.yaml")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(fn=_init)
    p = sub.add_parser("schema", help="print the pipeline's JSON schema (for editors)", parents=[common])
    p.set_defaults(fn=_schema)
    p = sub.add_parser("validate", help="check a pipeline file without running it", parents=[common])
    p.add_argument("pipeline")
    p.set_defaults(fn=_validate)
    args = parser.parse_args(argv)
    for name, default in (("verbose", False), ("quiet", False), ("set", [])):
        if not hasattr(args, name):
            setattr(args, name, default)
    if args.set and args.fn not in (_run, _plan, _validate):  # nothing else reads a pipeline: say so, not ignore it
        parser.error(f"--set {args.set[0]!r}: --set changes a pipeline's keys, for lcup run, plan and validate only")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    lg = logging.getLogger("lcup")
    lg.addHandler(handler)
    lg.setLevel(logging.DEBUG if args.verbose else logging.INFO)

    _plain = warnings.showwarning

    def _show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, LcupWarning):  # lcup's own warnings: one line, no source line
            print(f"lcup: warning: {message}", file=sys.stderr)
        else:
            _plain(message, category, filename, lineno, file, line)

    warnings.showwarning = _show
    signal.signal(signal.SIGTERM, _terminated)  # Slurm, Kubernetes and timeout stop a job with SIGTERM: as Ctrl-C

    try:
        return args.fn(args)
    except LcupError as e:
        print(f"lcup: error: {e}", file=sys.stderr)
        return EXIT_LCUP_ERROR
    except Exception as e:  # noqa: BLE001 - never a raw traceback from inside a library (-v shows it)
        if args.verbose:
            raise
        print(f"lcup: unexpected error: {type(e).__name__}: {redact_text(str(e))}\n"
              "  run again with -v to see where it happened, and report it with the pipeline file", file=sys.stderr)
        return EXIT_UNEXPECTED
    except KeyboardInterrupt as e:
        how = f" by {e.args[0]}" if e.args else ""
        print(f"lcup: interrupted{how}; summary.json in the output folder says what was done (resume with --resume)",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _at_least(lowest: int, what: str):
    """An argparse type: an integer of at least ``lowest`` (``what`` says why in the usage error)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < lowest:
            raise argparse.ArgumentTypeError(f"{v} is too small: at least {lowest} {what}")
        return v

    return parse


def _terminated(signum, frame) -> None:
    """SIGTERM ends the run as Ctrl-C does: summary.json says interrupted, the lock is released, the cluster closed."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise KeyboardInterrupt("SIGTERM")


if __name__ == "__main__":
    sys.exit(main())
