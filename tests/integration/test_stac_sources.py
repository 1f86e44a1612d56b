"""Loading against a real STAC API (rustac serve) with COGs served over HTTP range requests.

Item metadata comes from real Planetary Computer and Earth Search v1 items (odc-stac and
openeo-processes-dask test data, Apache-2.0) in ../shared/data/stac-items; see stac_fixtures.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lcup.errors import EmptySearchError, ProviderError, ReadError, SkippedAssetWarning
from lcup.io.stac import check_assets, geobox_for_aoi, load_cube, lonlat_bbox, search_items
from lcup.providers import BANDS
from tests.conftest import shared_data
from tests.integration.servers import RangeServer, StacAPI
from tests.integration.stac_fixtures import build_layout

LAYOUTS = ["planetary-computer", "earth-search", "earth-search-l2a"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """All three layouts' COGs on one range server, each layout in its own STAC API."""
    stac_dir = shared_data("stac-items")
    root = tmp_path_factory.mktemp("cogs")
    with RangeServer(root) as http:
        layouts = {name: build_layout(name, stac_dir, root, http.url) for name in LAYOUTS}
        apis = {name: StacAPI(lay["collection"], lay["items_path"]) for name, lay in layouts.items()}
        for api in apis.values():
            api.__enter__()
        try:
            yield http, layouts, apis
        finally:
            for api in apis.values():
                api.__exit__(None, None, None)


def _grid(lay):
    x0, y0 = lay["origin"]
    n = lay["size"]
    return geobox_for_aoi((x0, y0 - 10 * n, x0 + 10 * n, y0), f"EPSG:{lay['epsg']}", 10, f"EPSG:{lay['epsg']}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_search_paging_and_reflectance_equal_source(served, layout, local_client):
    http, layouts, apis = served
    lay, api = layouts[layout], apis[layout]
    gb = _grid(lay)
    http.clear_log()
    items = search_items(api.url, lay["profile"], lonlat_bbox(gb), "2015-01-01", "2030-01-01", limit=2)
    ids = [it.id for it in items]
    assert sorted(ids) == sorted(lay["ids"]) and len(set(ids)) == len(ids) == 4  # four items over two pages, once each
    kept, skipped = check_assets(items, lay["profile"], list(BANDS) + ["scl"])
    assert not skipped and len(kept) == len(items)
    cube = load_cube(kept, lay["profile"], list(BANDS) + ["scl"], gb, chunk_px=32)
    assert cube.data.sizes["time"] == len(items)
    for band in ("red", "nir", "swir16"):
        got = cube.reflectance(band).compute().values
        for t, ids in enumerate(cube.items):
            exp = lay["refl"][ids[0]][band]
            np.testing.assert_allclose(got[t], exp, rtol=0, atol=1e-6, equal_nan=True)
    scl = cube.data["scl"].compute().values
    for t, ids in enumerate(cube.items):
        np.testing.assert_array_equal(scl[t], lay["scl"][ids[0]])
    log = http.log
    assert log and all(r[0].startswith(f"/{layout}/") for r in log)  # read over HTTP, from this layout only


def test_cog_window_read_uses_range_requests(tmp_path):
    """GDAL reads a window of a large COG over HTTP with a few Range requests, not the whole file."""
    import rasterio
    from rasterio.windows import Window

    from lcup.io.write import write_cog_array

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 10000, (4096, 4096)).astype(np.uint16)
    write_cog_array(tmp_path / "big.tif", arr, (10, 0, 500000, 0, -10, 5000000), 32633, nodata=0)
    size = (tmp_path / "big.tif").stat().st_size
    with RangeServer(tmp_path) as http:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            with rasterio.open(f"{http.url}/big.tif") as src:
                win = src.read(1, window=Window(2000, 3000, 300, 200))
    np.testing.assert_array_equal(win, arr[3000:3200, 2000:2300])
    gets = [r for r in http.log if r[3] == "GET"]
    assert gets and all(r[2] == 206 and r[1].startswith("bytes=") for r in gets), http.log
    assert sum(r[4] or 0 for r in gets) < size / 10


def test_baseline_offsets_are_per_item(served):
    """Planetary Computer: -1000 DN only where s2:processing_baseline >= 04.00; Earth Search l2a: 0 where applied."""
    _, layouts, _ = served
    pc = layouts["planetary-computer"]
    offs = [pc["profile"].scale_offset(f["properties"], f["assets"]["B04"])[1] for f in pc["items"]]
    assert offs[:2] == [0.0, 0.0] and np.allclose(offs[2:], -0.1)
    es = layouts["earth-search-l2a"]
    offs = [es["profile"].scale_offset(f["properties"], f["assets"]["red"])[1] for f in es["items"]]
    assert offs[:2] == [0.0, 0.0] and np.allclose(offs[2:], -0.1)


def test_unknown_collection_and_empty_search(served):
    _, layouts, apis = served
    lay = layouts["earth-search"]
    gb = _grid(lay)
    with pytest.raises(ProviderError, match="sentinel-2-c1-l2a"):
        search_items(apis["earth-search"].url, lay["profile"], lonlat_bbox(gb), "2015-01-01", "2030-01-01", collection="landsat-c2-l2")
    with pytest.raises(EmptySearchError, match="2010-01-01"):
        search_items(apis["earth-search"].url, lay["profile"], lonlat_bbox(gb), "2010-01-01", "2010-12-31")


def test_failed_reads_are_skipped_and_reported(served, tmp_path):
    """A 404, a truncated COG and a server that drops the connection: skipped and listed, the rest loads."""
    http, layouts, _ = served
    lay = layouts["earth-search"]
    import pystac

    items = [pystac.Item.from_dict(json.loads(json.dumps(f))) for f in lay["items"]]
    items[0].assets["red"].href = items[0].assets["red"].href.replace("red.tif", "missing.tif")  # 404
    trunc = lay["root"] / items[1].id / "nir.tif"
    data = trunc.read_bytes()
    (lay["root"] / items[1].id / "nir_trunc.tif").write_bytes(data[: len(data) * 2 // 3])
    items[1].assets["nir"].href = items[1].assets["nir"].href.replace("nir.tif", "nir_trunc.tif")  # truncated
    items[2].assets["swir16"].href = items[2].assets["swir16"].href.replace(http.url + "/", http.url + "/drop/")  # dropped
    kept, skipped = check_assets(items, lay["profile"], list(BANDS) + ["scl"])
    assert sorted((s["item"], s["band"]) for s in skipped) == sorted(
        [(items[0].id, "red"), (items[1].id, "nir"), (items[2].id, "swir16")]
    )
    assert len(kept) == len(items)
    # the truncation told from the header and one range request for a byte (no block downloaded)
    assert "truncated" in next(s["error"] for s in skipped if s["band"] == "nir")
    cube = load_cube(kept, lay["profile"], ["red", "nir", "scl"], _grid(lay), chunk_px=32, fail_on_error=False)
    red = cube.reflectance("red").compute().values
    assert np.isnan(red[0]).all() and np.isfinite(red[1]).mean() > 0.9  # skipped asset = no data that date


def test_pipeline_through_stac_api_with_skips(small_scene, tmp_path, local_client):
    """The whole pipeline against a STAC API over HTTP; unreadable assets skipped and in summary.json."""
    from lcup.config import load_config
    from lcup.pipeline import run_pipeline
    from tests.conftest import scene_pipeline
    from tests.integration.stac_fixtures import static_catalog_to_api_items

    root = small_scene["dir"]
    with RangeServer(root) as http:
        coll, items_path = static_catalog_to_api_items(small_scene["catalog"], http.url, root, tmp_path)
        doc = json.loads(items_path.read_text())
        bad = doc["features"][5]["assets"]["red"]
        bad["href"] = bad["href"].replace("B04.tif", "B04_missing.tif")
        items_path.write_text(json.dumps(doc))
        with StacAPI(coll, items_path) as api:
            overrides = {"source.catalog": api.url, "source.on_error": "skip", "source.page_size": 10}
            cfg = load_config(scene_pipeline(small_scene, tmp_path / "out", **overrides))
            with pytest.warns(SkippedAssetWarning, match="B04_missing"):
                summary = run_pipeline(cfg, client=local_client, progress=False)
            s = json.loads((tmp_path / "out" / "summary.json").read_text())
            assert [x["band"] for x in s["figures"]["skipped_assets"]] == ["red"]
            assert summary.figures["truth"]["oa_gain_points"] > 5
            cfg = load_config(scene_pipeline(small_scene, tmp_path / "out2", **{**overrides, "source.on_error": "fail"}))
            with pytest.raises(ReadError, match="B04_missing.*on_error: skip"):
                run_pipeline(cfg, client=local_client, progress=False)


def test_planetary_computer_hrefs_go_through_patch_url(served):
    """PC hrefs point at the public blob store; the signer (``planetary_computer.sign`` in real use) is
    odc-stac's ``patch_url``. Here a local stand-in maps them back to the range server: if lcup did not
    call it, nothing would load (no internet)."""
    import pystac

    http, layouts, _ = served
    lay = layouts["planetary-computer"]
    blob = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2"
    items = []
    for f in lay["items"]:
        it = pystac.Item.from_dict(json.loads(json.dumps(f)))
        for a in it.assets.values():
            a.href = a.href.replace(http.url, blob)
        items.append(it)
    calls = []

    def sign(href: str) -> str:
        calls.append(href)
        return href.replace(blob, http.url) + "?se=2026-12-31&sig=local-stand-in"

    cube = load_cube(items, lay["profile"], ["red", "scl"], _grid(lay), chunk_px=64, patch_url=sign)
    red = cube.reflectance("red").compute().values
    assert calls and all(c.startswith(blob) for c in calls)
    for t, ids in enumerate(cube.items):
        np.testing.assert_allclose(red[t], lay["refl"][ids[0]]["red"], atol=1e-6, equal_nan=True)
    kept, skipped = check_assets(items, lay["profile"], ["red", "scl"], patch_url=sign)
    assert not skipped
