"""Decoded COG blocks shared by a process's reads (lcup.io.nested.BlockCache): the same pixels as reading the
window directly, each block decoded once however many chunks or threads ask for it, bounded in bytes, and never
stale when a local file is rewritten in place."""

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


def test_bounded_in_bytes_least_recent_out_first():
    cache, decoded = BlockCache(3 * 800), []

    def read(keys):
        decoded.extend(keys)
        return [np.zeros(100, np.float64) for _ in keys]  # 800 bytes each

    for k in (1, 2, 3, 1, 4):  # 1 used again: 2 is the least recent when 4 comes
        cache.fetch([k], read)
    assert cache.nbytes <= 3 * 800 and decoded == [1, 2, 3, 4]
    cache.fetch([1, 3, 4], read)
    assert decoded == [1, 2, 3, 4]
    cache.fetch([2], read)
    assert decoded == [1, 2, 3, 4, 2]
    with pytest.raises(ValueError):
        cache.fetch([4], read)[0][0] = 1  # blocks are read-only


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


def _cache_state():
    from lcup.io.nested import BLOCKS

    return BLOCKS.hits, BLOCKS.misses, BLOCKS.nbytes, BLOCKS.max_bytes


def test_pipeline_on_a_cluster_shares_blocks_same_map_and_frees_them(small_scene, tmp_path, local_client):
    """A run on a real distributed cluster whose 64 px chunks share the scene's 256 px blocks: blocks decoded once
    and served again (the automatic size: an eighth of each worker's 3 GiB), the byte-identical map of a run with
    no cache, and nothing left held by the workers afterwards."""
    from lcup.config import load_config
    from lcup.pipeline import run_pipeline
    from tests.conftest import scene_pipeline

    maps = {}
    for mb in ("auto", 0):
        before = local_client.run(_cache_state)
        cfg = load_config(scene_pipeline(small_scene, tmp_path / str(mb), **{"load.chunk_px": 64, "load.block_cache_mb": mb,
                                                                            "model.n_estimators": 10}))
        assert run_pipeline(cfg, client=local_client, progress=False).status == "done"
        after = local_client.run(_cache_state)
        hits = sum(after[w][0] - before[w][0] for w in after)
        misses = sum(after[w][1] - before[w][1] for w in after)
        if mb == "auto":
            assert hits > misses > 0 and all(a[3] == (3 << 30) // 8 for a in after.values())
        else:
            assert hits == misses == 0
        assert all(a[2] == 0 for a in after.values())  # freed at the end of the run
        maps[mb] = (tmp_path / str(mb) / "landcover_class.tif").read_bytes()
    assert maps["auto"] == maps[0]
