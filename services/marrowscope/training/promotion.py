"""Promotion and rollback of model aliases: which version the LIS classifies with.

'production' is what patient reports use; 'candidate' what is being considered. A version
becomes production only if its classes can make the LIS differential (the clinical
taxonomy, every class of it and no other), a demo model (trained on generated cells) only
where no production model exists, and any other only through the gate: measured on the
locked evaluation set against production, no worse than the tolerance (or forced, with a
reason). Every change names who made it and why, and is an audit event with the gate's
figures (written by the model registry in the same transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marrowscope.core import cell_registry
from marrowscope.core.db import DictConnection, DictPool
from marrowscope.core.errors import FailedPrecondition, InvalidArgument, NotFound
from marrowscope.core.model_registry import (
    ALIASES,
    AliasChange,
    ModelVersionRecord,
    alias_history,
    current_alias,
    model_version_on,
    set_alias,
)
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.taxonomy import load_taxonomy

from . import repository as jobs
from .gate import (
    EvaluationCells,
    GateMetrics,
    GateTolerance,
    comparison_table,
    measure,
    shortfalls,
)

# Alias changes are serialised (one advisory lock for all of them).
ALIAS_LOCK = 7231002


def differential_problem(record: ModelVersionRecord, clinical_taxonomy: str) -> str:
    """Why ``record`` cannot make the LIS differential ('' when it can)."""
    taxonomy = load_taxonomy(clinical_taxonomy)
    missing = [c for c in taxonomy.codes if c not in record.class_codes]
    unknown = [c for c in record.class_codes if c not in taxonomy.codes]
    if record.taxonomy == taxonomy.name and not missing and not unknown:
        return ""
    parts = [f"model {record.name} predicts {record.taxonomy} classes"]
    if missing:
        parts.append(f"it lacks {', '.join(missing)}")
    if unknown:
        parts.append(f"{', '.join(unknown)} are not {taxonomy.name} classes")
    return (
        "; ".join(parts) + f"; the LIS differential needs a {taxonomy.name} model with all "
        f"{len(taxonomy.codes)} classes"
    )


@dataclass(frozen=True)
class Promotion:
    change: AliasChange
    comparison: str = ""  # the gate's table (production only)


class ModelAliases:
    def __init__(
        self,
        pool: DictPool,
        clinical_taxonomy: str,
        store: ObjectStore | None = None,
        tolerance: GateTolerance | None = None,
    ) -> None:
        self.pool = pool
        self.clinical_taxonomy = clinical_taxonomy
        self.store = store  # where the gate reads artifacts and evaluation cells
        self.tolerance = tolerance or GateTolerance()

    @staticmethod
    def _checked(alias: str, actor: str) -> str:
        alias = alias or "production"
        if alias not in ALIASES:
            raise InvalidArgument(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
        if not actor.strip():
            raise InvalidArgument("say who promotes or rolls back (actor): it is audited")
        return alias

    def promote(
        self, version: str, alias: str, actor: str, reason: str = "", force: bool = False
    ) -> Promotion:
        """Point ``alias`` at ``version``; naming the version it already names changes nothing."""
        alias = self._checked(alias, actor)
        if force and not reason.strip():
            raise InvalidArgument("a forced promotion needs a reason: it is audited")
        # Read and check first; measure without holding a transaction or the alias lock (the
        # gate may take minutes, and a rollback must not wait for it).
        with self.pool.connection() as conn:
            record = model_version_on(conn, version)
            current = current_alias(conn, alias)
            if current == record.id:
                return Promotion(alias_history(conn, alias, 1)[0])
            evaluation = None
            if alias == "production":
                self._check_production(conn, record, current)
                evaluation = self._evaluation_cells(conn, record, current, force)
            production = model_version_on(conn, current) if current else None
        evidence: dict[str, Any] = {"metrics": record.metrics, "taxonomy": record.taxonomy}
        comparison, forced = "", False
        if alias == "production":
            gate = self._gate(record, production, evaluation, force)
            comparison, forced = gate.pop("comparison", ""), bool(gate.get("forced"))
            evidence.update(gate)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ALIAS_LOCK,))
            if current_alias(conn, alias) != current:
                raise FailedPrecondition(
                    f"{alias} changed while {record.name} was being measured; promote again"
                )
            set_alias(
                conn,
                alias=alias,
                version=record,
                action="bootstrap" if record.demo else "promote",
                actor=actor,
                reason=reason,
                forced=forced,
                evidence=evidence,
            )
            return Promotion(alias_history(conn, alias, 1)[0], comparison)

    def _check_production(
        self, conn: DictConnection, record: ModelVersionRecord, current: str | None
    ) -> None:
        problem = differential_problem(record, self.clinical_taxonomy)
        if problem:
            raise FailedPrecondition(f"not promoted to production: {problem}")
        if record.demo and current is not None:
            existing = model_version_on(conn, current)
            raise FailedPrecondition(
                f"not promoted to production: {record.name} is a demo model (trained on "
                f"generated cells) and {existing.name} is production already; a demo model "
                "serves patient reports only where no other model exists"
            )

    def _evaluation_cells(
        self,
        conn: DictConnection,
        record: ModelVersionRecord,
        current: str | None,
        force: bool,
    ) -> tuple[str, list[tuple[str, str]]] | None:
        """(locked evaluation set, its cells as (object key, class)); None where the gate is
        not measured (a demo model at first start, or forced without a set)."""
        dataset = cell_registry.evaluation_set(conn, self.clinical_taxonomy)
        if dataset is None:
            if (record.demo and current is None) or force:
                return None
            raise FailedPrecondition(
                f"not promoted to production: no locked evaluation set of "
                f"{self.clinical_taxonomy} to measure it on; lock one (`marrowscope models "
                "evaluation-set DATASET --reason TEXT`) or promote with --force and a reason"
            )
        labelled = cell_registry.dataset_reference_labels(conn, dataset, self.clinical_taxonomy)
        keys = cell_registry.object_keys(conn, [cell_id for cell_id, _ in labelled])
        return dataset, [(keys[cell_id], code) for cell_id, code in labelled]

    def _gate(
        self,
        record: ModelVersionRecord,
        production_record: ModelVersionRecord | None,
        evaluation: tuple[str, list[tuple[str, str]]] | None,
        force: bool,
    ) -> dict[str, Any]:
        """The gate's evidence for the audit trail; FailedPrecondition when it refuses."""
        if evaluation is None:
            if force:
                return {"gate": "forced without a locked evaluation set", "forced": True}
            return {"gate": "not measured: demo model at first start"}
        if self.store is None:
            raise FailedPrecondition("the promotion gate needs the object store")
        dataset, keyed = evaluation
        cells = EvaluationCells(self.store, keyed)
        taxonomy = load_taxonomy(self.clinical_taxonomy)
        candidate = measure(record, self.store, cells, taxonomy)
        production: GateMetrics | None = None
        if production_record is not None:
            production = measure(production_record, self.store, cells, taxonomy)
        problems = shortfalls(candidate, production, self.tolerance) if production else []
        table = comparison_table(candidate, production)
        if problems and not force:
            raise FailedPrecondition(
                f"not promoted to production: {record.name} is worse than "
                f"{production.version if production else ''} on the locked evaluation set "
                f"{dataset} ({'; '.join(problems)}); promote with --force and a reason to "
                f"override\n{table}"
            )
        return {
            "gate": "passed" if not problems else "forced past shortfalls",
            "forced": bool(problems),
            "evaluation_set": dataset,
            "candidate": candidate.to_json(),
            "production": production.to_json() if production else None,
            "shortfalls": problems,
            "comparison": table,
        }

    def rollback(self, alias: str, actor: str, reason: str = "") -> AliasChange:
        """Point ``alias`` back at the version it named before its latest change."""
        alias = self._checked(alias, actor)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ALIAS_LOCK,))
            history = alias_history(conn, alias, 1)
            if not history:
                raise NotFound(f"{alias} names no version yet: nothing to roll back")
            latest = history[0]
            if latest.previous is None:
                raise FailedPrecondition(
                    f"{alias} has named only {latest.version.name}: there is no earlier "
                    "version to roll back to"
                )
            set_alias(
                conn,
                alias=alias,
                version=latest.previous,
                action="rollback",
                actor=actor,
                reason=reason,
                evidence={"rolled_back": latest.version.name},
            )
            return alias_history(conn, alias, 1)[0]

    def lock_evaluation_set(
        self, dataset: str, taxonomy: str, actor: str, reason: str = ""
    ) -> tuple[int, bool]:
        """Lock ``dataset`` for evaluation only: (its labelled cells, newly locked). Refused
        when it has no labelled cells or when any of them was trained on already."""
        taxonomy = taxonomy or self.clinical_taxonomy
        load_taxonomy(taxonomy)
        if not actor.strip():
            raise InvalidArgument("say who locks the evaluation set (actor): it is audited")
        with self.pool.connection() as conn, conn.transaction():
            labelled = cell_registry.dataset_reference_labels(conn, dataset, taxonomy)
            if not labelled:
                raise NotFound(
                    f"dataset {dataset!r} has no cells with {taxonomy} labels; import it first"
                )
            trained = jobs.cells_trained_on(conn, [cell_id for cell_id, _ in labelled])
            if trained:
                raise FailedPrecondition(
                    f"{trained} cells of {dataset} were in a training or validation set "
                    "already: an evaluation set must be cells no model has seen"
                )
            newly = cell_registry.lock_evaluation_set(conn, dataset, taxonomy, actor, reason)
        return len(labelled), newly

    def aliases(
        self, alias: str = "", history: int = 20
    ) -> tuple[list[AliasChange], list[AliasChange]]:
        """(the latest change of each alias naming a version, the latest changes of one)."""
        alias = alias or "production"
        if alias not in ALIASES:
            raise InvalidArgument(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
        with self.pool.connection() as conn:
            current = [h[0] for a in ALIASES if (h := alias_history(conn, a, 1))]
            return current, alias_history(conn, alias, max(1, min(history or 20, 200)))
