"""Campaign and round bookkeeping in PostgreSQL (plain Python, used by the round runner).

Every state change is committed before the runner moves on, so a crash resumes the round where
it stopped and loses no expert decision.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from psycopg.types.json import Jsonb

from marrowscope.core import cell_registry
from marrowscope.core.db import DictConnection, DictPool
from marrowscope.core.errors import FailedPrecondition, InvalidArgument, NotFound
from marrowscope.core.ids import parse_uuid
from marrowscope.core.metrics import QueryGauge
from marrowscope.core.taxonomy import load_taxonomy

from .selection import LabelledCell


class CampaignState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class RoundState(StrEnum):
    """A round's steps in order; each is committed before the next starts."""

    TRAINING = "training"
    EVALUATING = "evaluating"
    PREDICTING = "predicting"
    REVIEWING = "reviewing"
    ABSORBING = "absorbing"
    DONE = "done"
    FAILED = "failed"


METHODS = ("ST", "CST", "AL", "CST_AL", "RANDOM")


@dataclass(frozen=True, kw_only=True)
class CampaignParameters:
    """The paper's values as defaults; CPU demos shrink sizes, epochs and rounds."""

    cst_threshold: float = 0.0  # 0 = 0.99, or 0.9 for CST_AL
    al_margin: float = 0.2
    sample_size: int = 5000
    class_cap: int = 1000
    initial_per_class: int = 25
    validation_per_class: int = 50
    test_per_class: int = 50
    rounds: int = 25
    epochs: int = 250
    input_size: int = 96
    seed: int = 0
    batch_size: int = 32
    width: int = 32  # channels of the model's first stage (the training service's default)

    def threshold_for(self, method: str) -> float:
        if self.cst_threshold:
            return self.cst_threshold
        return 0.9 if method == "CST_AL" else 0.99


@dataclass(kw_only=True)
class RoundRecord:
    id: str
    number: int
    state: RoundState
    training_job_id: str = ""
    model_version_id: str = ""
    teacher_count: int = 0
    sampled: int = 0
    cst_candidates: int = 0
    al_candidates: int = 0
    decided: int = 0
    added: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    started_at: Any = None
    finished_at: Any = None


@dataclass(kw_only=True)
class CampaignRecord:
    id: str
    name: str
    method: str
    dataset: str
    taxonomy: str
    parameters: CampaignParameters
    state: CampaignState
    error: str
    created_at: Any
    rounds: list[RoundRecord] = field(default_factory=list)
    pool_size: int = 0
    labelled_count: int = 0


class CampaignRepository:
    def __init__(self, pool: DictPool) -> None:
        self.pool = pool

    def create(
        self,
        request_id: str,
        name: str,
        method: str,
        dataset: str,
        taxonomy_name: str,
        params: CampaignParameters,
    ) -> CampaignRecord:
        if method not in METHODS:
            raise InvalidArgument(f"method must be one of {', '.join(METHODS)}")
        taxonomy = load_taxonomy(taxonomy_name)
        with self.pool.connection() as conn:
            if request_id:
                found = conn.execute(
                    "SELECT id FROM campaigns WHERE request_id = %s", (request_id,)
                ).fetchone()
                if found:
                    return self.get(str(found["id"]))
            if cell_registry.is_locked(conn, dataset):
                raise FailedPrecondition(
                    f"dataset {dataset!r} is a locked evaluation set: campaigns cannot train on it"
                )
            rows = cell_registry.dataset_reference_labels(conn, dataset, taxonomy.name)
        if not rows:
            raise NotFound(
                f"dataset {dataset!r} has no cells with {taxonomy.name} labels; import it first"
            )
        by_class: dict[str, list[str]] = defaultdict(list)
        for cell_id, class_code in rows:
            by_class[class_code].append(cell_id)
        rng = random.Random(params.seed)
        roles: list[tuple[str, str, str]] = []  # cell, role, class
        need = params.test_per_class + params.validation_per_class + params.initial_per_class
        for code in taxonomy.codes:
            members = sorted(by_class.get(code, []))
            if len(members) < need:
                raise FailedPrecondition(
                    f"class {code} has {len(members)} labelled cells in {dataset}; the split "
                    f"needs {need} (test + validation + initial); lower the per-class sizes"
                )
            rng.shuffle(members)
            cuts = [
                params.test_per_class,
                params.test_per_class + params.validation_per_class,
                need,
            ]
            roles += [(c, "test", code) for c in members[: cuts[0]]]
            roles += [(c, "validation", code) for c in members[cuts[0] : cuts[1]]]
            roles += [(c, "teacher", code) for c in members[cuts[1] : cuts[2]]]
            roles += [(c, "pool", code) for c in members[cuts[2] :]]
        campaign_id = uuid.uuid4()
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                """INSERT INTO campaigns (id, request_id, name, method, dataset, taxonomy,
                       parameters) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (
                    campaign_id,
                    request_id or None,
                    name or f"{method} on {dataset}",
                    method,
                    dataset,
                    taxonomy.name,
                    Jsonb(asdict(params)),
                ),
            )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO campaign_cells (campaign_id, cell_id, role) VALUES (%s, %s, %s)",
                    [(campaign_id, c, role) for c, role, _ in roles],
                )
            # The initial teacher labels: in the paper experts labelled 25 per class.
            initial = [
                cell_registry.NewLabel(
                    cell_id=c,
                    taxonomy=taxonomy.name,
                    class_code=code,
                    source="import",
                    user_name="dataset",
                    campaign_id=str(campaign_id),
                    round_number=0,
                )
                for c, role, code in roles
                if role == "teacher"
            ]
            cell_registry.add_labels(conn, initial)
        return self.get(str(campaign_id))

    def get(self, campaign_id: str) -> CampaignRecord:
        campaign_id = parse_uuid(campaign_id, "campaign id")
        with self.pool.connection() as conn:
            row = conn.execute("SELECT * FROM campaigns WHERE id = %s", (campaign_id,)).fetchone()
            if row is None:
                raise NotFound(f"campaign {campaign_id} not found")
            rounds = conn.execute(
                "SELECT * FROM rounds WHERE campaign_id = %s ORDER BY number", (campaign_id,)
            ).fetchall()
            counts = {
                r["role"]: r["n"]
                for r in conn.execute(
                    """SELECT role, count(*) AS n FROM campaign_cells WHERE campaign_id = %s
                       GROUP BY role""",
                    (campaign_id,),
                ).fetchall()
            }
        return CampaignRecord(
            id=str(row["id"]),
            name=row["name"],
            method=row["method"],
            dataset=row["dataset"],
            taxonomy=row["taxonomy"],
            parameters=CampaignParameters(**row["parameters"]),
            state=CampaignState(row["state"]),
            error=row["error"] or "",
            created_at=row["created_at"],
            rounds=[_round(r) for r in rounds],
            pool_size=counts.get("pool", 0),
            labelled_count=counts.get("teacher", 0),
        )

    def all_campaigns(self) -> list[CampaignRecord]:
        with self.pool.connection() as conn:
            ids = conn.execute("SELECT id FROM campaigns ORDER BY created_at DESC").fetchall()
        return [self.get(str(r["id"])) for r in ids]

    def set_state(self, campaign_id: str, state: CampaignState, error: str = "") -> None:
        with self.pool.connection() as conn:
            conn.execute(
                """UPDATE campaigns SET state = %s, error = %s, updated_at = now()
                   WHERE id = %s""",
                (state, error or None, campaign_id),
            )

    def running_campaigns(self) -> list[str]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id FROM campaigns WHERE state = %s", (CampaignState.RUNNING,)
            ).fetchall()
        return [str(r["id"]) for r in rows]

    def open_round(self, campaign_id: str, number: int) -> RoundRecord:
        with self.pool.connection() as conn:
            conn.execute(
                """INSERT INTO rounds (id, campaign_id, number, state) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (campaign_id, number) DO NOTHING""",
                (uuid.uuid4(), campaign_id, number, RoundState.TRAINING),
            )
            row = conn.execute(
                "SELECT * FROM rounds WHERE campaign_id = %s AND number = %s", (campaign_id, number)
            ).fetchone()
        assert row is not None
        return _round(row)

    def update_round(self, round_id: str, **fields: Any) -> None:
        allowed = set(RoundRecord.__dataclass_fields__) - {"id", "number", "started_at"}
        if not set(fields) <= allowed:
            raise ValueError(f"unknown round fields {set(fields) - allowed}")
        values = {
            k: Jsonb(v) if k == "metrics" else (v or None if k.endswith("_id") else v)
            for k, v in fields.items()
        }
        assignments = ", ".join(f"{k} = %({k})s" for k in values)
        with self.pool.connection() as conn:
            conn.execute(
                f"UPDATE rounds SET {assignments} WHERE id = %(round_id)s".encode(),
                {**values, "round_id": round_id},
            )

    def _cells_in_role(self, conn: DictConnection, campaign_id: str, role: str) -> list[dict]:
        return conn.execute(
            """SELECT cell_id::text AS cell_id, round_added FROM campaign_cells
               WHERE campaign_id = %s AND role = %s ORDER BY cell_id""",
            (campaign_id, role),
        ).fetchall()

    def labelled(self, campaign_id: str, taxonomy: str) -> list[LabelledCell]:
        """Teacher cells with their current (newest) campaign label."""
        with self.pool.connection() as conn:
            teacher = self._cells_in_role(conn, campaign_id, "teacher")
            ids = [r["cell_id"] for r in teacher]
            keys = cell_registry.object_keys(conn, ids)
            labels = cell_registry.newest_labels(conn, ids, taxonomy, campaign_id=campaign_id)
        return [
            LabelledCell(r["cell_id"], keys[r["cell_id"]], labels[r["cell_id"]], r["round_added"])
            for r in teacher
            if r["cell_id"] in labels
        ]

    def reference_set(self, campaign_id: str, role: str, taxonomy: str) -> list[LabelledCell]:
        """Validation or test cells with the dataset's reference label."""
        with self.pool.connection() as conn:
            members = self._cells_in_role(conn, campaign_id, role)
            ids = [r["cell_id"] for r in members]
            keys = cell_registry.object_keys(conn, ids)
            labels = cell_registry.newest_labels(conn, ids, taxonomy, source="reference")
        return [
            LabelledCell(r["cell_id"], keys[r["cell_id"]], labels[r["cell_id"]], 0)
            for r in members
            if r["cell_id"] in labels
        ]

    def pool_cells(self, campaign_id: str) -> list[tuple[str, str]]:
        with self.pool.connection() as conn:
            members = self._cells_in_role(conn, campaign_id, "pool")
            keys = cell_registry.object_keys(conn, [r["cell_id"] for r in members])
        return [(r["cell_id"], keys[r["cell_id"]]) for r in members]

    def absorb(
        self,
        campaign_id: str,
        taxonomy: str,
        round_number: int,
        decisions: Sequence[tuple[str | None, str, str, str, str]],
    ) -> AbsorbResult:
        """Move decided cells out of the pool into the labelled set (or rejected).

        ``decisions``: (decision id or None, cell id, action, class, user); action is
        'confirm', 'correct', 'label' (expert), 'unchecked' (plain self-training's pseudo-label)
        or 'too_difficult' (rejected). Idempotent: a cell gets its label only when it leaves
        the pool, so a retried absorption changes nothing and counts nothing twice.
        """
        result = AbsorbResult()
        with self.pool.connection() as conn, conn.transaction():
            for decision_id, cell_id, action, class_code, user in decisions:
                role = "rejected" if action == "too_difficult" else "teacher"
                moved = conn.execute(
                    """UPDATE campaign_cells SET role = %s, round_added = %s
                       WHERE campaign_id = %s AND cell_id = %s AND role = 'pool'
                       RETURNING cell_id""",
                    (role, round_number, campaign_id, cell_id),
                ).fetchone()
                if moved is None:
                    continue
                if role == "rejected":
                    result.rejected += 1
                    continue
                label = cell_registry.NewLabel(
                    cell_id=cell_id,
                    taxonomy=taxonomy,
                    class_code=class_code,
                    source="pseudo" if action == "unchecked" else "expert",
                    user_name=user,
                    campaign_id=campaign_id,
                    round_number=round_number,
                    decision_id=decision_id,
                )
                cell_registry.add_labels(conn, [label])
                by_class = result.additions.setdefault(action, {})
                by_class[class_code] = by_class.get(class_code, 0) + 1
                if action == "unchecked":
                    # Only measurable in experiments, where the dataset has reference labels.
                    reference = cell_registry.newest_labels(
                        conn, [cell_id], taxonomy, source="reference"
                    ).get(cell_id)
                    if reference is not None:
                        result.pseudo_checked += 1
                        result.pseudo_wrong += int(reference != class_code)
        return result


@dataclass
class AbsorbResult:
    """What one round's absorption added, per source and class."""

    additions: dict[str, dict[str, int]] = field(default_factory=dict)  # action -> class -> n
    rejected: int = 0
    pseudo_checked: int = 0
    pseudo_wrong: int = 0

    @property
    def added(self) -> int:
        return sum(sum(c.values()) for c in self.additions.values())

    def to_json(self) -> dict:
        return {
            "additions": self.additions,
            "rejected": self.rejected,
            "added": self.added,
            "wrong_pseudo_label_fraction": (
                self.pseudo_wrong / self.pseudo_checked if self.pseudo_checked else None
            ),
        }


def _round(row: dict[str, Any]) -> RoundRecord:
    return RoundRecord(
        id=str(row["id"]),
        number=row["number"],
        state=RoundState(row["state"]),
        training_job_id=str(row["training_job_id"] or ""),
        model_version_id=str(row["model_version_id"] or ""),
        teacher_count=row["teacher_count"],
        sampled=row["sampled"],
        cst_candidates=row["cst_candidates"],
        al_candidates=row["al_candidates"],
        decided=row["decided"],
        added=row["added"],
        metrics=dict(row["metrics"]),
        error=row["error"] or "",
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def metric_gauges(pool: DictPool) -> list[QueryGauge]:
    """Campaigns and rounds by state, and how long running rounds have run (a round waiting
    for experts shows here), read when Prometheus scrapes."""
    return [
        QueryGauge(
            pool,
            "marrowscope_campaigns",
            "campaigns by state",
            ["state"],
            "SELECT state, count(*) AS value FROM campaigns GROUP BY state",
        ),
        QueryGauge(
            pool,
            "marrowscope_rounds",
            "campaign rounds by state",
            ["state"],
            "SELECT state, count(*) AS value FROM rounds GROUP BY state",
        ),
        QueryGauge(
            pool,
            "marrowscope_round_oldest_seconds",
            "how long the oldest unfinished round has run, by state",
            ["state"],
            """SELECT state, extract(epoch FROM now() - min(started_at)) AS value
               FROM rounds WHERE finished_at IS NULL GROUP BY state""",
        ),
    ]
