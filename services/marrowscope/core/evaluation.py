"""Test-set metrics as in the paper: accuracy, per-class recall and precision, their means,
and the confusion matrix, over the evaluation classes (BN merged into ART)."""

from __future__ import annotations

from marrowscope.core.taxonomy import Taxonomy


def evaluate(truth: list[str], predicted: list[str], taxonomy: Taxonomy) -> dict:
    codes = taxonomy.evaluation_codes
    index = {c: i for i, c in enumerate(codes)}
    confusion = [[0] * len(codes) for _ in codes]
    for t, p in zip(truth, predicted, strict=True):
        confusion[index[taxonomy.for_evaluation(t)]][index[taxonomy.for_evaluation(p)]] += 1
    total = sum(map(sum, confusion))
    correct = sum(confusion[i][i] for i in range(len(codes)))
    recall, precision = {}, {}
    for i, code in enumerate(codes):
        actual = sum(confusion[i])
        called = sum(row[i] for row in confusion)
        if actual:
            recall[code] = confusion[i][i] / actual
        if called:
            precision[code] = confusion[i][i] / called
    return {
        "accuracy": correct / total if total else 0.0,
        "mean_recall": sum(recall.values()) / len(recall) if recall else 0.0,
        "mean_precision": sum(precision.values()) / len(precision) if precision else 0.0,
        "recall": recall,
        "precision": precision,
        "classes": codes,
        "confusion": confusion,
        "count": total,
    }


def format_report(report: dict) -> str:
    """The metrics as a printed table: one line per class, then the means."""
    lines = [
        f"{'class':<10}{'recall':>8}{'precision':>11}{'count':>8}",
    ]
    for i, code in enumerate(report["classes"]):
        count = sum(report["confusion"][i])
        if not count and code not in report["precision"]:
            continue
        recall = report["recall"].get(code)
        precision = report["precision"].get(code)
        lines.append(
            f"{code:<10}{'-' if recall is None else f'{recall:.3f}':>8}"
            f"{'-' if precision is None else f'{precision:.3f}':>11}{count:>8}"
        )
    lines.append(
        f"accuracy {report['accuracy']:.4f}  mean recall {report['mean_recall']:.4f}  "
        f"mean precision {report['mean_precision']:.4f}  ({report['count']} cells)"
    )
    return "\n".join(lines)
