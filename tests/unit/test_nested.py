"""Nested grids read without warping (lcup.io.nested): the same pixels as odc-stac's warp, on grids that nest and
grids that do not; and the training sample's features read at its pixels only, equal to the whole cube's."""

import numpy as np
import pystac
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox

from lcup.io.nested import nesting


def _dst(x0=500010.0, y0=6000000.0, res=10.0, crs="EPSG:32633"):
    return GeoBox((6, 8), Affine(res, 0, x0, 0, -res, y0), crs)


@pytest.mark.parametrize("src, expected", [
    ((Affine(20, 0, 500000, 0, -20, 6000000), "EPSG:32633"), (2, 0, 1)),   # 20 m over 10 m, half a pixel in x
    ((Affine(10, 0, 499990, 0, -10, 6000050), "EPSG:32633"), (1, 5, 2)),   # same resolution, shifted by whole pixels
    ((Affine(60, 0, 500010, 0, -60, 5999940), "EPSG:32633"), (6, -6, 0)),  # 60 m, source starting below the origin
    ((Affine(20, 0, 500005, 0, -20, 6000000), "EPSG:32633"), None),        # origin off the 10 m lattice
    ((Affine(15, 0, 500000, 0, -15, 6000000), "EPSG:32633"), None),        # 1.5 × is not nested
    ((Affine(20, 0, 500000, 0, -20, 6000000), "EPSG:32632"), None),        # another CRS
    ((Affine(20, 1, 500000, 0, -20, 6000000), "EPSG:32633"), None),        # rotated
    ((Affine(5, 0, 500010, 0, -5, 6000000), "EPSG:32633"), None),          # finer than the output: warp
])
def test_nesting(src, expected):
    from rasterio.crs import CRS

    assert nesting(src[0], CRS.from_user_input(src[1]), _dst()) == expected


@pytest.mark.parametrize("offset_m", [0, 10, 30])
def test_nested_reads_equal_odc_stacs_warp(small_scene, offset_m):
    """Every band and SCL (20 m assets among them) of the generated scene, on grids shifted by odd 10 m pixels and
    reaching beyond the scene, in chunks of odd sizes: bit for bit what the warp gives."""
    from lcup.io.stac import load_cube
    from lcup.providers import get_profile

    items = list(pystac.Catalog.from_file(str(small_scene["catalog"])).get_all_items())[:6]
    x0, y0 = small_scene["spec"].origin
    gb = GeoBox.from_bbox((x0 + offset_m - 50, y0 - 1500 - offset_m, x0 + 1500 + offset_m, y0 + 30 - offset_m),
                          "EPSG:32633", resolution=10)
    bands = ["red", "nir", "swir16", "rededge1", "scl"]
    prof = get_profile("earth-search")
    from lcup.io.nested import _CRS_EQ, _META, clear_blocks

    clear_blocks()  # in this process (threads, not a cluster another test left as the default): its headers are read here
    a = load_cube(items, prof, bands, gb, chunk_px=61, nested=True).data.compute(scheduler="threads")
    b = load_cube(items, prof, bands, gb, chunk_px=61, nested=False).data.compute(scheduler="threads")
    for v in bands:
        assert (a[v].values > 0).mean() > 0.8
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    # the 30 files of one zone share one CRS object, so the CRS comparison is made once, not once per file
    metas = [m for m in list(_META.values()) if m.crs is not None]
    assert len(metas) >= 30 and len({id(m.crs) for m in metas}) == 1 and len(_CRS_EQ) <= 3


@pytest.mark.parametrize("fc", [{}, {"neighbourhood_m": [30]}])
def test_features_at_pixels_equal_the_whole_cubes(small_scene, rng, fc):
    """The training sample's features computed at its pixels only (per-tile path) are those of the whole cube, bit
    for bit; with neighbourhood features whole chunks are computed."""
    import lcup
    from lcup.stages.load import load

    items = list(pystac.Catalog.from_file(str(small_scene["catalog"])).get_all_items())
    x0, y0 = small_scene["spec"].origin
    gb = GeoBox.from_bbox((x0, y0 - 1500, x0 + 1500, y0), "EPSG:32633", resolution=10)
    cube = load(items, gb, load={"chunk_px": 64, "bands": ["green", "red", "nir", "swir16"]}, halo=2)
    kw = dict(clean={"dilation_m": 20}, features={"indices": ["ndvi", "ndbi"], "series": ["ndvi", "red"], "series_every": 4, **fc})
    whole = lcup.features(cube, ("2024-01-01", "2024-12-31"), **kw).values
    iy, ix = rng.integers(0, 150, 300), rng.integers(0, 150, 300)
    at = lcup.features(cube, ("2024-01-01", "2024-12-31"), at=(iy, ix), **kw)
    assert at.dims == ("sample", "feature") and at.shape == (300, whole.shape[2])
    np.testing.assert_array_equal(at.values, whole[iy, ix])


def test_inlined_sources_one_task_per_chunk_same_values(small_scene):
    """odc-stac's per-asset open tasks inlined: one task per band-chunk (plus odc-stac's shared configuration),
    the same pixels as odc-stac's own graph, on a distributed-style run and the threaded scheduler."""
    import odc.stac

    from lcup.io.nested import NestedRioDriver
    from lcup.io.stac import inline_sources

    items = list(pystac.Catalog.from_file(str(small_scene["catalog"])).get_all_items())[:8]
    x0, y0 = small_scene["spec"].origin
    gb = GeoBox.from_bbox((x0, y0 - 1000, x0 + 1000, y0), "EPSG:32633", resolution=10)
    ds = odc.stac.load(items, bands=["red", "swir16"], geobox=gb, chunks={"time": -1, "x": 40, "y": 40},
                       groupby="solar_day", driver=NestedRioDriver())
    for v in ("red", "swir16"):
        arr = ds[v].data
        inl = inline_sources(arr)
        n_chunks = np.prod(arr.numblocks)
        assert len(arr.__dask_graph__()) > n_chunks + len(items)  # an open task per asset
        assert len(inl.__dask_graph__()) <= n_chunks + 2 and inl.name == arr.name and inl.chunks == arr.chunks
        np.testing.assert_array_equal(inl.compute(scheduler="threads"), arr.compute(scheduler="sync"))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64"])
@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_repeat_pixels_equals_numpy_repeat(rng, dtype, k):
    """The widened-multiply column doubling and the broadcast repeat give numpy.repeat's pixels for every dtype
    (negative integers, NaN and infinities included) and on strided views."""
    from lcup.io.nested import repeat_pixels

    a = (rng.normal(0, 3000, (37, 53)) if dtype[0] != "u" else rng.integers(0, 255 if dtype == "uint8" else 65535, (37, 53)))
    a = a.astype(dtype)
    if a.dtype.kind == "f":
        a[3, 4], a[5, 6], a[7, 8] = np.nan, np.inf, -np.inf
    view = a[2::2, 1:-3]
    for x in (a, view):
        got = repeat_pixels(x, k)
        np.testing.assert_array_equal(got, np.repeat(np.repeat(x, k, 0), k, 1))
        assert got.dtype == x.dtype


def test_fuse_nodata_0_equals_odc_stacs_fuser(rng):
    """A date's first granule (nothing held yet) and a second one over held pixels: the pixels odc-stac's default
    fuser gives, on strided views as odc-stac passes them."""
    from odc.loader._fuser import nodata_fuser

    from lcup.io.nested import fuse_nodata_0

    srcs = [np.where(rng.random((40, 30)) < 0.3, 0, rng.integers(1, 9, (40, 30))).astype(np.uint16) for _ in range(3)]
    ours, theirs = np.zeros((2, 50, 40), np.uint16), np.zeros((2, 50, 40), np.uint16)
    for s, (y, x) in zip(srcs, [(0, 0), (10, 10), (0, 10)]):
        fuse_nodata_0(ours[1, y:y + 40, x:x + 30], s)
        nodata_fuser(theirs[1, y:y + 40, x:x + 30], s, 0)
    np.testing.assert_array_equal(ours, theirs)
    assert (ours[1] > 0).mean() > 0.5 and not ours[0].any()


def test_same_day_granules_mosaic_as_odc_stac(small_scene, tmp_path):
    """Two granules of one day that overlap (the second shifted and with its own no-data band): lcup's reading
    (nested reads, block cache, its fuser) gives odc-stac's own mosaic (warp, default fuser) bit for bit, and the
    second granule fills the first one's gaps and beyond."""
    import datetime as dt

    import rasterio

    from lcup.io.nested import clear_blocks
    from lcup.io.stac import load_cube
    from lcup.io.write import write_cog_array
    from lcup.providers import get_profile

    items = sorted(pystac.Catalog.from_file(str(small_scene["catalog"])).get_all_items(), key=lambda it: it.datetime)[:2]
    bands = ["red", "swir16", "scl"]
    prof = get_profile("earth-search")
    second = items[0].clone()
    second.id += "_next_granule"
    second.datetime = items[0].datetime + dt.timedelta(minutes=3)
    for asset in second.assets.values():  # 800 m further east (odc-stac's footprint of the item comes from these)
        if "proj:transform" in asset.extra_fields:
            t = asset.extra_fields["proj:transform"]
            asset.extra_fields["proj:transform"] = [t[0], t[1], t[2] + 800.0, *t[3:]]
    for b in bands:
        asset = second.assets[prof.asset_key(b)]
        with rasterio.open(items[0].assets[prof.asset_key(b)].get_absolute_href()) as src:
            a, t = src.read(1), src.transform
        a = np.roll(a, 7, axis=1) // 2 + 1
        a[:, : a.shape[1] // 3] = 0  # this granule's no-data edge
        path = tmp_path / f"{b}.tif"
        write_cog_array(path, a, (t.a, 0.0, t.c + 800.0, 0.0, t.e, t.f), 32633, 0, blocksize=128)
        asset.href = str(path)
    x0, y0 = small_scene["spec"].origin
    h, w = small_scene["spec"].size
    gb = GeoBox.from_bbox((x0 - 100, y0 - 10 * h, x0 + 10 * w + 900, y0), "EPSG:32633", resolution=10)
    both = [items[0], second, items[1]]
    clear_blocks()
    ours = load_cube(both, prof, bands, gb, chunk_px=70, nested=True, block_cache_mb=64).data.compute()
    theirs = load_cube(both, prof, bands, gb, chunk_px=70, nested=False).data.compute()
    assert ours.sizes["time"] == 2
    for b in bands:
        np.testing.assert_array_equal(ours[b].values, theirs[b].values, err_msg=b)
        first_only = load_cube(items[:1], prof, [b], gb, chunk_px=70).data[b].values[0]
        day = ours[b].values[0]
        assert ((first_only == 0) & (day > 0)).sum() > 1000  # the second granule filled in
        np.testing.assert_array_equal(day[first_only > 0], first_only[first_only > 0])  # the first wins where it has data

