"""Sentinel-2 L2A band vocabulary and provider profiles (pure metadata, no I/O).

lcup speaks one internal band vocabulary whatever the provider:
``blue green red rededge1 rededge2 rededge3 nir nir08 swir16 swir22 scl``. A
:class:`ProviderProfile` knows how a provider names those bands (asset keys), which collection holds
them, and how its digital numbers (DN) become surface reflectance.

Facts relied on (cited so the next reader can check them):

* odc-stac applies no scale/offset itself: ``odc.stac.load`` returns the stored DN, so lcup turns DN
  into reflectance in its own kernels, per date (``reflectance = DN * scale + offset``).
* Earth Search v1 ``sentinel-2-c1-l2a`` stores DN unaltered and publishes ``raster:bands`` with
  ``scale=0.0001, offset=-0.1`` on each asset; ``sentinel-2-l2a`` on Earth Search has subtracted the
  1000 DN offset from the pixels of some items (``earthsearch:boa_offset_applied: true``) while their
  ``raster:bands`` still say ``offset: -0.1`` (cirrus-geo/cirrus-earth-search#21, #33;
  Element84/earth-search#66, #71), so for that collection the offset is 0 where the flag is true or the
  processing baseline is below 04.00, and the asset's offset otherwise. Some items are known to be
  mistagged upstream; lcup follows the metadata and cannot detect those.
* Planetary Computer ``sentinel-2-l2a`` has no ``raster:bands``; from processing baseline 04.00
  (2022-01-25) the L2A product carries ``BOA_ADD_OFFSET = -1000`` DN, so reflectance is
  ``(DN - 1000) / 10000`` where ``s2:processing_baseline >= 4`` and ``DN / 10000`` before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

from .errors import MissingBandError, ProviderError

#: Internal band names with (Sentinel-2 band id, centre wavelength nm, native resolution m).
BANDS: dict[str, tuple[str, int, int]] = {
    "blue": ("B02", 490, 10),
    "green": ("B03", 560, 10),
    "red": ("B04", 665, 10),
    "rededge1": ("B05", 705, 20),
    "rededge2": ("B06", 740, 20),
    "rededge3": ("B07", 783, 20),
    "nir": ("B08", 842, 10),
    "nir08": ("B8A", 865, 20),
    "swir16": ("B11", 1610, 20),
    "swir22": ("B12", 2190, 20),
}
#: The scene classification band (categorical, no reflectance scaling).
SCL = "scl"
#: Reflectance bands in spectral order.
REFLECTANCE_BANDS: tuple[str, ...] = tuple(BANDS)

_EARTH_SEARCH_KEYS = {b: b for b in BANDS} | {SCL: "scl"}
_PC_KEYS = {b: v[0] for b, v in BANDS.items()} | {SCL: "SCL"}
_EARTH_SEARCH_HOSTS = ("sentinel-cogs.s3.us-west-2.amazonaws.com", "sentinel-cogs.s3.amazonaws.com", "s3://sentinel-cogs",
                       "e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com", "s3://e84-earth-search-sentinel-data")


@dataclass(frozen=True)
class ProviderProfile:
    """How one provider lays out Sentinel-2 L2A.

    Parameters
    ----------
    name
        Profile identifier used in pipeline files.
    collection
        Default collection id.
    asset_keys
        ``{internal band: asset key}``.
    scale, offset
        Default DN→reflectance factors, used where an asset has no ``raster:bands``.
    baseline_offset_dn
        DN offset applied where ``s2:processing_baseline >= 4`` (Planetary Computer); 0 for none.
    offset_applied_property
        Item property that says the offset is already applied (Earth Search ``sentinel-2-l2a``).
    nodata
        DN nodata value.
    signed_urls
        Whether hrefs must be signed (Planetary Computer; needs the ``planetary-computer`` package).
    mask_nodata
        Fill value of the mask asset (``scl``) where no item has data: 0 for SCL, 255 for a probability layer.
    asset_hosts
        Hosts (``fnmatch`` patterns; ``s3://bucket`` for S3 URLs) the provider serves its assets from: allowed by
        default (see ``source.allowed_hosts``).
    """

    name: str
    collection: str
    asset_keys: Mapping[str, str] = field(default_factory=dict)
    scale: float = 1e-4
    offset: float = 0.0
    baseline_offset_dn: float = 0.0
    offset_applied_property: str | None = None
    nodata: int = 0
    signed_urls: bool = False
    default_url: str | None = None
    mask_nodata: int = 0
    asset_hosts: tuple[str, ...] = ()

    def asset_key(self, band: str) -> str:
        try:
            return self.asset_keys[band]
        except KeyError:
            raise MissingBandError(
                f"band {band!r} is not provided by profile {self.name!r}; "
                f"available bands: {sorted(self.asset_keys)}"
            ) from None

    def band_for_asset(self, key: str) -> str | None:
        for b, k in self.asset_keys.items():
            if k == key:
                return b
        return None

    def scale_offset(self, item_properties: Mapping, asset: Mapping | None) -> tuple[float, float]:
        """DN→reflectance ``(scale, offset)`` for one asset of one item.

        Reads ``raster:bands`` from the asset when present (Earth Search), otherwise the profile
        defaults, then the processing-baseline rule (Planetary Computer) and the
        ``offset_applied_property`` rule (Earth Search ``sentinel-2-l2a``).
        """
        scale, offset = self.scale, self.offset
        rb = (asset or {}).get("raster:bands") or []
        if rb:
            scale = float(rb[0].get("scale", scale))
            offset = float(rb[0].get("offset", offset))
        if self.baseline_offset_dn:
            baseline = _baseline(item_properties)
            offset = scale * self.baseline_offset_dn if (baseline or 0.0) >= 4.0 else 0.0
        if self.offset_applied_property:
            baseline = _baseline(item_properties)
            if item_properties.get(self.offset_applied_property) is True or (baseline is not None and baseline < 4.0):
                offset = 0.0
        return scale, offset


def _baseline(props: Mapping) -> float | None:
    """``s2:processing_baseline`` (e.g. ``"04.00"``) as a float, None when absent or unreadable."""
    v = props.get("s2:processing_baseline", props.get("sentinel:processing_baseline"))
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


PROFILES: dict[str, ProviderProfile] = {
    p.name: p
    for p in (
        ProviderProfile(
            "earth-search",
            "sentinel-2-c1-l2a",
            _EARTH_SEARCH_KEYS,
            scale=1e-4,
            offset=-0.1,
            asset_hosts=_EARTH_SEARCH_HOSTS,
            default_url="https://earth-search.aws.element84.com/v1",
        ),
        ProviderProfile(
            "earth-search-l2a",
            "sentinel-2-l2a",
            _EARTH_SEARCH_KEYS,
            scale=1e-4,
            offset=-0.1,
            offset_applied_property="earthsearch:boa_offset_applied",
            asset_hosts=_EARTH_SEARCH_HOSTS,
            default_url="https://earth-search.aws.element84.com/v1",
        ),
        ProviderProfile(
            "planetary-computer",
            "sentinel-2-l2a",
            _PC_KEYS,
            scale=1e-4,
            offset=0.0,
            baseline_offset_dn=-1000.0,
            signed_urls=True,
            asset_hosts=("*.blob.core.windows.net",),
            default_url="https://planetarycomputer.microsoft.com/api/stac/v1",
        ),
    )
}


def get_profile(name: "str | ProviderProfile") -> ProviderProfile:
    """Return the provider profile called ``name`` (a profile is returned as it is)."""
    if isinstance(name, ProviderProfile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ProviderError(f"unknown provider {name!r}; choose one of {sorted(PROFILES)}") from None


def with_probability_mask(profile: "str | ProviderProfile", asset_key: str) -> ProviderProfile:
    """``profile`` with its mask slot (``scl``) read from a cloud-probability asset instead of SCL.

    The layer is read with nearest resampling like SCL and filled with 255 where no item has data (so that no
    data never reads as 0 % cloud); :func:`lcup.ops.cloud.probability_mask` turns it into the clear mask.

    Examples
    --------
    >>> with_probability_mask("earth-search", "cloud").asset_key(SCL)
    'cloud'
    """
    p = get_profile(profile)
    if p.asset_keys.get(SCL) == asset_key and p.mask_nodata == 255:  # already this layer's profile
        return p
    return dataclasses.replace(p, name=f"{p.name}+{asset_key}", asset_keys={**p.asset_keys, SCL: asset_key}, mask_nodata=255)
