"""The pre-flight probe of assets (lcup.io.stac.check_assets): a local COG's completeness told from its header."""

import datetime as dt
import re

import numpy as np
import pytest


def test_asset_probe_reads_no_block_of_a_local_cog(tmp_path, monkeypatch):
    """The pre-flight probe of a local COG: complete → None without reading a block; cut short → 'truncated',
    without reading a block either; a striped GeoTIFF is checked too."""
    import rasterio

    from lcup.io.stac import _check_one
    from lcup.io.write import write_cog_array

    path = tmp_path / "a.tif"
    write_cog_array(path, np.arange(300 * 300, dtype=np.uint16).reshape(300, 300) % 999 + 1,
                    (20, 0, 500000, 0, -20, 6000000), 32633, nodata=0, blocksize=128)
    reads = []
    orig = rasterio.io.DatasetReader.read
    monkeypatch.setattr(rasterio.io.DatasetReader, "read", lambda self, *a, **k: reads.append(1) or orig(self, *a, **k))
    assert _check_one(str(path)) is None and not reads
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[:-100])
    assert "truncated" in _check_one(str(cut)) and not reads
    plain = tmp_path / "plain.tif"  # a striped GeoTIFF: GDAL gives its last strip's byte range too
    with rasterio.open(plain, "w", driver="GTiff", width=50, height=50, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=rasterio.Affine(20, 0, 500000, 0, -20, 6000000)) as dst:
        dst.write(np.ones((1, 50, 50), np.uint16))
    assert _check_one(str(plain)) is None and not reads
    cut.write_bytes(plain.read_bytes()[:-10])
    assert "truncated" in _check_one(str(cut)) and not reads


def test_http_416_is_truncated_only_when_the_server_gives_the_length(tmp_path):
    """A 416 answer with ``Content-Range: bytes */N`` and N short of the last block: truncated; N long enough, or
    no length given (a server refusing ranges for another reason): undecided, GDAL reads the block instead."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from lcup.io.stac import _has_bytes

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(416)
            if self.path != "/no-length":
                self.send_header("Content-Range", "bytes */1000")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        assert _has_bytes(f"{base}/a.tif", 2000) == "truncated: 1000 bytes, its last block ends at byte 2000"
        assert _has_bytes(f"{base}/a.tif", 1000) is None  # the server's length covers the block: not a truncation
        assert _has_bytes(f"{base}/no-length", 2000) is None
    finally:
        srv.shutdown()


@pytest.mark.parametrize("href, refused", [
    ("/etc/passwd", "file"),
    ("file:///etc/passwd", "file"),
    ("/vsizip//etc/x.zip/a.tif", "file"),
    ("http://10.0.0.1/B04.tif", "10.0.0.1"),
    ("/vsicurl/http://metadata.internal/B04.tif", "metadata.internal"),
    ("s3://someone-else/B04.tif", "s3://someone-else"),
    ("http://127.0.0.1:9999/B04.tif", None),  # the catalog's own host (any port)
    ("https://sentinel-cogs.s3.us-west-2.amazonaws.com/B04.tif", None),  # the provider's
    ("s3://sentinel-cogs/x/B04.tif", None),
])
def test_a_remote_catalog_may_not_send_the_workers_to_local_files_or_other_hosts(href, refused):
    import pystac

    from lcup.errors import ProviderError
    from lcup.io.stac import check_hosts, default_allowed_hosts
    from lcup.providers import get_profile

    item = pystac.Item("x", None, None, dt.datetime(2024, 1, 1), {})
    item.add_asset("red", pystac.Asset(href))
    allowed = default_allowed_hosts("http://127.0.0.1:8000/stac", get_profile("earth-search"))
    if refused is None:
        check_hosts([item], {"red": "red"}, allowed)
        return
    with pytest.raises(ProviderError, match=rf"not allowed to read: {re.escape(refused)} \(e\.g\. x/red: "):
        check_hosts([item], {"red": "red"}, allowed)
    check_hosts([item], {"red": "red"}, [*allowed, refused])  # what the message says to do
