"""The cell registry: field images, single-cell images and their labels.

This module owns the tables ``field_images``, ``cells``, ``labels`` and ``evaluation_sets``
(datasets locked for evaluation only): no other module reads or writes them. Every access
goes through the functions here, each on the caller's connection so that it joins the
caller's transaction.

Cells are registered idempotently by their origin key ('seg:<field sha256>:<algorithm
version>:<index>' or 'import:<dataset>:<image sha256>[:center]'); labels are append-only and a
cell's current label in a context is its newest row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .db import DictConnection
from .ids import parse_uuid

LABEL_SOURCES = ("reference", "import", "expert", "pseudo")


@dataclass(frozen=True, kw_only=True)
class NewCell:
    origin_key: str
    object_key: str
    sha256: str
    dataset: str | None = None
    field_image_id: str | None = None
    box: tuple[int, int, int, int] | None = None
    mask_rle: str | None = None
    area: int | None = None
    quality_flags: Sequence[str] = ()
    algorithm_version: str | None = None


@dataclass(frozen=True, kw_only=True)
class NewLabel:
    cell_id: str
    taxonomy: str
    class_code: str
    source: str  # one of LABEL_SOURCES
    user_name: str | None = None
    campaign_id: str | None = None
    round_number: int | None = None
    decision_id: str | None = None


def register_field_image(
    conn: DictConnection, object_key: str, sha256: str, width: int, height: int, fmt: str
) -> str:
    """The id of the field image stored at ``object_key`` (registered on first sight)."""
    row = conn.execute(
        """INSERT INTO field_images (id, object_key, sha256, width, height, format)
           VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (object_key) DO UPDATE SET object_key = EXCLUDED.object_key
           RETURNING id""",
        (uuid.uuid4(), object_key, sha256, width, height, fmt),
    ).fetchone()
    assert row is not None
    return str(row["id"])


def register_cell(conn: DictConnection, cell: NewCell) -> tuple[str, bool]:
    """(cell id, created): the cell of ``cell.origin_key``, registered on first sight."""
    row = conn.execute(
        """INSERT INTO cells (id, origin_key, object_key, sha256, dataset, field_image_id,
                              box, mask_rle, area, quality_flags, algorithm_version)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (origin_key) DO NOTHING
           RETURNING id""",
        (
            uuid.uuid4(),
            cell.origin_key,
            cell.object_key,
            cell.sha256,
            cell.dataset,
            cell.field_image_id,
            list(cell.box) if cell.box else None,
            cell.mask_rle,
            cell.area,
            list(cell.quality_flags),
            cell.algorithm_version,
        ),
    ).fetchone()
    if row is not None:
        return str(row["id"]), True
    found = conn.execute(
        "SELECT id FROM cells WHERE origin_key = %s", (cell.origin_key,)
    ).fetchone()
    assert found is not None
    return str(found["id"]), False


def add_labels(conn: DictConnection, labels: Sequence[NewLabel]) -> None:
    """Append labels (one row each; a decision id labels at most one cell)."""
    for label in labels:
        if label.source not in LABEL_SOURCES:
            raise ValueError(f"label source must be one of {LABEL_SOURCES}, not {label.source!r}")
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO labels (cell_id, taxonomy, class_code, source, user_name,
                   campaign_id, round_number, decision_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            [
                (
                    label.cell_id,
                    label.taxonomy,
                    label.class_code,
                    label.source,
                    label.user_name,
                    label.campaign_id,
                    label.round_number,
                    label.decision_id,
                )
                for label in labels
            ],
        )


def cell_object_key(conn: DictConnection, cell_id: str) -> str | None:
    """The object key of a cell's image, or None for an unknown cell."""
    cell_id = str(parse_uuid(cell_id, "cell id"))
    return object_keys(conn, [cell_id]).get(cell_id)


def confirmed_examples(
    conn: DictConnection, taxonomy: str, dataset: str, class_code: str, limit: int
) -> list[str]:
    """Ids of cells of ``dataset`` with a confirmed label of ``class_code`` (a reference,
    imported or expert label): what an expert compares an unsure cell with."""
    rows = conn.execute(
        """SELECT DISTINCT ON (l.cell_id) l.cell_id FROM labels l
           JOIN cells c ON c.id = l.cell_id
           WHERE l.class_code = %s AND l.taxonomy = %s AND c.dataset = %s
             AND l.source IN ('import', 'expert', 'reference')
           ORDER BY l.cell_id LIMIT %s""",
        (class_code, taxonomy, dataset, limit),
    ).fetchall()
    return [str(r["cell_id"]) for r in rows]


def object_keys(conn: DictConnection, cell_ids: Sequence[str]) -> dict[str, str]:
    """The object key of each known cell's image, by cell id."""
    rows = conn.execute(
        "SELECT id, object_key FROM cells WHERE id = ANY(%s::uuid[])", (list(cell_ids),)
    ).fetchall()
    return {str(r["id"]): str(r["object_key"]) for r in rows}


def newest_labels(
    conn: DictConnection,
    cell_ids: Sequence[str],
    taxonomy: str,
    *,
    source: str | None = None,
    campaign_id: str | None = None,
) -> dict[str, str]:
    """Each cell's current label in ``taxonomy`` (its newest row), by cell id, optionally only
    from one source or one campaign; cells without such a label are left out."""
    rows = conn.execute(
        """SELECT DISTINCT ON (cell_id) cell_id, class_code FROM labels
           WHERE cell_id = ANY(%(ids)s::uuid[]) AND taxonomy = %(taxonomy)s
             AND (%(source)s::text IS NULL OR source = %(source)s)
             AND (%(campaign)s::uuid IS NULL OR campaign_id = %(campaign)s::uuid)
           ORDER BY cell_id, id DESC""",
        {"ids": list(cell_ids), "taxonomy": taxonomy, "source": source, "campaign": campaign_id},
    ).fetchall()
    return {str(r["cell_id"]): str(r["class_code"]) for r in rows}


def dataset_reference_labels(
    conn: DictConnection, dataset: str, taxonomy: str
) -> list[tuple[str, str]]:
    """(cell id, reference class) of every cell of ``dataset`` with a reference label in
    ``taxonomy``, ordered by cell id."""
    rows = conn.execute(
        """SELECT c.id, l.class_code FROM cells c
           JOIN LATERAL (SELECT class_code FROM labels WHERE cell_id = c.id
               AND source = 'reference' AND taxonomy = %s ORDER BY id DESC LIMIT 1) l ON true
           WHERE c.dataset = %s ORDER BY c.id""",
        (taxonomy, dataset),
    ).fetchall()
    return [(str(r["id"]), str(r["class_code"])) for r in rows]


# --- locked evaluation sets (table evaluation_sets) ------------------------------------------


def lock_evaluation_set(
    conn: DictConnection, dataset: str, taxonomy: str, actor: str, reason: str = ""
) -> bool:
    """Register ``dataset`` for evaluation only (idempotent; True when newly locked). A locked
    set is never unlocked: its cells can never have been trained on."""
    row = conn.execute(
        """INSERT INTO evaluation_sets (dataset, taxonomy, locked_by, reason)
           VALUES (%s, %s, %s, %s) ON CONFLICT (dataset) DO NOTHING RETURNING dataset""",
        (dataset, taxonomy, actor, reason or None),
    ).fetchone()
    return row is not None


def evaluation_set(conn: DictConnection, taxonomy: str) -> str | None:
    """The newest locked evaluation set of ``taxonomy``, if any."""
    row = conn.execute(
        """SELECT dataset FROM evaluation_sets WHERE taxonomy = %s
           ORDER BY locked_at DESC, dataset LIMIT 1""",
        (taxonomy,),
    ).fetchone()
    return None if row is None else str(row["dataset"])


def is_locked(conn: DictConnection, dataset: str) -> bool:
    row = conn.execute("SELECT 1 FROM evaluation_sets WHERE dataset = %s", (dataset,)).fetchone()
    return row is not None


def locked_cells(conn: DictConnection, cell_ids: Sequence[str]) -> dict[str, int]:
    """How many of ``cell_ids`` belong to each locked evaluation set (none: empty)."""
    rows = conn.execute(
        """SELECT c.dataset, count(*) AS n FROM cells c JOIN evaluation_sets e
               ON e.dataset = c.dataset
           WHERE c.id = ANY(%s::uuid[]) GROUP BY c.dataset""",
        (list(cell_ids),),
    ).fetchall()
    return {str(r["dataset"]): int(r["n"]) for r in rows}
