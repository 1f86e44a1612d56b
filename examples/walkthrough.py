# %% [markdown]
# # lcup, stage by stage
#
# The demo year, walked through with lcup's public stages: find the items of a window, load a lazy cube, look
# at NDVI through the year per coarse class, build features, turn the coarse map into labels, sample, train,
# predict, write and plot. The same functions make up `lcup run`.
#
# A notebook in the "percent" format: open it with Jupyter (jupytext) or VS Code, or run it as a script:
# `python examples/walkthrough.py [DEMO_DATA_DIR] [OUTPUT_DIR]` (the demo scene is generated when missing).

# %%
import sys
import warnings
from pathlib import Path

import numpy as np

import lcup
from lcup.legends import get_legend
from lcup.synthetic import SceneSpec

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("demo-data")
OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("walkthrough-output")
if not (DATA / "catalog.json").exists():
    lcup.write_demo(DATA, SceneSpec(size=(256, 256)))
warnings.simplefilter("ignore", lcup.errors.LowCoverageWarning)

# %% [markdown]
# ## Search and load a window
# `grid` makes the 10 m output grid of a bounding box; `search` finds the items meeting it; `load` gives a lazy,
# Dask-backed `xarray.Dataset` of DN bands and SCL, with each date's scale/offset as coordinates along `time`.

# %%
import pystac  # noqa: E402

catalog = pystac.Catalog.from_file(str(DATA / "catalog.json"))
first = next(catalog.get_items(recursive=True))
west, south, east, north = first.bbox
gb = lcup.grid([west, south, east, north])
items = lcup.search(str(DATA / "catalog.json"), gb, "2024-01-01", "2024-12-31")
cube = lcup.load(items, gb, load={"chunk_px": 128})
print(f"{len(items)} items, cube {dict(cube.sizes)}")

# %% [markdown]
# ## NDVI through the year, per coarse class
# Reflectance is `DN × scale + offset` (per date); clouds are masked with SCL.

# %%
labels_cfg = {"path": str(DATA / "coarse_cgls_100m.tif"), "legend": "cgls-lc100", "erosion_m": 20, "n_per_class": 800,
              "block_m": 500}
lab = lcup.labels(gb, labels_cfg, chunk_px=128)
legend = get_legend("lcup7")
clear = ~cube["scl"].isin([0, 1, 3, 8, 9, 10])
red = (cube["red"] * cube["scale_red"] + cube["offset_red"]).where(clear & (cube["red"] > 0))
nir = (cube["nir"] * cube["scale_nir"] + cube["offset_nir"]).where(clear & (cube["nir"] > 0))
ndvi = ((nir - red) / (nir + red)).compute()
coarse = lab["label"].values
profiles = {legend.names()[c]: ndvi.values[:, coarse == c].mean(axis=1) if (coarse == c).any() else None for c in legend.codes}
for name, p in profiles.items():
    if p is not None:
        print(f"{name:>10}: NDVI p10–p90 through the year {np.nanpercentile(p, 10):.2f}–{np.nanpercentile(p, 90):.2f}")

# %% [markdown]
# ## Features, sample, train, predict

# %%
period = ("2024-01-01", "2024-12-31")
dates, info = lcup.scene_filter(items, gb, clean={"min_valid_fraction": 0.05})
feats = lcup.features(cube, period, clean={"dilation_m": 20}, dates=dates)
s = lcup.sample(lab, labels_cfg)
X = feats.data.vindex[s.iy, s.ix].compute()
clf, figures = lcup.train(X, s, names=list(feats.feature.values), legend=legend, model={"n_estimators": 40})
print(f"{info['dates_kept']} of {info['dates_found']} dates kept; validation OA {figures['validation']['overall_accuracy']:.3f}")
out = lcup.predict(clf, feats, legend=legend, geobox=gb)
paths = lcup.write(out, OUT, legend=legend, geobox=gb, overwrite=True)
print("written:", {k: str(v) for k, v in paths.items()})

# %% [markdown]
# ## Plot the map and the validation matrix in the legend's colours

# %%
import matplotlib  # noqa: E402 - installed with lcup (the run's report draws with it)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, axes = plt.subplots(1, 3, figsize=(17, 5))
lcup.plot.class_map(coarse, legend, ax=axes[0], title="coarse map (labels)")
lcup.plot.class_map(out["class"].values, legend, ax=axes[1], title="lcup 10 m map")
lcup.plot.confusion_matrix(figures["validation"], ax=axes[2])
fig.tight_layout()
fig.savefig(OUT / "walkthrough.png", dpi=80)
print("figure:", OUT / "walkthrough.png")
