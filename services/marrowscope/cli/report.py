"""Reports for ML staff: the experiment's Table-1-style table (text, CSV, JSON), plots and HTML
report, and the one-page HTML report of ``marrowscope evaluate``."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display
import matplotlib.pyplot as plt  # noqa: E402

from marrowscope.core.evaluation import format_report

LABELS = {"ST": "ST", "CST": "CST", "AL": "AL", "CST_AL": "CST+AL", "RANDOM": "Random"}


def table(results: dict) -> str:
    """Per round: labelled data count and test accuracy for each method (as the paper's Table 1)."""
    methods = results["methods"]
    rounds = max((len(m["rounds"]) for m in methods), default=0)
    head = f"{'round':>5} " + " ".join(f"{LABELS[m['method']]:>17}" for m in methods)
    sub = f"{'':>5} " + " ".join(f"{'data':>8} {'acc':>8}" for _ in methods)
    lines = [head, sub, "-" * len(head)]
    for i in range(rounds):
        cells = []
        for m in methods:
            if i < len(m["rounds"]):
                r = m["rounds"][i]
                cells.append(f"{r['teacher_count']:>8} {r['accuracy']:>8.4f}")
            else:
                cells.append(f"{'':>8} {'':>8}")
        lines.append(f"{i + 1:>5} " + " ".join(cells))
    lines.append("")
    for m in methods:
        accs = [r["accuracy"] for r in m["rounds"]] or [0.0]
        wrong = [
            r["wrong_pseudo_label_fraction"]
            for r in m["rounds"]
            if r["wrong_pseudo_label_fraction"] is not None
        ]
        extra = f", wrong pseudo-labels {sum(wrong) / len(wrong):.3f}" if wrong else ""
        lines.append(
            f"{LABELS[m['method']]:<7} final {accs[-1]:.4f}  best {max(accs):.4f}  "
            f"labelled {m['rounds'][-1]['teacher_count'] if m['rounds'] else 0:>5}  "
            f"expert actions {m['expert']['decisions']:>5} "
            f"({m['expert']['simulated_seconds'] / 3600:.1f} h simulated){extra}  [{m['state']}]"
        )
    return "\n".join(lines)


def write_csv(results: dict, path: Path) -> None:
    fields = [
        "method",
        "round",
        "teacher_count",
        "accuracy",
        "mean_recall",
        "mean_precision",
        "sampled",
        "cst_candidates",
        "al_candidates",
        "decided",
        "added",
        "rejected",
        "wrong_pseudo_label_fraction",
        "simulated_expert_seconds",
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for m in results["methods"]:
            for r in m["rounds"]:
                writer.writerow({"method": LABELS[m["method"]], **r, "round": r["round"]})


def _cumulative_actions(m: dict) -> list[int]:
    total, out = 0, []
    for r in m["rounds"]:
        out.append(total)  # the model of round r was trained before round r's review
        total += r["decided"]
    return out


def plots(results: dict, out: Path) -> list[Path]:
    methods = results["methods"]
    made: list[Path] = []

    def save(fig: plt.Figure, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(out / name)

    for key, ylabel, name in (
        ("accuracy", "test accuracy", "accuracy.png"),
        ("teacher_count", "labelled cells trained on", "data_count.png"),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4))
        for m in methods:
            ax.plot(
                [r["round"] for r in m["rounds"]],
                [r[key] for r in m["rounds"]],
                marker="o",
                ms=3,
                label=LABELS[m["method"]],
            )
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        save(fig, name)

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for m in methods:
        ax.plot(
            _cumulative_actions(m),
            [r["accuracy"] for r in m["rounds"]],
            marker="o",
            ms=3,
            label=LABELS[m["method"]],
        )
    ax.set_xlabel("expert actions so far")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "accuracy_vs_actions.png")

    classes = sorted(
        {c for m in methods for r in m["rounds"] for s in r["additions"].values() for c in s}
    )
    if classes:
        fig, ax = plt.subplots(figsize=(max(6.4, 0.5 * len(classes) * len(methods) / 2), 4))
        width = 0.8 / len(methods)
        for k, m in enumerate(methods):
            totals = {c: 0 for c in classes}
            for r in m["rounds"]:
                for per_class in r["additions"].values():
                    for c, n in per_class.items():
                        totals[c] += n
            ax.bar(
                [i + k * width for i in range(len(classes))],
                [totals[c] for c in classes],
                width,
                label=LABELS[m["method"]],
            )
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(classes))], classes, rotation=45)
        ax.set_ylabel("cells added over all rounds")
        ax.legend()
        save(fig, "additions_per_class.png")

    best = max(
        ((r["accuracy"], m["method"], r) for m in methods for r in m["rounds"] if r["confusion"]),
        default=None,
        key=lambda t: t[0],
    )
    if best:
        accuracy, method, r = best
        title = f"best model: {LABELS[method]} round {r['round']} (accuracy {accuracy:.3f})"
        save(confusion_figure(r["confusion"], r["classes"], title), "confusion_best.png")
    return made


def confusion_figure(confusion: list[list[int]], classes: list[str], title: str) -> plt.Figure:
    """The confusion matrix with its counts; colour is the share of the true class's cells, so
    rare classes read as clearly as common ones."""
    fig, ax = plt.subplots(figsize=(6, 5.2))
    shares = [[n / max(1, sum(row)) for n in row] for row in confusion]
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    for i, row in enumerate(confusion):
        for j, n in enumerate(row):
            if n:
                ax.text(
                    j,
                    i,
                    str(n),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shares[i][j] > 0.6 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def _png_data_uri(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_evaluation_html(report: dict, path: Path) -> Path:
    """One self-contained page (plots embedded) for ``marrowscope evaluate``: the per-class
    table, the confusion matrix and recall / precision per class. Classes with no cell in the
    folder and no prediction are left out of the plots."""
    used = [
        i
        for i, c in enumerate(report["classes"])
        if sum(report["confusion"][i]) or c in report["precision"]
    ]
    classes = [report["classes"][i] for i in used]
    confusion = [[report["confusion"][i][j] for j in used] for i in used]
    title = f"{report['model']}: accuracy {report['accuracy']:.4f} on {report['count']} cells"
    matrix = _png_data_uri(confusion_figure(confusion, classes, title))
    fig, ax = plt.subplots(figsize=(max(6.4, 0.55 * len(classes)), 3.8))
    xs = range(len(classes))
    ax.bar(
        [x - 0.2 for x in xs], [report["recall"].get(c, 0.0) for c in classes], 0.4, label="recall"
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [report["precision"].get(c, 0.0) for c in classes],
        0.4,
        label="precision",
    )
    ax.set_xticks(list(xs), classes, rotation=45)
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    bars = _png_data_uri(fig)
    unreadable = report.get("unreadable", 0)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Marrowscope evaluation: {html.escape(str(report["model"]))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#111}}
pre{{background:#f4f4f4;padding:1rem;overflow-x:auto}}img{{max-width:100%;border:1px solid #ccc}}
</style></head><body>
<h1>Model {html.escape(str(report["model"]))} on {html.escape(str(report["data"]))}</h1>
<p>Taxonomy {html.escape(str(report["taxonomy"]))}; {report["count"]} cells classified through
the inference service{f", {unreadable} images could not be classified" if unreadable else ""}.
Accuracy <b>{report["accuracy"]:.4f}</b>, mean recall {report["mean_recall"]:.4f}, mean
precision {report["mean_precision"]:.4f}.</p>
<h2>Per class</h2><pre>{html.escape(format_report(report))}</pre>
<h2>Confusion matrix</h2><img src="{matrix}" alt="confusion matrix">
<h2>Recall and precision per class</h2><img src="{bars}" alt="recall and precision per class">
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path


def write_report(results: dict, out: Path) -> Path:
    """Everything in ``out``: table.txt, results.csv, results.json, PNG plots, report.html."""
    out.mkdir(parents=True, exist_ok=True)
    text = table(results)
    (out / "table.txt").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_csv(results, out / "results.csv")
    images = plots(results, out)
    options = results["options"]
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in options.items()
    )
    figures = "".join(
        f'<figure><img src="{p.name}" alt="{p.stem}"><figcaption>{p.stem}</figcaption></figure>'
        for p in images
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Marrowscope SSL experiment: {html.escape(results["dataset"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#111}}
pre{{background:#f4f4f4;padding:1rem;overflow-x:auto}}figure{{display:inline-block;margin:.5rem}}
img{{max-width:520px;border:1px solid #ccc}}table{{border-collapse:collapse}}
th,td{{text-align:left;padding:.15rem .6rem;border-bottom:1px solid #ddd}}</style></head><body>
<h1>Semi-supervised campaigns on {html.escape(results["dataset"])}</h1>
<p>{results["cells"]} cells, taxonomy {html.escape(results["taxonomy"])}. Every method starts
from the same seeded initial, validation and test sets; a simulated expert answers through the
curation API. Compare with Table 1 of Nakamura et al. (Sci Rep 2022).</p>
<h2>Data count and test accuracy per round</h2><pre>{html.escape(text)}</pre>
<h2>Plots</h2>{figures}
<h2>Settings</h2><table>{rows}</table>
<p>Raw figures: <a href="results.csv">results.csv</a>, <a href="results.json">results.json</a>.</p>
</body></html>"""
    (out / "report.html").write_text(page)
    return out / "report.html"
