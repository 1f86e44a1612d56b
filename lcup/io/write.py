"""Write rasters: COGs (small arrays in memory, large ones windowed) and Zarr stores."""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import time
import warnings
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape
from xml.sax.saxutils import escape as xml_escape

import dask.array as da
import numpy as np
import pyproj
import pystac
import rasterio
import zarr
from rasterio.transform import Affine
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from ..errors import OutputExistsError

if TYPE_CHECKING:
    import xarray as xr

    from ..legends import Legend


def _profile(arr: np.ndarray, transform, epsg_or_crs, nodata, blocksize: int = 256) -> dict:
    crs = f"EPSG:{epsg_or_crs}" if isinstance(epsg_or_crs, int) else epsg_or_crs
    return {
        "driver": "COG",
        "height": arr.shape[-2],
        "width": arr.shape[-1],
        "count": 1 if arr.ndim == 2 else arr.shape[0],
        "dtype": arr.dtype.name,
        "crs": crs,
        "transform": transform if isinstance(transform, Affine) else Affine(*transform[:6]),
        "nodata": nodata,
        "compress": "DEFLATE",
        "predictor": 2 if arr.dtype.kind in "ui" else 3,
        # no larger than the power of two that holds the image (GDAL's blocks are multiples of 16 px)
        "blocksize": int(min(blocksize, max(16, 1 << (max(arr.shape[-2:]) - 1).bit_length()))),
        "overview_resampling": "nearest",
    }


def write_cog_array(
    path: str | Path,
    arr: np.ndarray,
    transform,
    crs: int | str,
    nodata: float | int | None = 0,
    legend: "Legend | None" = None,
    blocksize: int = 256,
) -> Path:
    """Write an in-memory ``(y, x)`` or ``(band, y, x)`` array as a Cloud-Optimized GeoTIFF with ``blocksize`` px
    internal blocks (at most the power of two holding the image).

    For categorical maps give ``legend``: it embeds a colour table and class names (GDAL metadata
    ``CLASS_<code>=<name>``), and overviews use nearest resampling.
    """
    path = Path(path)
    prof = _profile(arr, transform, crs, nodata, blocksize)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr if arr.ndim == 3 else arr[None])
        if legend is not None and arr.dtype == np.uint8:
            dst.write_colormap(1, {0: (0, 0, 0, 0), **legend.colours()})
            dst.update_tags(**{f"CLASS_{c}": n for c, n in legend.names().items()}, LEGEND=legend.name)
    return path


def tile_slices(shape: tuple[int, int], tile_px: int) -> list[tuple[str, slice, slice]]:
    """``(tile id, y slice, x slice)`` covering ``shape`` in row-major order."""
    h, w = shape
    return [(f"{ty}_{tx}", slice(ty * tile_px, min(h, (ty + 1) * tile_px)), slice(tx * tile_px, min(w, (tx + 1) * tile_px)))
            for ty in range(-(-h // tile_px)) for tx in range(-(-w // tile_px))]


def cf_axes(ds):
    """``ds`` with CF attributes on its projected x/y coordinates (standard_name, axis, long_name; no _FillValue)."""
    ds = ds.copy()
    for dim, axis in (("x", "X"), ("y", "Y")):
        if dim in ds.coords:
            ds[dim].attrs.update(standard_name=f"projection_{dim}_coordinate", axis=axis,
                                 long_name=f"{dim} coordinate of projection", units="m")
            ds[dim].encoding["_FillValue"] = None
    return ds


def gdal_crs(ds: xr.Dataset, crs: str | None) -> xr.Dataset:
    """``ds`` with GDAL's own ``_CRS`` attribute (``{"wkt": ...}``) on every ``(…, y, x)`` variable, the attribute
    GDAL's Zarr driver documents for a v2 array's CRS (a v2 store opened in GDAL 3.6, which did not read the CF
    ``grid_mapping``, had no CRS; checked here with this machine's GDAL only)."""
    if not crs:
        return ds
    wkt = pyproj.CRS.from_user_input(crs).to_wkt()
    ds = ds.copy()
    for v in ds.data_vars:
        if ds[v].dims[-2:] == ("y", "x"):
            ds[v].attrs["_CRS"] = {"wkt": wkt}
    return ds


def write_tiles_zarr(ds, path: str | Path, *, tile_px: int, attrs: dict, overwrite: bool, resume: bool, compute,
                     tile_data=None, submit=None, in_flight: int = 1, on_done=None, zarr_format: int = 3,
                     nodata: dict | None = None) -> tuple[int, int]:
    """Write ``ds`` to a Zarr v3 store tile by tile, resumable.

    ``tile_data(tile_id, y_slice, x_slice)``, when given, returns each tile's own lazy dataset (a graph per
    tile; ``ds`` then only serves as the template) or None for a tile with no data, which keeps the
    store's fill values (``nodata``: per variable, default 0) and is recorded as done.

    ``compute(delayed, label)`` computes one tile's write and blocks. With ``submit(delayed) -> future``
    (e.g. a distributed client's ``compute``) up to ``in_flight`` tiles are computed at once, so a cluster
    with more threads than a tile has chunks stays busy; each is recorded as done when its write has
    finished (as they finish). Tiles write disjoint, chunk-aligned regions, so the bytes do not
    depend on the order. ``on_done(tile_id, n_done, n_tiles)`` is called after each tile.

    The template (metadata, coordinates, no data) is written first with ``compute=False``; then each
    tile is computed and written to its region, and its id is appended to the store's
    ``lcup_tiles_done`` attribute: the store itself is the record of what is finished. With ``resume``
    the tiles already recorded are skipped, so an interrupted run continues where it stopped and
    ends with the same bytes as an uninterrupted one.

    Returns
    -------
    written, skipped
        Number of tiles written now and of tiles skipped as already done.
    """
    path = Path(path)
    encoding = {v: {"chunks": tuple(c[0] for c in ds[v].chunks)} for v in ds.data_vars}
    for v in ds.data_vars:  # CF no-data, also the Zarr fill value (a tile without data keeps it): a value the layer cannot hold
        encoding[v]["_FillValue"] = nodata[v] if nodata and v in nodata else 0
    if path.exists() and resume:
        group = zarr.open_group(str(path), mode="r+")
        if group.attrs.get("lcup_grid") != {"shape": list(ds["class"].shape), "transform": attrs.get("transform"), "crs": attrs.get("crs")}:
            raise OutputExistsError(f"{path} holds another grid than this run; it cannot be resumed: choose another output.dir")
        done = set(group.attrs.get("lcup_tiles_done", []))
    else:
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path} exists; set output.overwrite or output.resume")
        ds = gdal_crs(cf_axes(ds), attrs.get("crs"))
        ds.to_zarr(path, mode="w", compute=False, encoding=encoding, consolidated=False, zarr_format=zarr_format)
        group = zarr.open_group(str(path), mode="r+")
        group.attrs.update({**attrs, "lcup_grid": {"shape": list(ds["class"].shape), "transform": attrs.get("transform"),
                                                   "crs": attrs.get("crs")}, "lcup_tiles_done": []})
        done = set()
    tiles = tile_slices(ds["class"].shape, tile_px)
    written = 0
    pending: deque = deque()  # (tile id, future or None), oldest first

    def finish(tid, fut) -> None:
        nonlocal written
        if fut is not None:
            fut.result()  # raises the tile's error; nothing is recorded for it
        done.add(tid)
        group.attrs["lcup_tiles_done"] = sorted(done)
        written += 1
        if on_done is not None:
            on_done(tid, len(done), len(tiles))

    concurrent = submit is not None and in_flight > 1
    for tid, ys, xs in tiles:
        if tid in done:
            continue
        part = ds.isel(y=ys, x=xs) if tile_data is None else tile_data(tid, ys, xs)
        fut = None
        if part is not None:
            part = part.drop_vars(list(part.coords))  # coordinates are in the template already
            delayed = part.to_zarr(path, region={"y": ys, "x": xs}, compute=False, consolidated=False)
            if concurrent:
                fut = submit(delayed)
            else:
                compute(delayed, f"tile {tid} ({len(done) + 1}/{len(tiles)})")
        pending.append((tid, fut))
        # a tile without data, or computed here, is recorded at once; with in_flight tiles pending, wait for
        # whichever finishes first (not the oldest: a slow tile must not hold back the next submission)
        for item in [p for p in pending if p[1] is None]:
            pending.remove(item)
            finish(*item)
        while len(pending) >= in_flight:
            ready = [p for p in pending if p[1].done()]
            if not ready:
                time.sleep(0.02)
                continue
            for item in ready:
                pending.remove(item)
                finish(*item)
    while pending:
        finish(*pending.popleft())
    with warnings.catch_warnings():  # zarr notes that consolidated metadata is not in the v3 spec: chosen (issue 14)
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(path))  # one read for every opener (no per-open warning); redone after a resume
    return written, len(tiles) - written


def write_cog_from_dask(
    arr,
    path: str | Path,
    geobox,
    *,
    nodata: int | float | None = 0,
    legend: "Legend | None" = None,
    overview_resampling: str = "nearest",
    band_names: list[str] | None = None,
) -> Path:
    """Write a (possibly dask-backed) ``(y, x)`` or ``(band, y, x)`` DataArray as a COG without holding it in memory.

    Blocks are computed one spatial chunk at a time (all bands) into a tiled GTiff, which
    ``rio_cogeo.cog_translate`` turns into a COG with overviews (``nearest`` by default: class maps must
    not be averaged), band descriptions (``band_names``); with ``legend``, an embedded colour table and class
    names, and the GIS sidecars of :func:`write_gis_sidecars`.
    """
    path = Path(path)
    data = arr.data if isinstance(arr.data, da.Array) else da.from_array(np.asarray(arr), chunks=1024)
    if data.ndim == 2:
        data = data[None]
    data = data.rechunk({0: -1})
    n, h, w = data.shape
    prof = {
        "driver": "GTiff", "height": h, "width": w, "count": n, "dtype": data.dtype.name,
        "crs": str(geobox.crs), "transform": geobox.transform, "nodata": nodata,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "DEFLATE",
    }
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_tif = Path(tmp) / "stage.tif"
        with rasterio.open(tmp_tif, "w", **prof) as dst:
            for b, name in enumerate(band_names or [], start=1):
                dst.set_band_description(b, name)
            y0 = 0
            for cy in data.chunks[1]:
                x0 = 0
                for cx in data.chunks[2]:
                    block = np.asarray(data[:, y0 : y0 + cy, x0 : x0 + cx].compute())
                    dst.write(block, window=rasterio.windows.Window(x0, y0, cx, cy))
                    x0 += cx
                y0 += cy
        out_prof = cog_profiles.get("deflate")
        out_prof.update(blockxsize=256, blockysize=256, predictor=2 if data.dtype.kind in "ui" else 3)
        extra = {}
        cmap = None
        if legend is not None:
            cmap = {0: (0, 0, 0, 0), **legend.colours()}
            extra = {f"CLASS_{c}": n for c, n in legend.names().items()}
            extra["LEGEND"] = legend.name
        with warnings.catch_warnings():
            # rio-cogeo tells that a colour map sets the colour interpretation to Palette: asked for here
            warnings.filterwarnings("ignore", message="Dataset color interpretation was set to `Palette`")
            cog_translate(
                str(tmp_tif), str(Path(tmp) / "cog.tif"), out_prof, nodata=nodata, overview_resampling=overview_resampling,
                quiet=True, colormap=cmap, additional_cog_metadata=extra or None, in_memory=False,
            )
        os.replace(Path(tmp) / "cog.tif", path)  # whole or not at all: a failed write leaves no partial COG
    if legend is not None:
        write_gis_sidecars(path, legend)
    return path


def _slug(name: str) -> str:
    """A class name as the classification extension wants it (``^[0-9A-Za-z-_]+$``): 'urban / built up' → 'urban-built-up'."""
    return re.sub(r"[^0-9A-Za-z_]+", "-", name).strip("-") or "class"


def _output_item(*, item_id: str, geobox, legend: "Legend", start, end, assets: dict[str, str],
                 properties: dict | None = None, asset_fields: dict | None = None):
    """A pystac Item for an output grid (AOI or tile), with projection and classification metadata."""
    footprint = geobox.extent.to_crs("EPSG:4326")
    classes = [{"value": 0, "name": "no-data", "title": "no data", "nodata": True}]
    classes += [{"value": int(c), "name": _slug(n), "title": n, "color_hint": col.lstrip("#").upper()}
                for c, (n, col) in sorted(legend.classes.items())]
    item = pystac.Item(
        id=item_id,
        geometry=footprint.json,
        bbox=list(footprint.boundingbox),
        datetime=None,
        start_datetime=dt.datetime.combine(start, dt.time(0), dt.timezone.utc),
        end_datetime=dt.datetime.combine(end, dt.time(23, 59, 59), dt.timezone.utc),
        properties={
            "proj:code": str(geobox.crs),
            "proj:shape": list(geobox.shape),
            "proj:transform": list(geobox.transform)[:6],
            **(properties or {}),
        },
        stac_extensions=[
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
    )
    media = {"zarr": "application/vnd+zarr", "cog": pystac.MediaType.COG, "confidence": pystac.MediaType.COG, "probability": pystac.MediaType.COG,
             "model": "application/octet-stream", "summary": pystac.MediaType.JSON, "cog_aux": pystac.MediaType.XML,
             "cog_qml": pystac.MediaType.XML}
    titles = {"cog_aux": "GDAL side-car of the class COG: colour table with transparent no data, class names",
              "cog_qml": "QGIS style of the class COG (paletted, the legend's colours and names)",
              "confidence": "probability of the mapped class, %", "probability": "probability of each class, %"}
    for key, href in assets.items():
        extra = {"classification:classes": classes} if key in ("cog", "zarr") else {}
        if key == "cog":
            extra["raster:bands"] = [{"data_type": "uint8" if max(legend.codes, default=0) <= 255 else "uint16", "nodata": 0,
                                      "spatial_resolution": abs(geobox.resolution.x)}]
        if key in ("confidence", "probability"):  # uint8 percentages; 255 no data (a layer that cannot hold 255 %)
            extra["raster:bands"] = [{"data_type": "uint8", "nodata": 255, "unit": "%", "spatial_resolution": abs(geobox.resolution.x)}]
            if key == "probability":
                extra["raster:bands"] = [{**extra["raster:bands"][0], "name": n} for n in legend.names().values()]
        extra.update((asset_fields or {}).get(key, {}))
        roles = {"cog": ["data"], "zarr": ["data"], "confidence": ["data", "quality"], "probability": ["data"],
                 "cog_qml": ["style"]}.get(key, ["metadata"])
        item.add_asset(key, pystac.Asset(href=href, media_type=media.get(key), roles=roles, extra_fields=extra,
                                         title=titles.get(key)))
    return item


def write_output_item(out_dir: str | Path, *, item_id: str, geobox, legend: "Legend", start, end, assets: dict[str, str],
                      properties: dict | None = None, derived_from: list[str] = ()) -> Path:
    """Write ``item.json``: a STAC Item for the outputs, with projection and classification metadata.

    ``assets`` maps asset keys (``zarr``, ``cog``, ``cog_aux``, ``cog_qml``, ``confidence``, ``probability``,
    ``model``, ``summary``) to paths inside ``out_dir``; ``derived_from`` are the hrefs of the source items
    (``derived_from`` links): URLs as they are, local paths relative to ``out_dir`` (the folder and the catalog
    can move together).
    """
    out_dir = Path(out_dir)
    item = _output_item(item_id=item_id, geobox=geobox, legend=legend, start=start, end=end, assets=assets, properties=properties)
    for href in derived_from:
        if "://" not in href and os.path.isabs(href):
            href = os.path.relpath(href, out_dir.resolve())
        item.add_link(pystac.Link("derived_from", href, media_type=pystac.MediaType.JSON))
    path = out_dir / "item.json"
    item.set_self_href(str(path))
    item.make_asset_hrefs_relative()
    item.save_object(include_self_link=False, dest_href=str(path))
    return path


def write_tile_catalog(out_dir: str | Path, *, catalog_id: str, tiles: list[dict], legend: "Legend", start, end,
                       description: str = "") -> Path:
    """Write ``catalog.json`` with one Item per output tile (a multi-tile run), returns its path.

    Each entry of ``tiles`` is ``{"id", "tile", "geobox", "assets": {key: path inside out_dir}, "region": {"y":
    [start, stop], "x": [start, stop]}, "valid_px"}``: the region is where the tile lies in the run's Zarr store
    (``lcup:region`` on the ``zarr`` asset), ``valid_px`` the number of classified pixels (``lcup:valid_pixels``;
    0 for a tile with no valid observation, written as nodata). Items are written under ``tiles/<tile>/``, with
    relative links, so the folder can move.
    """
    out_dir = Path(out_dir)
    cat = pystac.Catalog(id=catalog_id, description=description or f"lcup output tiles ({len(tiles)})")
    for t in tiles:
        assets = {k: str((out_dir / v).resolve()) for k, v in t["assets"].items()}
        item = _output_item(item_id=t["id"], geobox=t["geobox"], legend=legend, start=start, end=end, assets=assets,
                            properties={"lcup:tile": t["tile"], "lcup:valid_pixels": t["valid_px"]}, asset_fields={"zarr": {"lcup:region": t["region"]}})
        cat.add_item(item)
    cat.normalize_hrefs(str(out_dir.resolve()), strategy=pystac.layout.TemplateLayoutStrategy(item_template="tiles/${lcup:tile}"))
    cat.make_all_asset_hrefs_relative()
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, dest_href=str(out_dir.resolve()))
    return out_dir / "catalog.json"


def write_vrt(paths: list, path: str | Path) -> Path:
    """A GDAL VRT mosaic of single-band rasters on one CRS and resolution whose pixel grids line up (the tiles of
    one UTM zone, the sites of a demo): each placed at its offset, no data 0, paths relative to the VRT.

    Raises
    ------
    ValueError
        If the rasters differ in CRS or resolution, or their grids do not line up.
    """
    path = Path(path)
    srcs = []
    for p in paths:
        with rasterio.open(p) as s:
            srcs.append((Path(p), s.crs, tuple(s.transform)[:6], s.shape, s.dtypes[0]))
    crs, (a, _, _, _, e, _) = srcs[0][1], srcs[0][2]
    if any(c != crs or abs(t[0] - a) > 1e-9 or abs(t[4] - e) > 1e-9 for _, c, t, _, _ in srcs):
        raise ValueError(f"a VRT holds one CRS and one resolution: {[str(p) for p, *_ in srcs]}")
    left, top = min(t[2] for _, _, t, _, _ in srcs), max(t[5] for _, _, t, _, _ in srcs)
    right = max(t[2] + a * sh[1] for _, _, t, sh, _ in srcs)
    bottom = min(t[5] + e * sh[0] for _, _, t, sh, _ in srcs)
    w, h = int(round((right - left) / a)), int(round((bottom - top) / e))
    dtype = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}[srcs[0][4]]
    parts = []
    for p, _, t, (sh, sw), _ in srcs:
        xoff, yoff = (t[2] - left) / a, (t[5] - top) / e
        if abs(xoff - round(xoff)) > 1e-6 or abs(yoff - round(yoff)) > 1e-6:
            raise ValueError(f"{p} is not on the grid of {srcs[0][0]} (offset {xoff:.3f}, {yoff:.3f} px)")
        rel = xml_escape(os.path.relpath(p.resolve(), path.resolve().parent))
        parts.append(f'    <ComplexSource><SourceFilename relativeToVRT="1">{rel}</SourceFilename><SourceBand>1</SourceBand>'
                     f'<SrcRect xOff="0" yOff="0" xSize="{sw}" ySize="{sh}"/><DstRect xOff="{round(xoff)}" yOff="{round(yoff)}" '
                     f'xSize="{sw}" ySize="{sh}"/><NODATA>0</NODATA></ComplexSource>')
    path.write_text(f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">\n  <SRS>{xml_escape(crs.to_wkt())}</SRS>\n'
                    f'  <GeoTransform>{left!r}, {a!r}, 0.0, {top!r}, 0.0, {e!r}</GeoTransform>\n'
                    f'  <VRTRasterBand dataType="{dtype}" band="1">\n    <NoDataValue>0</NoDataValue>\n'
                    + "\n".join(parts) + "\n  </VRTRasterBand>\n</VRTDataset>\n")
    return path


def write_gis_sidecars(cog: str | Path, legend: "Legend") -> list[Path]:
    """Class names where GIS tools look for them, beside a class COG: GDAL category names and colour table in
    ``<cog>.aux.xml`` (QGIS, ArcGIS and ``gdalinfo`` show them) and a QGIS paletted style ``<cog stem>.qml`` in the
    legend's colours.

    A GeoTIFF's own palette always has 2**bits entries (256, padded with opaque black, no alpha: TIFF stores
    none); the ``.aux.xml`` colour table, which GDAL reads in its place, runs from 0 to the highest code only,
    with no data and codes outside the legend transparent.
    """
    cog = Path(cog)
    names = legend.names()
    colours = legend.colours()
    top = max(legend.codes, default=0)
    cats = "".join(f"<Category>{escape(names.get(c, ''))}</Category>" for c in range(top + 1))
    table = "".join('<Entry c1="{}" c2="{}" c3="{}" c4="{}"/>'.format(*colours.get(c, (0, 0, 0, 0))) for c in range(top + 1))
    aux = cog.with_name(cog.name + ".aux.xml")
    aux.write_text(f'<PAMDataset><PAMRasterBand band="1"><ColorInterp>Palette</ColorInterp><ColorTable>{table}</ColorTable>'
                   f'<CategoryNames>{cats}</CategoryNames></PAMRasterBand></PAMDataset>\n')
    entries = "".join(f'<paletteEntry value="{c}" color="{col.lower()}" alpha="255" label="{escape(n)}"/>'
                      for c, (n, col) in sorted(legend.classes.items()))
    qml = cog.with_suffix(".qml")
    qml.write_text('<!DOCTYPE qgis PUBLIC "http://mrcc.com/qgis.dtd" "SYSTEM">\n<qgis version="3.28" styleCategories="AllStyleCategories">'
                   '<pipe><rasterrenderer type="paletted" band="1" opacity="1" nodataColor="">'
                   f'<rasterTransparency/><colorPalette>{entries}</colorPalette></rasterrenderer></pipe>'
                   '<blendMode>0</blendMode></qgis>\n')
    return [aux, qml]
