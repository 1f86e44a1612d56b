"""Stage: find the Sentinel-2 items of an area and period, on the output grid."""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Sequence

from ..errors import ReadError, SkippedAssetWarning
from ..io.stac import asset_keys, check_assets, check_hosts, default_allowed_hosts, geobox_for_aoi, lonlat_bbox, search_items
from ..io.stac import native_origin as _native
from ..providers import SCL, get_profile


def grid(bbox: Sequence[float], *, crs: str = "EPSG:4326", grid_crs: str | None = None, resolution: float = 10.0,
         origin: tuple[float, float] | None = None):
    """The output grid (an ``odc.geo.GeoBox``) of ``bbox`` (in ``crs``): UTM of its centre unless ``grid_crs``;
    pixel edges on multiples of ``resolution``, or through ``origin`` (see :func:`align`).

    Examples
    --------
    >>> gb = grid((14.5, 45.8, 14.52, 45.82))
    >>> str(gb.crs), abs(gb.resolution.x)
    ('EPSG:32633', 10.0)
    """
    return geobox_for_aoi(bbox, grid_crs, resolution, crs, origin=origin)


def native_origin(items: list, geobox) -> tuple[float, float] | None:
    """A pixel corner of the items' own grid in ``geobox``'s CRS and resolution (their ``proj:transform``), or None.

    Give it to :func:`grid` as ``origin`` to make the output grid the data's own: a catalog whose grid origin is
    not a multiple of the resolution (an EPSG:3035 product, say) is otherwise read half a pixel off, with a no-data
    row and column.
    """
    return _native(items, geobox.crs, abs(geobox.resolution.x))


def search(catalog: str, geobox, start: dt.date | str, end: dt.date | str, *, provider: str = "earth-search",
           collection: str | None = None, max_cloud_cover: float | None = None, page_size: int = 100,
           bands: Sequence[str] = (), scl: bool = True, allowed_hosts: Sequence[str] | None = None) -> list:
    """Items of ``catalog`` (a STAC API URL or a static ``catalog.json``) meeting ``geobox`` between two dates.

    Parameters
    ----------
    catalog
        STAC API URL or path/URL of a static catalog.
    geobox
        The output grid (:func:`grid`).
    start, end
        First and last day (inclusive).
    provider
        Layout profile (asset keys, DN→reflectance): ``earth-search``, ``earth-search-l2a``, ``planetary-computer``.
    bands
        Bands that must be in the items (and SCL with ``scl``): a missing one is a
        :class:`~lcup.errors.MissingBandError` now, before any pixel is read.
    allowed_hosts
        Hosts (``fnmatch`` patterns; ``"file"`` for local paths, ``"*"`` for any) the assets may be read from;
        default: the catalog's own host (local files for a local catalog) and the provider's asset hosts. An asset
        elsewhere is a :class:`~lcup.errors.ProviderError` naming it.

    Returns
    -------
    list of pystac.Item
        Sorted by time.

    Examples
    --------
    >>> items = search("demo-data/catalog.json", gb, "2024-01-01", "2024-12-31")  # doctest: +SKIP
    """
    profile = get_profile(provider)
    items = search_items(catalog, profile, lonlat_bbox(geobox), f"{start}T00:00:00Z", f"{end}T23:59:59Z",
                         collection=collection, max_cloud_cover=max_cloud_cover, limit=page_size)
    keys = asset_keys(items, profile, list(bands) + ([SCL] if scl else []))
    check_hosts(items, keys, default_allowed_hosts(catalog, profile) if allowed_hosts is None else allowed_hosts)
    if scl:  # an item without its cloud mask would read as all cloud and be dropped as "not clear": say so instead
        lacking = [it.id for it in items if keys[SCL] not in it.assets]
        if lacking:
            warnings.warn(f"left out {len(lacking)} item(s) without the cloud-mask asset {keys[SCL]!r}: {lacking[:10]}"
                          + (" ..." if len(lacking) > 10 else "") + "; add the asset, or set clean.mask: none if the "
                          "source has no mask", SkippedAssetWarning, stacklevel=2)
            items = [it for it in items if keys[SCL] in it.assets]
    return items


def check_items(items: list, *, provider: str = "earth-search", bands: Sequence[str] = (), on_error: str = "fail",
                scl: bool = True):
    """Probe every asset (its header, and that its last block's bytes are all there); returns ``(kept items, skipped assets)``.

    With ``on_error="fail"`` an unreadable asset is a :class:`~lcup.errors.ReadError` naming all of them;
    with ``"skip"`` they are left out (read as no data) and listed, with a
    :class:`~lcup.errors.SkippedAssetWarning`.
    """
    kept, skipped = check_assets(items, get_profile(provider), list(bands) + ([SCL] if scl else []))
    if skipped:
        listing = "; ".join(f"{s['item']}/{s['band']} ({s['href']}): {s['error'][:120]}" for s in skipped[:10])
        if on_error == "fail":
            raise ReadError(
                f"{len(skipped)} asset(s) cannot be read: {listing}"
                + (" ..." if len(skipped) > 10 else "")
                + "; fix the files or set source.on_error: skip to leave them out (they are then listed in summary.json)"
            )
        warnings.warn(f"skipped {len(skipped)} unreadable asset(s): {listing}", SkippedAssetWarning, stacklevel=2)
        if not kept:
            raise ReadError(f"no readable item left after skipping {len(skipped)} asset(s): {listing}")
    return kept, skipped
