"""Candidate selection and class balancing: the paper's rules as small pure functions.

A strategy takes a round's predictions and returns the cells to send to experts (CST: to
confirm a pseudo-label; AL: to label) or, for plain self-training, to add unchecked.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class Scored:
    cell_id: str
    object_key: str
    top1_class: str
    top1_probability: float
    margin: float
    top_classes: list[tuple[str, float]]


@dataclass
class Selection:
    cst: list[Scored] = field(default_factory=list)  # pseudo-labels for experts to confirm
    al: list[Scored] = field(default_factory=list)  # cells for experts to label
    unchecked: list[Scored] = field(default_factory=list)  # ST: pseudo-labels added as they are


@dataclass(frozen=True)
class Thresholds:
    cst_threshold: float = 0.99
    al_margin: float = 0.2


class SelectionStrategy(Protocol):
    def select(self, scored: list[Scored], rng: random.Random) -> Selection: ...


@dataclass(frozen=True)
class SelfTraining:
    thresholds: Thresholds

    def select(self, scored: list[Scored], rng: random.Random) -> Selection:
        return Selection(
            unchecked=[s for s in scored if s.top1_probability >= self.thresholds.cst_threshold]
        )


@dataclass(frozen=True)
class ConfirmedSelfTraining:
    thresholds: Thresholds

    def select(self, scored: list[Scored], rng: random.Random) -> Selection:
        return Selection(
            cst=[s for s in scored if s.top1_probability >= self.thresholds.cst_threshold]
        )


@dataclass(frozen=True)
class MarginSampling:
    thresholds: Thresholds

    def select(self, scored: list[Scored], rng: random.Random) -> Selection:
        return Selection(al=[s for s in scored if s.margin < self.thresholds.al_margin])


@dataclass(frozen=True)
class CombinedCstAl:
    """Both selections from the same predictions; with threshold >= 0.6 and margin <= 0.2 the
    two sets cannot overlap (p1 >= 0.6 implies p1 - p2 >= 0.2)."""

    thresholds: Thresholds

    def select(self, scored: list[Scored], rng: random.Random) -> Selection:
        cst = ConfirmedSelfTraining(self.thresholds).select(scored, rng).cst
        chosen = {s.cell_id for s in cst}
        al = [
            s
            for s in MarginSampling(self.thresholds).select(scored, rng).al
            if s.cell_id not in chosen
        ]
        return Selection(cst=cst, al=al)


@dataclass(frozen=True)
class RandomSampling:
    """Baseline: as many random cells as margin sampling would have sent to experts."""

    thresholds: Thresholds

    def select(self, scored: list[Scored], rng: random.Random) -> Selection:
        count = len(MarginSampling(self.thresholds).select(scored, rng).al)
        return Selection(al=rng.sample(scored, min(count, len(scored))))


STRATEGIES: dict[str, type] = {
    "ST": SelfTraining,
    "CST": ConfirmedSelfTraining,
    "AL": MarginSampling,
    "CST_AL": CombinedCstAl,
    "RANDOM": RandomSampling,
}


def strategy_for(method: str, thresholds: Thresholds) -> SelectionStrategy:
    return STRATEGIES[method](thresholds)


@dataclass(frozen=True)
class LabelledCell:
    cell_id: str
    object_key: str
    class_code: str
    round_added: int


def balance(cells: list[LabelledCell], cap: int) -> list[LabelledCell]:
    """At most ``cap`` cells per class, newest additions first (the paper: images added in the
    previous round are kept; older ones are dropped from training, not from the labelled set,
    only when a class would exceed the cap)."""
    by_class: dict[str, list[LabelledCell]] = defaultdict(list)
    for cell in cells:
        by_class[cell.class_code].append(cell)
    chosen: list[LabelledCell] = []
    for members in by_class.values():
        members.sort(key=lambda c: (-c.round_added, c.cell_id))
        chosen.extend(members[:cap])
    return sorted(chosen, key=lambda c: c.cell_id)
