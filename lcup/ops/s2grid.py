"""The Sentinel-2 tiling grid, computed from the MGRS definition: a tile id such as ``32TQM`` gives its UTM zone,
its 109.8 km square on that zone's grid, and the tiles that cover an area; nothing is downloaded.

A tile id is ``<zone><latitude band><column letter><row letter>``. The 100 km square of the column and row letters
(MGRS lettering: column letters cycle through three sets of eight, ``A``–``H``, ``J``–``R``, ``S``–``Z``, by zone;
row letters cycle through twenty, ``A``–``V`` without ``I`` and ``O``, shifted by five in even zones, every 2000 km;
the latitude band resolves the cycle) is the tile's south-west core. The tile's upper-left corner is that square's
north-west corner moved onto the 60 m lattice (Sentinel-2's coarsest resolution): west to a multiple of 60 m,
north to a multiple of 60 m of the distance from the equator; the tile is 109 800 m square. The rule is checked
against the ``proj:transform`` of real Earth Search / Copernicus items (``tests/test_s2grid.py``).

Zones follow the Sentinel-2 grid's exceptions: band V, zone 32 spans 3–12° E (western Norway) and zone 31 0–3° E;
band X has zones 31, 33, 35 and 37 only (Svalbard).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely import Polygon, box
from shapely.geometry.base import BaseGeometry

__all__ = ["S2Tile", "tile", "tiles_covering", "utm_zone", "zone_span", "TILE_M"]

#: Side of a Sentinel-2 tile, metres.
TILE_M = 109_800.0
_BANDS = "CDEFGHJKLMNPQRSTUVWX"  # 8° latitude bands from 80° S; X is 12°
_ROWS = "ABCDEFGHJKLMNPQRSTUV"
_COLS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
#: Northing (m, the southern hemisphere with its 10 000 km false northing) of each band's southern edge, rounded
#: down to 100 km: the MGRS table that resolves the 2000 km cycle of the row letters.
_MIN_NORTHING = dict(zip(_BANDS, (1_100_000, 2_000_000, 2_800_000, 3_700_000, 4_600_000, 5_500_000, 6_400_000, 7_300_000,
                                  8_200_000, 9_100_000, 0, 800_000, 1_700_000, 2_600_000, 3_500_000, 4_400_000, 5_300_000,
                                  6_200_000, 7_000_000, 7_900_000)))
_ID = re.compile(r"^T?(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")


@dataclass(frozen=True)
class S2Tile:
    """One Sentinel-2 tile.

    Attributes
    ----------
    id
        The tile id, e.g. ``"32TQM"`` (zone zero-padded to two digits).
    epsg
        Its UTM CRS (WGS 84), e.g. 32632.
    bounds
        ``(west, south, east, north)`` in that CRS, metres: the 10 980 × 10 980 px grid at 10 m.
    """

    id: str
    epsg: int
    bounds: tuple[float, float, float, float]

    @property
    def zone(self) -> int:
        return int(self.id[:2])

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"

    @property
    def centre(self) -> tuple[float, float]:
        """The tile's centre ``(x, y)`` in its own CRS, metres."""
        w, s, e, n = self.bounds
        return (w + e) / 2, (s + n) / 2

    @property
    def origin(self) -> tuple[float, float]:
        """Upper-left corner ``(x, y)``: the corner every resolution's pixel edges pass through."""
        return self.bounds[0], self.bounds[3]

    def lonlat_polygon(self, points_per_side: int = 16) -> Polygon:
        """The tile's footprint in longitude/latitude (EPSG:4326, ``x`` = longitude), densified along its sides."""
        w, s, e, n = self.bounds
        t = np.linspace(0.0, 1.0, points_per_side, endpoint=False)
        xs = np.concatenate([w + (e - w) * t, np.full_like(t, e), e - (e - w) * t, np.full_like(t, w)])
        ys = np.concatenate([np.full_like(t, s), s + (n - s) * t, np.full_like(t, n), n - (n - s) * t])
        lon, lat = _to_lonlat(self.epsg).transform(xs, ys)
        return Polygon(zip(lon, lat))


@lru_cache(maxsize=128)
def _to_lonlat(epsg: int) -> Transformer:
    return Transformer.from_crs(CRS.from_epsg(epsg), CRS.from_epsg(4326), always_xy=True)


@lru_cache(maxsize=128)
def _from_lonlat(epsg: int) -> Transformer:
    return Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(epsg), always_xy=True)


def _epsg(zone: int, band: str) -> int:
    return (32600 if band >= "N" else 32700) + zone


def tile(tile_id: str) -> S2Tile:
    """The tile ``tile_id`` (``32TQM``, ``T32TQM`` or ``6VVN``).

    Raises
    ------
    ValueError
        If ``tile_id`` is not a Sentinel-2 / MGRS tile id.

    Examples
    --------
    >>> t = tile("32TPS")
    >>> t.epsg, t.bounds
    (32632, (600000.0, 5090220.0, 709800.0, 5200020.0))
    """
    m = _ID.match(str(tile_id).strip().upper())
    if m is None or not 1 <= int(m.group(1)) <= 60:
        raise ValueError(f"{tile_id!r} is not a Sentinel-2 tile id: <UTM zone 1-60><latitude band C-X><two letters>, e.g. 32TQM")
    zone, band, col, row = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    cols = _COLS[(zone - 1) % 3]
    if col not in cols:
        raise ValueError(f"{tile_id!r}: column letter {col} is not used in zone {zone} (its letters: {cols})")
    east = (cols.index(col) + 1) * 100_000.0
    offset = 5 if zone % 2 == 0 else 0
    north = ((_ROWS.index(row) - offset) % 20) * 100_000.0
    while north < _MIN_NORTHING[band]:
        north += 2_000_000.0
    south_hemisphere = band < "N"
    false_n = 10_000_000.0 if south_hemisphere else 0.0
    west = math.floor(east / 60.0) * 60.0
    top = math.ceil((north + 100_000.0 - false_n) / 60.0) * 60.0 + false_n
    return S2Tile(f"{zone:02d}{band}{col}{row}", _epsg(zone, band), (west, top - TILE_M, west + TILE_M, top))


def zone_span(zone: int, band: str) -> tuple[float, float] | None:
    """Longitudes ``(west, east)`` of ``zone`` in latitude ``band`` on the Sentinel-2 grid (with the Norway and
    Svalbard exceptions); None where the zone does not exist in that band."""
    west, east = -180.0 + 6.0 * (zone - 1), -180.0 + 6.0 * zone
    if band == "V" and zone in (31, 32):
        return (0.0, 3.0) if zone == 31 else (3.0, 12.0)
    if band == "X" and zone in (31, 32, 33, 34, 35, 36, 37):
        return {31: (0.0, 9.0), 33: (9.0, 21.0), 35: (21.0, 33.0), 37: (33.0, 42.0)}.get(zone)
    return west, east


def _band_of(lat: float) -> str:
    return _BANDS[min(max(int((lat + 80.0) // 8.0), 0), len(_BANDS) - 1)]


def utm_zone(lon: float, lat: float) -> int:
    """The UTM zone of a point as the Sentinel-2 grid has it (western Norway in 32, Svalbard's wide zones).

    >>> utm_zone(4.0, 60.0), utm_zone(4.0, 50.0)
    (32, 31)
    """
    band = _band_of(lat)
    base = int((lon + 180.0) // 6.0) % 60 + 1
    for z in (base - 1, base, base + 1, base + 2):
        span = zone_span((z - 1) % 60 + 1, band)
        if span is not None and span[0] <= lon < span[1]:
            return (z - 1) % 60 + 1
    return base


def tiles_covering(area: BaseGeometry) -> list[S2Tile]:
    """The Sentinel-2 tiles meeting ``area`` (a shapely geometry in longitude/latitude, EPSG:4326), sorted by id.

    Every zone contributes the tiles of its own grid whose 100 km core square reaches into the zone's longitudes
    and whose footprint meets the area; the latitude band of a tile is that of its core square's centre. Neighbouring tiles overlap (about 10 km within a zone, more across a zone
    boundary): a point is in one or more of them.

    Examples
    --------
    >>> [t.id for t in tiles_covering(box(11.95, 46.40, 12.05, 46.45))]
    ['32TQS', '33TTM']
    """
    lon0, lat0, lon1, lat1 = area.bounds
    found: dict[str, S2Tile] = {}
    wide = area.buffer(0.5)
    for zone in range(1, 61):
        west, east = -180.0 + 6.0 * (zone - 1), -180.0 + 6.0 * zone
        if east + 9.0 < lon0 or west - 9.0 > lon1:  # the widest exception (Svalbard) moves a zone by up to 9°
            continue
        for epsg in {32600 + zone if lat1 >= 0 else 32700 + zone, 32700 + zone if lat0 < 0 else 32600 + zone}:
            zone_area = box(west - 9.0, -80.0 if epsg > 32700 else 0.0, east + 9.0, 0.0 if epsg > 32700 else 84.0).intersection(wide)
            if zone_area.is_empty:
                continue
            w, s, e, n = shapely.transform(zone_area, _from_lonlat(epsg).transform, interleaved=False).bounds
            for ce in range(max(1, int(w // 100_000) - 1), min(8, int(e // 100_000) + 1) + 1):
                for cn in range(max(0, int(s // 100_000) - 1), int(n // 100_000) + 2):
                    gx = ce * 100_000.0 + np.array([0.0, 50_000.0, 100_000.0])
                    gy = cn * 100_000.0 + np.array([0.0, 50_000.0, 100_000.0])
                    lon, lat = _to_lonlat(epsg).transform(*np.meshgrid(gx, gy))
                    band = _band_of(float(lat[1, 1]))
                    span = zone_span(zone, band)
                    if span is None or lon.max() <= span[0] or lon.min() >= span[1] or _epsg(zone, band) != epsg:
                        continue  # the core square is outside the zone's longitudes: not a tile of the grid
                    t = tile(_tile_id(zone, band, ce, cn))
                    if t.id not in found and t.lonlat_polygon().intersects(area):
                        found[t.id] = t
    return [found[k] for k in sorted(found)]


def _tile_id(zone: int, band: str, col_index: int, row_index: int) -> str:
    cols = _COLS[(zone - 1) % 3]
    offset = 5 if zone % 2 == 0 else 0
    return f"{zone:02d}{band}{cols[col_index - 1]}{_ROWS[(row_index + offset) % 20]}"
