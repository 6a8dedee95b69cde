"""The experiment report (table, CSV, JSON, plots and HTML from campaign results) and the
evaluation report of `marrowscope evaluate`."""

import csv
import json
from pathlib import Path

from marrowscope.cli.report import table, write_evaluation_html, write_report
from marrowscope.core.evaluation import evaluate
from marrowscope.core.taxonomy import load_taxonomy


def _round(number: int, teacher: int, accuracy: float, wrong: float | None) -> dict:
    return {
        "round": number,
        "teacher_count": teacher,
        "accuracy": accuracy,
        "mean_recall": accuracy,
        "mean_precision": accuracy,
        "sampled": 100,
        "cst_candidates": 10,
        "al_candidates": 5,
        "decided": 15,
        "added": 12,
        "rejected": 1,
        "wrong_pseudo_label_fraction": wrong,
        "recall": {"LY": accuracy},
        "precision": {"LY": accuracy},
        "classes": ["LY", "EO"],
        "confusion": [[number, 1], [0, 3]],
        "labelled_per_class": {"LY": teacher},
        "additions": {"confirm": {"LY": 10}, "correct": {"EO": 2}},
        "simulated_expert_seconds": 23.0,
        "model_version": f"v{number}",
    }


def test_report_has_the_table_files_plots_and_html(tmp_path: Path) -> None:
    results = {
        "options": {"rounds": 2, "data": "/data/pbc"},
        "dataset": "d",
        "taxonomy": "pbc11",
        "cells": 100,
        "methods": [
            {
                "method": "ST",
                "state": "CAMPAIGN_STATE_COMPLETED",
                "expert": {"decisions": 0, "simulated_seconds": 0.0},
                "rounds": [_round(1, 20, 0.5, 0.1), _round(2, 30, 0.4, 0.3)],
            },
            {
                "method": "CST_AL",
                "state": "CAMPAIGN_STATE_COMPLETED",
                "expert": {"decisions": 30, "simulated_seconds": 46.0},
                "rounds": [_round(1, 20, 0.5, None), _round(2, 32, 0.7, None)],
            },
        ],
    }
    text = table(results)
    assert "CST+AL" in text and "0.7000" in text
    assert "wrong pseudo-labels 0.200" in text  # ST: the mean over its rounds
    assert "best 0.7000" in text and "final 0.4000" in text
    page = write_report(results, tmp_path / "out")
    out = tmp_path / "out"
    for name in (
        "table.txt",
        "results.json",
        "results.csv",
        "accuracy.png",
        "data_count.png",
        "accuracy_vs_actions.png",
        "additions_per_class.png",
        "confusion_best.png",
    ):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["method"], r["round"]) for r in rows] == [
        ("ST", "1"),
        ("ST", "2"),
        ("CST+AL", "1"),
        ("CST+AL", "2"),
    ]
    assert json.loads((out / "results.json").read_text())["cells"] == 100
    html = page.read_text()
    assert 'src="accuracy.png"' in html and "CST+AL" in html and "/data/pbc" in html


def test_evaluation_page_is_self_contained_with_table_and_plots(tmp_path: Path) -> None:
    truth = ["LY"] * 6 + ["EO"] * 4 + ["MB"] * 2
    predicted = ["LY"] * 5 + ["EO"] + ["EO"] * 4 + ["LY", "MB"]
    report = evaluate(truth, predicted, load_taxonomy("paper17"))
    report.update(
        model="paper17-1a2b3c4d", data="/lab/cells <set 2>", taxonomy="paper17", unreadable=1
    )
    page = write_evaluation_html(report, tmp_path / "out" / "evaluation.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 2  # no files beside it
    assert "accuracy 0.8333" in page and "1 images could not be classified" in page
    assert "/lab/cells &lt;set 2&gt;" in page  # escaped
    assert "LY           0.833      0.833       6" in page  # the printed per-class table
