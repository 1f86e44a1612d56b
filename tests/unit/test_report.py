"""report.html from summaries with undefined figures (null in summary.json) and with nothing but a change."""

from __future__ import annotations

import numpy as np

from lcup.legends import get_legend
from lcup.report import write_report


def test_report_with_undefined_figures(tmp_path):
    rep = {"n": 10, "overall_accuracy": 0.5, "kappa": None, "classes": [1, 2], "confusion_matrix": [[5, 0, 0], [5, 0, 0]],
           "confusion_columns": [1, 2, "nodata_or_other"],
           "per_class": {"1": {"name": "forest", "f1": 0.67}, "2": {"name": "grassland", "f1": None}}}
    area = {"n_per_class": 100, "n": 10, "overall_accuracy": 0.5, "overall_accuracy_ci": None, "classes": {
        "1": {"name": "forest", "map_ha": 1.0, "area_ha": 1.0, "area_ci_ha": None, "census_ha": 1.0, "covered": False,
              "user_accuracy": None, "user_accuracy_ci": None, "producer_accuracy": 1.0, "producer_accuracy_ci": 0.0}}}
    summary = {"name": "t", "status": "done", "timings": {"train": 1.0, "total": 2.0},
               "figures": {"truth": {"prediction_10m": rep}, "area": area, "predicted_class_px": {"1": 5},
                           "cores_used": {"train": 1.84, "total": 1.5},
                           "refinement": {"rounds": [{"relabelled": 40, "to": {"2": 40}}, {"relabelled": 0, "to": {}}],
                                          "changed": 40}}}
    p = write_report(tmp_path / "report.html", summary, get_legend("lcup7"), class_map=np.ones((8, 8), np.uint8), pixel_ha=0.01)
    html = p.read_text()
    assert "<td>–</td>" in html and "– ± –" in html and html.count("<img") == 3  # map, confusion matrix, F1
    assert "changed the labels of 40 training samples" in html and "<td>40 to 2</td>" in html and "<td>none</td>" in html
    assert "<th>cores used</th>" in html and "<td>train</td><td>1.000</td><td>0.500</td><td>1.840</td>" in html


def test_change_only_report_has_no_empty_sections(tmp_path):
    change = {"pairs": [{"from": "2020", "to": "2021", "hectares": {"classes": {1: {"name": "forest", "from": 2.0, "to": 1.0,
              "gain": 0.0, "loss": 1.0, "net": -1.0}, 2: {"name": "grassland", "from": 0.0, "to": 1.0, "gain": 1.0, "loss": 0.0, "net": 1.0}},
              "changed": 1.0, "total": 2.0, "share_changed": 0.5}, "matrix_hectares": [[0, 0, 0], [0, 1.0, 1.0], [0, 0, 0]]}]}
    html = write_report(tmp_path / "r.html", {"name": "change"}, get_legend("lcup7"), change=change).read_text()
    assert "<h2>Change</h2>" in html and "Accuracy" not in html and "Maps" not in html and "50.00 %" in html
    assert "Transitions, ha" in html and "<th>2020 \\ 2021</th><th>forest</th><th>grassland</th>" in html
