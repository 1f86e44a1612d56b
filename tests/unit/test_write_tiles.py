"""Tiles in flight (lcup.io.write.write_tiles_zarr): a slow tile does not hold back the next submission."""

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr

from lcup.io.write import write_tiles_zarr


class _Future:
    """A finished computation that reports itself done only after ``polls`` calls of done() (a slow tile)."""

    def __init__(self, polls: int):
        self.polls = polls

    def done(self) -> bool:
        self.polls -= 1
        return self.polls < 0

    def result(self):
        return None


def test_tiles_in_flight_recorded_as_they_finish(tmp_path):
    data = da.from_array(np.arange(64, dtype=np.uint8).reshape(8, 8) % 7 + 1, chunks=4)
    ds = xr.Dataset({"class": (("y", "x"), data)}, coords={"y": np.arange(8), "x": np.arange(8)})
    submitted, finished = [], []

    def submit(delayed):
        dask.compute(delayed, scheduler="sync")  # written now; the future only says when it is "done"
        submitted.append(len(finished))
        return _Future(polls=50 if len(submitted) == 1 else 0)  # the first tile is slow

    written, skipped = write_tiles_zarr(ds, tmp_path / "m.zarr", tile_px=4, attrs={}, overwrite=True, resume=False,
                                        compute=None, submit=submit, in_flight=2,
                                        on_done=lambda tid, n, total: finished.append(tid), zarr_format=3)
    assert (written, skipped) == (4, 0)
    # tiles 0_1 and 1_0 finished (and 1_1 was submitted) while 0_0 was still computing
    assert finished.index("0_0") > finished.index("0_1") and finished.index("0_0") > finished.index("1_0")
    assert submitted[3] >= 2
    g = zarr.open_group(str(tmp_path / "m.zarr"), mode="r")
    assert sorted(g.attrs["lcup_tiles_done"]) == ["0_0", "0_1", "1_0", "1_1"]
    np.testing.assert_array_equal(g["class"][:], data.compute())
