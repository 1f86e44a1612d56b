"""Stage: where the coarse map is wrong (:mod:`lcup.ops.audit`), as a COG on the coarse map's own cells."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import xarray as xr

from ..io.write import write_cog_from_dask
from ..ops.audit import cell_disagreement
from .plan import RunPlan

__all__ = ["write_audit", "AUDIT_MIN_CONFIDENCE"]

#: Confidence (%) from which the map's disagreement with the coarse label counts as the map's word.
AUDIT_MIN_CONFIDENCE = 60


def write_audit(plan: RunPlan, result: xr.Dataset, lab: xr.Dataset, path: str | Path,
                min_confidence: int = AUDIT_MIN_CONFIDENCE) -> dict | None:
    """``coarse_audit.tif``: per coarse cell (on the coarse map's cell edges), band 1 the share (%) of its 10 m pixels
    the map gives another class than the cell's label with at least ``min_confidence`` % confidence (255: no
    pixel to judge), band 2 the class most of them get (0: none). Chunk by chunk; None when the coarse cells are
    under 2 output pixels. Returns ``{"path", "cells", "cells_over_half"}``.
    """
    cell = int(round(lab.attrs["figures"]["coarse_cell_px"]))
    if cell < 2:
        return None
    oy, ox = (int(v) % cell for v in lab.attrs.get("cell_origin_px", (0, 0)))
    h, w = plan.geobox.shape
    ny, nx = (h - oy) // cell, (w - ox) // cell
    if ny < 1 or nx < 1:
        return None
    ys, xs = slice(oy, oy + ny * cell), slice(ox, ox + nx * cell)
    step = cell * max(1, plan.cfg.load.chunk_px // cell)
    to_code = plan.to_code
    label = lab["label"].data.map_blocks(lambda b: to_code[b], dtype=to_code.dtype)
    parts = [a[ys, xs].rechunk(step) for a in (result["class"].data, result["confidence"].data, label)]
    out = da.map_blocks(cell_disagreement, *parts, cell, min_confidence, new_axis=0, dtype=np.uint8,
                        chunks=((2,), tuple(c // cell for c in parts[0].chunks[0]), tuple(c // cell for c in parts[0].chunks[1])))
    gb = plan.geobox[ys, xs].zoom_out(cell)
    write_cog_from_dask(xr.DataArray(out, dims=("band", "y", "x")), path, gb, nodata=None, overview_resampling="nearest",
                        band_names=[f"share (%) of the cell's pixels mapped as another class at ≥ {min_confidence} % confidence "
                                    "(255: none to judge)", "the class most of them are mapped as (0: none)"])
    with rasterio.open(path) as src:  # one value per coarse cell: read back whole, not computed again
        share = src.read(1)
    judged = share != 255
    return {"path": str(path), "cells": int(judged.sum()), "cells_over_half": int((judged & (share > 50)).sum()),
            "min_confidence": min_confidence}
