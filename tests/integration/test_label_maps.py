"""Label maps from big COGs and STAC: windowed reads, reprojection, crosswalk.

Data: two real ESA WorldCover 10 m tiles N00E006 (2020 v100, 2021 v200; ESA, CC-BY 4.0), 36000×36000
uint8 COGs in EPSG:4326, in ../shared/data/esa-worldcover.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from lcup.errors import ConfigError, LabelError
from lcup.io.rasters import read_on_geobox, read_stac_on_geobox
from lcup.io.stac import geobox_for_aoi
from lcup.legends import apply_crosswalk, get_crosswalk
from tests.conftest import shared_data
from tests.integration.servers import RangeServer, StacAPI

AOI = (6.60, 0.30, 6.66, 0.36)  # São Tomé island, ~6.7 km square


def _tile(year):
    d = shared_data("esa-worldcover")
    return d / ("ESA_WorldCover_10m_2020_v100_N00E006_Map.tif" if year == 2020 else "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif")


def _fractions(a):
    vals, n = np.unique(a[a > 0], return_counts=True)
    return dict(zip(vals.tolist(), (n / n.sum()).tolist()))


def test_worldcover_window_reprojected_to_utm_matches_direct_read():
    gb = geobox_for_aoi(AOI, None, 10)
    assert str(gb.crs) == "EPSG:32632"
    codes = read_on_geobox(_tile(2021), gb)
    assert codes.shape == gb.shape and codes.dtype == np.uint8
    with rasterio.open(_tile(2021)) as src:
        direct = src.read(1, window=from_bounds(*AOI, transform=src.transform))
    f_rep, f_dir = _fractions(codes), _fractions(direct)
    assert set(f_rep) == set(f_dir)
    for c in f_dir:
        assert abs(f_rep[c] - f_dir[c]) < 0.02, (c, f_rep[c], f_dir[c])
    lab = apply_crosswalk(codes, get_crosswalk("esa-worldcover", "lcup7"))
    assert lab.max() <= 7 and (lab > 0).mean() > 0.5


def test_worldcover_over_http_reads_only_a_window():
    d = shared_data("esa-worldcover")
    gb = geobox_for_aoi(AOI, None, 10)
    with RangeServer(d) as http:
        codes = read_on_geobox(f"{http.url}/{_tile(2021).name}", gb)
    np.testing.assert_array_equal(codes, read_on_geobox(_tile(2021), gb))
    sent = sum(r[4] or 0 for r in http.log if r[3] == "GET")
    assert sent < 0.2 * _tile(2021).stat().st_size, (sent, _tile(2021).stat().st_size)


def test_year_to_year_transitions_are_mostly_stable():
    gb = geobox_for_aoi(AOI, None, 20)
    a, b = read_on_geobox(_tile(2020), gb), read_on_geobox(_tile(2021), gb)
    valid = (a > 0) & (b > 0)
    # v100 → v200 changed the algorithm, not the island: most pixels keep their class
    assert (a[valid] == b[valid]).mean() > 0.6


def test_no_overlap_is_a_clear_error():
    gb = geobox_for_aoi((20.0, 45.0, 20.05, 45.05), None, 10)
    with pytest.raises(LabelError, match="does not overlap"):
        read_on_geobox(_tile(2021), gb)


def test_worldcover_from_a_stac_api(tmp_path):
    d = shared_data("esa-worldcover")
    gb = geobox_for_aoi(AOI, None, 10)
    with RangeServer(d) as http:
        items = []
        for year, f in ((2020, _tile(2020)), (2021, _tile(2021))):
            items.append({
                "type": "Feature", "stac_version": "1.0.0", "id": f"ESA_WorldCover_10m_{year}_N00E006",
                "collection": "esa-worldcover", "links": [],
                "geometry": {"type": "Polygon", "coordinates": [[[6, 0], [9, 0], [9, 3], [6, 3], [6, 0]]]},
                "bbox": [6, 0, 9, 3], "properties": {"datetime": f"{year}-01-01T00:00:00Z"},
                "assets": {"map": {"href": f"{http.url}/{f.name}", "type": "image/tiff; application=geotiff; profile=cloud-optimized"}},
            })
        coll = {"type": "Collection", "stac_version": "1.0.0", "id": "esa-worldcover", "description": "test", "license": "CC-BY-4.0",
                "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}}
        (tmp_path / "c.json").write_text(json.dumps(coll))
        (tmp_path / "i.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        with StacAPI(tmp_path / "c.json", tmp_path / "i.json") as api:
            codes, used = read_stac_on_geobox(api.url, "esa-worldcover", gb)
            assert used == ["ESA_WorldCover_10m_2021_N00E006"]  # newest first, one tile covers the AOI
            np.testing.assert_array_equal(codes, read_on_geobox(_tile(2021), gb))
            codes20, used20 = read_stac_on_geobox(api.url, "esa-worldcover", gb, end="2020-12-31")
            assert used20 == ["ESA_WorldCover_10m_2020_N00E006"]


def test_lazy_read_equals_whole_read_locally_and_over_http():
    """Chunk by chunk (each chunk its own window, here over HTTP ranges) gives the whole read's pixels."""
    import dask.array as da

    from lcup.io.rasters import open_on_geobox

    gb = geobox_for_aoi(AOI, None, 10)
    whole = read_on_geobox(_tile(2021), gb)
    lazy = open_on_geobox(_tile(2021), gb, chunks=256)
    assert isinstance(lazy, da.Array) and lazy.chunksize == (256, 256) and lazy.dtype == np.uint8
    np.testing.assert_array_equal(lazy.compute(), whole)
    with RangeServer(shared_data("esa-worldcover")) as http:
        remote = open_on_geobox(f"{http.url}/{_tile(2021).name}", gb, chunks=300)
        np.testing.assert_array_equal(remote.compute(scheduler="threads"), whole)
    with pytest.raises(LabelError, match="band 2 does not exist"):
        open_on_geobox(_tile(2021), gb, band=2)


def test_corrupt_label_map_fails_with_the_window(tmp_path):
    """A file whose header opens but whose pixels are cut off: the chunk that meets it names file and window."""
    from lcup.errors import ReadError
    from lcup.io.rasters import open_on_geobox

    gb = geobox_for_aoi(AOI, None, 10)
    with rasterio.open(_tile(2021)) as src:
        win = from_bounds(AOI[0] - 0.01, AOI[1] - 0.01, AOI[2] + 0.01, AOI[3] + 0.01, transform=src.transform).round_offsets().round_lengths()
        prof = {**src.profile, "width": win.width, "height": win.height, "transform": src.window_transform(win),
                "compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256}
        data = src.read(1, window=win)
    f = tmp_path / "cut.tif"
    with rasterio.open(f, "w", **prof) as dst:
        dst.write(data, 1)
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])  # the header (at the start) survives, half the tiles do not
    lazy = open_on_geobox(f, gb, chunks=256)
    with pytest.raises(ReadError, match=r"cut.tif for rows \d+:\d+, columns \d+:\d+"):
        lazy.compute(scheduler="threads")


def test_fraction_layers_make_purity_a_factor_of_the_confidence(small_scene, tmp_path):
    """A cover-fraction layer (CGLS-LC100 style, % per 100 m cell) for cropland: the label confidence of cropland
    pixels is multiplied by their cell's fraction, other classes are untouched; bad inputs fail at validation."""
    from odc.geo.geobox import GeoBox

    import lcup
    from lcup.config import load_config
    from tests.conftest import scene_pipeline

    sc = small_scene
    truth_path = sc["dir"] / "truth_10m.tif"
    with rasterio.open(truth_path) as src:
        truth, prof = src.read(1), src.profile
    h, w = truth.shape[0] // 10, truth.shape[1] // 10
    share = np.round(100 * (truth[: h * 10, : w * 10].reshape(h, 10, w, 10) == 3).mean((1, 3))).astype(np.uint8)
    share[0, 0] = 255  # no data there: purity 1
    t = prof["transform"]
    frac = tmp_path / "crops_fraction.tif"
    with rasterio.open(frac, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs=prof["crs"],
                       transform=rasterio.Affine(t.a * 10, 0, t.c, 0, t.e * 10, t.f), nodata=255) as dst:
        dst.write(share, 1)
    gb = GeoBox(truth.shape, t, prof["crs"])
    base = {"path": str(sc["dir"] / "coarse_cgls_100m.tif"), "legend": "cgls-lc100"}
    plain = lcup.labels(gb, base, chunk_px=64)
    withf = lcup.labels(gb, {**base, "fractions": {3: str(frac)}}, chunk_px=64)
    lab = plain["label"].values
    c0, c1 = plain["confidence"].values, withf["confidence"].values
    purity = np.kron(share, np.ones((10, 10), np.uint8)).astype(np.float32) / 100
    crops = (lab == 3) & (purity <= 1)
    np.testing.assert_allclose(c1[crops], c0[crops] * purity[crops], rtol=1e-6)
    np.testing.assert_array_equal(c1[lab != 3], c0[lab != 3])
    np.testing.assert_array_equal(c1[:10, :10][lab[:10, :10] == 3], c0[:10, :10][lab[:10, :10] == 3])  # no data: 1
    assert crops.sum() > 1000 and (purity[crops] < 1).any()

    cfg = scene_pipeline(sc, tmp_path / "o")
    with pytest.raises(ConfigError, match=r"labels.fractions names class\(es\) \[9\] that the target legend 'lcup7' lacks"):
        load_config({**cfg, "labels": {**cfg["labels"], "fractions": {9: str(frac)}}})
    with pytest.raises(ConfigError, match=r"labels.fractions\[3\] .*missing.tif does not exist"):
        load_config({**cfg, "labels": {**cfg["labels"], "fractions": {3: str(tmp_path / "missing.tif")}}})
