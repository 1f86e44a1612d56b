"""A commented pipeline template (``lcup init``) and the pipeline's JSON schema (``lcup schema``) for editors."""

from __future__ import annotations

from .config import PipelineConfig

TEMPLATE = """\
# An lcup pipeline. Every key below shows its default unless marked "set this"; delete what you keep as is.
# Check it with `lcup validate FILE`, see the work with `lcup plan FILE`, run it with `lcup run FILE`.
# Relative paths are resolved against this file's folder. JSON schema for editors: `lcup schema > lcup.schema.json`.
name: my-area
source:
  provider: earth-search        # earth-search (sentinel-2-c1-l2a) | earth-search-l2a | planetary-computer (pip install "lcup[pc]")
  # catalog: https://earth-search.aws.element84.com/v1   # default: the provider's API; or a static catalog.json
  max_cloud_cover: 80           # %, skip cloudier items
  on_error: fail                # fail | skip unreadable assets (listed in summary.json)
  # allowed_hosts: [file, "*.example.org"]   # default: the catalog's host (local files for a local catalog) + the provider's
aoi:
  bbox: [14.45, 45.80, 14.60, 45.90]   # set this: [west, south, east, north] in `crs`
  crs: EPSG:4326
  resolution: 10                # metres; the grid is the UTM zone of the centre on the data's own pixel grid
year: 2024                      # set this (or start: / end:)
clean:
  mask: scl                     # scl | probability (set probability_asset: the items' cloud-probability asset, %) | none (composites)
  dilation_m: 20                # grow clouds and shadows by this many metres
labels:
  path: coarse_map.tif          # set this: the coarse land-cover map (any GDAL raster or URL, any CRS)
  legend: cgls-lc100            # its legend: cgls-lc100 | esa-worldcover | corine | corine-grid | ecoclimap-sg | io-lulc | eolearn-lulc | lcup7 | a mapping
  target_legend: lcup7          # the output legend (built-in name or {name:, classes: {code: {name:, color:}}})
  # crosswalk: {50: 4}          # extends the built-in crosswalk: source code -> target code (0 drops a code)
  # fractions: {1: tree_cover_fraction.tif}   # cover-fraction layers (%) of the coarse product: label purity
model:
  n_estimators: 100
  coarse_prior: 0.5             # the coarse map as a prior on the class probabilities (0: the model alone)
  # path: other-run/model.skops # apply a saved model instead of training (labels are then optional)
# truth: {path: truth_10m.tif, legend: lcup7}   # optional 10 m reference to score against
output:
  dir: out                      # set this
  zarr_format: 3                # 2 for GDAL/QGIS
cluster:
  kind: local                   # local | address | gateway | none
"""


def schema() -> dict:
    """The JSON schema of a pipeline file (from the typed settings)."""
    s = PipelineConfig.model_json_schema()
    s["title"] = "lcup pipeline"
    return s
