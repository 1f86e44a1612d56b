"""Find Sentinel-2 L2A items (STAC API or static catalog) and load them lazily with odc-stac.

The same code path serves a STAC API (Earth Search, Planetary Computer, a server on 127.0.0.1) and a
static catalog (what :func:`lcup.synthetic.write_demo` writes): pystac-client cannot search a static
catalog, so its items are filtered here by collection, bbox and datetime, then handed to the same
loader.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import dask.array as da
import numpy as np
import odc.stac
import pandas as pd
import pystac
import rasterio
import requests
import xarray as xr
from odc.geo import xy_
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import box
from pystac_client import Client
from rasterio.windows import Window

from ..errors import EmptySearchError, MissingBandError, ProviderError
from ..ops.s2grid import utm_zone
from ..providers import SCL, ProviderProfile
from .nested import NestedRioDriver

log = logging.getLogger("lcup")


def is_static_catalog(source: str) -> bool:
    """A source ending in ``.json`` (local path or URL) is a static catalog; anything else a STAC API."""
    return str(source).split("?")[0].endswith(".json")


def _parse_dt(value) -> dt.datetime:
    t = pd.Timestamp(value)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return t.to_pydatetime()


def item_time(item: pystac.Item) -> dt.datetime:
    t = item.datetime or _parse_dt(item.properties.get("start_datetime"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def bbox_overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    return not (a[2] < b[0] or a[0] > b[2] or a[3] < b[1] or a[1] > b[3])


def _static_items(source: str) -> list[pystac.Item]:
    """Every item of a static catalog, each checked to be a STAC Item lcup can place in time; a file that is empty,
    not JSON or not STAC is named with its path, and so is a link cycle.

    Raises
    ------
    ProviderError
        Naming the file and what is wrong with it; an Item given as the catalog, naming the fix.
    """
    try:
        root = pystac.read_file(str(source))
        if isinstance(root, pystac.Item):
            raise ProviderError(
                f"{source} is a STAC Item, not a catalog: give source.catalog the catalog.json or collection.json that "
                "links it (its relative hrefs are read from that catalog's folder)")
        items = _walk(root)
    except (pystac.STACError, ValueError, KeyError, TypeError) as e:  # pystac's errors on a bad file: one clear line
        raise ProviderError(f"the catalog {source} holds a file lcup cannot read as STAC: {_why_not_stac(e)}") from None
    for it in items:
        if it.datetime is None and not it.properties.get("start_datetime"):
            raise ProviderError(f"item {it.id} ({it.get_self_href()}) has datetime null and no start_datetime: lcup "
                                "cannot place it in time; set its datetime, or remove it from the catalog")
    return items


def _walk(root: pystac.Catalog) -> list[pystac.Item]:
    """The items under ``root``, depth first; a child link back to a catalog on the way down is a cycle.

    pystac's own walk (``get_items(recursive=True)``) recurses for ever on a cycle; this one names its links.
    """
    items: list[pystac.Item] = []
    seen: set[str] = set()

    def visit(cat: pystac.Catalog, path: tuple[str, ...]) -> None:
        for link in cat.get_links(pystac.RelType.ITEM):
            items.append(link.resolve_stac_object(root=cat.get_root()).target)
        for link in cat.get_links(pystac.RelType.CHILD):
            href = os.path.normpath(link.get_absolute_href() or link.href) if "://" not in str(link.href) else link.get_absolute_href()
            if href in path:
                chain = " → ".join([*path[path.index(href):], href])
                raise ProviderError(f"the catalog's child links form a cycle: {chain}; remove the link that points "
                                    "back up (a child must not link to its parent or itself)")
            if href in seen:
                continue
            seen.add(href)
            child = link.resolve_stac_object(root=cat.get_root()).target
            if isinstance(child, pystac.Catalog):
                visit(child, (*path, href))

    self_href = root.get_self_href()
    visit(root, (os.path.normpath(self_href),) if self_href and "://" not in self_href else (self_href or "",))
    return items


def unique_items(items: list[pystac.Item], source: str) -> list[pystac.Item]:
    """``items`` with exact repeats (a paging glitch) dropped; one id for two different items is refused.

    Raises
    ------
    ProviderError
        Naming the id and the two acquisitions.
    """
    out: dict[str, pystac.Item] = {}
    for it in items:
        first = out.get(it.id)
        if first is None:
            out[it.id] = it
            continue
        a, b = first.to_dict(include_self_link=False), it.to_dict(include_self_link=False)
        if a != b:
            raise ProviderError(
                f"{source} lists two different items with the id {it.id!r} ({item_time(first):%Y-%m-%d %H:%M} and "
                f"{item_time(it):%Y-%m-%d %H:%M}{', ' + str(it.get_self_href()) if it.get_self_href() else ''}): an id "
                "must name one acquisition; remove or rename one of them")
        log.info("item %s listed twice by %s: kept once", it.id, source)
    return list(out.values())


def _host(href: str) -> str:
    """``"file"`` for a local path (``/vsi*`` ones too, but /vsicurl's URL's host), else the URL's host or bucket."""
    h = href[len("/vsicurl/"):] if href.startswith("/vsicurl/") else href
    m = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://([^/?#]*)", h)
    if not m or m.group(1).lower() == "file":
        return "file"
    host = m.group(2).rsplit("@", 1)[-1]
    return (host.rsplit(":", 1)[0] if not host.startswith("[") else host).lower() if m.group(1).lower() in ("http", "https") else f"{m.group(1).lower()}://{host.lower()}"


def default_allowed_hosts(catalog: str, profile: ProviderProfile) -> list[str]:
    """Where a catalog's assets may be read from by default: its own host (local files for a local catalog) and
    the provider's known asset hosts.

    Examples
    --------
    >>> from lcup.providers import get_profile
    >>> default_allowed_hosts("http://127.0.0.1:8080/stac", get_profile("earth-search"))[:2]
    ['127.0.0.1', 'sentinel-cogs.s3.us-west-2.amazonaws.com']
    """
    return [_host(str(catalog)), *profile.asset_hosts]


def check_hosts(items: Sequence[pystac.Item], keys: dict[str, str], allowed: Sequence[str]) -> None:
    """Refuse any asset lcup would read whose host (or ``file`` for a local path) matches no pattern of ``allowed``.

    A hostile or mistaken catalog could otherwise make the workers read local files or internal URLs.

    Raises
    ------
    ProviderError
        Naming the hosts, an example href and the setting that allows them.
    """
    allowed = [str(a).lower() for a in allowed]
    refused: dict[str, str] = {}
    for it in items:
        for key in keys.values():
            asset = it.assets.get(key)
            if asset is None:
                continue
            href = asset.get_absolute_href() or asset.href
            host = _host(href)
            if host not in refused and not any(fnmatch.fnmatchcase(host, a) for a in allowed):
                refused[host] = f"{it.id}/{key}: {href}"
    if refused:
        what = "; ".join(f"{h} (e.g. {ex})" for h, ex in list(refused.items())[:5])
        raise ProviderError(
            f"the catalog's assets are on host(s) it is not allowed to read: {what}; allowed: {allowed}. If you trust "
            f"them, add them to source.allowed_hosts (e.g. allowed_hosts: {sorted(set(allowed) | set(refused))}; "
            "'file' is local files, '*' any host)")


def _why_not_stac(e: Exception) -> str:
    """What is wrong with the file a pystac error names (its ``HREF``), and the fix."""
    m = re.search(r"HREF: '([^']+)'", str(e))
    path = Path(m.group(1)) if m else None
    if path is None or not path.is_file():
        return f"{e}; fix the file or remove it (and its link) from the catalog"
    if path.stat().st_size == 0:
        return f"{path} is empty (0 bytes): a failed download? fetch it again or remove it (and its link)"
    try:
        d = json.loads(path.read_text())
    except ValueError:
        return f"{path} is not JSON: fetch it again or remove it (and its link)"
    props = d.get("properties", {}) if isinstance(d, dict) else {}
    if d.get("type") == "Feature" and props.get("datetime") is None and not props.get("start_datetime"):
        return (f"item {d.get('id')!r} ({path}) has datetime null and no start_datetime/end_datetime: lcup cannot place "
                "it in time; set its datetime, or remove it (and its link)")
    return f"{e}; fix the file or remove it (and its link) from the catalog"


def search_items(
    source: str,
    profile: ProviderProfile | None,
    bbox: Sequence[float],
    start: str | dt.datetime,
    end: str | dt.datetime,
    *,
    collection: str | None = None,
    max_cloud_cover: float | None = None,
    limit: int = 100,
) -> list[pystac.Item]:
    """Items of the collection intersecting ``bbox`` (lon/lat) between ``start`` and ``end`` (inclusive).

    Raises
    ------
    EmptySearchError
        When nothing matches; the message gives the source, collection, bbox and dates searched.
    """
    coll = collection or (profile.collection if profile else None)
    if coll is None:
        raise ProviderError("no collection given: set the collection id")
    t0, t1 = _parse_dt(start), _parse_dt(end)
    if is_static_catalog(source):
        candidates = unique_items(_static_items(source), str(source))
        items = []
        collections_seen = set()
        for it in candidates:
            collections_seen.add(it.collection_id)
            if it.collection_id not in (coll, None):
                continue
            if it.bbox is not None and not bbox_overlaps(it.bbox, bbox):
                continue
            if not (t0 <= item_time(it) <= t1):
                continue
            items.append(it)
        if candidates and coll not in collections_seen:
            raise ProviderError(
                f"static catalog {source} has no collection {coll!r} (it has {sorted(map(str, collections_seen))}); "
                "set source.collection in the pipeline file"
            )
    else:
        try:
            client = Client.open(str(source))
        except Exception as e:  # noqa: BLE001 - network, HTTP and JSON errors alike
            raise EmptySearchError(f"cannot open the STAC API at {source}: {e}; check the URL and your connection") from e
        try:
            found = client.get_collection(coll)
        except Exception:  # noqa: BLE001 - pystac-client raises APIError or KeyError by version
            found = None
        if found is None:
            try:
                available = sorted(c.id for c in client.get_collections())
            except Exception:  # noqa: BLE001
                available = []
            raise ProviderError(
                f"the STAC API at {source} has no collection {coll!r}"
                + (f"; it has {available[:30]}" if available else "")
                + "; set source.collection, or source.provider to the profile of this API"
            ) from None
        search = client.search(collections=[coll], bbox=list(bbox), datetime=[t0, t1], limit=limit)
        items = list(search.items())
    items = unique_items(items, str(source))
    if max_cloud_cover is not None:
        items = [it for it in items if float(it.properties.get("eo:cloud_cover", 0.0)) <= max_cloud_cover]
    if not items:
        raise EmptySearchError(
            f"no {coll!r} item in {source} intersects bbox {[round(float(b), 5) for b in bbox]} between "
            f"{t0:%Y-%m-%d} and {t1:%Y-%m-%d}"
            + (f" with eo:cloud_cover <= {max_cloud_cover}" if max_cloud_cover is not None else "")
            + "; check the area (lon/lat order: [west, south, east, north]), the year and the collection"
        )
    items.sort(key=item_time)
    log.info("found %d items in %s", len(items), source)
    return items


def _solar_day(t: dt.datetime, lon: float) -> dt.date:
    """Local solar date, as odc-stac's ``groupby="solar_day"`` computes it (UTC shifted by lon/15 h)."""
    return (t + dt.timedelta(hours=lon / 15.0)).date()


@dataclass
class Cube:
    """A lazily loaded Sentinel-2 cube and its per-date metadata.

    Attributes
    ----------
    data
        ``{band: (time, y, x)}`` dask-backed DN with internal band names (``scl`` included).
    scale, offset
        ``{band: (time,)}`` DN→reflectance factors per date, from each item's own metadata.
    items
        Item ids per date.
    geobox
        The output grid.
    """

    data: xr.Dataset
    scale: dict[str, np.ndarray]
    offset: dict[str, np.ndarray]
    items: list[list[str]]
    geobox: GeoBox
    skipped: list[dict] = field(default_factory=list)
    #: ``(time, y, x)`` SCL, on ``geobox`` padded by ``halo`` px (set by :func:`lcup.stages.load.load`)
    scl: xr.DataArray | None = None
    halo: int = 0

    def reflectance(self, band: str) -> xr.DataArray:
        """Surface reflectance ``(time, y, x)`` float32 of ``band``, lazy; NaN where DN is 0 (no data)."""
        dn = self.data[band]
        sc = xr.DataArray(self.scale[band].astype(np.float32), dims="time", coords={"time": dn.time})
        of = xr.DataArray(self.offset[band].astype(np.float32), dims="time", coords={"time": dn.time})
        return (dn.astype(np.float32) * sc + of).where(dn != 0).rename(band)


def asset_keys(items: Sequence[pystac.Item], profile: ProviderProfile, bands: Sequence[str]) -> dict[str, str]:
    """``{band: asset key}`` of ``bands`` in ``items``.

    Raises
    ------
    MissingBandError
        If a band's asset is in none of the items (a wrong provider profile, or a band the catalog lacks).
    """
    keys = {}
    for b in bands:
        key = profile.asset_key(b)
        if not any(key in it.assets for it in items):
            have = f"assets of the first item: {sorted(items[0].assets)}"
            if b == SCL and profile.mask_nodata == 255:  # the mask slot reads a cloud-probability layer
                raise MissingBandError(f"the cloud-probability asset {key!r} (clean.probability_asset) is in none of the "
                                       f"{len(items)} items; {have}; name the probability layer there, or set clean.mask: "
                                       "scl (or none)")
            raise MissingBandError(
                f"band {b!r} (asset {key!r}) is in none of the {len(items)} items; {have}; check the provider profile "
                "(source.provider) or "
                + ("set clean.mask: none for sources without a scene classification, or clean.mask: probability with "
                   "clean.probability_asset for a cloud-probability layer" if b == SCL else f"drop {b!r} from load.bands")
            )
        keys[b] = key
    return keys


def _projection_gap(items: Sequence[pystac.Item], keys: dict[str, str]) -> str:
    """What to say when odc-stac refuses items whose assets mix grids with and without the projection extension."""
    fields = ("proj:shape", "proj:transform")
    gaps = sorted({(it.id, k) for it in items for k in keys.values() if k in it.assets
                   and not all(f in it.assets[k].extra_fields or f in it.properties for f in fields)})
    where = ", ".join(f"{k!r} of {i}" for i, k in gaps[:3]) + (f" and {len(gaps) - 3} more" if len(gaps) > 3 else "")
    return (f"asset(s) {where or '(unknown)'} lack proj:shape/proj:transform while other assets of the items have them, "
            "so their grid is unknown; add the projection fields to those assets (rio-stac writes them) or leave their "
            "bands out of load.bands")


def load_cube(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    bands: Sequence[str],
    geobox: GeoBox,
    *,
    chunk_px: int | tuple[int, int] = 512,
    resampling: str = "nearest",
    fail_on_error: bool = True,
    patch_url: Callable[[str], str] | None = None,
    nested: bool = True,
    block_cache_mb: float | str = 0,
) -> Cube:
    """Load ``bands`` (internal names, ``scl`` included) of ``items`` onto ``geobox`` with odc-stac.

    Same-day granules are mosaicked (``groupby="solar_day"``); the cube has time in one chunk and
    space split into ``chunk_px`` squares (or ``(rows, columns)`` rectangles). SCL is always resampled with
    nearest neighbour. ``nested``: read assets whose grid nests in ``geobox`` (20 m bands on a 10 m grid) at their own
    resolution and repeat pixels instead of warping (:mod:`lcup.io.nested`; the same pixels, faster), keeping up to
    ``block_cache_mb`` MiB (``"auto"``: :func:`lcup.io.nested.auto_cache_bytes`) of decoded COG blocks per process so that chunks sharing a block decode it once.
    """
    keys = asset_keys(items, profile, bands)
    if patch_url is None and profile.signed_urls:
        try:
            import planetary_computer  # optional: lcup[pc]

            patch_url = planetary_computer.sign
        except ImportError:
            if any(".blob.core.windows.net" in a.href for it in items[:20] for a in it.assets.values()):
                raise ProviderError("the items' assets are on Planetary Computer's blob storage and must be signed with "
                                    'the planetary-computer package, which is not installed: pip install "lcup[pc]"') from None
            # a mirror of the items elsewhere (a local copy, another store): hrefs are read as they are
    # Where items have no raster:bands (Planetary Computer), dtype/nodata come from the profile
    # through stac_cfg (odc-stac's per-band ``dtype=`` dict does not combine with ``chunks``).
    cfg = {"*": {"assets": {"*": {"data_type": "uint16", "nodata": profile.nodata},
                             profile.asset_key(SCL): {"data_type": "uint8", "nodata": profile.mask_nodata}}}}
    res = {k: ("nearest" if b == SCL else resampling) for b, k in keys.items()}
    # the same mosaic as odc-stac's default (first granule with data wins), a plain copy for a date's first granule
    fuse = {k: "lcup.io.nested.fuse_nodata_0" for b, k in keys.items() if nested and
            (profile.mask_nodata if b == SCL else profile.nodata) == 0}
    try:
        ds = odc.stac.load(
            items,
            bands=list(keys.values()),
            geobox=geobox,
            # every date of a chunk read by one task into one block: no per-date blocks to concatenate afterwards
            chunks={"time": -1, **({"y": chunk_px[0], "x": chunk_px[1]} if isinstance(chunk_px, tuple) else {"x": chunk_px, "y": chunk_px})},
            groupby="solar_day",
            resampling=res,
            fail_on_error=fail_on_error,
            stac_cfg=cfg,
            patch_url=patch_url,
            driver=NestedRioDriver(block_cache_mb) if nested else None,
            fuse_func=fuse or None,
        )
    except ValueError as e:
        if "projection extension" not in str(e):
            raise
        raise ProviderError(_projection_gap(items, keys)) from None
    ds = ds.rename({k: b for b, k in keys.items() if k != b})
    ds = ds.chunk({"time": -1})
    for v in ds.data_vars:  # one task per band-chunk read, not ~60
        ds[v] = ds[v].copy(data=inline_sources(ds[v].data))
    # Per-date scale/offset from each item's own metadata (odc-stac does not apply them).
    lon = float(geobox.extent.to_crs("EPSG:4326").centroid.coords[0][0])
    by_day: dict[dt.date, list[pystac.Item]] = {}
    for it in items:
        by_day.setdefault(_solar_day(item_time(it), lon), []).append(it)
    groups = []
    for t in pd.DatetimeIndex(ds.time.values):
        day = _solar_day(t.to_pydatetime().replace(tzinfo=dt.timezone.utc), lon)
        groups.append(by_day.get(day) or by_day.get(t.date()) or [])
    scale, offset = {}, {}
    for b, key in keys.items():
        if b == SCL:
            continue
        pairs = [
            Counter(profile.scale_offset(it.properties, it.assets[key].to_dict() if key in it.assets else None)
                    for it in (group or items[:1])).most_common(1)[0][0]
            for group in groups
        ]
        scale[b] = np.array([p[0] for p in pairs])
        offset[b] = np.array([p[1] for p in pairs])
    return Cube(ds, scale, offset, [[it.id for it in g] for g in groups], geobox)


def inline_sources(arr):
    """``arr`` (an ``odc.stac.load`` band) with odc-stac's per-asset ``open-*`` tasks inlined into the read tasks.

    odc-stac makes one task per asset that only builds a reader object, shared by the band's chunks: a chunk read
    depends on one per date, so a ``distributed`` scheduler handles ~60 tiny tasks per band-chunk (1,300 per
    tile), about a fifth of the reading's wall time on a 2-thread worker. Inlined, each chunk's read is one task
    that builds its readers itself (no I/O: the files are opened when read). The same values; the graph unchanged
    if dask's task objects are not what this expects.
    """
    try:
        from dask._task_spec import (  # dask's private task spec: guarded, the graph is left as it is without it
            GraphNode,
            convert_legacy_graph,
        )

        dsk = convert_legacy_graph(dict(arr.__dask_graph__()))
        opens = {k: t for k, t in dsk.items() if isinstance(k, tuple) and str(k[0]).startswith("open-")}
        if not opens or not all(isinstance(t, GraphNode) for t in dsk.values()):
            return arr
        inlined = {k: t.substitute(opens) for k, t in dsk.items() if k not in opens}
        if any(k in opens for t in inlined.values() for k in t.dependencies):
            return arr
        return da.Array(inlined, arr.name, arr.chunks, meta=arr._meta)
    except (ImportError, AttributeError, TypeError):  # another dask: its graph as it is
        return arr


#: GDAL settings for reading COGs over HTTP: retries on transient errors, no directory listing.
GDAL_HTTP_ENV = {
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF,.jp2",
}


def _check_one(href: str) -> str | None:
    """Open an asset and check that its last full-resolution block is all there; return an error message or None.

    In a COG the full-resolution blocks come last, so the end of the last block proves the file complete (a
    truncated download fails here). Where GDAL gives that block's byte range (a tiled GeoTIFF) and the file's
    length is known without GDAL (a local file; over HTTP, one range request for the block's last byte), only the
    header is read: no block is downloaded or decoded. Otherwise the last block is read and decoded.
    """
    try:
        with rasterio.Env(**GDAL_HTTP_ENV):
            with rasterio.open(href) as src:
                bh, bw = src.block_shapes[0]
                yb, xb = (src.height - 1) // bh, (src.width - 1) // bw
                end = _block_end(src, xb, yb)
                verdict = _has_bytes(href, end) if end else None
                if verdict is None:
                    src.read(1, window=Window(xb * bw, yb * bh, src.width - xb * bw, src.height - yb * bh))
                return verdict or None
    except Exception as e:  # noqa: BLE001 - any failure to read is reported, whatever its type
        return f"{type(e).__name__}: {e}"


def _block_end(src, xb: int, yb: int) -> int | None:
    """Byte offset just past block ``(xb, yb)`` of band 1 (GDAL's TIFF metadata), or None if GDAL does not say."""
    try:
        off = src.get_tag_item(f"BLOCK_OFFSET_{xb}_{yb}", "TIFF", bidx=1)
        size = src.get_tag_item(f"BLOCK_SIZE_{xb}_{yb}", "TIFF", bidx=1)
        return int(off) + int(size) if off and size and int(off) > 0 else None
    except Exception:  # noqa: BLE001 - no byte range known: the caller decodes the block instead
        return None


def _has_bytes(href: str, end: int) -> str | None:
    """``""`` when the file at ``href`` holds ``end`` bytes, an error message when it holds fewer, None when that
    cannot be told without GDAL (another scheme, a server that ignores ranges or wants GDAL's credentials: the
    caller decodes the block)."""
    path = href[7:] if href.startswith("file://") else href
    if "://" not in path and not path.startswith("/vsi"):
        n = os.path.getsize(path)
    elif path.startswith(("http://", "https://")):
        try:
            with requests.get(path, headers={"Range": f"bytes={end - 1}-{end - 1}"}, stream=True, timeout=60) as r:
                status, length = r.status_code, re.fullmatch(r"bytes \*/(\d+)", r.headers.get("Content-Range", "").strip())
        except requests.RequestException:
            return None
        if status == 416:  # truncated only when the server says how long the file is (RFC 9110: "bytes */length")
            n = int(length.group(1)) if length else None
            return None if n is None or n >= end else f"truncated: {n} bytes, its last block ends at byte {end}"
        # 206: the byte is there; anything else (a server ignoring ranges, credentials only GDAL sends...): GDAL
        # reads the block as the load will
        return "" if status == 206 else None
    else:
        return None
    return "" if n >= end else f"truncated: {n} bytes, its last block ends at byte {end}"


def check_assets(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    bands: Sequence[str],
    *,
    patch_url: Callable[[str], str] | None = None,
    max_workers: int = 16,
) -> tuple[list[pystac.Item], list[dict]]:
    """Probe every asset that will be loaded; drop those that cannot be read.

    Returns
    -------
    items, skipped
        The items, less those whose ``scl`` is unreadable (their pixels could not be masked), and one
        record ``{"item", "band", "href", "error"}`` per unreadable asset. Unreadable reflectance
        assets stay in their items: loaded with ``fail_on_error=False`` they become no data (DN 0)
        for that date, which the temporal kernel treats as a masked observation.
    """
    jobs = []
    for it in items:
        for b in bands:
            key = profile.asset_key(b)
            if key in it.assets:
                href = it.assets[key].get_absolute_href() or it.assets[key].href
                jobs.append((it, b, key, patch_url(href) if patch_url else href))
    with ThreadPoolExecutor(max_workers) as pool:
        errors = list(pool.map(lambda j: _check_one(j[3]), jobs))
    bad: dict[str, list] = {}
    skipped = []
    for (it, b, key, href), err in zip(jobs, errors):
        if err is not None:
            bad.setdefault(it.id, []).append((b, key))
            skipped.append({"item": it.id, "band": b, "href": href, "error": err[:300]})
    out = [it for it in items if not any(b == SCL for b, _ in bad.get(it.id, []))]
    return out, skipped


def native_origin(items: Sequence[pystac.Item], crs, resolution: float) -> tuple[float, float] | None:
    """A pixel corner ``(x, y)`` of the items' own grid in ``crs`` at ``resolution`` (from their assets'
    ``proj:transform``), or None when no asset is on such a grid."""
    want = CRS(str(crs))
    for it in items[:50]:
        code = it.properties.get("proj:code") or (f"EPSG:{it.properties['proj:epsg']}" if it.properties.get("proj:epsg") else None)
        for a in it.assets.values():
            t = a.extra_fields.get("proj:transform") or it.properties.get("proj:transform")
            acode = a.extra_fields.get("proj:code") or code
            if not t or not acode or t[1] or t[3]:
                continue
            if abs(abs(t[0]) - resolution) < 1e-6 and CRS(acode) == want:
                return float(t[2]), float(t[5])
    return None


def items_crs(items: Sequence[pystac.Item], lonlat: tuple[float, float]) -> str | None:
    """The CRS (``proj:code``/``proj:epsg``) most of the items covering the point ``lonlat`` are in, or of all the
    items when none covers it; None when they say none. The Sentinel-2 grid puts a tile in its own UTM zone, with
    the exceptions the formula from the longitude misses (western Norway in 32V, Svalbard's 31X–37X)."""
    code = item_code
    x, y = lonlat
    covering = [it for it in items if it.bbox is not None and it.bbox[0] <= x <= it.bbox[2] and it.bbox[1] <= y <= it.bbox[3]]
    votes = Counter(c for c in map(code, covering or items) if c)
    return votes.most_common(1)[0][0] if votes else None


def item_tile(item: pystac.Item) -> str | None:
    """The Sentinel-2 tile id of an item (``32TQM``) from its ``grid:code`` (``MGRS-32TQM``), ``s2:mgrs_tile`` or
    ``mgrs:utm_zone`` / ``mgrs:latitude_band`` / ``mgrs:grid_square``; None when it names none."""
    p = item.properties
    code = p.get("grid:code")
    if isinstance(code, str) and code.upper().startswith("MGRS-"):
        return code[5:].upper().zfill(5)
    if p.get("s2:mgrs_tile"):
        return str(p["s2:mgrs_tile"]).upper().zfill(5)
    if p.get("mgrs:utm_zone") is not None and p.get("mgrs:latitude_band") and p.get("mgrs:grid_square"):
        return f"{int(p['mgrs:utm_zone']):02d}{p['mgrs:latitude_band']}{p['mgrs:grid_square']}".upper()
    return None


def item_code(item: pystac.Item) -> str | None:
    """The item's CRS (``proj:code``, ``proj:epsg``, or its assets'), or None."""
    p = item.properties
    c = p.get("proj:code") or (f"EPSG:{p['proj:epsg']}" if p.get("proj:epsg") else None)
    if c is None:  # Earth Search's older items give it per asset only
        c = next((a.extra_fields.get("proj:code") or (f"EPSG:{a.extra_fields['proj:epsg']}" if a.extra_fields.get("proj:epsg") else None)
                  for a in item.assets.values() if a.extra_fields.get("proj:code") or a.extra_fields.get("proj:epsg")), None)
    return c


def geobox_for_aoi(bbox: Sequence[float], crs: str | None, resolution: float, bbox_crs: str = "EPSG:4326",
                   origin: tuple[float, float] | None = None) -> GeoBox:
    """The output grid: ``bbox`` (in ``bbox_crs``) on ``crs`` at ``resolution`` m, pixel edges snapped to
    multiples of the resolution (the Sentinel-2 grid), or passing through ``origin`` (a pixel corner, e.g. of the
    items' own grid: :func:`native_origin`). ``crs=None`` picks the UTM zone of the centre."""
    g = box(*bbox, crs=bbox_crs)
    if crs is None or str(crs).lower() == "utm":
        lon, lat = g.to_crs("EPSG:4326").centroid.coords[0]
        crs = f"EPSG:{(32600 if lat >= 0 else 32700) + utm_zone(lon, lat)}"  # the Sentinel-2 grid's zones (Norway, Svalbard)
    gp = g.to_crs(crs)
    anchor = "edge"
    if origin is not None:
        anchor = xy_((origin[0] / resolution) % 1.0, (origin[1] / resolution) % 1.0)
    return GeoBox.from_bbox(gp.boundingbox, crs=crs, resolution=resolution, anchor=anchor)


def lonlat_bbox(geobox: GeoBox) -> list[float]:
    """The geobox extent as a lon/lat bbox ``[west, south, east, north]`` for searching."""
    return list(geobox.extent.to_crs("EPSG:4326").boundingbox)
