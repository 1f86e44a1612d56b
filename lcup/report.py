"""``report.html``: a run's figures as one self-contained page (images embedded), readable offline.

Built from what the run already wrote — ``summary.json`` figures — plus two small quicklook arrays (the 10 m
map and the coarse map, decimated). matplotlib draws every figure (``lcup.plot``); nothing is fetched when the
page opens.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np

from .legends import Legend
from .plot import class_map as show
from .plot import confusion_matrix

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.figs{display:flex;flex-wrap:wrap;gap:1em}
img{max-width:100%;height:auto}.note{color:#555;font-size:.9em}.bad{color:#b00}"""


def _png(fig) -> str:
    """``<img>`` with ``fig`` as an embedded PNG; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _f(v, fmt: str = ".3f") -> str:
    """``v`` formatted, or "–" for an undefined figure (null in summary.json)."""
    return "–" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _maps(class_map, coarse_map, legend: Legend, map_title: str = "10 m map") -> str:
    panels = [(a, t) for a, t in ((class_map, map_title), (coarse_map, "coarse map (on the 10 m grid)")) if a is not None]
    if not panels:
        return ""
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5.5), squeeze=False)
    for ax, (a, t) in zip(axes[0], panels):
        show(a, legend, ax=ax, title=t, legend_loc="upper left")
    fig.subplots_adjust(wspace=0.55)  # room for the first panel's key
    return _png(fig)


def _accuracy(f: Mapping) -> str:
    reports = [(t, r) for t, r in (("validation blocks (coarse labels)", f.get("validation")),
                                   ("10 m map vs truth", f.get("truth", {}).get("prediction_10m")),
                                   ("coarse map vs truth", f.get("truth", {}).get("coarse_map_upsampled")))
               if r and "confusion_matrix" in r]
    if not reports:
        return "<p class=note>No accuracy figures: the run had neither validation blocks nor a truth map.</p>"
    rows = [[t, r["n"] if "n" in r else "", r["overall_accuracy"], r["kappa"]] for t, r in reports]
    out = _table(["against", "samples", "overall accuracy", "kappa"], rows) + _refinement(f)
    figs = []
    for t, r in reports:
        k = len(r["classes"])
        fig, ax = plt.subplots(figsize=(1.5 + 0.55 * (k + 1), 1.2 + 0.5 * k))
        confusion_matrix(r, ax=ax, title=f"{t}\nOA {_f(r['overall_accuracy'])}, kappa {_f(r['kappa'])} (rows normalised)")
        figs.append(_png(fig))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / len(reports)
    first = reports[0][1]
    names = [first["per_class"][c]["name"] for c in first["classes"]]
    for i, (t, r) in enumerate(reports):
        f1 = [r["per_class"].get(c, {}).get("f1") for c in first["classes"]]
        f1 = [np.nan if v is None else v for v in f1]  # undefined F1 (class never predicted nor present): null in JSON
        ax.bar(np.arange(len(names)) + i * width, f1, width, label=t)
    ax.set_xticks(np.arange(len(names)) + width * (len(reports) - 1) / 2, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, not on them
    figs.append(_png(fig))
    return out + _missing_classes(f) + f"<div class=figs>{''.join(figs)}</div>" + _calibration(f)


def _missing_classes(f: Mapping) -> str:
    missing = f.get("validation", {}).get("classes_missing")
    if not missing:
        return ""
    return (f"<p class=note>Classes without a validation sample: {', '.join(str(c) for c in missing)}. The spatial split "
            "keeps a rare class's blocks in training so that it can be learnt; its accuracy there is unmeasured (score "
            "against a truth map or reference points for it).</p>")


def _calibration(f: Mapping) -> str:
    """Reliability diagram and expected calibration error of the top-class probability on the validation blocks."""
    cal = f.get("validation", {}).get("calibration")
    if not cal or not cal.get("bins"):
        return ""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
    ax.plot([b["confidence"] for b in cal["bins"]], [b["accuracy"] for b in cal["bins"]], "o-", color="#4a7bb7")
    ax.set_xlabel("top-class probability (bin mean)")
    ax.set_ylabel("share right (coarse labels)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    return (f"<h2>Calibration</h2><p>Expected calibration error on the validation blocks: <b>{_f(cal['ece'])}</b> over "
            f"{cal['n']} samples (against the coarse labels; below the diagonal: over-confident).</p>" + _png(fig))


def _refinement(f: Mapping) -> str:
    ref = f.get("refinement")
    if not ref or not ref.get("rounds"):
        return ""
    rows = [[k, r["relabelled"], ", ".join(f"{n} to {c}" for c, n in r["to"].items()) or "none"]
            for k, r in enumerate(ref["rounds"], 1)]
    return ("<p>Label refinement (model.refine_rounds) changed the labels of " + str(ref.get("changed", 0)) +
            " training samples before the model was trained; the validation blocks keep the coarse labels.</p>"
            + _table(["round", "samples relabelled", "to class (code)"], rows))


def _roc(f: Mapping, legend: Legend) -> str:
    roc = f.get("validation", {}).get("roc")
    if not roc:
        return ""

    names, cols = legend.names(), legend.colours()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for c, r in roc.items():
        c = int(c)
        ax.plot(r["fpr"], r["tpr"], color=tuple(v / 255 for v in cols.get(c, (80, 80, 80, 255))[:3]),
                label=f"{names.get(c, c)} (AUC {_f(r['auc'])})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("ROC, one class against the rest (validation blocks)")
    return "<h2>ROC curves</h2>" + _png(fig)


def _importance(f: Mapping) -> str:
    imp = f.get("feature_importance_top")
    if not imp:
        return ""

    items = list(imp.items())[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4a7bb7")
    ax.set_xlabel("importance (mean decrease in impurity, normalised)")
    return "<h2>Feature importance</h2>" + _png(fig)


def _training_curve(f: Mapping) -> str:
    """A network's loss and validation accuracy (coarse labels of the validation blocks) per epoch."""
    curve = f.get("training_curve")
    if not curve:
        return ""
    ep = [r["epoch"] for r in curve]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    a.plot(ep, [r["train_loss"] for r in curve], label="training")
    if any(r["validation_loss"] is not None for r in curve):
        a.plot(ep, [r["validation_loss"] for r in curve], label="validation blocks")
        b.plot(ep, [r["validation_accuracy"] for r in curve], color="#2a8a3a")
    best = f.get("model", {}).get("best_epoch")
    for ax in (a, b):
        if best is not None:
            ax.axvline(best, color="#888", ls="--", lw=1)
        ax.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    b.set_ylabel("accuracy (coarse labels)")
    return ("<h2>Training curve</h2><p class=note>The network's weights are those of the dashed epoch: the lowest loss "
            "on the validation blocks.</p>" + _png(fig))


def _profiles(f: Mapping, legend: Legend) -> str:
    prof = f.get("profiles")
    if not prof:
        return ""

    names, cols = legend.names(), legend.colours()
    figs = []
    for var, p in prof.items():
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        x = np.array(p["dates"], dtype="datetime64[D]") if all(len(d) == 10 for d in p["dates"]) else np.arange(len(p["dates"]))
        for c, q in p["classes"].items():
            col = tuple(v / 255 for v in cols.get(int(c), (80, 80, 80, 255))[:3])
            ax.plot(x, q["p50"], color=col, label=names.get(int(c), c))
            ax.fill_between(x, q["p25"], q["p75"], color=col, alpha=0.15)
        ax.set_ylabel(var.upper())
        ax.set_title(f"{var.upper()} through the year per class (median, quartiles; training sample)", fontsize=9)
        ax.legend(fontsize=7, frameon=False, ncol=2)
        fig.autofmt_xdate()
        figs.append(_png(fig))
    return "<h2>Profiles</h2><div class=figs>" + "".join(figs) + "</div>"


def _areas(f: Mapping, legend: Legend, pixel_ha: float | None) -> str:
    names = legend.names()
    area = f.get("area")
    out = "<h2>Area</h2>"
    if area:
        rows = [[f"{c} {v['name']}", v["map_ha"], v["area_ha"], f"± {_f(v['area_ci_ha'], ',.1f')}", v["census_ha"],
                 "yes" if v["covered"] else "no", f"{_f(v['user_accuracy'])} ± {_f(v['user_accuracy_ci'])}",
                 f"{_f(v['producer_accuracy'])} ± {_f(v['producer_accuracy_ci'])}"] for c, v in area["classes"].items()]
        out += (f"<p>Stratified estimates (Olofsson et al. 2014) from a random reference sample of {area['n_per_class']} "
                f"pixels per mapped class drawn from the truth map ({area['n']} in all), 95 % confidence intervals; "
                f"area-adjusted overall accuracy {_f(area['overall_accuracy'])} ± {_f(area['overall_accuracy_ci'])}. "
                "The census column counts every truth pixel: the interval should cover it about 19 times in 20.</p>")
        out += _table(["class", "mapped ha", "estimated ha", "95 % CI", "census ha", "covered", "user's accuracy",
                       "producer's accuracy"], rows)
    elif f.get("predicted_class_px") and pixel_ha:
        px = f["predicted_class_px"]
        tot = sum(px.values())
        rows = [[f"{c} {names.get(int(c), c)}", n * pixel_ha, n / tot] for c, n in px.items()]
        out += ("<p class=note>Mapped areas (pixel counts). Areas with confidence intervals need a reference sample: "
                "<code>lcup design</code> draws one, <code>lcup area</code> estimates from it.</p>")
        out += _table(["class", "mapped ha", "share"], rows)
    else:
        return ""
    return out


def _consistency(f: Mapping) -> str:
    c = f.get("consistency")
    if not c or c.get("agreement") is None:
        return ""
    rows = [[f"{code} {v['name']}", v["coarse_share"], v["map_share"]] for code, v in c["classes"].items()]
    gone = f.get("vanished_classes") or {}
    warn = (f"<p class=bad>Classes that lost most of their coarse area: {', '.join(map(str, gone))}</p>" if gone else "")
    pr = f.get("coarse_prior")
    prior = (f" The class probabilities were weighted by the coarse map's class shares over {pr['window_px']} px around "
             f"each pixel, to the power {pr['strength']:g} (model.coarse_prior), which raises this agreement."
             if pr else " The map is the model's alone (no coarse-map prior).")
    return (f"<h2>Upsampling consistency</h2><p>The 10 m map agrees with the coarse map on "
            f"{100 * c['agreement']:.1f} % of the coarse map's labelled pixels.{prior}</p>{warn}"
            + _table(["class", "share in the coarse map", "share in the 10 m map"], rows))


def _timings(summary: Mapping) -> str:
    t = summary.get("timings") or {}
    if not t:
        return ""
    cores = (summary.get("figures") or {}).get("cores_used") or {}  # CPU of the run's processes / wall, per stage
    rows = [[k, v, v / t["total"] if t.get("total") else "", cores.get(k)] for k, v in t.items() if k != "total"]
    rows.append(["total", t.get("total", ""), 1.0, cores.get("total")])
    return "<h2>Timings</h2>" + _table(["stage", "seconds", "share", "cores used"], rows)


def _change(change: Mapping | None) -> str:
    if not change:
        return ""
    out = "<h2>Change</h2>"
    for p in change["pairs"]:
        h = p["hectares"]
        rows = [[f"{c} {v['name']}", v["from"], v["to"], v["gain"], v["loss"], v["net"]] for c, v in h["classes"].items() if v["from"] or v["to"]]
        out += (f"<h3>{html.escape(p['from'])} → {html.escape(p['to'])}</h3><p>{h['changed']:,.1f} ha of {h['total']:,.1f} ha "
                f"changed ({100 * (h['share_changed'] or 0):.2f} %).</p>")
        out += _table(["class", f"{p['from']} ha", f"{p['to']} ha", "gain ha", "loss ha", "net ha"], rows)
        m = p.get("matrix_hectares")
        if m is not None:  # the transition matrix (rows: from, columns: to; no data left out), classes present only
            m = np.asarray(m)[1:, 1:]
            codes = list(h["classes"])
            keep = [i for i in range(len(codes)) if m[i].sum() or m[:, i].sum()]
            names = [h["classes"][codes[i]]["name"] for i in keep]
            out += "<p>Transitions, ha (rows: from, columns: to)</p>" + _table(
                [f"{p['from']} \\ {p['to']}", *names], [[names[a], *[float(m[i, j]) for j in keep]] for a, i in enumerate(keep)])
    if change.get("temporal_consistency"):
        out += f"<p>Pixels that change and change back: {100 * (change['temporal_consistency']['flip_back_share'] or 0):.2f} %.</p>"
    if change.get("sankey") and Path(change["sankey"]).exists():
        out += f'<img alt="" src="data:image/png;base64,{base64.b64encode(Path(change["sankey"]).read_bytes()).decode()}">'
    return out


def _int_keys(obj):
    """``obj`` with digit-string dict keys back to ints (class codes come back from JSON as strings)."""
    if isinstance(obj, Mapping):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: _int_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_int_keys(v) for v in obj]
    return obj


def _audit(audit: np.ndarray | None, f: Mapping) -> str:
    """The coarse-map audit: per coarse cell, the share of its pixels the map confidently gives another class."""
    if audit is None:
        return ""
    a = f.get("coarse_audit", {})
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    im = ax.imshow(np.ma.masked_equal(audit, 255), cmap="magma_r", vmin=0, vmax=100, interpolation="nearest")
    fig.colorbar(im, ax=ax, label=f"% of the cell's pixels mapped as another class (≥ {a.get('min_confidence', 60)} % confidence)")
    ax.set_title("where the coarse map is wrong (coarse_audit.tif)")
    ax.set_xticks([])
    ax.set_yticks([])
    note = (f"<p class=note>{a.get('cells_over_half', 0):,} of {a.get('cells', 0):,} coarse cells have more than half their "
            "pixels mapped as another class; band 2 of coarse_audit.tif gives the class most of them are mapped as.</p>")
    return "<h2>Where the coarse map is wrong</h2>" + _png(fig) + note


def write_report(path: str | Path, summary: Mapping, legend: Legend, *, class_map: np.ndarray | None = None,
                 coarse_map: np.ndarray | None = None, pixel_ha: float | None = None, change: Mapping | None = None,
                 map_title: str = "10 m map", audit: np.ndarray | None = None) -> Path:
    """Write ``report.html``: quicklooks of the map and the coarse map, accuracy (tables, confusion matrices as heat
    maps, F1 per class, ROC curves), feature importance, NDVI/SWIR-index profiles per class, areas (with 95 %
    confidence intervals where a reference exists), the upsampling consistency, timings per stage, and, for several
    years, the change tables and the Sankey diagram. One file, images embedded: it opens offline.

    Parameters
    ----------
    summary
        The run's ``summary.json`` (as a mapping).
    class_map, coarse_map
        ``(y, x)`` legend codes, decimated for display (a few hundred pixels a side is plenty).
    pixel_ha
        Area of one pixel of the map, hectares (for mapped areas).
    change
        What :func:`lcup.stages.change.change` returned, for the change section.
    audit
        ``(y, x)`` band 1 of ``coarse_audit.tif`` (% per coarse cell, 255 = none), for its section.

    Examples
    --------
    >>> write_report("out/report.html", json.load(open("out/summary.json")), get_legend("lcup7"))  # doctest: +SKIP
    """
    summary = _int_keys(summary)
    f = summary.get("figures", {})
    title = f"lcup report — {summary.get('name', '')}"
    grid = f.get("grid", {})
    facts = [["status", summary.get("status", "")], ["grid", f"{grid.get('crs', '')} {grid.get('shape', '')} at {grid.get('resolution', '')} m"],
             ["source items", f.get("items", "")], ["dates kept / found", f"{f.get('dates_kept', '')} / {f.get('dates_found', '')}"],
             ["features", f.get("n_features", "")], ["lcup", f.get("versions", {}).get("lcup", "")]]
    parts = [f"<h1>{html.escape(title)}</h1><p class=note>Written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC</p>",
             _table(["", ""], facts) if f else "",
             "<h2>Maps</h2>" + _maps(class_map, coarse_map, legend, map_title) if class_map is not None else "",
             _audit(audit, f),
             "<h2>Accuracy</h2>" + _accuracy(f) if f else "",
             _roc(f, legend), _importance(f), _training_curve(f), _profiles(f, legend), _areas(f, legend, pixel_ha), _consistency(f), _change(change),
             _timings(summary)]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
                   f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n", encoding="utf-8")
    tmp.replace(path)
    return path
