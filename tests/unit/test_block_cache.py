"""Decoded COG blocks shared by a process's reads (lcup.io.nested.BlockCache): the same pixels as reading the
window directly, each block decoded once however many chunks or threads ask for it, bounded in bytes, and never
stale when a local file is rewritten in place."""

import os
import threading
import time

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox

from lcup.io.nested import BlockCache, _file_key, _meta_of, nesting, read_nested
from lcup.io.write import write_cog_array

CRS = "EPSG:32633"


def _cog(path, arr, res=20.0, x0=500000.0, y0=6000000.0, blocksize=16):
    write_cog_array(path, arr, (res, 0, x0, 0, -res, y0), CRS, nodata=0, blocksize=blocksize)
    return str(path)


def _read(path, dst: GeoBox, cache):
    def open_file():
        return rasterio.open(path)

    with open_file() as rdr:
        meta = _meta_of(rdr)
        nest = nesting(rdr.transform, rdr.crs, dst)
    assert nest is not None
    return read_nested(open_file, meta, _file_key(path), 1, *nest, dst.shape, np.dtype("uint16"), 0, 0, cache=cache)


@pytest.mark.parametrize("x0, y0, shape", [
    (500000.0, 6000000.0, (64, 64)),     # on the block lattice
    (500130.0, 5999870.0, (37, 41)),     # odd 10 m offsets: windows across block edges
    (499950.0, 6000050.0, (90, 75)),     # starting outside the image
    (500900.0, 5998800.0, (200, 200)),   # reaching beyond it
])
def test_cached_reads_equal_direct_reads(tmp_path, rng, x0, y0, shape):
    """A 20 m COG with 16 px blocks read onto 10 m grids: through the cache (cold, then warm) exactly what a
    direct window read gives."""
    src = _cog(tmp_path / "b.tif", rng.integers(1, 10000, (70, 60)).astype(np.uint16))
    dst = GeoBox(shape, Affine(10, 0, x0, 0, -10, y0), CRS)
    roi, direct = _read(src, dst, None)
    cache = BlockCache(64 << 20)
    for _ in range(2):
        roi_c, cached = _read(src, dst, cache)
        assert roi_c == roi
        np.testing.assert_array_equal(cached, direct)
        assert cached.flags.writeable  # never a view of a (read-only) cached block
    assert cache.misses > 1 and cache.hits == cache.misses  # several blocks; the second read decoded none


def test_chunks_sharing_a_block_decode_it_once(tmp_path, rng):
    """Four chunks of one 32 px block (10 m grid over a 20 m COG: one block covers 64 × 64 px): one decode."""
    src = _cog(tmp_path / "b.tif", rng.integers(1, 10000, (32, 32)).astype(np.uint16), blocksize=32)
    cache = BlockCache(64 << 20)
    for oy in (0, 32):
        for ox in (0, 32):
            _read(src, GeoBox((32, 32), Affine(10, 0, 500000.0 + 10 * ox, 0, -10, 6000000.0 - 10 * oy), CRS), cache)
    assert (cache.misses, cache.hits) == (1, 3)


def test_threads_wait_for_a_block_being_decoded():
    """Two threads asking for the same blocks at once: each block decoded once, both get it."""
    cache, decoded, lock = BlockCache(1 << 20), [], threading.Lock()

    def read(keys):
        time.sleep(0.05)
        with lock:
            decoded.extend(keys)
        return [np.full(4, k, np.uint16) for k in keys]

    out = [None, None]

    def worker(i):
        out[i] = [int(a[0]) for a in cache.fetch([1, 2, 3], read)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [[1, 2, 3], [1, 2, 3]] and sorted(decoded) == [1, 2, 3]
    # the second thread's blocks were being decoded (50 ms): counted as waits with their time, not as hits
    assert cache.misses == 3 and cache.waits + cache.hits == 3 and cache.waits >= 1 and cache.wait_s >= 0.01


def test_bounded_in_bytes_and_a_loop_larger_than_the_cache_is_still_served():
    """Never more than ``max_bytes`` held; nothing dropped while there is room; and reads cycling through more
    blocks than fit (a tile's chunks, one after another) are still served in part — least-recently-used eviction
    would serve none of them."""
    cache, decoded = BlockCache(30 * 800), []

    def read(keys):
        decoded.extend(keys)
        return [np.zeros(100, np.float64) for _ in keys]  # 800 bytes each

    for k in range(30):
        cache.fetch([k], read)
    cache.fetch(list(range(30)), read)
    assert len(decoded) == 30 and cache.nbytes == 30 * 800  # all held: none decoded twice
    for _ in range(10):
        for k in range(40):  # a loop over 40 blocks with room for 30
            cache.fetch([k], read)
            assert cache.nbytes <= 30 * 800
    served = 1 - (len(decoded) - 30) / 400
    assert 0.3 < served < 0.75
    with pytest.raises(ValueError):
        cache.fetch([decoded[-1]], read)[0][0] = 1  # blocks are read-only


def test_failed_read_releases_waiters():
    """A decode that raises leaves nothing pending: the next fetch decodes again."""
    cache = BlockCache(1 << 20)

    def bad(keys):
        raise OSError("unreadable")

    with pytest.raises(OSError):
        cache.fetch([1], bad)
    assert int(cache.fetch([1], lambda keys: [np.ones(2, np.uint8) for _ in keys])[0][0]) == 1


def test_a_file_rewritten_in_place_is_read_again(tmp_path, rng):
    path = tmp_path / "b.tif"
    dst = GeoBox((40, 40), Affine(10, 0, 500000.0, 0, -10, 6000000.0), CRS)
    cache = BlockCache(64 << 20)
    first = _read(_cog(path, np.full((20, 20), 7, np.uint16)), dst, cache)[1]
    second = _read(_cog(path, np.full((20, 20), 9, np.uint16)), dst, cache)[1]
    assert (first == 7).all() and (second == 9).all()


def _held():
    from lcup.io.nested import BLOCKS

    return BLOCKS.nbytes


def test_pipeline_on_a_cluster_shares_blocks_same_map_and_frees_them(small_scene, tmp_path, local_client):
    """A run on a real distributed cluster whose 64 px chunks share the scene's 256 px blocks: blocks decoded once
    and served again (the automatic size: a quarter of each worker's 3 GiB), counted in the summary, the
    byte-identical map of a run with no cache, and nothing left held by the workers afterwards."""
    from lcup.config import load_config
    from lcup.io.nested import BLOCKS
    from lcup.pipeline import run_pipeline
    from tests.conftest import scene_pipeline

    BLOCKS.resize(1 << 30)  # as a run on the threaded scheduler in this process leaves it: not this run's size
    maps = {}
    for mb in ("auto", 0):
        cfg = load_config(scene_pipeline(small_scene, tmp_path / str(mb), **{"load.chunk_px": 64, "load.block_cache_mb": mb,
                                                                            "model.n_estimators": 10}))
        s = run_pipeline(cfg, client=local_client, progress=False)
        bc = s.figures["block_cache"]
        cores = s.figures["cores_used"]  # per stage and overall, CPU of this process and the cluster's / wall
        assert set(cores) == {*s.timings} and 0 < cores["total"] <= (os.cpu_count() or 1) + 0.2 and cores["predict+write"] > 0
        assert (bc["waits"] == 0) == (bc["wait_s"] == 0)  # a wait is counted with its time
        if mb == "auto":
            assert bc["hits"] > bc["misses"] > 0 and bc["size_mb"] == 768 and 0 < bc["peak_mb"] <= 768
        else:
            assert bc["hits"] == bc["misses"] == bc["peak_mb"] == bc["waits"] == 0  # no cache: no block waited for
        assert all(v == 0 for v in local_client.run(_held).values())  # freed at the end of the run
        maps[mb] = (tmp_path / str(mb) / "landcover_class.tif").read_bytes()
    assert maps["auto"] == maps[0]
