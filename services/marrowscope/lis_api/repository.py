"""PostgreSQL for the LIS resources. Every read takes the calling client's id: a client sees
only its own specimens, and another client's look exactly like missing ones (NotFound).

The LIS API's tables only (specimens, specimen_images, analysis_jobs, analysis_cells,
cell_corrections, reports; api_clients in auth.py): other services are reached by their APIs."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from psycopg.types.json import Jsonb

from marrowscope.core.audit import append_event
from marrowscope.core.db import DictPool
from marrowscope.core.errors import InvalidArgument, NotFound
from marrowscope.core.ids import parse_uuid
from marrowscope.core.metrics import QueryGauge

from .qc import FieldVerdict
from .report import ClassifiedCell

Row = dict[str, Any]


class Conflict(Exception):
    """409: the request is valid but the resource's state does not allow it."""


class LisRepository:
    """The LIS API's resources in PostgreSQL; every method is blocking (run it in a thread)."""

    def __init__(self, pool: DictPool) -> None:
        self.pool = pool

    # --- specimens and images -------------------------------------------------------------
    def create_specimen(
        self,
        client_id: str,
        accession: str,
        specimen_type: str,
        instrument_profile: str | None = None,
    ) -> tuple[Row, bool]:
        """A new specimen, or (False) the one this accession number already has."""
        with self.pool.connection() as conn:
            row = conn.execute(
                """INSERT INTO specimens (id, client_id, accession_number, specimen_type,
                       instrument_profile)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (client_id, accession_number) DO NOTHING
                   RETURNING *""",
                (uuid.uuid4(), client_id, accession, specimen_type, instrument_profile),
            ).fetchone()
            if row is not None:
                return row, True
            row = conn.execute(
                "SELECT * FROM specimens WHERE client_id = %s AND accession_number = %s",
                (client_id, accession),
            ).fetchone()
            assert row is not None
            return row, False

    def specimen(self, client_id: str, specimen_id: str) -> Row:
        sid = parse_uuid(specimen_id, "specimen id")
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT * FROM specimens WHERE id = %s AND client_id = %s", (sid, client_id)
            ).fetchone()
        if row is None:
            raise NotFound(f"specimen {sid} not found")
        return row

    def specimens(self, client_id: str, limit: int, offset: int) -> list[Row]:
        with self.pool.connection() as conn:
            return conn.execute(
                """SELECT * FROM specimens WHERE client_id = %s
                   ORDER BY created_at DESC, id LIMIT %s OFFSET %s""",
                (client_id, limit, offset),
            ).fetchall()

    def add_image(self, specimen_id: str, key: str, state: str = "stored", **meta: Any) -> Row:
        with self.pool.connection() as conn:
            row = conn.execute(
                """INSERT INTO specimen_images (id, specimen_id, object_key, state, content_type,
                       width, height, size_bytes, um_per_px, um_per_px_source)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (specimen_id, object_key) DO UPDATE SET state = specimen_images.state
                   RETURNING *""",
                (
                    uuid.uuid4(),
                    specimen_id,
                    key,
                    state,
                    meta.get("content_type"),
                    meta.get("width"),
                    meta.get("height"),
                    meta.get("size_bytes"),
                    meta.get("um_per_px"),
                    meta.get("um_per_px_source"),
                ),
            ).fetchone()
        assert row is not None
        return row

    def image(self, specimen_id: str, image_id: str) -> Row:
        iid = parse_uuid(image_id, "image id")
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT * FROM specimen_images WHERE id = %s AND specimen_id = %s",
                (iid, specimen_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"image {iid} not found in this specimen")
        return row

    def complete_image(self, image_id: str, **meta: Any) -> Row:
        with self.pool.connection() as conn:
            row = conn.execute(
                """UPDATE specimen_images SET state = 'stored', content_type = %s, width = %s,
                       height = %s, size_bytes = %s WHERE id = %s RETURNING *""",
                (meta["content_type"], meta["width"], meta["height"], meta["size_bytes"], image_id),
            ).fetchone()
        assert row is not None
        return row

    def images(self, specimen_id: str, stored_only: bool = False) -> list[Row]:
        with self.pool.connection() as conn:
            return conn.execute(
                """SELECT * FROM specimen_images WHERE specimen_id = %s
                   AND (state = 'stored' OR NOT %s) ORDER BY created_at, id""",
                (specimen_id, stored_only),
            ).fetchall()

    # --- analysis jobs --------------------------------------------------------------------
    def create_job(
        self, client_id: str, specimen_id: str, idempotency_key: str | None
    ) -> tuple[Row, bool]:
        """The job (created or, for a retried Idempotency-Key, the existing one) and whether
        it is new."""
        with self.pool.connection() as conn:
            existing = _job_by_key(conn, client_id, specimen_id, idempotency_key)
            if existing is not None:
                return existing, False
            images = conn.execute(
                """SELECT count(*) AS n FROM specimen_images
                   WHERE specimen_id = %s AND state = 'stored'""",
                (specimen_id,),
            ).fetchone()
            if not images or not images["n"]:
                raise InvalidArgument(
                    "the specimen has no stored images: upload field images first"
                )
            row = conn.execute(
                """INSERT INTO analysis_jobs (id, specimen_id, client_id, idempotency_key, images_total)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (client_id, idempotency_key) DO NOTHING RETURNING *""",
                (uuid.uuid4(), specimen_id, client_id, idempotency_key, images["n"]),
            ).fetchone()
            if row is None:  # a concurrent retry with the same key won the insert
                row = _job_by_key(conn, client_id, specimen_id, idempotency_key)
                assert row is not None
                return row, False
            return row, True

    def job(self, client_id: str, job_id: str) -> Row:
        jid = parse_uuid(job_id, "job id")
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT * FROM analysis_jobs WHERE id = %s AND client_id = %s", (jid, client_id)
            ).fetchone()
        if row is None:
            raise NotFound(f"analysis job {jid} not found")
        return row

    def claim_due_job(self, lease_s: float) -> Row | None:
        """The next job that is due (queued, waiting past its retry time, or whose worker's
        lease ran out), leased to the caller."""
        with self.pool.connection() as conn:
            return conn.execute(
                """UPDATE analysis_jobs SET state = 'running', lease_until = now() + %s * interval '1 second',
                       updated_at = now()
                   WHERE id = (SELECT id FROM analysis_jobs
                               WHERE (state IN ('queued', 'waiting') AND next_attempt_at <= now())
                                  OR (state = 'running' AND lease_until < now())
                               ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                   RETURNING *""",
                (lease_s,),
            ).fetchone()

    def extend_lease(self, job_id: Any, lease_s: float) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE analysis_jobs SET lease_until = now() + %s * interval '1 second' WHERE id = %s",
                (lease_s, job_id),
            )

    def pin_model(self, job_id: Any, version_id: str) -> str:
        """The model version the job classifies with: ``version_id`` unless one is pinned
        already (a retried or resumed job keeps its first)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                """UPDATE analysis_jobs SET model_version_id = coalesce(model_version_id, %s)
                   WHERE id = %s RETURNING model_version_id""",
                (version_id, job_id),
            ).fetchone()
        assert row is not None
        return str(row["model_version_id"])

    def job_model(self, job_id: Any) -> str | None:
        """The id of the model version the job pinned (None: it never ran, or predates
        pinning)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT model_version_id FROM analysis_jobs WHERE id = %s", (job_id,)
            ).fetchone()
        return str(row["model_version_id"]) if row and row["model_version_id"] else None

    def job_wait(self, job_id: Any, reason: str, delay_s: float) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                """UPDATE analysis_jobs SET state = 'waiting', waiting_reason = %s, attempts = attempts + 1,
                       next_attempt_at = now() + %s * interval '1 second', lease_until = NULL,
                       updated_at = now() WHERE id = %s AND state = 'running'""",
                (reason, delay_s, job_id),
            )

    def job_fail(self, job_id: Any, error: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                """UPDATE analysis_jobs SET state = 'failed', error = %s, lease_until = NULL,
                       updated_at = now() WHERE id = %s AND state = 'running'""",
                (error, job_id),
            )

    def images_done(self, job_id: Any) -> set[Any]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT image_id FROM analysis_cells WHERE job_id = %s", (job_id,)
            ).fetchall()
        return {r["image_id"] for r in rows}

    def record_image(
        self,
        job_id: Any,
        image_id: Any,
        cells: list[dict[str, Any]],
        verdict: FieldVerdict | None = None,
    ) -> None:
        """One image's cells, its QC verdict and the job's progress, in one transaction."""
        with self.pool.connection() as conn, conn.transaction():
            if verdict is not None:
                conn.execute(
                    """INSERT INTO analysis_fields (job_id, image_id, analysable, reason,
                           red_cell_count, largest_region_share, um_per_px, scale_source,
                           scale_confidence, flags)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT (job_id, image_id) DO NOTHING""",
                    (
                        job_id,
                        image_id,
                        verdict.analysable,
                        verdict.reason or None,
                        verdict.red_cell_count,
                        verdict.largest_region_share,
                        verdict.um_per_px,
                        verdict.scale_source or None,
                        verdict.scale_confidence,
                        verdict.flags,
                    ),
                )
            for c in cells:
                conn.execute(
                    """INSERT INTO analysis_cells (job_id, image_id, cell_id, object_key, class_code,
                           probability, margin, top_classes, error, model_version, algorithm_version,
                           quality_flags, excluded, ood_score)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT (job_id, cell_id) DO NOTHING""",
                    (
                        job_id,
                        image_id,
                        c["cell_id"],
                        c["object_key"],
                        c["class_code"],
                        c["probability"],
                        c["margin"],
                        Jsonb(c["top_classes"]),
                        c["error"],
                        c["model_version"],
                        c["algorithm_version"],
                        c.get("quality_flags", []),
                        c.get("excluded") or None,
                        c.get("ood_score"),
                    ),
                )
            conn.execute(
                """UPDATE analysis_jobs SET images_done = images_done + 1, cells_found = cells_found + %s,
                       waiting_reason = NULL, updated_at = now() WHERE id = %s""",
                (len(cells), job_id),
            )

    def job_cells(self, job_id: Any) -> list[Row]:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT * FROM analysis_cells WHERE job_id = %s ORDER BY image_id, cell_id",
                (job_id,),
            ).fetchall()

    def job_cell(self, job_id: Any, cell_id: Any) -> Row | None:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT * FROM analysis_cells WHERE job_id = %s AND cell_id = %s", (job_id, cell_id)
            ).fetchone()

    def classified_cells(
        self, specimen_id: Any, job_id: Any, as_of: Any = None
    ) -> list[ClassifiedCell]:
        """The job's cells with the newest expert correction of each applied, retracted ones
        left out (of those made by ``as_of`` when given: what a past report version was built
        from)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT a.cell_id, a.class_code, a.probability, a.margin, a.quality_flags,
                          a.excluded, a.ood_score, c.class_code AS corrected_class, c.reviewer
                   FROM analysis_cells a
                   LEFT JOIN LATERAL (SELECT k.class_code, k.reviewer FROM cell_corrections k
                                      WHERE k.specimen_id = %(s)s AND k.cell_id = a.cell_id
                                        AND k.retracts IS NULL
                                        AND (%(t)s::timestamptz IS NULL OR k.created_at <= %(t)s)
                                        AND NOT EXISTS (
                                            SELECT 1 FROM cell_corrections r WHERE r.retracts = k.id
                                            AND (%(t)s::timestamptz IS NULL OR r.created_at <= %(t)s))
                                      ORDER BY k.created_at DESC, k.id DESC LIMIT 1) c ON true
                   WHERE a.job_id = %(j)s ORDER BY a.cell_id""",
                {"s": specimen_id, "j": job_id, "t": as_of},
            ).fetchall()
        return [
            ClassifiedCell(
                str(r["cell_id"]),
                r["corrected_class"] or r["class_code"],
                r["probability"] or 0.0,
                r["margin"] or 0.0,
                r["reviewer"] or "",
                excluded=r["excluded"] or "",
                quality_flags=tuple(r["quality_flags"] or ()),
                ood_score=r["ood_score"],
            )
            for r in rows
        ]

    def job_fields(self, job_id: Any) -> list[Row]:
        """Each analysed field's QC verdict."""
        with self.pool.connection() as conn:
            return conn.execute(
                """SELECT f.*, s.object_key FROM analysis_fields f
                   JOIN specimen_images s ON s.id = f.image_id
                   WHERE f.job_id = %s ORDER BY s.created_at, s.id""",
                (job_id,),
            ).fetchall()

    # --- reports and corrections ----------------------------------------------------------
    def add_report(
        self,
        specimen_id: Any,
        job_id: Any,
        status: str,
        body: dict[str, Any],
        review_state: str = "none",
        *,
        actor: str,
        signed_out: bool = False,
    ) -> Row:
        """The next report version; the first one also marks the job succeeded. Each version
        is an audit event (``report.version``, by ``actor``, with the body's sha256), and a
        version that signs the report out (``signed_out``) a second one (``report.sign_out``),
        in the same transaction."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT 1 FROM specimens WHERE id = %s FOR UPDATE", (specimen_id,))
            version = conn.execute(
                "SELECT coalesce(max(version), 0) + 1 AS v FROM reports WHERE specimen_id = %s",
                (specimen_id,),
            ).fetchone()
            assert version is not None
            previous_status = conn.execute(
                """SELECT status FROM reports WHERE specimen_id = %s
                   ORDER BY version DESC LIMIT 1""",
                (specimen_id,),
            ).fetchone()
            row = conn.execute(
                """INSERT INTO reports (id, specimen_id, analysis_job_id, version, status, body)
                   VALUES (%s, %s, %s, %s, %s, %s) RETURNING *""",
                (uuid.uuid4(), specimen_id, job_id, version["v"], status, Jsonb(body)),
            ).fetchone()
            assert row is not None
            conn.execute(
                """UPDATE analysis_jobs SET state = 'succeeded', report_id = %s, lease_until = NULL,
                       waiting_reason = NULL, review_state = %s, updated_at = now()
                   WHERE id = %s AND state <> 'succeeded'""",
                (row["id"], review_state, job_id),
            )
            event = {
                "specimen_id": str(specimen_id),
                "analysis_job_id": str(job_id),
                "version": row["version"],
                "status": status,
                "body_sha256": body_digest(body),
                "reviewed_by": body.get("reviewed_by"),
            }
            previous = (
                {"version": row["version"] - 1, "status": previous_status["status"]}
                if previous_status
                else None
            )
            actions = ["report.version"] + (["report.sign_out"] if signed_out else [])
            for action in actions:
                append_event(
                    conn,
                    actor=actor,
                    action=action,
                    entity="report",
                    entity_id=str(row["id"]),
                    previous=previous,
                    current=event,
                    reason=None,
                )
            return row

    def reports(self, specimen_id: Any) -> list[Row]:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT * FROM reports WHERE specimen_id = %s ORDER BY version", (specimen_id,)
            ).fetchall()

    def add_corrections(
        self,
        specimen_id: Any,
        reviewer: str,
        corrections: list[tuple[str, str]],
        decision_ids: list[str] | None = None,
    ) -> int:
        """Append corrections; ones from curation decisions already applied are skipped."""
        added = 0
        with self.pool.connection() as conn, conn.transaction():
            for i, (cell_id, class_code) in enumerate(corrections):
                row = conn.execute(
                    """INSERT INTO cell_corrections (id, specimen_id, cell_id, class_code, reviewer,
                           decision_id) VALUES (%s, %s, %s, %s, %s, %s)
                       ON CONFLICT (decision_id) DO NOTHING RETURNING id""",
                    (
                        uuid.uuid4(),
                        specimen_id,
                        parse_uuid(cell_id, "cell id"),
                        class_code,
                        reviewer,
                        decision_ids[i] if decision_ids else None,
                    ),
                ).fetchone()
                added += row is not None
        return added

    def retract_corrections(self, specimen_id: Any, reviewer: str, decision_ids: list[str]) -> int:
        """Withdraw the corrections that came from these curation decisions (undone there);
        ones never applied or already withdrawn are skipped. How many were withdrawn."""
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                """INSERT INTO cell_corrections (id, specimen_id, cell_id, class_code, reviewer,
                       retracts)
                   SELECT gen_random_uuid(), k.specimen_id, k.cell_id, NULL, %s, k.id
                   FROM cell_corrections k
                   WHERE k.specimen_id = %s AND k.decision_id = ANY(%s::uuid[])
                   ON CONFLICT (retracts) DO NOTHING RETURNING id""",
                (reviewer, specimen_id, decision_ids),
            ).fetchall()
        return len(rows)

    # --- review of low-confidence cells in the curation service -------------------------
    def set_review_state(self, job_id: Any, state: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE analysis_jobs SET review_state = %s WHERE id = %s", (state, job_id)
            )

    def jobs_in_review(self) -> list[Row]:
        with self.pool.connection() as conn:
            return conn.execute(
                """SELECT * FROM analysis_jobs WHERE state = 'succeeded'
                   AND review_state IN ('pending', 'sent') ORDER BY updated_at LIMIT 50"""
            ).fetchall()

    def report(self, specimen_id: Any, version: int | None = None) -> Row | None:
        """One report version (the latest when ``version`` is None), or None."""
        with self.pool.connection() as conn:
            return conn.execute(
                """SELECT * FROM reports WHERE specimen_id = %s AND (%s::int IS NULL OR version = %s)
                   ORDER BY version DESC LIMIT 1""",
                (specimen_id, version, version),
            ).fetchone()


def metric_gauges(pool: DictPool) -> list[QueryGauge]:
    """Analysis jobs by state, and how long the oldest unfinished one has waited (a stuck
    queue grows it): read when Prometheus scrapes."""
    return [
        QueryGauge(
            pool,
            "marrowscope_analysis_jobs",
            "LIS analysis jobs by state",
            ["state"],
            "SELECT state, count(*) AS value FROM analysis_jobs GROUP BY state",
        ),
        QueryGauge(
            pool,
            "marrowscope_analysis_job_oldest_seconds",
            "age of the oldest unfinished analysis job, by state",
            ["state"],
            """SELECT state, extract(epoch FROM now() - min(created_at)) AS value
               FROM analysis_jobs WHERE state IN ('queued', 'waiting', 'running')
               GROUP BY state""",
        ),
    ]


def body_digest(body: dict[str, Any]) -> str:
    """The sha256 of a report body's canonical JSON (what the audit trail records of it)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _job_by_key(conn: Any, client_id: str, specimen_id: str, key: str | None) -> Row | None:
    """The job a retried request with this Idempotency-Key already created, if any."""
    if not key:
        return None
    row: Row | None = conn.execute(
        "SELECT * FROM analysis_jobs WHERE client_id = %s AND idempotency_key = %s",
        (client_id, key),
    ).fetchone()
    if row is not None and row["specimen_id"] != uuid.UUID(str(specimen_id)):
        raise Conflict("this Idempotency-Key was used for another specimen")
    return row
