"""Promotion and rollback of model aliases: which version the LIS classifies with.

'production' is what patient reports use; 'candidate' what is being considered. A version
becomes production only if its classes can make the LIS differential (the clinical
taxonomy, every class of it and no other), and a demo model (trained on generated cells)
only where no production model exists. Every change names who made it and why, and is an
audit event (written by the model registry in the same transaction).
"""

from __future__ import annotations

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
from marrowscope.core.taxonomy import load_taxonomy

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


class ModelAliases:
    def __init__(self, pool: DictPool, clinical_taxonomy: str) -> None:
        self.pool = pool
        self.clinical_taxonomy = clinical_taxonomy

    @staticmethod
    def _checked(alias: str, actor: str) -> str:
        alias = alias or "production"
        if alias not in ALIASES:
            raise InvalidArgument(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
        if not actor.strip():
            raise InvalidArgument("say who promotes or rolls back (actor): it is audited")
        return alias

    def promote(self, version: str, alias: str, actor: str, reason: str = "") -> AliasChange:
        """Point ``alias`` at ``version``; naming the version it already names changes nothing."""
        alias = self._checked(alias, actor)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ALIAS_LOCK,))
            record = model_version_on(conn, version)
            current = current_alias(conn, alias)
            if current == record.id:
                return alias_history(conn, alias, 1)[0]
            if alias == "production":
                self._check_production(conn, record, current)
            set_alias(
                conn,
                alias=alias,
                version=record,
                action="bootstrap" if record.demo else "promote",
                actor=actor,
                reason=reason,
                evidence={"metrics": record.metrics, "taxonomy": record.taxonomy},
            )
            return alias_history(conn, alias, 1)[0]

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
