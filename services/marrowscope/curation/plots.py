"""The admin page's campaign plot: test metrics and labelled cells per round."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in a service; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402


def campaign_plot(campaign: dict[str, Any]) -> bytes:
    """A PNG of test accuracy / mean recall and teacher-set size per round (the experiment
    report's two main panels), from a campaign as the orchestrator's JSON (camelCase) gives it."""
    # Every round that has been evaluated (test metrics come right after its training).
    rounds = [r for r in campaign.get("rounds", []) if r.get("modelVersion")]
    numbers = [int(r.get("number", 0)) for r in rounds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    left.plot(
        numbers, [float(r.get("testAccuracy", 0)) for r in rounds], marker="o", label="accuracy"
    )
    left.plot(
        numbers,
        [float(r.get("testMeanRecall", 0)) for r in rounds],
        marker="s",
        label="mean recall",
    )
    left.set(xlabel="round", ylabel="test", ylim=(0, 1), title="test metrics")
    left.legend(loc="lower right")
    right.bar(numbers, [int(r.get("teacherCount", 0)) for r in rounds], color="#4c72b0")
    right.set(xlabel="round", ylabel="labelled cells", title="teacher set")
    for axis in (left, right):
        axis.set_xticks(numbers or [1])
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()
