"""Stage: the lazy Sentinel-2 cube of some items on a grid, and the dates worth keeping."""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import odc.stac
import xarray as xr

from ..cluster import Runner
from ..config import CleanConfig, LoadConfig
from ..errors import LowCoverageWarning, NoValidDataError, SkippedAssetWarning
from ..io.nested import cache_stats, clear_blocks, non_finite, read_failures
from ..io.stac import GDAL_HTTP_ENV, item_time, load_cube
from ..ops.cloud import keep_dates, probability_mask, scl_valid_mask, valid_fraction
from ..providers import SCL, get_profile, with_probability_mask
from ..redact import redact_text
from ..units import padded_chunks
from . import section

#: Side (px) of the coarsened grid the scene filter counts clear pixels on.
SCENE_FILTER_PX = 1024


def load(items: list, geobox, *, provider: str = "earth-search", load: LoadConfig | Mapping[str, Any] | None = None,
         bands: Sequence[str] | None = None, on_error: str = "fail", halo: int = 0, scl: bool = True,
         chunks: tuple[int, int] | None = None) -> xr.Dataset:
    """Lazily load ``items`` onto ``geobox``: DN bands and SCL, time in one chunk, space in ``load.chunk_px`` squares.

    Parameters
    ----------
    items
        From :func:`lcup.stages.search.search`; same-day granules are mosaicked.
    geobox
        The output grid.
    provider
        Layout profile of the items (a name or a :class:`~lcup.providers.ProviderProfile`); for
        ``clean.mask: probability`` pass ``with_probability_mask(provider, asset)`` so that ``scl`` holds the
        cloud-probability layer.
    load
        :class:`~lcup.config.LoadConfig` (or its keys): bands, chunk size, resampling.
    bands
        Override ``load.bands`` (e.g. ``[]`` for SCL only).
    on_error
        ``"fail"`` or ``"skip"`` (unreadable assets read as no data).
    halo
        Pixels of SCL read beyond ``geobox`` on each side, so the cloud-mask dilation sees across the edge.
    scl
        Load the SCL band (False for sources without one: ``clean.mask: none``).
    chunks
        ``(rows, columns)`` of the spatial chunks instead of ``load.chunk_px`` squares.

    Returns
    -------
    xarray.Dataset
        ``(time, y, x)`` uint16 DN per band (0 = no data) and ``scl`` (``(time, scl_y, scl_x)`` on the grid padded
        by ``halo``, attribute ``halo_px``); per-date ``scale_<band>`` and ``offset_<band>`` (DN→reflectance, from
        each item's own metadata) and ``items`` (ids, comma-separated) as coordinates along ``time``, so that
        ``isel(time=...)`` keeps them aligned.

    Examples
    --------
    >>> cube = lcup.load(items, gb, load={"bands": ["red", "nir"], "chunk_px": 256})  # doctest: +SKIP
    >>> reflectance = cube["nir"] * cube["scale_nir"] + cube["offset_nir"]  # doctest: +SKIP
    """
    lc = section(LoadConfig, load)
    bands = list(lc.bands) if bands is None else list(bands)
    # odc-stac captures these GDAL settings into the graph and restores them in every task: workers need no setup
    odc.stac.configure_rio(cloud_defaults=True, **GDAL_HTTP_ENV)
    profile = get_profile(provider)
    kw = dict(chunk_px=tuple(chunks) if chunks else lc.chunk_px, resampling=lc.resampling, fail_on_error=on_error == "fail",
              block_cache_mb=lc.block_cache_mb)
    if not scl:
        cube = load_cube(items, profile, bands, geobox, **kw)
        return cube.data[bands].assign_coords(_time_coords(cube, bands))
    if halo or not bands:
        cube = load_cube(items, profile, bands, geobox, **kw) if bands else None
        if halo:  # as many SCL chunks as the bands have, each a few pixels larger: no sliver chunks to read
            ch = kw["chunk_px"] if isinstance(kw["chunk_px"], tuple) else (kw["chunk_px"],) * 2
            kw = {**kw, "chunk_px": tuple(padded_chunks(n, c, halo) for n, c in zip(geobox.shape, ch))}
        scl_cube = load_cube(items, profile, [SCL], geobox.pad(halo) if halo else geobox, **kw)
        if cube is not None and not np.array_equal(cube.data.time.values, scl_cube.data.time.values):
            raise RuntimeError("the SCL and reflectance loads gave different dates")
        cube = cube or scl_cube
        scl = scl_cube.data[SCL]
    else:
        cube = load_cube(items, profile, bands + [SCL], geobox, **kw)
        scl = cube.data[SCL]
    ds = cube.data[bands] if bands else cube.data[[]]
    if halo:
        scl = scl.rename(y="scl_y", x="scl_x")
    ds["scl"] = scl.assign_attrs(halo_px=int(halo))
    return ds.assign_coords(_time_coords(cube, bands))


#: How far apart (hours) a cube's timestamp and a kept date may be and still be the same acquisition day: a day's
#: granules are minutes apart (overlapping orbits at high latitude ~100 min), distinct days of Sentinel-2 ≥ ~22 h.
SAME_DAY_H = 12


def on_dates(times, dates) -> np.ndarray:
    """``(time,)`` bool: which of ``times`` are acquisitions of ``dates`` (:func:`scene_filter`'s).

    A day's timestamp is its first granule's, so a tile meeting only that day's later granule has a timestamp a
    few minutes (or an orbit) later than the area's: times match within :data:`SAME_DAY_H` hours, not exactly.

    Examples
    --------
    >>> on_dates(np.array(["2024-05-01T10:31", "2024-05-03T10:20"], "datetime64[ns]"),
    ...          np.array(["2024-05-01T10:30"], "datetime64[ns]")).tolist()
    [True, False]
    """
    t = np.asarray(times, "datetime64[ns]").astype(np.int64)
    d = np.sort(np.asarray(dates, "datetime64[ns]").astype(np.int64))
    if not len(d) or not len(t):
        return np.zeros(len(t), bool)
    i = np.clip(np.searchsorted(d, t), 1, len(d) - 1) if len(d) > 1 else np.zeros(len(t), np.int64)
    near = np.minimum(np.abs(t - d[i]), np.abs(t - d[np.maximum(i - 1, 0)]))
    return near <= SAME_DAY_H * 3_600_000_000_000


def items_on(items: list, dates) -> list:
    """The ``items`` acquired on ``dates`` (:func:`on_dates`): a cube of those reads no dropped scene."""
    if not items:
        return []
    t = np.array([np.datetime64(item_time(it).replace(tzinfo=None), "ns") for it in items])
    return [it for it, keep in zip(items, on_dates(t, dates)) if keep]


def _time_coords(cube, bands) -> dict:
    """Per-date ``scale_<band>``, ``offset_<band>`` and ``items`` as coordinates along ``time``."""
    coords = {f"{k}_{b}": ("time", getattr(cube, k)[b]) for b in bands for k in ("scale", "offset")}
    coords["items"] = ("time", [",".join(ids) for ids in cube.items])
    return coords


def scene_filter(items: list, geobox, *, provider: str = "earth-search", clean: CleanConfig | Mapping | None = None,
                 chunk_px: int = 512, on_error: str = "fail", compute=None, bands: Sequence[str] = ("red",),
                 block_cache_mb: float | str = "auto") -> tuple[np.ndarray, dict]:
    """The dates kept for the whole area: those whose clear fraction reaches ``clean.min_valid_fraction``.

    Decided once for the area and handed to every tile, so neighbouring tiles interpolate from the same dates.
    The fraction is the share of pixels whose SCL is not in ``clean.invalid_scl`` (no dilation; with
    ``clean.mask: probability`` whose cloud probability, read from ``clean.probability_asset``, is at most
    ``clean.max_probability``; with ``clean.mask: none`` the share with data in the first of ``bands``), counted on the
    grid coarsened to at most :data:`SCENE_FILTER_PX` pixels a side: one read of SCL whose cost does not grow
    with the area. ``compute(dask_array) -> numpy`` runs it (default: the current scheduler); ``block_cache_mb`` as
    ``load.block_cache_mb``.

    Returns
    -------
    dates : numpy.ndarray
        ``datetime64`` dates kept.
    info : dict
        ``dates_found``, ``dates_kept``, ``mean_valid_fraction``, ``dates_dropped``, the dates ``kept`` and
        ``items_sha`` (:func:`items_sha`: what a resume checks before reusing them, :func:`reused_dates`).

    Raises
    ------
    NoValidDataError
        If no date is clear enough.
    """
    cc = section(CleanConfig, clean)
    side = max(geobox.shape)
    gb = geobox if side <= SCENE_FILTER_PX else geobox.zoom_to((max(1, geobox.shape[0] * SCENE_FILTER_PX // side),
                                                                 max(1, geobox.shape[1] * SCENE_FILTER_PX // side)))
    if cc.mask == "probability":  # the probability layer is read in SCL's place
        provider = with_probability_mask(provider, cc.probability_asset)
    if cc.mask != "none":
        scl = load(items, gb, provider=provider, load={"chunk_px": chunk_px, "block_cache_mb": block_cache_mb}, bands=[],
                   on_error=on_error)["scl"]
        frac = valid_fraction(probability_mask(scl, cc.max_probability) if cc.mask == "probability"
                              else scl_valid_mask(scl, cc.invalid_scl))
    else:  # no mask: the share of pixels with data, in the first band
        first = list(bands)[0]
        dn = load(items, gb, provider=provider, load={"chunk_px": chunk_px, "block_cache_mb": block_cache_mb},
                  bands=[first], on_error=on_error, scl=False)[first]
        frac = valid_fraction((dn != 0) & dn.notnull())
    frac = frac.copy(data=compute(frac.data) if compute else frac.data.compute())
    keep = keep_dates(frac.values, cc.min_valid_fraction)
    info = {"dates_found": int(len(keep)), "dates_kept": int(keep.sum()),
            "mean_valid_fraction": float(frac.mean()) if len(keep) else 0.0,
            "kept": [str(t)[:10] for t in frac.time.values[keep]], "items_sha": items_sha(items)}
    if (~keep).any():
        dropped = [str(t)[:10] for t in frac.time.values[~keep]]
        warnings.warn(f"dropped {len(dropped)} of {len(keep)} dates with a clear fraction below {cc.min_valid_fraction}: "
                      f"{dropped}", LowCoverageWarning, stacklevel=2)
        info["dates_dropped"] = dropped
    if keep.sum() == 0:
        raise NoValidDataError(f"no date has a clear fraction of at least {cc.min_valid_fraction} (best "
                               f"{frac.values.max():.3f}); lower clean.min_valid_fraction or widen the period")
    return frac.time.values[keep], info


def items_sha(items: Sequence) -> str:
    """A short hash of the items' ids (sorted)."""
    return hashlib.sha256(json.dumps(sorted(it.id for it in items)).encode()).hexdigest()[:16]


def reused_dates(previous: Mapping | None, items: Sequence) -> tuple[np.ndarray, dict] | None:
    """The dates an interrupted run of the same settings kept (``previous``: its summary's figures), when it
    searched the same items: ``(dates, info)`` as :func:`scene_filter` returns them, or None (filter again). The
    scene filter reads the mask of every date over the whole area: a resume skips it."""
    if not previous or "kept" not in previous or previous.get("items_sha") != items_sha(items):
        return None
    info = {k: previous[k] for k in ("dates_found", "dates_kept", "mean_valid_fraction", "kept", "items_sha", "dates_dropped")
            if k in previous}
    return np.array(previous["kept"], dtype="datetime64[ns]"), {**info, "scene_filter": "reused from the interrupted run"}


def drop_decoded_blocks(runner: Runner) -> None:
    """Free the decoded COG blocks (:data:`lcup.io.nested.BLOCKS`) and their counts here and in the runner's
    workers (a cluster a run started is closed with them)."""
    runner.run_everywhere(clear_blocks)


def block_cache_figures(runner: Runner) -> dict:
    """The run's decoded-block cache over this process and the workers: blocks served again (``hits``) and decoded
    (``misses``), the share served again, the size allowed and the most held by one process (MiB), and the reads
    that waited for a block another thread was decoding (``waits``, their thread-seconds ``wait_s``)."""
    stats = runner.run_everywhere(cache_stats)
    hits, misses = sum(s["hits"] for s in stats), sum(s["misses"] for s in stats)
    return {"hits": hits, "misses": misses, "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
            "size_mb": round(max(s["max_bytes"] for s in stats) / 2**20, 1),
            "peak_mb": round(max(s["peak_bytes"] for s in stats) / 2**20, 1),
            "waits": sum(s["waits"] for s in stats), "wait_s": round(sum(s["wait_s"] for s in stats), 1)}


def _band_of(items: Sequence, provider) -> dict[str, str | None]:
    """``{href (redacted): lcup band}`` of the items' assets."""
    profile = get_profile(provider)
    return {redact_text(str(a.get_absolute_href() or a.href)): profile.band_for_asset(k)
            for it in items for k, a in it.assets.items()}


def unreadable_reads(runner: Runner, since: float, items: Sequence = (), provider: str | Any = "earth-search") -> list[dict]:
    """The asset reads that failed since ``since`` (``time.time()``) in this process and on the workers, one record
    per file (:func:`lcup.io.nested.read_failures`; ``band``: its band among ``items``' assets), with a
    :class:`~lcup.errors.SkippedAssetWarning` naming them: with ``source.on_error: skip`` each failed chunk read is
    no data, as a cloud is, and the run goes on."""
    band_of = _band_of(items, provider)
    found = [{**r, "band": band_of.get(r["href"]) or r["band"]} for r in read_failures(runner.client, since=since, clear=True)]
    if found:
        listing = "; ".join(f"{r['href']} ({r['reads']} read(s)): {r['error'][:120]}" for r in found[:10])
        warnings.warn(f"{sum(r['reads'] for r in found)} chunk read(s) of {len(found)} file(s) failed and were read as no "
                      f"data (masked like a cloud): {listing}" + (" ..." if len(found) > 10 else "")
                      + "; fix the files, or set source.on_error: fail to stop at the first", SkippedAssetWarning, stacklevel=2)
    return found


def non_finite_pixels(runner: Runner, since: float, items: Sequence, provider: str | Any = "earth-search") -> dict[str, dict]:
    """NaN/inf pixels read from the floating-point assets of ``items`` since ``since`` (``time.time()``), per band:
    ``{band: {"pixels", "read", "share", "files"}}`` (:func:`lcup.io.nested.non_finite`), with a
    :class:`~lcup.errors.LowCoverageWarning` naming each band and its share: they are no data, as a cloud is."""
    band_of = _band_of(items, provider)
    found: dict[str, dict] = {}
    for href, f in non_finite(runner.client, since=since, clear=True).items():
        b = found.setdefault(band_of.get(href) or href, {"pixels": 0, "read": 0, "files": []})
        b["pixels"] += f["pixels"]
        b["read"] += f["read"]
        if f["pixels"]:
            b["files"].append(href)
    found = {band: {**b, "share": round(b["pixels"] / max(b["read"], 1), 4), "files": sorted(b["files"])}
             for band, b in found.items() if b["pixels"]}
    for band, f in found.items():
        warnings.warn(f"band {band!r}: {100 * f['share']:.1f} % of the pixels read from its floating-point files are NaN "
                      f"or inf ({f['pixels']} px in {len(f['files'])} file(s), e.g. {f['files'][0]}); they are no data, "
                      "as a cloud is: fix the files, or leave the band out (load.bands)", LowCoverageWarning, stacklevel=2)
    return found
