"""The house rules that the import graph does not show, read from the code itself.

- Every table has one owner: the module that writes it. A second writer fails the test.
- A service's tables are read only inside that service; the core's tables (cell registry,
  model registry, audit trail) are read and written only through their module.
- Services do not import each other (the CLI is a client of all of them), and the core
  imports no service.
- Module paths equal import paths.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import marrowscope
import marrowscope.core.db

PACKAGE = Path(marrowscope.__file__).resolve().parent
MIGRATIONS = PACKAGE / "core" / "migrations"
SERVICES = ("segmentation", "inference", "training", "curation", "orchestrator", "lis_api")

# table -> the one module that writes it (module path below marrowscope).
OWNERS = {
    "schema_migrations": "core.db",
    # the core's registries
    "field_images": "core.cell_registry",
    "cells": "core.cell_registry",
    "labels": "core.cell_registry",
    "evaluation_sets": "core.cell_registry",
    "model_versions": "core.model_registry",
    "model_alias_changes": "core.model_registry",
    "audit_events": "core.audit",
    # the orchestrator: campaigns of SSL rounds
    "campaigns": "orchestrator.repository",
    "rounds": "orchestrator.repository",
    "campaign_cells": "orchestrator.repository",
    "predictions": "orchestrator.repository",
    # training
    "training_jobs": "training.repository",
    # curation: users, review queues, batches, tasks, decisions, assignments, web sessions
    "users": "curation.service",
    "review_queues": "curation.service",
    "review_batches": "curation.service",
    "review_tasks": "curation.service",
    "decisions": "curation.service",
    "queue_assignments": "curation.workbench",
    "web_sessions": "curation.sessions",
    # the LIS API
    "specimens": "lis_api.repository",
    "specimen_images": "lis_api.repository",
    "analysis_jobs": "lis_api.repository",
    "analysis_cells": "lis_api.repository",
    "analysis_fields": "lis_api.repository",
    "instrument_profiles": "lis_api.instruments",
    "cell_corrections": "lis_api.repository",
    "reports": "lis_api.repository",
    "api_clients": "lis_api.auth",
}

# Imports across services that are there on purpose, with the reason.
ALLOWED_SERVICE_IMPORTS = {
    # The field U-Net is trained on the very input resampling segmentation serves it with.
    ("training", "segmentation"),
}

WRITE = re.compile(
    r"\b(?:INSERT\s+INTO|(?<!DO\s)UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?|COPY)\s+([a-z_]+)\b"
)
READ = re.compile(r"\b(?:FROM|JOIN)\s+([a-z_]+)\b")


def schema_tables() -> set[str]:
    """Every table the migrations leave behind (created, minus renamed away, plus new names)."""
    tables: set[str] = set()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        sql = path.read_text()
        tables |= set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)", sql))
        for old, new in re.findall(r"ALTER TABLE ([a-z_]+) RENAME TO ([a-z_]+)", sql):
            tables.discard(old)
            tables.add(new)
        tables -= set(re.findall(r"DROP TABLE (?:IF EXISTS )?([a-z_]+)", sql))
    return tables


def modules() -> dict[str, Path]:
    """module path below marrowscope -> file, generated gRPC code left out."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        if rel.parts[0] == "v1":
            continue
        out[".".join(rel.parts)] = path
    return out


def sql_strings(path: Path) -> list[str]:
    """The string literals of a module that look like SQL (docstrings and prose left out)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        else:
            continue
        if re.search(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b", text):
            found.append(text)
    return found


def table_access() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(table -> modules writing it, table -> modules reading it)."""
    tables = schema_tables() | {"schema_migrations"}
    writers: dict[str, set[str]] = defaultdict(set)
    readers: dict[str, set[str]] = defaultdict(set)
    for name, path in modules().items():
        for sql in sql_strings(path):
            for table in WRITE.findall(sql):
                if table in tables:
                    writers[table].add(name)
            for table in READ.findall(sql):
                if table in tables:
                    readers[table].add(name)
    return writers, readers


def test_every_table_has_one_declared_owner() -> None:
    tables = schema_tables() | {"schema_migrations"}
    assert tables == set(OWNERS), (
        f"tables without an owner: {sorted(tables - set(OWNERS))}; "
        f"owners of tables that do not exist: {sorted(set(OWNERS) - tables)}"
    )


def test_only_the_owner_writes_a_table() -> None:
    writers, _ = table_access()
    assert writers, "no SQL writes found at all: the scanner is broken"
    assert "core.cell_registry" in writers["cells"]
    second = {t: sorted(w - {OWNERS[t]}) for t, w in writers.items() if w - {OWNERS[t]}}
    assert not second, f"tables written outside their owner module: {second}"


def test_reads_go_through_the_owner() -> None:
    """A service's tables are read inside that service, the core's tables only by their owner
    module: everyone else calls its functions or the owner's API."""
    _, readers = table_access()
    foreign = {}
    for table, names in readers.items():
        owner = OWNERS[table]
        owner_package = owner.split(".")[0]
        if owner_package == "core":
            outside = sorted(n for n in names if n != owner)
        else:
            outside = sorted(n for n in names if n.split(".")[0] != owner_package)
        if outside:
            foreign[table] = outside
    assert not foreign, f"tables read outside their owner: {foreign}"


def imported_packages(path: Path) -> set[str]:
    """The marrowscope sub-packages a module imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    own = path.relative_to(PACKAGE).parts[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.add(own)
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "marrowscope" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_services_do_not_import_each_other_and_core_imports_no_service() -> None:
    crossing = set()
    for name, path in modules().items():
        own = name.split(".")[0]
        if own in ("cli", "__init__"):
            continue
        for package in imported_packages(path) & set(SERVICES):
            if package != own and (own, package) not in ALLOWED_SERVICE_IMPORTS:
                crossing.add(f"{name} imports marrowscope.{package}")
    assert not crossing, sorted(crossing)


def test_module_paths_are_import_paths() -> None:
    assert Path(marrowscope.core.db.__file__).resolve() == PACKAGE / "core" / "db.py"
    assert PACKAGE.parent.name == "services" and PACKAGE.name == "marrowscope"
