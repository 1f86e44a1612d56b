"""The kept dates handed to every tile: matched by acquisition day, not exact timestamp, and the dropped scenes
never read."""

import numpy as np
import pystac
from odc.geo.geobox import GeoBox

from lcup.stages.load import items_on, load, on_dates


def _t(*s):
    return np.array(s, "datetime64[ns]")


def test_on_dates_matches_the_same_day_not_the_next():
    kept = _t("2024-05-01T10:30", "2024-05-11T10:30", "2024-06-01T10:30")
    times = _t("2024-05-01T10:30", "2024-05-01T10:37",  # the day's first granule; a later one (another tile)
               "2024-05-11T12:10",                        # the next orbit over a high-latitude tile, same day
               "2024-05-02T10:30", "2024-05-10T10:30",    # the days after and before a kept date
               "2024-04-01T10:30", "2024-07-01T10:30")    # before the first and after the last
    assert on_dates(times, kept).tolist() == [True, True, True, False, False, False, False]
    assert on_dates(times, kept[:1]).tolist() == [True, True, False, False, False, False, False]
    assert on_dates(times, kept[:0]).tolist() == [False] * 7 and on_dates(times[:0], kept).tolist() == []


def test_features_from_the_kept_items_equal_the_whole_cubes_on_kept_dates(small_scene):
    """The pipeline loads only the items of the kept dates (no dropped scene read, no copy of the cube): the same
    features, bit for bit, as the whole cube restricted to those dates; and a date whose timestamp on this tile is
    a later granule's still counts as kept."""
    import lcup

    items = list(pystac.Catalog.from_file(str(small_scene["catalog"])).get_all_items())
    x0, y0 = small_scene["spec"].origin
    gb = GeoBox.from_bbox((x0, y0 - 1280, x0 + 1280, y0), "EPSG:32633", resolution=10)
    kw = dict(load={"chunk_px": 64, "bands": ["red", "nir", "swir16"]}, halo=2)
    cube = load(items, gb, **kw)
    dates = cube.time.values[::3]  # every third date kept
    fk = dict(clean={"dilation_m": 20}, features={"indices": ["ndvi"], "series": ["ndvi"]})
    whole = lcup.features(cube, ("2024-01-01", "2024-12-31"), dates=dates, **fk).values
    mine = items_on(items, dates)
    assert 0 < len(mine) < len(items)
    kept = load(mine, gb, **kw)
    np.testing.assert_array_equal(kept.time.values, dates)
    np.testing.assert_array_equal(lcup.features(kept, ("2024-01-01", "2024-12-31"), dates=dates, **fk).values, whole)
    later = dates + np.timedelta64(7, "m")  # the area's timestamps were another granule's, minutes earlier
    np.testing.assert_array_equal(lcup.features(cube, ("2024-01-01", "2024-12-31"), dates=later, **fk).values, whole)
