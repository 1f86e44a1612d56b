"""The pre-flight probe of assets (lcup.io.stac.check_assets): a local COG's completeness told from its header."""

import numpy as np


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
    plain = tmp_path / "plain.tif"  # a striped GeoTIFF: its last strip
    with rasterio.open(plain, "w", driver="GTiff", width=50, height=50, count=1, dtype="uint16") as dst:
        dst.write(np.ones((1, 50, 50), np.uint16))
    assert _check_one(str(plain)) is None
