"""Items built from real provider STAC JSON (../shared/data/stac-items), hrefs rewritten to local COGs.

The item metadata (ids, properties, asset keys, eo/raster band metadata, CRS and grid origin) is the
providers' own; only the grid is cropped to ``size`` pixels at the tile origin and the hrefs point to
COGs served on 127.0.0.1 whose DN encode known reflectances under each provider's convention.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import numpy as np
from odc.geo.geom import box

from lcup.io.write import write_cog_array
from lcup.providers import BANDS, get_profile

PC_FILE = "odc-stac__site2-2020_jun_jul-35MNM.geojson"
PC_COLLECTION = "odc-stac__sentinel-2-l2a.collection.json"
ES_FILE = "openeo-processes-dask__s2_l2a_test_item.json"


def _footprint(epsg: int, x0: float, y0: float, size: int) -> tuple[dict, list]:
    g = box(x0, y0 - 10 * size, x0 + 10 * size, y0, crs=f"EPSG:{epsg}").to_crs("EPSG:4326")
    return g.json, list(g.boundingbox)


def build_layout(layout: str, stac_dir: Path, root: Path, base_url: str, *, size: int = 64, n_items: int = 4, seed: int = 0) -> dict:
    """Write COGs + ``collection.json`` + ``items.json`` for one provider layout.

    ``layout``: ``planetary-computer``, ``earth-search`` (sentinel-2-c1-l2a) or ``earth-search-l2a``.

    Returns ``{"collection", "items_path", "ids", "epsg", "origin", "size", "refl": {id: {band: (y, x)}},
    "scl": {id: (y, x)}, "profile"}`` with reflectance and SCL on the 10 m grid.
    """
    rng = np.random.default_rng(seed)
    profile = get_profile(layout)
    root = Path(root) / layout
    root.mkdir(parents=True, exist_ok=True)
    if layout == "planetary-computer":
        feats = json.loads((stac_dir / PC_FILE).read_text())["features"][:n_items]
        collection = json.loads((stac_dir / PC_COLLECTION).read_text())
        base = [copy.deepcopy(f) for f in feats]
        for i, f in enumerate(base):  # half before, half after processing baseline 04.00
            f["properties"]["s2:processing_baseline"] = "03.00" if i < n_items // 2 else "04.00"
    else:
        src = json.loads((stac_dir / ES_FILE).read_text())
        base = []
        for i in range(n_items):
            f = copy.deepcopy(src)
            t = dt.datetime(2023, 6, 2, 10, 27, tzinfo=dt.timezone.utc) + dt.timedelta(days=5 * i)
            f["id"] = f"S2A_32TPS_{t:%Y%m%d}_0_L2A"
            f["properties"]["datetime"] = t.isoformat().replace("+00:00", "Z")
            if layout == "earth-search-l2a":
                f["properties"]["earthsearch:boa_offset_applied"] = i < n_items // 2
            else:
                f["collection"] = "sentinel-2-c1-l2a"
                f["properties"].pop("earthsearch:boa_offset_applied", None)
            base.append(f)
        collection = {
            "type": "Collection", "stac_version": "1.0.0", "id": base[0]["collection"],
            "description": "Earth Search v1 layout (test)", "license": "proprietary", "links": [],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        }
    collection["links"] = []
    out_items, refl, scl_out = [], {}, {}
    keys = {profile.asset_key(b): b for b in list(BANDS) + ["scl"]}
    for f in base:
        f["links"] = []
        f["collection"] = collection["id"]
        props = f["properties"]
        epsg = int(str(props.get("proj:epsg") or props.get("proj:code")).split(":")[-1])
        f["assets"] = {k: a for k, a in f["assets"].items() if k in keys}
        any_asset = next(iter(f["assets"].values()))
        x0, y0 = any_asset["proj:transform"][2], any_asset["proj:transform"][5]
        f["geometry"], f["bbox"] = _footprint(epsg, x0, y0, size)
        refl[f["id"]] = {}
        folder = root / f["id"]
        folder.mkdir(exist_ok=True)
        for key, a in f["assets"].items():
            band = keys[key]
            res = 20 if band == "scl" else BANDS[band][2]
            n = size * 10 // res
            if band == "scl":
                arr = rng.choice(np.array([4, 5, 6, 8, 9], np.uint8), size=(n, n))
                scl_out[f["id"]] = np.kron(arr, np.ones((res // 10, res // 10), np.uint8))
            else:
                dn_refl = rng.integers(100, 5000, (n, n)).astype(np.uint16)  # reflectance × 1e4
                dn_refl[0, 0] = 0  # a nodata pixel
                s, o = profile.scale_offset(props, a)
                arr = (dn_refl + np.uint16(round(-o / s))).astype(np.uint16)
                arr[dn_refl == 0] = 0
                r = np.where(dn_refl == 0, np.nan, dn_refl / 1e4).astype(np.float32)
                refl[f["id"]][band] = np.kron(r, np.ones((res // 10, res // 10), np.float32))
            path = folder / f"{key}.tif"
            write_cog_array(path, arr, (res, 0, x0, 0, -res, y0), epsg, nodata=0)
            a["href"] = f"{base_url}/{layout}/{f['id']}/{key}.tif"
            a["proj:shape"] = [n, n]
            a["proj:transform"] = [res, 0, x0, 0, -res, y0]
            if "proj:bbox" in a:
                a["proj:bbox"] = [x0, y0 - 10 * size, x0 + 10 * size, y0]
        out_items.append(f)
    (root / "collection.json").write_text(json.dumps(collection))
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": out_items}))
    return {
        "collection": root / "collection.json", "items_path": root / "items.json", "root": root,
        "ids": [f["id"] for f in out_items], "epsg": epsg, "origin": (x0, y0), "size": size,
        "refl": refl, "scl": scl_out, "profile": profile, "items": out_items,
    }


def static_catalog_to_api_items(catalog: Path, base_url: str, root: Path, out: Path) -> tuple[Path, Path]:
    """Export a static catalog's collection and items as JSON for ``rustac serve``, hrefs → ``base_url``."""
    import pystac

    cat = pystac.read_file(str(catalog))
    coll = next(cat.get_children())
    items = []
    for it in coll.get_items(recursive=True):
        d = it.to_dict(include_self_link=False)
        d["links"] = []
        for key, a in d["assets"].items():
            absolute = Path(it.assets[key].get_absolute_href())
            a["href"] = f"{base_url}/{absolute.relative_to(root).as_posix()}"
        items.append(d)
    cd = coll.to_dict(include_self_link=False)
    cd["links"] = []
    cd["assets"] = {}
    (out / "collection.json").write_text(json.dumps(cd))
    (out / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return out / "collection.json", out / "items.json"
