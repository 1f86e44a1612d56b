"""Typed, validated pipeline settings.

A pipeline file (YAML) maps onto :class:`PipelineConfig`. Unknown keys, wrong types and missing
required fields are rejected before any work starts, by :func:`load_config`, with a message naming the
key, the section and the valid keys. Relative paths are resolved against the pipeline file's folder.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, LcupError
from .legends import get_crosswalk, get_legend
from .providers import BANDS, PROFILES, REFLECTANCE_BANDS
from .units import metres_to_px, segment_halo_px
from .vocab import DEFAULT_INVALID_SCL, INDEX_BANDS, STAT_NAMES, formula_bands, index_bands


def _only(values: list[str], allowed, what: str) -> list[str]:
    """Reject names not in ``allowed``, listing the valid ones."""
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {bad}; available: {sorted(allowed) if isinstance(allowed, dict) else list(allowed)}")
    return values


class _Section(BaseModel):
    """A section of a pipeline file: unknown keys are refused, values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Section):
    """Where the Sentinel-2 items come from."""

    catalog: str | None = Field(None, description="STAC API URL, or path/URL of a static catalog.json; default: the "
                                "provider's own API (Earth Search, Planetary Computer)")
    provider: str = Field("earth-search", description=f"layout profile: one of {sorted(PROFILES)}")
    collection: str | None = Field(None, description="collection id; default: the provider's")
    max_cloud_cover: float | None = Field(None, ge=0, le=100, description="skip items above this eo:cloud_cover, %")
    on_error: Literal["fail", "skip"] = Field("fail", description="unreadable assets: stop with an error naming them, or skip them and report them in the summary")
    check_assets: bool = Field(True, description="probe every asset before loading (its header, and that its last full-resolution block is all there: told from the file's length where known, else by reading the block), so bad files are found before the heavy work")
    page_size: int = Field(100, ge=1, le=10000, description="items per page of a STAC API search")
    allowed_hosts: list[str] | None = Field(
        None, description="hosts the assets may be read from (fnmatch patterns; 'file' = local paths, '*' = any); "
        "default: the catalog's own host (local files for a local catalog) and the provider's asset hosts, so that a "
        "catalog cannot make the workers read local files or internal URLs")

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, v: str) -> str:
        if v not in PROFILES:
            raise ValueError(f"unknown provider {v!r}; choose one of {sorted(PROFILES)}")
        return v

    @model_validator(mode="after")
    def _default_catalog(self) -> "SourceConfig":
        if self.catalog is None:
            url = PROFILES[self.provider].default_url
            if url is None:
                raise ValueError(f"source.catalog is missing and provider {self.provider!r} has no default API; give its URL")
            object.__setattr__(self, "catalog", url)
        return self


class AOIConfig(_Section):
    """Area of interest and output grid: a bounding box, a polygon, or Sentinel-2 tiles."""

    bbox: tuple[float, float, float, float] | None = Field(
        None, description="[west, south, east, north] in `crs`; default: the bounds of `geometry` or `tiles`")
    crs: str = Field("EPSG:4326", description="CRS of bbox")
    geometry: str | None = Field(
        None, description="the area's polygon(s): a file (GeoPackage, GeoJSON, Shapefile, GeoParquet) or inline WKT / "
        "GeoJSON, in any CRS; pixels outside are no data, tiles wholly outside are never read, predicted or written, "
        "areas count inside only")
    layer: str | None = Field(None, description="layer of the geometry file (default: its first)")
    where: str | None = Field(None, description="attribute filter on the geometry file's features, e.g. NAME = 'Slovenia'")
    geometry_crs: str | None = Field(None, description="CRS of inline WKT (default EPSG:4326; a file has its own)")
    tiles: list[str] | None = Field(None, description="Sentinel-2 tile ids (e.g. [32TQM, 33TUL]): each computed on its own "
                                    "UTM grid, one model, one mosaic (with a geometry or bbox: their part inside it)")
    grid: Literal["auto", "single", "s2-tiles"] = Field(
        "auto", description="s2-tiles: cut the area into the Sentinel-2 tiles and compute each on its own UTM grid, "
        "where its imagery is (no warping), then mosaic; single: one grid (grid_crs, default the UTM zone of the "
        "area's imagery); auto: s2-tiles once the area spans more than one UTM zone (or tiles are given), else single")
    tile: str | None = Field(None, description="one Sentinel-2 tile: the grid is that tile's own (its UTM zone and pixel "
                             "lattice) and only its items are read; lcup sets it for each tile of an s2-tiles run")
    grid_crs: str | None = Field(None, description="output CRS; default: UTM zone of the AOI centre")
    resolution: float = Field(10.0, gt=0, description="output pixel size, metres")
    align: Literal["native", "resolution"] = Field(
        "native", description="pixel edges of the output grid: native = on the items' own pixel grid (their "
        "proj:transform), resolution = on multiples of the resolution")
    origin: tuple[float, float] | None = Field(None, description="an explicit pixel corner [x, y] (in grid_crs) the output "
                                               "grid's pixel edges pass through; overrides align")

    @field_validator("tiles")
    @classmethod
    def _tile_ids(cls, v):
        if v is not None:
            from .ops.s2grid import tile

            if not v:
                raise ValueError("aoi.tiles is empty: give Sentinel-2 tile ids such as [32TQM, 33TUL]")
            v = [tile(t).id for t in v]  # ValueError naming the id
            if len(set(v)) != len(v):
                raise ValueError(f"aoi.tiles lists a tile twice: {v}")
        return v

    @field_validator("tile")
    @classmethod
    def _tile_id(cls, v):
        if v is not None:
            from .ops.s2grid import tile

            v = tile(v).id
        return v

    @model_validator(mode="after")
    def _check_bbox(self) -> "AOIConfig":
        if self.bbox is None:
            if self.geometry is None and self.tiles is None and self.tile is None:
                raise ValueError("give the area: aoi.bbox, aoi.geometry (a polygon file or WKT) or aoi.tiles (Sentinel-2 tile ids)")
            return self
        w, s, e, n = self.bbox
        if not (w < e and s < n):
            raise ValueError(f"bbox {list(self.bbox)} must be [west, south, east, north] with west < east and south < north")
        if self.crs.upper() in ("EPSG:4326", "OGC:CRS84") and not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
            raise ValueError(f"bbox {list(self.bbox)} is outside [-180, 180] × [-90, 90]; is it in another CRS? set aoi.crs")
        return self


class LoadConfig(_Section):
    """How the Sentinel-2 cube is read: bands, chunk size, the decoded-block cache (``load:``)."""

    bands: list[str] = Field(default_factory=lambda: list(REFLECTANCE_BANDS), description="reflectance bands to load")
    chunk_px: int = Field(512, ge=64, le=4096, description="spatial chunk side, pixels")
    resampling: Literal["nearest", "bilinear", "cubic", "average"] = "nearest"
    block_cache_mb: float | Literal["auto"] = Field(
        "auto", description="decoded COG blocks kept per worker process, MiB, so that the chunks sharing a block decode "
        "it once (Sentinel-2's COGs have 1024 px blocks: a 512 px chunk is a quarter of a 10 m block and a sixteenth "
        "of a 20 m one); it should hold the blocks of the tiles a worker computes at once (~1.8 GB per 2048 px tile on the "
        "blocks' lattice, up to ~4.5 GB when it straddles it; the run's summary reports the share of reads it served); "
        "auto: a quarter of the worker's memory, at most 8192; 0: none kept")

    @field_validator("block_cache_mb")
    @classmethod
    def _cache_size(cls, v):
        if v != "auto" and not 0 <= float(v) < float("inf"):
            raise ValueError(f"block_cache_mb is a size in MiB (0 or more) or auto, got {v!r}")
        return v

    @field_validator("bands")
    @classmethod
    def _known_bands(cls, v: list[str]) -> list[str]:
        return _only(v, list(BANDS), "bands")


class CleanConfig(_Section):
    """Cloud/shadow masking, the scene filter and the regular smoothed time series (``clean:``)."""

    mask: Literal["scl", "probability", "none"] = Field(
        "scl", description="cloud/shadow mask: scl (the Sen2Cor scene classification, needs an SCL asset), probability (a "
        "cloud-probability asset in percent, named by probability_asset: the L2A MSK_CLDPRB layer, s2cloudless...) or none "
        "(composites and pre-masked products: only no-data values, 0 or NaN, are missing)")
    probability_asset: str | None = Field(None, description="asset key of the cloud-probability layer (0–100 %) for "
                                          "mask: probability, as the catalog's items name it")
    max_probability: float = Field(40.0, ge=0, le=100, description="mask: probability: observations up to this cloud "
                                   "probability (%) are clear (s2cloudless' own threshold is 40 %)")
    invalid_scl: list[int] = Field(default_factory=lambda: list(DEFAULT_INVALID_SCL), description="SCL classes masked")
    dilation_m: float = Field(0.0, ge=0, description="grow the cloud/shadow mask by this many metres")
    min_valid_fraction: float = Field(0.05, ge=0, le=1, description="drop dates with a smaller clear fraction")
    step_days: float = Field(10.0, gt=0, description="regular time grid step, days")
    savgol_window: int = Field(5, ge=1, description="Savitzky-Golay window, grid steps (odd)")
    savgol_polyorder: int = Field(2, ge=0)
    max_gap_days: float | None = Field(None, gt=0, description="longest gap bridged by interpolation, days")
    hold_ends: bool = True

    @model_validator(mode="after")
    def _odd(self) -> "CleanConfig":
        if self.mask == "probability" and not self.probability_asset:
            raise ValueError("clean.mask: probability needs clean.probability_asset, the asset key of the items' "
                             "cloud-probability layer (0–100 %), e.g. probability_asset: cloud")
        if self.savgol_window % 2 == 0:
            raise ValueError(f"savgol_window must be odd, got {self.savgol_window}")
        if self.savgol_window > 1 and self.savgol_polyorder >= self.savgol_window:
            raise ValueError("savgol_polyorder must be smaller than savgol_window")
        return self


class FeaturesConfig(_Section):
    """Spectral indices, temporal statistics, smoothed series and neighbourhood features per pixel (``features:``)."""

    indices: list[str] = Field(default_factory=lambda: ["ndvi", "evi", "ndwi", "mndwi", "ndbi", "nbr", "savi"])
    stats: list[str] = Field(default_factory=lambda: ["mean", "std", "p10", "p50", "p90", "amplitude", "doy_max"])
    custom_indices: dict[str, str] = Field(default_factory=dict, description="more indices as formulas of band names, "
                                           "e.g. {ndvi_b8a: '(nir08 - red) / (nir08 + red)'}: + - * / ** and parentheses")
    series: list[str] = Field(default_factory=lambda: ["ndvi", "mndwi", "ndbi"], description="variables whose smoothed series are features")
    series_every: int = Field(2, ge=1, description="keep every n-th grid step of the series")
    persist: Literal["auto", "always", "never"] = Field("auto", description="keep the feature cube in cluster memory between sampling and prediction")
    neighbourhood_m: list[float] = Field(default_factory=list, description="spatial context: also the local mean (and/or "
                                         "standard deviation) of every feature in windows of these sides, metres (e.g. "
                                         "[30, 50]; rounded to an odd number of pixels); seamless across tiles. Off by "
                                         "default: not better on every development set (benchmarks/bench_quality.py)")
    neighbourhood_stats: list[Literal["mean", "std"]] = Field(default_factory=lambda: ["mean"],
                                                              description="statistics of the neighbourhood windows")

    @field_validator("neighbourhood_m")
    @classmethod
    def _positive_windows(cls, v):
        if any(m <= 0 for m in v):
            raise ValueError(f"neighbourhood_m {v}: window sides must be positive metres, e.g. [30, 50]")
        return sorted(set(v))

    @field_validator("indices")
    @classmethod
    def _known_idx(cls, v):
        return _only(v, INDEX_BANDS, "indices")

    @field_validator("stats")
    @classmethod
    def _known_stats(cls, v):
        return _only(v, STAT_NAMES, "stats")


class LabelStacConfig(_Section):
    """A land-cover collection on a STAC API (e.g. ESA WorldCover on Planetary Computer)."""

    catalog: str = Field(description="STAC API URL or static catalog.json")
    collection: str = Field(description="e.g. esa-worldcover, io-lulc-annual-v02")
    asset: str | None = Field(None, description="asset key; default: map (esa-worldcover), data (io-lulc)")
    start: dt.date | None = Field(None, description="only items from this date (default: any)")
    end: dt.date | None = None
    sign: bool = Field(False, description="sign hrefs with planetary-computer")


class OtherMapConfig(_Section):
    """Another reference map, used only to measure agreement (label confidence)."""

    path: str
    legend: str | dict


class LabelsConfig(_Section):
    """The coarse map as training labels: source, legend, crosswalk, erosion, confidence, the sample (``labels:``)."""

    path: str | None = Field(None, description="coarse land-cover map: file path or URL (any GDAL raster, any CRS)")
    stac: LabelStacConfig | None = Field(None, description="or: read the map from a STAC collection")
    legend: str | dict = Field(description="legend of the map's codes: built-in name (e.g. cgls-lc100, esa-worldcover) "
                               "or a mapping {name:, classes: {code: {name:, color:}}}")
    target_legend: str | dict = Field("lcup7", description="legend of the output map (built-in name or mapping)")
    crosswalk: dict[int, int] | None = Field(None, description="{source code: target code}; 0 drops a code")
    erosion_m: float = Field(20.0, ge=0, description="negative buffer at class edges, metres (two 10 m pixels: better "
                             "than 10 m on every development set, benchmarks/bench_quality.py)")
    n_per_class: int = Field(2000, ge=10, description="training pixels per class (cap)")
    min_per_class: int = Field(50, ge=1)
    small_class_policy: Literal["warn", "drop", "error"] = "warn"
    block_m: float = Field(1000.0, gt=0, description="side of the spatial validation blocks, metres")
    validation_fraction: float = Field(0.3, ge=0, lt=1)
    seed: int = 0
    sample_chunks: int | Literal["auto", "all"] = Field(
        "auto", description="draw the sample from this many 512 px squares picked at random over the AOI (more if a "
        "rare class needs them), so gathering its features costs that many squares whatever the AOI; auto: 256 (all "
        "when there are fewer). The squares are a fixed lattice: the sample depends on the labels and labels.seed "
        "only, never on the cluster, the path or load.chunk_px")
    coarse_resolution_m: float | None = Field(None, gt=0, description="cell size of the coarse map, metres; default: read from the file")
    min_confidence: float = Field(0.0, ge=0, le=1, description="sample only pixels whose label confidence reaches this")
    confidence_weights: bool = Field(False, description="weight training samples by label confidence (benchmarks/README.md, "
                                     "quality table: above the defaults on 5 of the 7 development sets, below them on "
                                     "Flanders B and on Slovenia over 5 months, where it is worse than the coarse map: "
                                     "off by default)")
    others: list[OtherMapConfig] = Field(default_factory=list, description="other reference maps for the agreement term of the confidence")
    fractions: dict[int, str] = Field(default_factory=dict, description="cover-fraction layers of the coarse product, "
                                      "{target class code: raster path or URL of its cover in % (0–100; above: no data)}, "
                                      "e.g. CGLS-LC100's Tree/Grass/Crops-CoverFraction layers or a tree-cover density: "
                                      "the labelled class's fraction in its cell is the pixel's purity, a factor of the "
                                      "label confidence (use with confidence_weights or min_confidence)")

    @model_validator(mode="after")
    def _one_source(self) -> "LabelsConfig":
        if (self.path is None) == (self.stac is None):
            raise ValueError("give exactly one of labels.path (a raster file or URL) or labels.stac (a STAC collection)")
        return self


class TruthConfig(_Section):
    """An optional 10 m reference map the finished map (and the coarse map) is scored against (``truth:``)."""

    path: str = Field(description="the truth map; with years, {year} in the path names one map per year "
                      "(e.g. truth_10m_{year}.tif): each year is scored and the change gets its accuracy")
    legend: str | dict = Field("lcup7", description="legend of the truth map: built-in name or mapping")
    area_sample_per_class: int = Field(100, ge=2, description="reference pixels drawn at random per mapped class from the "
                                       "truth for the area estimates with 95 % confidence intervals (Olofsson et al. 2014)")


class ModelConfig(_Section):
    """The classifier and how its probabilities become the map: kind, parameters, smoothing, coarse-map prior (``model:``)."""

    path: str | None = Field(None, description="apply this saved model (model.skops of an earlier run) instead of training: "
                             "train once, map other areas or years; labels are then optional")
    kind: Literal["random_forest", "lightgbm", "fcn", "tempcnn"] = Field(
        "random_forest", description="classifier: random_forest; lightgbm (pip install 'lcup[lightgbm]'); fcn, a fully "
        "convolutional network over the feature cube that sees each pixel's neighbours; tempcnn, a per-pixel network "
        "with 1-D convolutions over the smoothed series (features.series) beside the other features (both pip install "
        "'lcup[deep]', lcup.ops.nn; neither is the default: benchmarks/README.md, the network section)")
    params: dict[str, Any] = Field(default_factory=dict, description="extra parameters passed to the classifier")
    n_estimators: int = Field(100, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(1, ge=1)
    max_features: str | float | int = Field("sqrt", description="features each split of the forest considers: sqrt, "
                                            "log2, a share in (0, 1] or a count")
    class_weight: Literal["balanced", "balanced_subsample"] | None = Field(
        "balanced", description="weight classes inversely to their training counts (better on every development set, "
        "benchmarks/bench_quality.py); null: as sampled")
    seed: int = 0
    smooth_px: int = Field(3, ge=1, le=15, description="average class probabilities over this many pixels square before "
                           "choosing the class (1: off); seamless across tiles; best on every development set "
                           "(benchmarks/bench_quality.py)")
    coarse_prior: float = Field(0.5, ge=0, le=10, description="strength of the coarse map as a prior on the class "
                                "probabilities, after smoothing: posterior ∝ p × share ** strength, share = the class's "
                                "share of the coarse map in a window of coarse_prior_cells coarse cells around the pixel "
                                "(floored at 0.05), so that where the model has little to say the coarse class stands and "
                                "the coarse map's rare classes are not wiped out; 0: the model alone. 0.5 over one cell is "
                                "never worse than the coarse map on any development set and best on average "
                                "(benchmarks/bench_quality.py); needs labels")
    coarse_prior_cells: int = Field(1, ge=1, le=15, description="side of the prior's window, in coarse cells (1: a "
                                    "cell-sized window centred on the pixel; 3: its neighbours too)")
    clean_labels: bool = Field(False, description="drop training samples flagged by confident learning (out-of-fold)")
    refine_rounds: int = Field(0, ge=0, le=5, description="iterative label refinement (self-training with coarse-cell "
                               "constraints): each round, forests that never saw a sample's block of 3 × 3 coarse cells "
                               "relabel it to another class they give at least refine_threshold, if that class occurs in "
                               "the coarse map within one cell; each round is reported. With kind tempcnn the network "
                               "itself is the one cross-fitted. 0: off (it wins on the hard demo and Slovenia, loses on "
                               "Flanders: benchmarks/bench_quality.py)")
    refine_threshold: float = Field(0.6, gt=0.5, le=1, description="probability a sample needs to be relabelled")
    segments: Literal["none", "slic", "felzenszwalb"] = Field(
        "none", description="segment-based regularisation: superpixels of the features (scikit-image, three principal "
        "components per chunk, cut with a halo so tiles stay seamless), the class probabilities averaged per segment, "
        "after smoothing and before the coarse prior. none: off (not better on every development set)")
    segment_px: int = Field(30, ge=4, le=10000, description="mean segment size, pixels")
    segment_mix: float = Field(0.5, gt=0, le=1, description="weight of the segment mean against the pixel's own probabilities")
    permutation_importance: bool = Field(False, description="also compute permutation importance on the validation blocks")
    calibrate: Literal["auto", "temperature", "none"] = Field(
        "auto", description="temperature scaling of the probabilities, fitted on the validation blocks (the log-loss-"
        "minimising temperature, kept where it lowers their expected calibration error): auto = the networks only, "
        "temperature = the forest too (p ** 1/T renormalised), none = off")
    nn_width: int = Field(32, ge=4, le=512, description="fcn: channels of the network's layers")
    nn_dilations: list[int] = Field(default_factory=lambda: [1, 2, 4], description="fcn: dilations of its 3 × 3 layers; "
                                    "a pixel's prediction reads sum(dilations) pixels each side")
    nn_epochs: int = Field(60, ge=1, le=10000, description="fcn: most training epochs (full-window batches)")
    nn_patience: int = Field(10, ge=1, description="fcn: stop when the validation blocks' loss has not improved for this "
                             "many epochs (after 10); the best epoch is kept")
    nn_aggregate_loss: float = Field(1.0, ge=0, description="fcn: weight of the coarse-cell aggregate loss (the mean "
                                     "prediction over a coarse cell must give its label a high probability) beside the "
                                     "pixel cross-entropy; 0: pixel loss only")
    nn_windows: int = Field(4, ge=1, le=4096, description="fcn: most training windows (those holding the most sampled "
                            "pixels). 4 keeps the run within 3× the forest's on 2 CPU cores (the 1024² demo: 56 s against "
                            "28 s; 16 windows: 193 s, the same accuracy; benchmarks/README.md, session 12)")
    nn_window_px: int = Field(256, ge=32, le=4096, description="fcn: side of the training windows, pixels")
    nn_encoder: Literal["none", "resnet18", "resnet34", "resnet50"] = Field(
        "none", description="fcn: none = the dilated context network (nn_width, nn_dilations); or a U-Net on this ResNet "
        "encoder (torchvision's layout), started from nn_weights")
    nn_depth: int = Field(2, ge=1, le=4, description="fcn with nn_encoder: ResNet stages used (1-4); each doubles the "
                          "stride and widens the halo a chunk is predicted with (resnet18: 2 stages read 72 px each side, "
                          "3 stages 144 px)")
    nn_weights: str | None = Field(None, description="fcn with nn_encoder: a local file of pretrained encoder weights (a "
                                   "torchvision ResNet state dict, .pt/.pth read with weights_only, or .safetensors; a "
                                   "Sentinel-2 self-supervised ResNet's too, its first layer's channels kept); nothing is "
                                   "downloaded; none: random start")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="fcn: where it trains; auto: a GPU when there is "
                                                   "one. Prediction runs on the workers' CPUs, one thread per task")

    @field_validator("max_features")
    @classmethod
    def _max_features(cls, v):
        if isinstance(v, str) and v not in ("sqrt", "log2"):
            raise ValueError(f"model.max_features {v!r} is not sqrt, log2, a share in (0, 1] or a count of features")
        if isinstance(v, float) and not 0 < v <= 1:
            raise ValueError(f"model.max_features {v} is a share of the features: give one in (0, 1], or a count")
        if isinstance(v, int) and not isinstance(v, bool) and v < 1:
            raise ValueError(f"model.max_features {v} must be at least 1 feature")
        return v


class OutputConfig(_Section):
    """Where and how the map is written: folder, tiles, Zarr/COG/STAC outputs, resume (``output:``)."""

    dir: str = Field(description="output folder")
    overwrite: bool = Field(False, description="replace existing outputs")
    resume: bool = Field(False, description="continue an interrupted run: tiles already in the Zarr store are skipped")
    zarr: bool = True
    zarr_format: Literal[2, 3] = Field(3, description="Zarr format of landcover.zarr: 3, or 2 for GDAL/QGIS (GDAL 3.10 "
                                       "cannot read Zarr v3's codecs)")
    cog: bool = Field(True, description="write landcover_class.tif (with colour table, class names in a .aux.xml and a "
                      "QGIS .qml style beside it) and landcover_confidence.tif")
    tile_px: int = Field(2048, ge=64, description="side of the tiles, each computed and written to its region; a multiple of load.chunk_px (the default is rounded down to one)")
    tiles_in_flight: int | Literal["auto"] = Field(
        "auto", description="tiles computed at once on a cluster; auto: enough to give every worker thread a chunk, plus one "
        "(1 without a cluster)")
    probabilities: Literal["none", "uint8", "float16"] = Field("uint8", description="per-class probabilities: none, percent as uint8, or float16")
    probability_cog: bool = Field(False, description="also write landcover_probability.tif: one band per class (band "
                                  "description = class name), percent as uint8, 255 = no data; needs probabilities")
    confidence: Literal["max", "margin", "entropy"] = Field("max", description="confidence layer: highest probability, top-2 margin, or 1 - normalised entropy")
    stac_item: bool = Field(True, description="write a STAC Item describing the outputs (and catalog.json with an Item per tile for a multi-tile run)")
    report: bool = Field(True, description="write report.html: maps, accuracy, ROC, importance, profiles, areas, consistency, "
                         "timings; self-contained (images embedded)")
    tile_cogs: bool = Field(True, description="multi-tile run: also write a class COG per tile (tiles/<id>/landcover_class.tif)")
    mosaic_crs: str = Field("auto", description="Sentinel-2-tiled run (aoi.grid: s2-tiles): CRS of mosaic.tif, e.g. "
                            "EPSG:3035 or EPSG:4326; auto: EPSG:3035 (ETRS89-LAEA, equal area) for an area in Europe, else "
                            "EPSG:6933 (global equal-area)")
    mosaic_resolution: float | None = Field(None, gt=0, description="pixel size of mosaic.tif, metres (in a geographic CRS: "
                                            "of latitude, 1° = 111 320 m); default: aoi.resolution")
    tile_retries: int = Field(1, ge=0, le=5, description="Sentinel-2-tiled run: times a failed tile is tried again before "
                              "it is reported and the others go on")

    @model_validator(mode="after")
    def _exclusive(self) -> "OutputConfig":
        if self.overwrite and self.resume:
            raise ValueError("output.overwrite and output.resume exclude each other")
        if self.probability_cog and self.probabilities == "none":
            raise ValueError("output.probability_cog needs the probabilities: set output.probabilities: uint8 (or float16)")
        return self


class ClusterConfig(_Section):
    """The Dask cluster a run computes on: LocalCluster, a scheduler address or Dask Gateway (``cluster:``)."""

    kind: Literal["local", "address", "gateway", "none"] = "local"
    address: str | None = Field(None, description="scheduler address (kind: address) or gateway URL (kind: gateway)")
    n_workers: int = Field(1, ge=1)
    threads_per_worker: int | None = Field(None, ge=1, description="default: all cores")
    memory_limit: str = "auto"
    gateway_auth: Literal["basic", "kerberos", "jupyterhub", "default"] = Field(
        "default", description="Dask Gateway auth; basic reads DASK_GATEWAY_USER / DASK_GATEWAY_PASSWORD from the environment")
    gateway_options: dict[str, Any] = Field(default_factory=dict, description="cluster options for the Gateway (e.g. worker_cores, worker_memory)")
    tune_malloc: bool = Field(True, description="raise glibc's mmap/trim thresholds in the workers (distributed's default makes prediction 25-40 % slower)")
    dashboard: str | None = Field(":0", description="LocalCluster dashboard address (':0' a free port, ':8787', or null for none); "
                                  "its link is logged at the start")

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, v: str) -> str:
        from dask.utils import parse_bytes  # deferred: load_config (lcup validate) stays light

        if str(v).lower() == "auto":
            return v
        try:
            n = float(v) if str(v).replace(".", "", 1).isdigit() else parse_bytes(str(v))
        except (ValueError, TypeError):
            raise ValueError(f"memory_limit {v!r} is not a size: use auto, e.g. 4GiB, 6GB, or a fraction of the machine such as 0.5") from None
        if n <= 0:
            raise ValueError(f"memory_limit {v!r} must be positive")
        return v

    @model_validator(mode="after")
    def _address(self) -> "ClusterConfig":
        if self.kind == "address":
            if not self.address or not re.fullmatch(r"(?:(?:tcp|tls|ucx|ws|wss|inproc)://)?[\w.\-\[\]:]+:\d{1,5}/?", self.address):
                raise ValueError(f"cluster.address {self.address!r} is not a scheduler address; use e.g. tcp://10.0.0.5:8786")
        if self.kind == "gateway" and not (self.address and re.match(r"https?://\S+", self.address)):
            raise ValueError(f"cluster.kind gateway needs cluster.address, the Gateway's URL (e.g. https://gateway.example.org), "
                             f"got {self.address!r}")
        return self


def _check_crs(value: str | None, key: str) -> None:
    if value is None:
        return
    from rasterio.crs import CRS  # deferred: load_config (lcup validate) stays light
    from rasterio.errors import CRSError  # deferred: load_config (lcup validate) stays light

    try:
        CRS.from_user_input(value)
    except (CRSError, ValueError) as e:
        raise ValueError(f"{key} {value!r} is not a CRS ({e}); use e.g. EPSG:4326 or EPSG:32633") from None


def _check_local(path: str | None, key: str) -> None:
    """A local path (not a URL) must exist."""
    if path and "://" not in path and not path.startswith("/vsi") and not Path(path).exists():
        raise ValueError(f"{key} {path} does not exist; fix the path (relative paths start at the pipeline file's folder)")


def fcn_context_px(model: "ModelConfig") -> int:
    """Pixels each side a pixel's prediction reads with ``model.kind: fcn`` (its receptive field, aligned)."""
    if model.nn_encoder == "none":
        return int(sum(model.nn_dilations))
    from .ops.nn import resnet_geometry  # deferred: the network module (torch itself is imported on use only)

    return resnet_geometry(model.nn_encoder, model.nn_depth)[1]


class PipelineConfig(_Section):
    """A whole pipeline, as in ``pipelines/*.yaml``."""

    name: str = Field("lcup", description="run name, used in file and item ids: letters, digits, '.', '_' and '-'")
    source: SourceConfig = Field(default_factory=SourceConfig)
    aoi: AOIConfig
    year: int | None = Field(None, ge=2015, le=2100, description="calendar year; or give start/end")
    years: list[int] | None = Field(None, description="several calendar years: a map per year on one grid, from one model "
                                    "trained on the first year (the coarse map's), then the change between them "
                                    "(<output.dir>/<year>/ and <output.dir>/change/); instead of year/start/end")
    start: dt.date | None = None
    end: dt.date | None = None
    years_smoothing: Literal["none", "flicker", "hmm"] = Field(
        "flicker", description="with years: flicker takes back a class that changes for one year and changes back (the "
        "years either side agree) unless that year's class probability exceeds theirs by e^(2 × years_change_cost); "
        "nothing else changes, so the first-to-last change is the yearly maps' (the 3-year demo: flip-backs 1.25 % → "
        "0.02 %, README 'Several years'); hmm re-decides every pixel's sequence with a hidden-Markov model whose "
        "changes cost years_change_cost (removes flicker but also weakly supported real change); none: each year on "
        "its own. The smoothed maps are in change/smoothed/, and the change analysis reads them")
    years_change_cost: float = Field(0.5, ge=0, le=20, description="years_smoothing: the cost of a change of class "
                                     "between years, nats")
    load: LoadConfig = Field(default_factory=LoadConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    labels: LabelsConfig | None = Field(None, description="the coarse map to learn from (optional with model.path)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    truth: TruthConfig | None = None
    output: OutputConfig
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", v) or ".." in v:
            raise ValueError(f"name {v!r} must be 1-100 letters, digits, '.', '_' or '-' (no '/', no '..'), "
                             "since it names output files and STAC ids; e.g. name: my-area-2024")
        return v

    @model_validator(mode="after")
    def _dates(self) -> "PipelineConfig":
        if self.years is not None:
            if self.year is not None or self.start is not None or self.end is not None:
                raise ValueError("give `years` or `year` (or start/end), not both")
            if len(self.years) < 2 or len(set(self.years)) != len(self.years) or any(not 2015 <= y <= 2100 for y in self.years):
                raise ValueError(f"years {self.years} must be two or more different calendar years from 2015 on, e.g. [2023, 2024]")
            return self
        if self.year is None and (self.start is None or self.end is None):
            raise ValueError("give either `year`, `years` or both `start` and `end`")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self

    @model_validator(mode="after")
    def _check_references(self) -> "PipelineConfig":
        """What can be known without a pixel: CRSs, files, legends, crosswalks, indices, model parameters."""
        c, t = self.load.chunk_px, self.output.tile_px
        if "tile_px" in self.output.model_fields_set and t % c:  # a tile is whole chunks: said, not rounded in silence
            lo, hi = max(c, t // c * c), (t // c + 1) * c
            raise ValueError(f"output.tile_px {t} is not a multiple of load.chunk_px {c} (a tile is whole chunks): use "
                             f"{lo}" + (f" or {hi}" if hi != lo else "") + f", or a load.chunk_px that divides {t}")
        _check_crs(self.aoi.crs, "aoi.crs")
        _check_crs(self.aoi.geometry_crs, "aoi.geometry_crs")
        if self.aoi.geometry is not None:  # read now: a missing file, a bad filter or WKT is said before any search
            from .io.vector import read_area  # deferred: load_config of a bbox stays light

            try:
                read_area(self.aoi.geometry, layer=self.aoi.layer, where=self.aoi.where, crs=self.aoi.geometry_crs)
            except LcupError as e:
                raise ValueError(str(e)) from None
        _check_crs(self.aoi.grid_crs, "aoi.grid_crs")
        if self.output.mosaic_crs != "auto":
            _check_crs(self.output.mosaic_crs, "output.mosaic_crs")
        if self.aoi.grid_crs is not None and str(self.aoi.grid_crs).lower() != "utm":
            from rasterio.crs import CRS  # deferred: load_config (lcup validate) stays light

            if CRS.from_user_input(self.aoi.grid_crs).is_geographic:
                raise ValueError(f"aoi.grid_crs {self.aoi.grid_crs} is geographic (degrees), but lcup's grid, erosion, blocks "
                                 "and halos are in metres; use a projected CRS (leave grid_crs empty for the UTM zone of "
                                 "the AOI, or e.g. EPSG:3035)")
        cat = self.source.catalog
        if PROFILES[self.source.provider].signed_urls and "planetarycomputer.microsoft.com" in cat:
            if importlib.util.find_spec("planetary_computer") is None:
                raise ValueError(f"provider {self.source.provider!r} signs its hrefs with the planetary-computer package, "
                                 'which is not installed: pip install "lcup[pc]"')
        if "://" not in cat and cat.endswith(".json"):
            _check_local(cat, "source.catalog")

            try:
                json.loads(Path(cat).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"source.catalog {cat} is not JSON ({e}); point it to a STAC catalog.json or a STAC API URL") from None
        if self.labels is None and self.model.path is None:
            raise ValueError("missing required key 'labels' (the coarse map to learn from), or give model.path to apply a "
                             "saved model")
        _check_local(self.model.path, "model.path")
        lab = self.labels or LabelsConfig(legend="lcup7", path="-")  # with model.path only: checks on defaults
        if self.labels is not None:
            _check_local(lab.path, "labels.path")
        for i, o in enumerate(lab.others):
            _check_local(o.path, f"labels.others[{i}].path")
        for code, path in lab.fractions.items():
            _check_local(path, f"labels.fractions[{code}]")
        if self.truth is not None:
            for y in self.years if self.years and "{year}" in self.truth.path else [self.year]:
                _check_local(self.truth.path.replace("{year}", str(y)), "truth.path")
            if self.year is not None and "{year}" in self.truth.path:  # one year: its own truth
                object.__setattr__(self, "truth", self.truth.model_copy(update={"path": self.truth.path.replace("{year}", str(self.year))}))
        try:
            target = get_legend(self.target_legend())
            odd = sorted(int(c) for c in lab.fractions if int(c) not in target.codes)
            if odd:
                raise ValueError(f"labels.fractions names class(es) {odd} that the target legend {target.name!r} lacks; "
                                 f"its codes: {list(target.codes)}")
            walks = [("labels", lab.legend, lab.crosswalk)] if self.labels is not None else []
            walks += [(f"labels.others[{i}]", o.legend, None) for i, o in enumerate(lab.others)]
            walks += [("truth", self.truth.legend, None)] if self.truth is not None else []
            for where, legend, custom in walks:
                get_legend(legend)
                cw = get_crosswalk(legend, target, custom)
                stray = sorted({v for v in cw.values() if v and v not in target.codes})
                if stray:
                    raise ValueError(f"{where}: the crosswalk maps to code(s) {stray}, which the target legend "
                                     f"{target.name!r} does not have (codes {target.codes}); map them to one of those, or 0 to drop")
        except LcupError as e:
            raise ValueError(str(e)) from None
        if len(target.codes) > 255:
            raise ValueError(f"target legend {target.name!r} has {len(target.codes)} classes; lcup maps at most 255")
        for name in self.features.indices:
            missing = index_bands(name, self.load.bands)[1]
            if missing:
                raise ValueError(f"features.indices: {name!r} needs band(s) {missing}; add them to load.bands or drop {name!r}")
        for name, expr in self.features.custom_indices.items():
            if name in INDEX_BANDS or name in self.load.bands:
                raise ValueError(f"features.custom_indices: {name!r} is already a built-in index or band; name it otherwise")
            missing = [b for b in formula_bands(expr) if b not in self.load.bands]
            if missing:
                raise ValueError(f"features.custom_indices: {name!r} ({expr}) needs band(s) {missing}; add them to load.bands")
        variables = list(self.load.bands) + list(self.features.indices) + list(self.features.custom_indices)
        stray = [v for v in self.features.series if v not in variables]
        if stray:
            raise ValueError(f"features.series {stray} are neither loaded bands nor computed indices ({variables}); "
                             "add them to load.bands or features.indices, or drop them from features.series")
        nb = max((metres_to_px(m, self.aoi.resolution) for m in self.features.neighbourhood_m), default=0) // 2
        seg = segment_halo_px(self.model.segment_px) if self.model.segments != "none" else 0
        if nb + seg >= self.load.chunk_px / 2:
            raise ValueError(f"features.neighbourhood_m {self.features.neighbourhood_m} and model.segment_px "
                             f"{self.model.segment_px} need a halo of {nb + seg} px around every chunk, at least half a chunk "
                             f"({self.load.chunk_px} px); use windows of a few tens of metres and segments of tens of pixels")
        r = lab.erosion_m / self.aoi.resolution
        if r >= self.load.chunk_px / 2:
            raise ValueError(f"labels.erosion_m {lab.erosion_m} m is {r:.0f} px at {self.aoi.resolution} m, at least half a "
                             f"chunk ({self.load.chunk_px} px): nothing would be left to sample; use a few tens of metres")
        if self.model.kind == "tempcnn":
            if not self.features.series:
                raise ValueError("model.kind tempcnn reads the smoothed series: set features.series (e.g. [ndvi, mndwi, ndbi])")
            if self.model.params:
                raise ValueError("model.params are passed to random_forest or lightgbm; model.kind tempcnn takes model.nn_* keys")
            if importlib.util.find_spec("torch") is None:
                raise ValueError("model.kind tempcnn needs PyTorch, which is not installed: pip install 'lcup[deep]'")
        if self.model.kind == "fcn":
            ctx = fcn_context_px(self.model)
            if ctx + nb + seg >= self.load.chunk_px / 2:
                what = (f"model.nn_dilations {self.model.nn_dilations}" if self.model.nn_encoder == "none" else
                        f"model.nn_encoder {self.model.nn_encoder} with nn_depth {self.model.nn_depth}")
                raise ValueError(f"{what} read {ctx} px around every pixel, which with the other halos is at least half "
                                 f"a chunk ({self.load.chunk_px} px); use a "
                                 + ("smaller dilations" if self.model.nn_encoder == "none" else "smaller nn_depth")
                                 + " or a larger load.chunk_px")
            if self.model.nn_weights is not None:
                if self.model.nn_encoder == "none":
                    raise ValueError("model.nn_weights are a ResNet encoder's: set model.nn_encoder (e.g. resnet18)")
                _check_local(self.model.nn_weights, "model.nn_weights")
            if self.model.params:
                raise ValueError("model.params are passed to random_forest or lightgbm; model.kind fcn takes model.nn_* keys")
            if importlib.util.find_spec("torch") is None:
                raise ValueError("model.kind fcn needs PyTorch, which is not installed: pip install 'lcup[deep]'")
        elif self.model.params:
            from .ops.model import check_params  # deferred: load_config loads scikit-learn only when model.params are set

            check_params(self.model.kind, self.model.params)
        return self

    def target_legend(self):
        """The output legend: ``labels.target_legend``, or the saved model's (``model.path``)."""
        if self.model.path is not None:
            meta = Path(self.model.path).with_suffix(Path(self.model.path).suffix + ".json")
            if meta.exists():
                return json.loads(meta.read_text())["legend"]
        return self.labels.target_legend if self.labels is not None else "lcup7"

    @property
    def period(self) -> tuple[dt.date, dt.date]:
        """The run's dates; with ``years``, the first year's (each year runs as its own pipeline)."""
        if self.start is not None and self.end is not None:
            return self.start, self.end
        year = self.year if self.year is not None else self.years[0]
        return dt.date(year, 1, 1), dt.date(year, 12, 31)

    def for_year(self, year: int, *, model_path: str | None = None) -> "PipelineConfig":
        """This pipeline for one of its ``years``: output in ``<output.dir>/<year>``, the given saved model (later
        years apply the first year's), the truth kept for the first year only (the labels' year) unless its path
        names one per year (``{year}``)."""
        d = self.model_dump(mode="json")
        d.update(year=year, years=None, start=None, end=None, name=f"{self.name}-{year}")
        d["output"]["dir"] = str(Path(self.output.dir) / str(year))
        if model_path is not None:
            d["model"]["path"] = model_path
            if d.get("truth") is None or "{year}" not in d["truth"]["path"]:
                d["truth"] = None
        if d.get("truth") is not None:
            d["truth"]["path"] = d["truth"]["path"].replace("{year}", str(year))
        return PipelineConfig.model_validate(d)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    cur: Any = model
    for part in loc:
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return None
        ann = cur.model_fields[part].annotation
        args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        cur = args[0] if args else ann
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid pipeline {source}:"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not isinstance(p, int))
        where = ".".join(map(str, e["loc"])) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = _model_at(PipelineConfig, loc[:-1])
            allowed = sorted(parent.model_fields) if parent else []
            lines.append(f"  - unknown key {where!r}; valid keys here: {allowed}")
        elif e["type"] == "missing":
            lines.append(f"  - missing required key {where!r}")
        elif e["type"] == "value_error":
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  - {msg}" if where == "(top level)" else f"  - {where}: {msg}")
        else:
            lines.append(f"  - {where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def set_dotted(d: dict, dotted: str, value: Any) -> dict:
    """Set ``d["a"]["b"] = value`` for ``dotted="a.b"``, creating sections on the way; returns ``d``."""
    *parents, last = dotted.split(".")
    cur = d
    for k in parents:
        cur = cur.setdefault(k, {})
    cur[last] = value
    return d


def _is_inline(geometry: str) -> bool:
    from .io.vector import is_inline  # deferred: load_config of a bbox stays light

    return is_inline(geometry)


def _resolve(value: str, base: Path) -> str:
    if "://" in value or Path(value).is_absolute():
        return value
    return str((base / value).resolve())


def load_config(source: str | Path | Mapping, *, base_dir: str | Path | None = None, overrides: Mapping | None = None) -> PipelineConfig:
    """Read and validate a pipeline (YAML path or mapping).

    Relative paths (``source.catalog``, ``labels.path``, ``truth.path``, ``output.dir``) are resolved
    against the YAML file's folder (or ``base_dir``).

    Raises
    ------
    ConfigError
        Naming every unknown key (with the valid ones), missing key and wrong value.
    """
    if isinstance(source, Mapping):
        raw, name, base = dict(source), "<mapping>", Path(base_dir or ".")
    else:
        p = Path(source)
        if not p.exists():
            raise ConfigError(f"pipeline file {p} does not exist")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"pipeline file {p} is not valid YAML: {e}") from None
        except ValueError as e:  # an impossible unquoted date (2023-02-30): YAML's date constructor fails
            raise ConfigError(f"pipeline file {p} holds an impossible date ({e}); write a real date such as 2023-02-28") from None
        name, base = str(p), Path(base_dir) if base_dir else p.parent
    if not isinstance(raw, dict):
        raise ConfigError(f"pipeline {name} must be a mapping of sections, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    for o in (raw.get("labels") or {}).get("others") or []:
        if isinstance(o, dict) and isinstance(o.get("path"), str):
            o["path"] = _resolve(o["path"], base)
    fr = (raw.get("labels") or {}).get("fractions")
    if isinstance(fr, dict):
        raw["labels"]["fractions"] = {k: _resolve(v, base) if isinstance(v, str) else v for k, v in fr.items()}
    aoi = raw.get("aoi")
    if isinstance(aoi, dict) and isinstance(aoi.get("geometry"), str) and not _is_inline(aoi["geometry"]):
        aoi["geometry"] = _resolve(aoi["geometry"], base)
    for section, key in (("source", "catalog"), ("labels", "path"), ("truth", "path"), ("output", "dir"), ("model", "path"),
                         ("model", "nn_weights")):
        sec = raw.get(section)
        if isinstance(sec, dict) and isinstance(sec.get(key), str):
            if section == "source" and "://" not in sec[key] and not sec[key].endswith(".json"):
                continue
            sec[key] = _resolve(sec[key], base)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_errors(e, name)) from None
