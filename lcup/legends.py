"""Land-cover legends (codes, names, colours) and crosswalks between them.

Pure data and numpy; no I/O. A :class:`Legend` maps integer codes to names and RGB colours; a
crosswalk is a ``{source_code: target_code}`` mapping applied with :func:`apply_crosswalk`, which
raises :class:`~lcup.errors.LabelError` naming any code it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .errors import LabelError

NODATA_CLASS = 0


@dataclass(frozen=True)
class Legend:
    """A land-cover legend.

    Parameters
    ----------
    name
        Short identifier, e.g. ``"esa-worldcover"``.
    classes
        ``{code: (name, "#rrggbb")}``. Code 0 is reserved for no data and must not appear.
    """

    name: str
    classes: Mapping[int, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if NODATA_CLASS in self.classes:
            raise LabelError(f"legend {self.name!r}: code 0 is reserved for no data; renumber the classes")

    @property
    def codes(self) -> list[int]:
        return sorted(self.classes)

    def names(self) -> dict[int, str]:
        return {c: n for c, (n, _) in self.classes.items()}

    def colours(self) -> dict[int, tuple[int, int, int, int]]:
        """``{code: (r, g, b, 255)}`` for GDAL colour tables."""
        out = {}
        for c, (_, hexcol) in self.classes.items():
            h = hexcol.lstrip("#")
            out[c] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "classes": {int(c): {"name": n, "color": col} for c, (n, col) in self.classes.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Legend":
        classes = {}
        for c, v in d["classes"].items():
            if isinstance(v, Mapping):
                classes[int(c)] = (str(v["name"]), str(v.get("color", "#808080")))
            else:
                classes[int(c)] = (str(v), "#808080")
        return cls(name=str(d.get("name", "custom")), classes=classes)


#: The default target legend of lcup (and of the demo truth map).
LCUP7 = Legend(
    "lcup7",
    {
        1: ("forest", "#1a7f2e"),
        2: ("grassland", "#b5e36c"),
        3: ("cropland", "#f0c341"),
        4: ("built-up", "#d7191c"),
        5: ("bare", "#b4a68f"),
        6: ("water", "#2b83ba"),
        7: ("wetland", "#6ec3c1"),
    },
)

#: Copernicus Global Land Service LC100 discrete classification (Buchhorn et al. 2020, PUM table 4).
CGLS_LC100 = Legend(
    "cgls-lc100",
    {
        111: ("closed forest, evergreen needle leaf", "#58481f"),
        112: ("closed forest, evergreen broad leaf", "#009900"),
        113: ("closed forest, deciduous needle leaf", "#70663e"),
        114: ("closed forest, deciduous broad leaf", "#00cc00"),
        115: ("closed forest, mixed", "#4e751f"),
        116: ("closed forest, unknown", "#007800"),
        121: ("open forest, evergreen needle leaf", "#666000"),
        122: ("open forest, evergreen broad leaf", "#8db400"),
        123: ("open forest, deciduous needle leaf", "#8d7400"),
        124: ("open forest, deciduous broad leaf", "#a0dc00"),
        125: ("open forest, mixed", "#929900"),
        126: ("open forest, unknown", "#648c00"),
        20: ("shrubs", "#ffbb22"),
        30: ("herbaceous vegetation", "#ffff4c"),
        40: ("cultivated and managed vegetation/agriculture", "#f096ff"),
        50: ("urban / built up", "#fa0000"),
        60: ("bare / sparse vegetation", "#b4b4b4"),
        70: ("snow and ice", "#f0f0f0"),
        80: ("permanent water bodies", "#0032c8"),
        90: ("herbaceous wetland", "#0096a0"),
        100: ("moss and lichen", "#fae6a0"),
        200: ("open sea", "#000080"),
    },
)

#: ESA WorldCover 10 m v100/v200 legend.
ESA_WORLDCOVER = Legend(
    "esa-worldcover",
    {
        10: ("tree cover", "#006400"),
        20: ("shrubland", "#ffbb22"),
        30: ("grassland", "#ffff4c"),
        40: ("cropland", "#f096ff"),
        50: ("built-up", "#fa0000"),
        60: ("bare / sparse vegetation", "#b4b4b4"),
        70: ("snow and ice", "#f0f0f0"),
        80: ("permanent water bodies", "#0064c8"),
        90: ("herbaceous wetland", "#0096a0"),
        95: ("mangroves", "#00cf75"),
        100: ("moss and lichen", "#fae6a0"),
    },
)

#: eo-learn example LULC legend (eo-learn ``example_data/lulc_classes.py``).
EOLEARN_LULC = Legend(
    "eolearn-lulc",
    {
        1: ("cultivated land", "#ffff00"),
        2: ("forest", "#054907"),
        3: ("grassland", "#ffa500"),
        4: ("shrubland", "#806000"),
        5: ("water", "#069af3"),
        6: ("wetlands", "#95d0fc"),
        7: ("tundra", "#967bb6"),
        8: ("artificial surface", "#dc143c"),
        9: ("bareland", "#a6a6a6"),
        10: ("snow and ice", "#000000"),
    },
)

#: io-lulc (Impact Observatory / Esri 10 m, 9-class version).
IO_LULC = Legend(
    "io-lulc",
    {
        1: ("water", "#419bdf"),
        2: ("trees", "#397d49"),
        4: ("flooded vegetation", "#7a87c6"),
        5: ("crops", "#e49635"),
        7: ("built area", "#c4281b"),
        8: ("bare ground", "#a59b8f"),
        9: ("snow/ice", "#a8ebff"),
        10: ("clouds", "#616161"),
        11: ("rangeland", "#e3e2c3"),
    },
)

#: CORINE Land Cover level 3 (44 classes, EEA nomenclature; 3-digit codes as in the vector product).
_CORINE_L3 = {
    111: "continuous urban fabric", 112: "discontinuous urban fabric", 121: "industrial or commercial units",
    122: "road and rail networks", 123: "port areas", 124: "airports", 131: "mineral extraction sites",
    132: "dump sites", 133: "construction sites", 141: "green urban areas", 142: "sport and leisure facilities",
    211: "non-irrigated arable land", 212: "permanently irrigated land", 213: "rice fields", 221: "vineyards",
    222: "fruit trees and berry plantations", 223: "olive groves", 231: "pastures",
    241: "annual crops associated with permanent crops", 242: "complex cultivation patterns",
    243: "agriculture with significant natural vegetation", 244: "agro-forestry areas", 311: "broad-leaved forest",
    312: "coniferous forest", 313: "mixed forest", 321: "natural grasslands", 322: "moors and heathland",
    323: "sclerophyllous vegetation", 324: "transitional woodland-shrub", 331: "beaches, dunes, sands",
    332: "bare rocks", 333: "sparsely vegetated areas", 334: "burnt areas", 335: "glaciers and perpetual snow",
    411: "inland marshes", 412: "peat bogs", 421: "salt marshes", 422: "salines", 423: "intertidal flats",
    511: "water courses", 512: "water bodies", 521: "coastal lagoons", 522: "estuaries", 523: "sea and ocean",
}
_CORINE_L2 = {
    11: "urban fabric", 12: "industrial, commercial and transport units", 13: "mine, dump and construction sites",
    14: "artificial, non-agricultural vegetated areas", 21: "arable land", 22: "permanent crops", 23: "pastures",
    24: "heterogeneous agricultural areas", 31: "forests", 32: "scrub and/or herbaceous vegetation associations",
    33: "open spaces with little or no vegetation", 41: "inland wetlands", 42: "maritime wetlands",
    51: "inland waters", 52: "marine waters",
}
_CORINE_L1 = {1: "artificial surfaces", 2: "agricultural areas", 3: "forest and semi natural areas", 4: "wetlands", 5: "water bodies"}
_L1_COL = {1: "#e6004d", 2: "#ffffa8", 3: "#80ff00", 4: "#a6a6ff", 5: "#00ccf2"}
CORINE = Legend("corine", {c: (n, _L1_COL[c // 100]) for c, n in _CORINE_L3.items()})
CORINE_L2 = Legend("corine-l2", {c: (n, _L1_COL[c // 10]) for c, n in _CORINE_L2.items()})
CORINE_L1 = Legend("corine-l1", {c: (n, _L1_COL[c]) for c, n in _CORINE_L1.items()})
#: The CLC raster product numbers the 44 classes 1..44 (GRID_CODE) in level-3 order; 48 is no data.
CORINE_GRID = Legend("corine-grid", {i + 1: (n, _L1_COL[c // 100]) for i, (c, n) in enumerate(sorted(_CORINE_L3.items()))})

#: ECOCLIMAP-SG land covers (Météo-France/CNRM, 33 covers; 300 m).
ECOCLIMAP_SG = Legend(
    "ecoclimap-sg",
    {
        1: ("sea and oceans", "#000080"), 2: ("lakes", "#0000cd"), 3: ("rivers", "#4169e1"),
        4: ("bare land", "#d2b48c"), 5: ("bare rock", "#a9a9a9"), 6: ("permanent snow", "#ffffff"),
        7: ("boreal broadleaf deciduous", "#98fb98"), 8: ("temperate broadleaf deciduous", "#32cd32"),
        9: ("tropical broadleaf deciduous", "#9acd32"), 10: ("temperate broadleaf evergreen", "#228b22"),
        11: ("tropical broadleaf evergreen", "#006400"), 12: ("boreal needleleaf evergreen", "#2e8b57"),
        13: ("temperate needleleaf evergreen", "#3cb371"), 14: ("boreal needleleaf deciduous", "#8fbc8f"),
        15: ("shrubs", "#bdb76b"), 16: ("boreal grassland", "#f0e68c"), 17: ("temperate grassland", "#eee8aa"),
        18: ("tropical grassland", "#ffd700"), 19: ("winter C3 crops", "#ffa500"), 20: ("summer C3 crops", "#ff8c00"),
        21: ("C4 crops", "#ff7f50"), 22: ("flooded trees", "#66cdaa"), 23: ("flooded grassland", "#afeeee"),
        24: ("LCZ1 compact high-rise", "#8b0000"), 25: ("LCZ2 compact midrise", "#b22222"),
        26: ("LCZ3 compact low-rise", "#dc143c"), 27: ("LCZ4 open high-rise", "#cd5c5c"),
        28: ("LCZ5 open midrise", "#f08080"), 29: ("LCZ6 open low-rise", "#fa8072"),
        30: ("LCZ7 lightweight low-rise", "#ffa07a"), 31: ("LCZ8 large low-rise", "#e9967a"),
        32: ("LCZ9 sparsely built", "#ffdab9"), 33: ("LCZ10 heavy industry", "#800000"),
    },
)

LEGENDS: dict[str, Legend] = {
    lg.name: lg
    for lg in (LCUP7, CGLS_LC100, ESA_WORLDCOVER, EOLEARN_LULC, IO_LULC, CORINE, CORINE_L2, CORINE_L1, CORINE_GRID, ECOCLIMAP_SG)
}

#: Built-in crosswalks ``(source, target) -> {source code: target code}``; 0 means "drop".
CROSSWALKS: dict[tuple[str, str], dict[int, int]] = {
    ("cgls-lc100", "lcup7"): {
        **{c: 1 for c in (111, 112, 113, 114, 115, 116, 121, 122, 123, 124, 125, 126)},
        20: 2, 30: 2, 40: 3, 50: 4, 60: 5, 70: 5, 80: 6, 90: 7, 100: 2, 200: 6,
    },
    ("esa-worldcover", "lcup7"): {10: 1, 20: 2, 30: 2, 40: 3, 50: 4, 60: 5, 70: 5, 80: 6, 90: 7, 95: 1, 100: 2},
    ("eolearn-lulc", "lcup7"): {1: 3, 2: 1, 3: 2, 4: 2, 5: 6, 6: 7, 7: 2, 8: 4, 9: 5, 10: 5},
    ("io-lulc", "lcup7"): {1: 6, 2: 1, 4: 7, 5: 3, 7: 4, 8: 5, 9: 5, 10: 0, 11: 2},
    ("corine", "corine-l1"): {c: c // 100 for c in _CORINE_L3},
    ("corine", "corine-l2"): {c: c // 10 for c in _CORINE_L3},
    ("corine-grid", "corine"): {i + 1: c for i, c in enumerate(sorted(_CORINE_L3))},
    ("corine", "lcup7"): {
        **{c: 4 for c in (111, 112, 121, 122, 123, 124, 133)}, 131: 5, 132: 5, 141: 2, 142: 2,
        **{c: 3 for c in (211, 212, 213, 221, 222, 223, 241, 242, 243)}, 231: 2, 244: 1,
        311: 1, 312: 1, 313: 1, 321: 2, 322: 2, 323: 2, 324: 1,
        331: 5, 332: 5, 333: 5, 334: 5, 335: 5,
        411: 7, 412: 7, 421: 7, 422: 5, 423: 7, 511: 6, 512: 6, 521: 6, 522: 6, 523: 6,
    },
    ("ecoclimap-sg", "lcup7"): {
        1: 6, 2: 6, 3: 6, 4: 5, 5: 5, 6: 5, **{c: 1 for c in range(7, 15)}, 15: 2, 16: 2, 17: 2, 18: 2,
        19: 3, 20: 3, 21: 3, 22: 7, 23: 7, **{c: 4 for c in range(24, 34)},
    },
}


def get_legend(name_or_dict: str | Mapping | Legend) -> Legend:
    """Return a :class:`Legend` from a built-in name, a mapping, or a Legend."""
    if isinstance(name_or_dict, Legend):
        return name_or_dict
    if isinstance(name_or_dict, Mapping):
        return Legend.from_dict(name_or_dict)
    try:
        return LEGENDS[name_or_dict]
    except KeyError:
        raise LabelError(
            f"unknown legend {name_or_dict!r}; built-in legends are {sorted(LEGENDS)}, "
            "or give a mapping {name: ..., classes: {code: {name: ..., color: ...}}}"
        ) from None


def get_crosswalk(source: str | Mapping | Legend, target: str | Mapping | Legend, custom: Mapping[int, int] | None = None) -> dict[int, int]:
    """Return the crosswalk from ``source`` to ``target`` codes.

    ``custom`` (e.g. from a pipeline YAML) extends the built-in one: its codes win, the others keep
    their built-in target. When source and target are the
    same legend, the identity mapping is returned.
    """
    if isinstance(source, Mapping):
        source = get_legend(source)
    if isinstance(target, Mapping):
        target = get_legend(target)
    s = source.name if isinstance(source, Legend) else source
    t = target.name if isinstance(target, Legend) else target
    extra = {int(k): int(v) for k, v in (custom or {}).items()}
    if s == t:
        return {**{c: c for c in get_legend(source).codes}, **extra}
    if (s, t) in CROSSWALKS:
        return {**CROSSWALKS[(s, t)], **extra}
    # chain through one intermediate legend (e.g. corine-grid -> corine -> lcup7)
    for (a, b), first in CROSSWALKS.items():
        if a == s and (b, t) in CROSSWALKS:
            second = CROSSWALKS[(b, t)]
            return {**{k: second.get(v, 0) if v else 0 for k, v in first.items()}, **extra}
    if extra:
        return extra  # no built-in one: the custom crosswalk alone
    try:
        raise KeyError((s, t))
    except KeyError:
        known = ", ".join(f"{a}->{b}" for a, b in CROSSWALKS)
        raise LabelError(
            f"no built-in crosswalk from {s!r} to {t!r} (built-in: {known}); "
            "give one under labels.crosswalk in the pipeline file"
        ) from None


def apply_crosswalk(codes: np.ndarray, crosswalk: Mapping[int, int], nodata: int | None = 0) -> np.ndarray:
    """Map source codes to target codes with a lookup table.

    Parameters
    ----------
    codes
        Integer array of source codes, any shape.
    crosswalk
        ``{source: target}``; a target of 0 marks the class as no data.
    nodata
        Source value passed through as 0 (no data); in a float map NaN and ±inf are no data too.

    Returns
    -------
    numpy.ndarray
        uint8 array of target codes (uint16 when a target code exceeds 255), same shape as ``codes``.

    Raises
    ------
    LabelError
        If ``codes`` holds values that are neither in the crosswalk nor ``nodata``.
    """
    codes = np.asarray(codes)
    blank = None
    if codes.dtype.kind == "f":  # a float class map: NaN/inf are no data; a fraction is not a class code
        blank = ~np.isfinite(codes)
        frac = ~blank & (codes != np.round(codes))
        if frac.any():
            raise LabelError(f"the label map holds values that are not whole class codes (e.g. {codes[frac].flat[0]:g}); "
                             "give a class map (integer codes), not a cover fraction or a continuous layer")
        codes = np.where(blank, 0, codes).astype(np.int64)
    present = np.unique(codes[~blank] if blank is not None else codes)
    missing = [int(c) for c in present if int(c) not in crosswalk and (nodata is None or int(c) != nodata)]
    if missing:
        codes_seen = {int(c) for c in present if nodata is None or int(c) != nodata}
        others = legends_holding(codes_seen)
        if others:  # every code is another legend's: the map was declared in the wrong legend
            raise LabelError(
                f"label codes {missing} are not in the crosswalk (known: {sorted(crosswalk)}), but every code of the "
                f"map is in the legend(s) {others}: this looks like a map in another legend; set its legend (e.g. "
                f"labels.legend: {others[0]}) instead of adding crosswalk entries")
        raise LabelError(
            f"label codes {missing} are not in the crosswalk (known: {sorted(crosswalk)}); "
            "add them under labels.crosswalk, mapping to 0 to drop them"
        )
    top = int(max(max(crosswalk), int(present.max()) if present.size else 0)) + 1
    lut = np.zeros(top, dtype=np.uint8 if max(crosswalk.values(), default=0) <= 255 else np.uint16)
    for k, v in crosswalk.items():
        if k >= 0:
            lut[k] = v
    out = lut[np.clip(codes, 0, top - 1).astype(np.int64)]
    if blank is not None:
        out[blank] = 0
    return out


def legends_holding(codes: set[int]) -> list[str]:
    """The built-in legends (:data:`LEGENDS`) whose codes include all of ``codes`` (0 aside).

    Examples
    --------
    >>> legends_holding({111, 126, 40, 200})
    ['cgls-lc100']
    """
    codes = {c for c in codes if c != 0}
    return [name for name, lg in LEGENDS.items() if codes and codes <= set(lg.classes)] if codes else []


def compact(legend: Legend) -> tuple[Legend, np.ndarray]:
    """The legend lcup computes with internally, and the table back to the legend's own codes.

    Labels, samples and models use class indices that fit uint8. A legend whose codes all fit (1–255) is
    its own internal legend. One with larger codes (CORINE's 111–523) is renumbered 1…K in code order;
    the outputs are written in its own codes, as uint16.

    Returns
    -------
    internal : Legend
    to_code : numpy.ndarray
        ``(K + 1,)`` uint8 or uint16: ``to_code[index]`` is the legend code (0 stays 0).

    Examples
    --------
    >>> internal, to_code = compact(get_legend("corine"))
    >>> internal.codes[:3], to_code[1:4].tolist()
    ([1, 2, 3], [111, 112, 121])
    """
    codes = legend.codes
    if len(codes) > 255:
        raise LabelError(f"legend {legend.name!r} has {len(codes)} classes; lcup maps at most 255")
    if max(codes, default=0) <= 255:
        return legend, np.arange(max(codes, default=0) + 1, dtype=np.uint8)
    internal = Legend(legend.name, {i + 1: legend.classes[c] for i, c in enumerate(codes)})
    return internal, np.asarray([0, *codes], np.uint16)


def to_internal(crosswalk: Mapping[int, int], target: Legend) -> dict[int, int]:
    """``crosswalk`` (source code → target code) composed with :func:`compact`'s renumbering of ``target``."""
    internal, to_code = compact(target)
    if internal is target:
        return dict(crosswalk)
    index = {int(c): i for i, c in enumerate(to_code) if i}
    return {k: index.get(int(v), 0) for k, v in crosswalk.items()}
