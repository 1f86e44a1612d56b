"""Sentinel-2-tiled runs at scale (issue 29): does a run over 16 tiles keep the time per km² and the peak memory per
worker flat against a run over 1 tile?

The scene is :func:`lcup.synthetic.write_sites_demo`: 16 sites of ``--size`` px, one in the core of each tile of
a 4 × 4 block of Sentinel-2 tiles in UTM zone 33 (each site in that tile only, checked), every tile's items on its
own grid. The area is the sites' squares: 1 of them (one tile) or all 16 (16
tiles, one model from the tiles' pooled sample, one mosaic). Each run is ``lcup run`` in its own process on a fresh
``distributed`` LocalCluster (``cluster.n_workers`` workers of one thread), the 1-tile and 16-tile runs in turn,
round after round. Measured per run: wall time, time per km² of the area, and the peak RSS of each worker process
(read from the workers at the end of the run: ``ru_maxrss`` of a process that lived only for that run).

    python benchmarks/bench_tiles.py --size 128 --rounds 2          # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import spread  # noqa: E402

RUNNER = r"""
import json, resource, sys, time
from distributed import Client, LocalCluster
from lcup.config import load_config
from lcup.pipeline import run_pipeline
cfg = load_config(sys.argv[1])
with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, memory_limit="4GiB") as cluster, Client(cluster) as c:
    t = time.perf_counter()
    s = run_pipeline(cfg, client=c, progress=False)
    wall = time.perf_counter() - t
    rss = c.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({"wall_s": wall, "worker_peak_mib": max(rss.values()), "tiles": len(s.figures.get("s2_tiles", {})),
                  "mosaic_s": s.timings.get("mosaic", 0.0),
                  "area_ha": sum(s.figures.get("class_ha_tiles", {}).values()), "status": s.status}))
"""


def _sites(n_side: int = 4) -> list[tuple[float, float]]:
    """A ``n_side`` × ``n_side`` block of sites (lon, lat) in zone 33 around 13–17° E, 43–46° N, each in the core of
    one tile and in no other (checked): the tiles near a zone boundary reach far into the next zone, so the block
    keeps away from 12° and 18° E."""
    import shapely
    from pyproj import Transformer

    from lcup.ops.s2grid import tiles_covering

    to_ll = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    sites = [to_ll.transform(e * 100_000 + 45_000, n * 100_000 + 45_000) for n in range(47, 47 + n_side)
             for e in range(3, 3 + n_side)]
    for lon, lat in sites:
        found = tiles_covering(shapely.box(lon - 0.02, lat - 0.02, lon + 0.02, lat + 0.02))
        assert len(found) == 1, (lon, lat, [t.id for t in found])
    return sites


def _pipeline(scene: Path, out: Path, sites: list[int]) -> dict:
    geo = json.loads((scene / "area.geojson").read_text())
    geo["features"] = [f for f in geo["features"] if int(f["properties"]["NAME"][4:]) in sites]
    area = scene / f"area_{len(sites)}.geojson"
    area.write_text(json.dumps(geo))
    return {"name": f"bench-{len(sites)}", "source": {"catalog": str(scene / "catalog.json")},
            "aoi": {"geometry": str(area), "grid": "s2-tiles"}, "year": 2024,
            "load": {"chunk_px": 128}, "clean": {"dilation_m": 10, "step_days": 15},
            "labels": {"path": str(scene / "coarse_cgls_100m.vrt"), "legend": "cgls-lc100", "n_per_class": 800,
                       "min_per_class": 20, "block_m": 500},
            "model": {"n_estimators": 40}, "output": {"dir": str(out), "overwrite": True, "report": False},
            "cluster": {"kind": "none"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128, help="side of each site, 10 m px")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from lcup.synthetic import SceneSpec, write_sites_demo

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_sites_demo(tmp / "scene", SceneSpec(size=(args.size, args.size), revisit_days=15, seed=11), _sites(),
                         polygon="square", progress=False)
        print(f"scene: 16 sites of {args.size}² px in 16 tiles, written in {time.perf_counter() - t0:.0f} s", flush=True)
        runs: dict[int, list[dict]] = {1: [], 16: []}
        for r in range(args.rounds):
            for n in (1, 16) if r % 2 == 0 else (16, 1):
                y = tmp / f"p{n}.yaml"
                y.write_text(yaml.safe_dump(_pipeline(tmp / "scene", tmp / f"out{n}", list(range(n)))))
                p = subprocess.run([sys.executable, "-c", RUNNER, str(y)], capture_output=True, text=True)
                if p.returncode:
                    sys.exit(p.stderr[-3000:])
                m = json.loads(p.stdout.strip().splitlines()[-1])
                m["s_per_km2"] = m["wall_s"] / (m["area_ha"] / 100)
                m["tiles_s_per_km2"] = (m["wall_s"] - m["mosaic_s"]) / (m["area_ha"] / 100)
                runs[n].append(m)
                print(f"round {r + 1}, {n:2d} tile(s): {m['wall_s']:.1f} s (mosaic {m['mosaic_s']:.1f} s), {m['area_ha']:.0f} ha, "
                      f"{m['s_per_km2']:.1f} s/km² ({m['tiles_s_per_km2']:.1f} without the mosaic), worker peak "
                      f"{m['worker_peak_mib']:.0f} MiB", flush=True)
    med = {n: {k: sorted(x[k] for x in v)[len(v) // 2] for k in ("s_per_km2", "tiles_s_per_km2", "worker_peak_mib", "wall_s")}
           for n, v in runs.items()}
    ratio_t = [b["s_per_km2"] / a["s_per_km2"] for a, b in zip(runs[1], runs[16])]
    ratio_tt = [b["tiles_s_per_km2"] / a["tiles_s_per_km2"] for a, b in zip(runs[1], runs[16])]
    ratio_m = [b["worker_peak_mib"] / a["worker_peak_mib"] for a, b in zip(runs[1], runs[16])]
    print("\n| run | wall (s) | s per km² | s per km² without the mosaic | worker peak (MiB) |\n|---|---|---|---|---|")
    for n in (1, 16):
        print(f"| {n} tile(s) | {med[n]['wall_s']:.1f} | {med[n]['s_per_km2']:.1f} | {med[n]['tiles_s_per_km2']:.1f} | "
              f"{med[n]['worker_peak_mib']:.0f} |")
    fmt = lambda d: f"{d['median']:.2f} ({d['min']:.2f}–{d['max']:.2f})"  # noqa: E731
    print(f"\n16 / 1 tiles (median, min–max over rounds): time per km² {fmt(spread(ratio_t))} ({fmt(spread(ratio_tt))} "
          f"without the mosaic, whose grid is the area's bounding box), worker peak memory {fmt(spread(ratio_m))}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "ratio_time_per_km2": ratio_t, "ratio_time_per_km2_without_mosaic": ratio_tt,
                                          "ratio_worker_peak": ratio_m}, indent=1))


if __name__ == "__main__":
    main()
