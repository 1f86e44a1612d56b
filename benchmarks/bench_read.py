"""Reading a Sentinel-2 cube: lcup's loader against odc-stac's own and against the plain-rasterio floor.

Three routes read the same generated scene (``lcup demo``: 10 bands, six of them 20 m COGs as real L2A, and SCL at
20 m) into ``(time, y, x)`` uint16 on the 10 m grid, with the same 2 threads:

(a) lcup: :func:`lcup.io.stac.load_cube` as the pipeline calls it (odc-stac with :mod:`lcup.io.nested`: 20 m assets
    read at 20 m and their pixels repeated);
(b) odc-stac alone: the same call with ``nested=False`` (``rasterio.warp.reproject`` for the 20 m assets);
(c) the floor: every asset opened once and read whole with rasterio, 20 m pixels repeated
    (:func:`lcup.io.nested.repeat_pixels`): decode and nothing else.

Routes (a) and (b) are consumed as the pipeline consumes the cube: one task per spatial chunk takes every band's
block (its fused feature task), so the two threads read different assets at a time and no cube is assembled; the
task keeps one pixel per block.

Rounds are interleaved; the figures are medians with min–max: wall seconds, CPU seconds of the process, pixel-
timesteps (pixels × dates × bands, SCL counted as a band) per CPU-second, and the ratios lcup / odc-stac and
lcup / floor (CPU). The issue's target: reading within 1.5× of the floor.

    python benchmarks/bench_read.py --size 1024 --rounds 3 --json read.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import spread  # noqa: E402

BANDS = ["blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "swir16", "swir22", "scl"]


def floor_read(items, bands, shape) -> np.ndarray:
    """Every asset read whole, once, 20 m repeated to 10 m: ``(band, time, y, x)``."""
    import rasterio

    from lcup.io.nested import repeat_pixels
    from lcup.providers import get_profile

    prof = get_profile("earth-search")
    out = np.zeros((len(bands), len(items)) + shape, np.uint16)

    def one(job):
        i, t, it = job
        with rasterio.open(it.assets[prof.asset_key(bands[i])].get_absolute_href()) as src:
            a = src.read(1)
        k = shape[0] // a.shape[0]
        if k > 1:
            a = repeat_pixels(a, k)
        out[i, t] = a[:shape[0], :shape[1]]

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, [(i, t, it) for i in range(len(bands)) for t, it in enumerate(items)]))
    return out


def _first_pixels(*blocks):
    """A chunk's task: every band's ``(time, y, x)`` block in, one value per band out (``(1, 1, 1)``)."""
    return np.array([[[int(sum(int(b[0, 0, 0]) for b in blocks) % 65536)]]], np.uint16)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--cache-mb", default="auto", help="lcup's decoded-block cache, MiB per process (auto: as the pipeline)")
    p.add_argument("--blocksize", type=int, default=1024, help="COG block side of the generated scene (Earth Search: 1024)")
    p.add_argument("--no-warp", action="store_true", help="leave out odc-stac's warp route (slow on 1024 px blocks)")
    p.add_argument("--work", help="folder for the scene (default: a temporary one)")
    p.add_argument("--json")
    a = p.parse_args(argv)

    import dask
    import dask.array as da
    import pystac
    from odc.geo.geobox import GeoBox

    from lcup.io.nested import clear_blocks
    from lcup.io.stac import load_cube
    from lcup.providers import get_profile
    from lcup.synthetic import SceneSpec, write_demo

    work = Path(a.work or tempfile.mkdtemp())
    spec = SceneSpec(size=(a.size, a.size), blocksize=a.blocksize)
    cat = work / "catalog.json"
    if not cat.exists():
        write_demo(work, spec, progress=False)
    items = sorted(pystac.Catalog.from_file(str(cat)).get_all_items(), key=lambda it: it.datetime)
    x0, y0 = spec.origin
    gb = GeoBox.from_bbox((x0, y0 - 10 * a.size, x0 + 10 * a.size, y0), f"EPSG:{spec.crs_epsg}", resolution=10)
    prof = get_profile("earth-search")
    px_t = a.size * a.size * len(items) * len(BANDS)

    def lcup_read(nested: bool, whole: bool = False):
        clear_blocks()  # every round decodes: blocks held from the last round would make it a cache read
        cube = load_cube(items, prof, BANDS, gb, chunk_px=a.chunk, nested=nested, block_cache_mb=a.cache_mb if nested else 0).data
        with dask.config.set(scheduler="threads", num_workers=2):
            if whole:
                return cube.compute()
            return da.map_blocks(_first_pixels, *[cube[b].data for b in BANDS], dtype=np.uint16, chunks=(1, 1, 1)).compute()

    routes = {"lcup": lambda: lcup_read(True), "odc-stac (warp)": lambda: lcup_read(False),
              "floor (rasterio, whole assets)": lambda: floor_read(items, BANDS, gb.shape)}
    if a.no_warp:
        del routes["odc-stac (warp)"]
    else:
        ref = lcup_read(True, whole=True)
        assert all(np.array_equal(ref[b].values, lcup_read(False, whole=True)[b].values) for b in BANDS), "nested read differs from the warp"
    res: dict = {k: {"wall_s": [], "cpu_s": []} for k in routes}
    for r in range(a.rounds):
        for name, fn in routes.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            res[name]["wall_s"].append(time.perf_counter() - t)
            res[name]["cpu_s"].append(time.process_time() - c)
            print(f"round {r + 1} {name}: {res[name]['wall_s'][-1]:.2f} s wall, {res[name]['cpu_s'][-1]:.2f} CPU-s", flush=True)
    out = {"size": a.size, "dates": len(items), "bands": len(BANDS), "px_t": px_t, "routes": {}}
    for name, v in res.items():
        out["routes"][name] = {"wall_s": spread(v["wall_s"]), "cpu_s": spread(v["cpu_s"]),
                               "M_px_t_per_cpu_s": px_t / float(np.median(v["cpu_s"])) / 1e6}
    ratio = lambda k, n, m: spread([x / y for x, y in zip(res[n][k], res[m][k])])  # noqa: E731
    if not a.no_warp:
        out["lcup_vs_odc_stac_cpu"] = ratio("cpu_s", "odc-stac (warp)", "lcup")
        out["lcup_vs_odc_stac_wall"] = ratio("wall_s", "odc-stac (warp)", "lcup")
    out["lcup_over_floor_cpu"] = ratio("cpu_s", "lcup", "floor (rasterio, whole assets)")
    def f(d, unit=""):
        return f"{d['median']:.2f}{unit} ({d['min']:.2f}–{d['max']:.2f})"

    for name, v in out["routes"].items():
        print(f"{name}: wall {f(v['wall_s'], ' s')}, CPU {f(v['cpu_s'], ' s')}, {v['M_px_t_per_cpu_s']:.0f} M px·t per CPU-s")
    if not a.no_warp:
        print(f"lcup uses {f(out['lcup_vs_odc_stac_cpu'], '×')} less CPU than odc-stac's warp "
              f"({f(out['lcup_vs_odc_stac_wall'], '×')} in wall time)")
    print(f"lcup / floor in CPU: {f(out['lcup_over_floor_cpu'], '×')} (target ≤ 1.5×)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
