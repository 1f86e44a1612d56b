"""A realistic synthetic Sentinel-2 L2A year with a 10 m truth map, for demos and tests.

The scene is built in three layers:

1. **Landscape** (:func:`make_landscape`): a 10 m truth map in the :data:`~lcup.legends.LCUP7` legend
   made of Voronoi parcels (cropland with summer or winter crops, grassland), forest patches from a
   smooth random field, a meandering river and lakes fringed by wetland, urban blobs crossed by roads,
   and bare ground on the "high" part of an elevation-like field. Every pixel also carries an object
   id (its parcel), so each field has its own sowing date, spectrum and texture.
2. **Surface reflectance** (:func:`surface_reflectance`): for each date, a vegetation fraction per
   object from class phenology (crops green up and are harvested, grass is mown, forest stays green,
   water stays dark) mixes a vegetation spectrum with the class background (soil, urban, bare, water).
3. **Atmosphere** (:func:`atmosphere`): soft-edged cloud blobs drifting across the scene, their shadows
   displaced along the sun azimuth, thin cirrus on some dates, swath-edge nodata; the reflectance is
   really corrupted and an SCL band marks clouds (8/9), shadow (3) and cirrus (10), missing the thin
   cloud edges as Sen2Cor does.

:func:`write_demo` writes it all as real files: one COG per band and date (20 m bands at 20 m, DN with
the Earth Search ``sentinel-2-c1-l2a`` convention ``reflectance = DN * 1e-4 - 0.1``), the truth and a
100 m CGLS-LC100-coded coarse map with label noise as COGs, and a static STAC catalog in the Earth
Search layout. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .errors import OutputExistsError
from .io.stac_catalog import write_s2_catalog
from .io.write import write_cog_array
from .legends import CGLS_LC100, LCUP7
from .progress import bar, on_tty
from .providers import BANDS, REFLECTANCE_BANDS

# Class codes of the LCUP7 legend.
FOREST, GRASS, CROP, BUILT, BARE, WATER, WETLAND = 1, 2, 3, 4, 5, 6, 7

#: Endmember spectra, surface reflectance for bands in REFLECTANCE_BANDS order
#: (B02 B03 B04 B05 B06 B07 B08 B8A B11 B12).
VEG = np.array([0.030, 0.065, 0.035, 0.100, 0.250, 0.320, 0.360, 0.370, 0.190, 0.090], np.float32)
SOIL = np.array([0.070, 0.100, 0.130, 0.150, 0.170, 0.190, 0.210, 0.220, 0.300, 0.250], np.float32)
LITTER = SOIL * 0.55
URBAN = np.array([0.110, 0.120, 0.130, 0.140, 0.150, 0.160, 0.170, 0.175, 0.230, 0.210], np.float32)
BRIGHT = np.array([0.150, 0.190, 0.230, 0.260, 0.280, 0.290, 0.300, 0.310, 0.380, 0.330], np.float32)
WATERS = np.array([0.060, 0.055, 0.035, 0.025, 0.018, 0.014, 0.012, 0.011, 0.006, 0.004], np.float32)
CLOUD = np.array([0.450, 0.450, 0.460, 0.460, 0.470, 0.470, 0.470, 0.470, 0.380, 0.280], np.float32)

#: Which coarse (CGLS-LC100) code each LCUP7 class is written as.
TRUTH_TO_CGLS = {FOREST: 115, GRASS: 30, CROP: 40, BUILT: 50, BARE: 60, WATER: 80, WETLAND: 90}


@dataclass(frozen=True)
class SceneSpec:
    """What to generate.

    Parameters
    ----------
    size
        Scene height and width, pixels at 10 m (``(y, x)``).
    year
        Calendar year of the acquisitions.
    revisit_days
        Days between acquisitions (Sentinel-2A+B revisit: 5).
    crs_epsg, origin
        UTM CRS and upper-left corner ``(x, y)`` in metres.
    coarse_factor
        Coarse-map cell size in 10 m pixels (10 → 100 m).
    label_noise
        Fraction of coarse cells given a wrong class.
    seed
        Random seed; the same seed gives the same scene bit for bit.
    years
        Consecutive years generated from ``year`` on (one catalog); each later year changes the land
        (:func:`change_landscape`) and gets its own truth map ``truth_10m_<year>.tif``.
    difficulty
        ``"easy"`` (the demo) or ``"hard"``, a scene that tells upsampling techniques apart: small features the
        coarse map cannot hold (hedges, ponds, farm buildings), intensively mown grassland whose dips look like
        harvests, mixed pixels at 10 m (each pixel's reflectance blends 40 % of its 3 × 3 neighbourhood), and a
        coarse map with the errors of real products: cells misregistered by half a cell (edges shifted 50 m at
        100 m) and grassland written as cropland over about a third of the scene, besides ``label_noise``.
    blocksize
        Side of the COGs' internal blocks, pixels of each asset's own grid (at most the power of two holding the image): 1024 as in
        Earth Search's Sentinel-2 COGs, so that reading costs here what it costs on real data.
    """

    size: tuple[int, int] = (1024, 1024)
    year: int = 2024
    revisit_days: int = 5
    crs_epsg: int = 32633
    origin: tuple[float, float] = (500000.0, 5100000.0)
    coarse_factor: int = 10
    label_noise: float = 0.03
    seed: int = 42
    parcel_spacing_px: int = 20
    mean_cloud_cover: float = 0.4
    years: int = 1
    difficulty: str = "easy"
    blocksize: int = 1024

    def __post_init__(self):
        if self.difficulty not in ("easy", "hard"):
            raise ValueError(f"difficulty must be 'easy' or 'hard', not {self.difficulty!r}")

    @property
    def dates(self) -> list[dt.datetime]:
        start = dt.datetime(self.year, 1, 3, 10, 5)
        n = (dt.datetime(self.year, 12, 31) - start).days // self.revisit_days + 1
        return [start + dt.timedelta(days=self.revisit_days * i) for i in range(n)]


@dataclass
class Landscape:
    """Truth map ``(y, x)`` (LCUP7 codes), object ids ``(y, x)`` and per-object parameters."""

    truth: np.ndarray
    objects: np.ndarray
    params: dict[str, np.ndarray] = field(default_factory=dict)
    _spectra: tuple | None = None

    def spectra(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel background and vegetation spectra ``(band, y, x)``, computed once."""
        if self._spectra is None:
            p = self.params
            bg = np.stack([np.zeros_like(SOIL), LITTER, SOIL, SOIL, URBAN, BRIGHT, WATERS, 0.5 * WATERS + 0.5 * SOIL])
            back = np.ascontiguousarray((bg[self.truth] * p["spec_b"][self.objects]).transpose(2, 0, 1))
            veg = np.ascontiguousarray((VEG[None, None, :] * p["spec_v"][self.objects]).transpose(2, 0, 1))
            self._spectra = (back, veg)
        return self._spectra


@lru_cache(maxsize=32)
def _zoom_matrix(n_low: int, s: int, n_out: int) -> np.ndarray:
    """``(n_out, n_low)`` matrix of 1-D cubic-spline upsampling by ``s`` (``ndimage.zoom`` of unit impulses).

    Spline zoom is linear and separable, so ``zoom(low) == A @ low @ B.T``: two small matrix products
    instead of a 2-D spline evaluation (~30× faster at 1024²).
    """
    return ndimage.zoom(np.eye(n_low), (s, 1), order=3, mode="mirror")[:n_out].astype(np.float32)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with features of about ``scale_px`` pixels.

    White noise on a grid ``scale_px`` coarser, cubic-spline upsampled: cheap at any size.
    """
    s = max(int(scale_px), 1)
    ny, nx = shape[0] // s + 4, shape[1] // s + 4
    low = rng.standard_normal((ny, nx)).astype(np.float32)
    up = _zoom_matrix(ny, s, shape[0]) @ low @ _zoom_matrix(nx, s, shape[1]).T
    return ((up - up.mean()) / (up.std() + 1e-9)).astype(np.float32)


def make_landscape(spec: SceneSpec, rng: np.random.Generator) -> Landscape:
    """Build the 10 m truth map and the parcel (object) map."""
    h, w = spec.size
    yy, xx = np.mgrid[0:h, 0:w]

    # Parcels: a jittered grid of seeds, Voronoi cells as fields.
    sp = spec.parcel_spacing_px
    gy, gx = np.mgrid[sp // 2 : h + sp : sp, sp // 2 : w + sp : sp]
    seeds = np.stack([gy.ravel(), gx.ravel()], 1).astype(float)
    seeds += rng.uniform(-0.45 * sp, 0.45 * sp, seeds.shape)
    # Elongate fields along x as in many agricultural landscapes.
    tree = cKDTree(seeds * [1.0, 0.6])
    _, objects = tree.query(np.stack([yy.ravel(), xx.ravel() * 0.6], 1), workers=-1)
    objects = objects.reshape(h, w).astype(np.int32)
    n_obj = len(seeds)

    elev = smooth_field(rng, (h, w), 160)
    kind = rng.choice([CROP, GRASS], size=n_obj, p=[0.62, 0.38])
    truth = kind[objects].astype(np.uint8)

    forest = (smooth_field(rng, (h, w), 70) + 0.6 * elev) > 0.55
    truth[forest] = FOREST
    truth[elev > 1.55] = BARE

    # Urban blobs with roads.
    n_towns = max(1, int(round(h * w / 1024**2 * 3)))
    town_noise = smooth_field(rng, (h, w), 24)
    for _ in range(n_towns):
        cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        r = rng.uniform(0.05, 0.09) * min(h, w)
        d = np.hypot(yy - cy, xx - cx) / r + 0.25 * town_noise
        town = d < 1.0
        truth[town] = BUILT
        # Street grid inside the town, parks between blocks.
        parks = town & (smooth_field(rng, (h, w), 10) > 1.3)
        truth[parks] = GRASS
        street = town & (((yy - int(cy)) % 22 < 2) | ((xx - int(cx)) % 26 < 2))
        truth[street] = BUILT
    # Roads crossing the scene.
    for _ in range(max(2, n_towns)):
        if rng.random() < 0.5:
            y0 = rng.uniform(0.1, 0.9) * h
            slope = rng.uniform(-0.3, 0.3)
            road = np.abs(yy - (y0 + slope * xx + 15 * np.sin(xx / 90.0))) < 1.2
        else:
            x0 = rng.uniform(0.1, 0.9) * w
            slope = rng.uniform(-0.3, 0.3)
            road = np.abs(xx - (x0 + slope * yy + 15 * np.sin(yy / 90.0))) < 1.2
        truth[road] = BUILT

    # Lakes and a meandering river, fringed by wetland.
    lakes = smooth_field(rng, (h, w), 40) - 0.5 * elev > 2.3
    phase, amp, wl = rng.uniform(0, 2 * np.pi), rng.uniform(0.04, 0.1) * h, rng.uniform(0.3, 0.6) * w
    walk = np.cumsum(rng.normal(0, 0.6, w))
    centre = rng.uniform(0.3, 0.7) * h + amp * np.sin(2 * np.pi * xx / wl + phase) + walk[xx]
    width = 2.5 + 2.0 * (xx / w)
    river = np.abs(yy - centre) < width
    water = lakes | river
    fringe = ndimage.binary_dilation(water, iterations=4) & ~water
    wet = fringe & (smooth_field(rng, (h, w), 12) > -0.3) & (truth != BUILT)
    wet |= ndimage.binary_dilation(lakes, iterations=10) & (elev < -0.8) & ~water & (truth != BUILT)
    truth[wet] = WETLAND
    truth[water] = WATER

    # Per-object parameters: phenology timing, amplitude and spectral multipliers.
    params = {
        "sow": rng.uniform(100, 145, n_obj),  # summer crop sowing day-of-year
        "winter": rng.random(n_obj) < 0.4,  # winter crop instead of summer crop
        "harvest_w": rng.uniform(180, 205, n_obj),
        "peak": rng.uniform(0.75, 0.95, n_obj),
        "mow1": rng.uniform(140, 170, n_obj),
        "mow2": rng.uniform(200, 240, n_obj),
        "decid": rng.random(n_obj) < 0.5,
        "spec_v": rng.normal(1.0, 0.06, (n_obj, len(VEG))).astype(np.float32),
        "spec_b": rng.normal(1.0, 0.08, (n_obj, len(VEG))).astype(np.float32),
    }
    if spec.difficulty == "hard":  # its own random stream: the easy scene stays the same bit for bit
        truth = _small_features(truth, objects, np.random.default_rng([spec.seed, 40_000]))
        r2 = np.random.default_rng([spec.seed, 40_001])
        params["intensive"] = r2.random(n_obj) < 0.4  # mown four times, deep: dips like harvests
        params["mow3"] = r2.uniform(255, 275, n_obj)
        params["mow0"] = r2.uniform(115, 130, n_obj)
        params["psf"] = np.float32(0.4)
    return Landscape(truth=truth, objects=objects, params=params)


def _small_features(truth: np.ndarray, objects: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hedges (forest, one pixel wide) on a third of the field edges, ponds (water, 20–40 m) and farm buildings
    (built-up, 30–50 m) among the fields: what a 100 m map cannot hold."""
    truth = truth.copy()
    h, w = truth.shape
    fields = np.isin(truth, (GRASS, CROP))
    edge = np.zeros_like(fields)
    edge[:, 1:] |= objects[:, 1:] != objects[:, :-1]
    edge[1:, :] |= objects[1:, :] != objects[:-1, :]
    hedged = rng.random(int(objects.max()) + 1) < 0.33
    truth[edge & fields & hedged[objects]] = FOREST
    n = max(1, int(h * w / 1024**2 * 120))
    yy, xx = np.ogrid[0:h, 0:w]
    for kind, lo, hi in ((WATER, 2.0, 4.0), (BUILT, 1.5, 2.5)):
        for cy, cx, r in zip(rng.integers(0, h, n), rng.integers(0, w, n), rng.uniform(lo, hi, n)):
            y0, y1, x0, x1 = max(0, cy - 5), min(h, cy + 6), max(0, cx - 5), min(w, cx + 6)
            win = truth[y0:y1, x0:x1]
            if not np.isin(win, (GRASS, CROP)).all():
                continue
            dy, dx = np.abs(yy[y0:y1] - cy), np.abs(xx[:, x0:x1] - cx)
            shape = np.maximum(dy, dx) <= r if kind == BUILT else np.hypot(dy, dx) <= r  # square buildings, round ponds
            win[shape] = kind
    return truth


def _logistic(x: np.ndarray, x0: np.ndarray | float, k: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x - x0) / k))


def vegetation_fraction(doy: float, params: dict[str, np.ndarray]) -> np.ndarray:
    """Green vegetation fraction per (class, object) at day-of-year ``doy``: shape ``(8, n_obj)``."""
    n = len(params["sow"])
    f = np.zeros((8, n), np.float32)
    bump = np.exp(-0.5 * ((doy - 185.0) / 55.0) ** 2)
    f[FOREST] = np.where(params["decid"], 0.35 + 0.55 * _logistic(doy, 115, 8) * (1 - _logistic(doy, 295, 8)), 0.80)
    grass = 0.35 + 0.45 * np.exp(-0.5 * ((doy - 150.0) / 70.0) ** 2)
    for mow in (params["mow1"], params["mow2"]):
        since = doy - mow
        grass = grass - np.where((since >= 0) & (since < 30), 0.35 * (1 - since / 30.0), 0.0)
    if "intensive" in params:  # intensively used grassland: four deep cuts, a crop-like curve
        deep = np.zeros(n, np.float32)
        for mow in (params["mow0"], params["mow1"], params["mow2"], params["mow3"]):
            since = doy - mow
            deep = deep - np.where((since >= 0) & (since < 25), 0.55 * (1 - since / 25.0), 0.0)
        grass = np.where(params["intensive"], 0.3 + 0.5 * np.exp(-0.5 * ((doy - 170.0) / 60.0) ** 2) + deep, grass)
    f[GRASS] = np.clip(grass, 0.1, 0.9)
    summer = params["peak"] * _logistic(doy, params["sow"] + 35, 7) * (1 - _logistic(doy, params["sow"] + 115, 5))
    winter = params["peak"] * (0.25 + 0.75 * _logistic(doy, 75, 10)) * (1 - _logistic(doy, params["harvest_w"], 4))
    winter = winter + 0.25 * _logistic(doy, 300, 8)  # autumn sowing emerges
    f[CROP] = np.where(params["winter"], winter, summer) + 0.03
    f[BUILT] = 0.08 + 0.07 * bump
    f[BARE] = 0.03
    f[WATER] = 0.0
    f[WETLAND] = 0.25 + 0.45 * bump
    return np.clip(f, 0.0, 1.0)


def surface_reflectance(land: Landscape, doy: float, rng: np.random.Generator) -> np.ndarray:
    """Surface reflectance ``(band, y, x)`` float32 for one date."""
    p = land.params
    fv = vegetation_fraction(doy, p)[land.truth, land.objects][None]
    back, veg = land.spectra()
    # Wet soil after rain is darker: a small per-date factor on the background.
    wet = np.float32(rng.uniform(0.85, 1.05))
    refl = fv * veg + (1 - fv) * (back * wet)
    water = (land.truth == WATER)[None]
    refl = np.where(water, WATERS[:, None, None] * np.float32(rng.uniform(0.9, 1.4)), refl)
    if "psf" in p:  # mixed pixels: the sensor's point spread blends each pixel with its neighbours
        k = p["psf"]
        refl = (1 - k) * refl + k * ndimage.uniform_filter(refl, size=(1, 3, 3), mode="nearest")
    refl += rng.standard_normal(refl.shape, dtype=np.float32) * np.float32(0.006)
    return np.clip(refl, 0.001, 1.0).astype(np.float32)


def atmosphere(
    refl: np.ndarray, truth: np.ndarray, cover: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt reflectance with clouds, shadows, cirrus and nodata; return ``(refl, scl)``.

    ``refl`` is ``(band, y, x)``; ``scl`` is ``(y, x)`` uint8 with Sen2Cor SCL codes.
    """
    _, h, w = refl.shape
    # Drifting clouds: one large random field, a window moving with the wind.
    big = smooth_field(rng, (h, w), 90) + 0.4 * smooth_field(rng, (h, w), 25)
    if cover <= 0.0:
        alpha = np.zeros((h, w), np.float32)
    else:
        thr = np.quantile(big, 1 - cover)
        alpha = np.clip((big - thr) / 0.6, 0, 1).astype(np.float32)
    # Shadow: the cloud displaced along the (fixed) sun azimuth, darkening the ground.
    dy, dx = 18, -26
    shadow = np.zeros_like(alpha)
    shadow[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = alpha[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    shadow = np.clip(shadow - alpha, 0, 1)
    cirrus = np.zeros_like(alpha)
    if rng.random() < 0.15:
        cirrus = np.clip(0.5 * (smooth_field(rng, (h, w), 150) + 0.5), 0, 0.3).astype(np.float32)
    out = refl * (1 - 0.65 * shadow)[None]
    out = (1 - alpha)[None] * out + alpha[None] * CLOUD[:, None, None]
    out = out + cirrus[None] * (0.25 * CLOUD[:, None, None])

    # SCL: surface class, then flags; thin cloud edges (alpha < 0.25) are missed on purpose.
    ndvi = (refl[6] - refl[2]) / (refl[6] + refl[2] + 1e-6)
    scl = np.where(ndvi > 0.35, 4, 5).astype(np.uint8)
    scl[truth == WATER] = 6
    scl[shadow > 0.35] = 3
    scl[cirrus > 0.12] = 10
    scl[alpha > 0.25] = 8
    scl[alpha > 0.6] = 9
    # Sen2Cor sometimes takes a bright cloud core for bare ground: a few percent misses.
    miss = (smooth_field(rng, (h, w), 8) > 2.2) & (alpha > 0.25)
    scl[miss] = 5
    # Swath edge: on some dates a diagonal part of the tile has no data.
    if rng.random() < 0.08:
        yy, xx = np.mgrid[0:h, 0:w]
        edge = xx + 0.3 * yy > rng.uniform(0.5, 0.9) * w
        out[:, edge] = 0.0
        scl[edge] = 0
    return out.astype(np.float32), scl


def cloud_cover_series(n: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """Per-date cloud cover: some clear, most partly cloudy, some almost overcast."""
    kind = rng.choice(3, size=n, p=[0.35, 0.45, 0.20])
    cover = np.where(kind == 0, 0.0, np.where(kind == 1, rng.uniform(0.05, 0.6, n), rng.uniform(0.75, 0.99, n)))
    # Scale towards the asked mean cloud cover.
    if cover.mean() > 0:
        cover = np.clip(cover * mean / cover.mean(), 0, 0.99)
    return cover


def to_dn(refl: np.ndarray) -> np.ndarray:
    """Reflectance to uint16 DN in the ``sentinel-2-c1-l2a`` convention (``DN*1e-4 - 0.1``), 0 = nodata."""
    dn = np.clip(np.round((refl + 0.1) * 10000.0), 1, 65535).astype(np.uint16)
    dn[refl <= 0.0] = 0
    return dn


def coarse_map(truth: np.ndarray, factor: int, noise: float, rng: np.random.Generator, *, systematic: bool = False) -> np.ndarray:
    """Majority-aggregate the truth by ``factor`` and write it in CGLS-LC100 codes with label noise.

    ``systematic``: also the errors of real products — the cells aggregated from the truth shifted by half a
    cell (a misregistered map: every edge 50 m off at 100 m) and grassland written as cropland over about a
    third of the scene (a class under-mapped regionally); their random draws come after the noise's.

    Returns ``(y // factor, x // factor)`` uint8 codes.
    """
    if systematic:
        truth = np.roll(truth, shift=(factor // 2, factor // 2), axis=(0, 1))
    h, w = truth.shape[0] // factor, truth.shape[1] // factor
    blocks = truth[: h * factor, : w * factor].reshape(h, factor, w, factor).transpose(0, 2, 1, 3).reshape(h, w, -1)
    counts = np.stack([(blocks == c).sum(-1) for c in range(8)], -1)
    counts[..., 0] = -1
    major = counts.argmax(-1).astype(np.uint8)
    # Noise: some cells swapped to a class present in a neighbour (a plausible confusion), others random.
    wrong = rng.random((h, w)) < noise
    shifted = np.roll(major, shift=(rng.integers(-1, 2), rng.integers(-1, 2)), axis=(0, 1))
    alt = np.where(shifted != major, shifted, rng.integers(1, 8, (h, w)).astype(np.uint8))
    major = np.where(wrong, alt, major)
    if systematic:
        region = smooth_field(rng, (h, w), max(2.0, min(h, w) / 4)) > 0.4
        major = np.where(region & (major == GRASS), CROP, major).astype(np.uint8)
    lut = np.zeros(256, np.uint8)
    for k, v in TRUTH_TO_CGLS.items():
        lut[k] = v
    return lut[major]


def change_landscape(land: Landscape, rng: np.random.Generator, share: float = 0.25) -> Landscape:
    """The next year's land: a ``share`` of the forest parcels (objects) is cleared to cropland, as many crop or
    grass parcels become built-up, and a few crop parcels turn to grassland (land-cover change a map must catch).
    Per-object phenology stays, so the changed parcels behave like their new class."""
    truth = land.truth.copy()
    for src, dst, frac in ((FOREST, CROP, share), (CROP, BUILT, share / 4), (GRASS, BUILT, share / 4), (CROP, GRASS, share / 2)):
        objs = np.unique(land.objects[land.truth == src])
        pick = objs[rng.random(len(objs)) < frac]
        truth[np.isin(land.objects, pick) & (land.truth == src)] = dst
    return Landscape(truth=truth, objects=land.objects, params=land.params)


def generate(spec: SceneSpec | None = None):
    """Yield the scene date by date without holding the year in memory.

    Yields
    ------
    tuple
        ``("landscape", Landscape)`` at the start of each year, then ``(datetime, dn (band, y, x) uint16,
        scl (y, x) uint8)`` per date of that year.
    """
    spec = spec or SceneSpec()
    rng = np.random.default_rng(spec.seed)
    land = make_landscape(spec, rng)
    for k in range(spec.years):
        year_spec = dataclasses.replace(spec, year=spec.year + k)
        if k:
            land = change_landscape(land, np.random.default_rng([spec.seed, 20_000, k]))
        yield "landscape", land
        dates = year_spec.dates
        covers = cloud_cover_series(len(dates), spec.mean_cloud_cover, rng if k == 0 else np.random.default_rng([spec.seed, 30_000, k]))
        for i, d in enumerate(dates):
            r = np.random.default_rng([spec.seed, i] if k == 0 else [spec.seed, k, i])  # year 1 as before: the same demo
            refl = surface_reflectance(land, d.timetuple().tm_yday, r)
            refl, scl = atmosphere(refl, land.truth, float(covers[i]), r)
            yield d, to_dn(refl), scl


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over ``f × f`` blocks of the last two axes (strided sums: no slow reshaped reduction)."""
    h, w = a.shape[-2] // f, a.shape[-1] // f
    acc = np.zeros(a.shape[:-2] + (h, w), np.float32)
    for dy in range(f):
        for dx in range(f):
            acc += a[..., dy : h * f : f, dx : w * f : f]
    return acc / np.float32(f * f)


def _write_assets(pool, futures: list, folder: Path, dn: np.ndarray, scl: np.ndarray, corner: tuple[float, float],
                  epsg: int, blocksize: int) -> dict:
    """One date's COGs of an item in ``folder``, written by ``pool`` (their futures appended to ``futures``): each
    band at its own resolution (block means of the 10 m DN, no data where any 10 m pixel has none) and SCL at 20 m,
    upper-left ``corner``; the assets as :func:`lcup.io.stac_catalog.write_s2_catalog` takes them."""
    x0, y0 = corner
    assets = {}
    for i, band in enumerate(REFLECTANCE_BANDS):
        res = BANDS[band][2]
        f = res // 10
        arr = dn[i] if f == 1 else np.where(
            _block_mean((dn[i] == 0).astype(np.float32), f) > 0, 0, np.round(_block_mean(dn[i].astype(np.float32), f))
        ).astype(np.uint16)
        tr = (float(res), 0.0, x0, 0.0, -float(res), y0)
        path = folder / f"{BANDS[band][0]}.tif"
        futures.append(pool.submit(write_cog_array, path, arr, tr, epsg, 0, blocksize=blocksize))
        assets[band] = (path, arr.shape, tr, res)
    scl20 = scl[::2, ::2].copy()
    tr20 = (20.0, 0.0, x0, 0.0, -20.0, y0)
    futures.append(pool.submit(write_cog_array, folder / "SCL.tif", scl20, tr20, epsg, 0, blocksize=blocksize))
    assets["scl"] = (folder / "SCL.tif", scl20.shape, tr20, 20)
    return assets


def write_demo(out_dir: str | Path, spec: SceneSpec | None = None, *, overwrite: bool = False, progress: bool = True) -> Path:
    """Generate the demo scene and write COGs, truth, coarse map and a static STAC catalog.

    Parameters
    ----------
    out_dir
        Folder to write into (created).
    spec
        What to generate; defaults to :class:`SceneSpec` (1024×1024 px, ~73 dates).
    overwrite
        Replace an existing catalog in ``out_dir``.
    progress
        Print one line per month generated.

    Returns
    -------
    pathlib.Path
        Path of ``catalog.json``.

    Examples
    --------
    >>> from lcup.synthetic import SceneSpec, write_demo
    >>> cat = write_demo("/tmp/lcup-demo", SceneSpec(size=(128, 128), revisit_days=30), overwrite=True, progress=False)
    >>> cat.name
    'catalog.json'
    """
    spec = spec or SceneSpec()
    out = Path(out_dir).resolve()
    if (out / "catalog.json").exists() and not overwrite:
        raise OutputExistsError(f"{out / 'catalog.json'} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    out.mkdir(parents=True, exist_ok=True)
    x0, y0 = spec.origin
    transform10 = (10.0, 0.0, x0, 0.0, -10.0, y0)
    gen = generate(spec)
    _, land = next(gen)
    write_cog_array(out / "truth_10m.tif", land.truth, transform10, spec.crs_epsg, nodata=0, legend=LCUP7)
    year = spec.year
    if spec.years > 1:
        write_cog_array(out / f"truth_10m_{year}.tif", land.truth, transform10, spec.crs_epsg, nodata=0, legend=LCUP7)
    cf = spec.coarse_factor
    coarse = coarse_map(land.truth, cf, spec.label_noise, np.random.default_rng([spec.seed, 10_000]),
                        systematic=spec.difficulty == "hard")
    tc = (10.0 * cf, 0.0, x0, 0.0, -10.0 * cf, y0)
    write_cog_array(out / "coarse_cgls_100m.tif", coarse, tc, spec.crs_epsg, nodata=0, legend=CGLS_LC100)

    records = []
    pool = ThreadPoolExecutor(2)
    futures = []
    month = 0
    n_dates, tty = sum(len(dataclasses.replace(spec, year=spec.year + k).dates) for k in range(spec.years)), on_tty()
    for item in gen:
        if item[0] == "landscape":  # a later year's land: its own truth map
            year += 1
            write_cog_array(out / f"truth_10m_{year}.tif", item[1].truth, transform10, spec.crs_epsg, nodata=0, legend=LCUP7)
            continue
        d, dn, scl = item
        stem = f"S2X_DEMO_{d:%Y%m%d}"
        folder = out / "items" / stem
        folder.mkdir(parents=True, exist_ok=True)
        assets = _write_assets(pool, futures, folder, dn, scl, (x0, y0), spec.crs_epsg, spec.blocksize)
        valid = np.isin(scl, (4, 5, 6)).mean()
        records.append({"id": stem, "datetime": d, "assets": assets, "cloud_cover": float(100 * (1 - valid))})
        if progress and tty:
            bar(len(records), n_dates, "generating dates")
        elif progress and d.month != month:
            month = d.month
            print(f"  generating {d:%Y-%m} ...", flush=True)
    for fu in futures:
        fu.result()
    pool.shutdown()
    h, w = spec.size
    bbox_utm = (x0, y0 - 10.0 * h, x0 + 10.0 * w, y0)
    return write_s2_catalog(out, records, spec.crs_epsg, bbox_utm, truth="truth_10m.tif", coarse="coarse_cgls_100m.tif")


def _tile_grid(tile, world_lonlat, res: float = 10.0) -> tuple[tuple[float, float, float, float, float, float], tuple[int, int]]:
    """The part of ``tile``'s own grid covering ``world_lonlat``: transform and shape at ``res`` m, its edges on the
    tile's 60 m lattice (so its 10 m and 20 m pixels are the tile's own)."""
    from .io.vector import to_crs

    w, s_, e, n = to_crs(world_lonlat, "EPSG:4326", tile.crs).bounds
    ox, oy = tile.origin
    x0 = ox + np.floor((w - ox) / 60.0) * 60.0
    x1 = ox + np.ceil((e - ox) / 60.0) * 60.0
    y1 = oy - np.floor((oy - n) / 60.0) * 60.0
    y0 = oy - np.ceil((oy - s_) / 60.0) * 60.0
    return (res, 0.0, float(x0), 0.0, -res, float(y1)), (int(round((y1 - y0) / res)), int(round((x1 - x0) / res)))


def write_two_zone_demo(out_dir: str | Path, spec: SceneSpec | None = None, *, lon: float = 12.0, lat: float = 46.45,
                        overwrite: bool = False, progress: bool = True) -> Path:
    """A scene across a UTM zone boundary, as real catalogs hold one: the land is generated once on an EPSG:3035
    grid centred on ``lon``/``lat`` (default: 12° E, the boundary of zones 32 and 33), and each Sentinel-2 tile
    meeting it gets its own items on its own UTM grid (the same acquisitions, clouds and all, resampled to the
    tile's pixels). The truth and the coarse map are in EPSG:3035; ``area.geojson`` is a polygon across the
    boundary. Returns the path of ``catalog.json`` (:func:`write_sites_demo` with one site).

    Examples
    --------
    >>> cat = write_two_zone_demo("/tmp/lcup-2z", SceneSpec(size=(96, 96), revisit_days=60), overwrite=True,
    ...                           progress=False)  # doctest: +SKIP
    """
    return write_sites_demo(out_dir, spec or SceneSpec(size=(400, 400), revisit_days=10), [(lon, lat)],
                            overwrite=overwrite, progress=progress)


def write_sites_demo(out_dir: str | Path, spec: SceneSpec, sites: list[tuple[float, float]], *, polygon: str = "hexagon",
                     overwrite: bool = False, progress: bool = True) -> Path:
    """Scenes at several places of the Sentinel-2 grid, in one catalog: at each site (``(lon, lat)``) a land of
    ``spec.size`` pixels is generated on an EPSG:3035 grid (seed ``spec.seed + k``), and every Sentinel-2 tile
    meeting a site gets one item per date on its own UTM grid, covering the sites it meets (the same acquisitions,
    resampled to the tile's pixels). Truth and coarse map: one EPSG:3035 COG per site (``truth_10m.tif`` and
    ``coarse_cgls_100m.tif`` themselves for one site, else GDAL VRTs of them). ``area.geojson``: per site a hexagon
    inside it (``polygon: "hexagon"``) or its whole square (``"square"``), one feature each (``NAME``: ``site<k>``).
    Returns the path of ``catalog.json``.
    """
    import json

    import shapely
    from pyproj import Transformer

    from .io.vector import to_crs
    from .io.write import write_vrt
    from .ops.s2grid import tiles_covering

    out = Path(out_dir).resolve()
    if (out / "catalog.json").exists() and not overwrite:
        raise OutputExistsError(f"{out / 'catalog.json'} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    out.mkdir(parents=True, exist_ok=True)
    h, w = spec.size
    cf = spec.coarse_factor
    step = 10.0 * cf  # site grids on a common 100 m lattice: their coarse cells line up in one VRT
    site_specs, worlds, truths, coarses, features = [], [], [], [], []
    for k, (lon, lat) in enumerate(sites):
        cx, cy = to_crs(shapely.Point(lon, lat), "EPSG:4326", "EPSG:3035").coords[0]
        x0, y0 = np.round((cx - 5.0 * w) / step) * step, np.round((cy + 5.0 * h) / step) * step
        sp = dataclasses.replace(spec, crs_epsg=3035, origin=(float(x0), float(y0)), seed=spec.seed + k)
        site_specs.append(sp)
        worlds.append(to_crs(shapely.segmentize(shapely.box(x0, y0 - 10.0 * h, x0 + 10.0 * w, y0), 200.0), "EPSG:3035", "EPSG:4326"))
        if polygon == "hexagon":  # a polygon inside the site, not its rectangle
            fx = np.array([0.08, 0.55, 0.93, 0.85, 0.40, 0.12])
            fy = np.array([0.15, 0.06, 0.30, 0.88, 0.94, 0.62])
        else:
            fx, fy = np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0, 1.0])
        poly = to_crs(shapely.Polygon(np.c_[x0 + 10.0 * w * fx, y0 - 10.0 * h * fy]), "EPSG:3035", "EPSG:4326")
        features.append({"type": "Feature", "properties": {"NAME": f"site{k}"}, "geometry": shapely.geometry.mapping(poly)})
    (out / "area.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    tiles = tiles_covering(shapely.union_all(worlds))
    grids = {}  # per tile: its grid over the sites it meets, and per site the world pixel of each tile pixel
    for t in tiles:
        mine = [k for k, wl in enumerate(worlds) if t.lonlat_polygon().intersects(wl)]
        tr, (th, tw) = _tile_grid(t, shapely.union_all([worlds[k] for k in mine]))
        xs = tr[2] + 10.0 * (np.arange(tw) + 0.5)
        ys = tr[5] - 10.0 * (np.arange(th) + 0.5)
        gx, gy = np.meshgrid(xs, ys)
        px, py = Transformer.from_crs(t.crs, "EPSG:3035", always_xy=True).transform(gx, gy)
        idx = []
        for k in mine:
            x0, y0 = site_specs[k].origin
            col = np.floor((px - x0) / 10.0).astype(np.int64)
            row = np.floor((y0 - py) / 10.0).astype(np.int64)
            ok = (row >= 0) & (row < h) & (col >= 0) & (col < w)
            idx.append((k, np.where(ok, row, 0), np.where(ok, col, 0), ok))
        grids[t.id] = (t, tr, (th, tw), idx)
    gens = [generate(sp) for sp in site_specs]
    for k, (g, sp) in enumerate(zip(gens, site_specs)):
        _, land = next(g)
        x0, y0 = sp.origin
        name = "" if len(sites) == 1 else f"_site{k}"
        write_cog_array(out / f"truth_10m{name}.tif", land.truth, (10.0, 0.0, x0, 0.0, -10.0, y0), 3035, nodata=0, legend=LCUP7)
        coarse = coarse_map(land.truth, cf, spec.label_noise, np.random.default_rng([sp.seed, 10_000]))
        write_cog_array(out / f"coarse_cgls_100m{name}.tif", coarse, (step, 0.0, x0, 0.0, -step, y0), 3035, nodata=0,
                        legend=CGLS_LC100)
        truths.append(out / f"truth_10m{name}.tif")
        coarses.append(out / f"coarse_cgls_100m{name}.tif")
    truth, coarse = "truth_10m.tif", "coarse_cgls_100m.tif"
    if len(sites) > 1:
        write_vrt(truths, out / "truth_10m.vrt")
        write_vrt(coarses, out / "coarse_cgls_100m.vrt")
        truth, coarse = "truth_10m.vrt", "coarse_cgls_100m.vrt"
    records = []
    with ThreadPoolExecutor(2) as pool:
        futures = []
        for dated in zip(*gens):
            if dated[0][0] == "landscape":
                continue
            d = dated[0][0]
            for tid, (t, tr, (th, tw), idx) in grids.items():
                stem = f"S2X_DEMO_{tid}_{d:%Y%m%d}"
                folder = out / "items" / stem
                folder.mkdir(parents=True, exist_ok=True)
                dn_t = np.zeros((len(REFLECTANCE_BANDS), th, tw), np.uint16)
                scl_t = np.zeros((th, tw), np.uint8)
                seen = np.zeros((th, tw), bool)
                for k, row, col, ok in idx:
                    _, dn, scl = dated[k]
                    dn_t = np.where(ok[None], dn[:, row, col], dn_t)
                    scl_t = np.where(ok, scl[row, col], scl_t)
                    seen |= ok
                assets = _write_assets(pool, futures, folder, dn_t, scl_t, (tr[2], tr[5]), t.epsg, spec.blocksize)
                valid = np.isin(scl_t[seen], (4, 5, 6)).mean()
                records.append({"id": stem, "datetime": d, "assets": assets, "cloud_cover": float(100 * (1 - valid)),
                                "epsg": t.epsg, "bbox": (tr[2], tr[5] - 10.0 * th, tr[2] + 10.0 * tw, tr[5]),
                                "properties": {"grid:code": f"MGRS-{tid}", "mgrs:utm_zone": t.zone,
                                               "mgrs:latitude_band": tid[2], "mgrs:grid_square": tid[3:]}})
            if progress and d.day <= spec.revisit_days:
                print(f"  generating {d:%Y-%m} ...", flush=True)
        for fu in futures:
            fu.result()
    return write_s2_catalog(out, records, tiles[0].epsg, records[0]["bbox"], truth=truth, coarse=coarse)
