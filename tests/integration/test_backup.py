"""Backup and restore on real PostgreSQL and S3 over HTTP: a restore into a freshly migrated,
empty database and an empty bucket finds every report, user, audit event and object, and the
audit chain verifies; a damaged backup or a database with data is refused."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from marrowscope.cli.backup import BackupError, backup, restore, table_counts
from marrowscope.core.db import create_database, drop_database, open_pool
from marrowscope.core.objectstore import open_store, put_content_addressed
from marrowscope.core.settings import DatabaseSettings, ObjectStoreSettings
from marrowscope.curation.service import CurationService
from marrowscope.lis_api.repository import LisRepository

pytestmark = pytest.mark.integration


def fresh_database(admin_dsn: str) -> str:
    name = f"marrowscope_backup_{uuid.uuid4().hex[:8]}"
    create_database(admin_dsn, name)
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    open_pool(DatabaseSettings(dsn=dsn, pool_max_size=1)).close()  # migrated, empty
    return dsn


def test_a_restore_into_an_empty_stack_finds_everything(
    pg_admin_dsn: str, s3_settings: ObjectStoreSettings, tmp_path: Path
) -> None:
    source_dsn, target_dsn = fresh_database(pg_admin_dsn), fresh_database(pg_admin_dsn)
    try:
        pool = open_pool(DatabaseSettings(dsn=source_dsn, pool_max_size=2))
        lis = LisRepository(pool)
        CurationService(pool).ensure_user("admin", "admin", "t" * 32)
        reports = []
        for i in range(3):
            specimen, _ = lis.create_specimen("c-b", f"BM-B-{i}", "bone-marrow-aspirate")
            lis.add_image(specimen["id"], f"fields/{uuid.uuid4()}.png")
            job, _ = lis.create_job("c-b", specimen["id"], None)
            body = {"images_analysed": 1, "differential": [], "n": i}
            reports.append(
                lis.add_report(specimen["id"], job["id"], "preliminary", body, actor="test")
            )
        pool.close()
        store = open_store(s3_settings)
        keys = [
            put_content_addressed(store, "fields", f"image {i}".encode(), "image/png", ".png").key
            for i in range(5)
        ]
        taken = backup(source_dsn, store, tmp_path / "backup", quiet=True)
        assert taken.objects == 5 and taken.chain["intact"]
        assert taken.counts["reports"] == 3 and taken.counts["audit_events"] >= 3

        empty = open_store(s3_settings.model_copy(update={"bucket": f"r-{uuid.uuid4().hex[:8]}"}))
        assert empty.keys() == []
        restored = restore(target_dsn, empty, tmp_path / "backup", quiet=True)
        assert restored.counts == taken.counts and restored.chain == taken.chain
        assert empty.keys() == sorted(keys)
        assert all(empty.get(k) == store.get(k) for k in keys)  # verified against their address
        pool = open_pool(DatabaseSettings(dsn=target_dsn, pool_max_size=1, apply_migrations=False))
        again = LisRepository(pool)
        for report in reports:
            latest = again.report(report["specimen_id"])
            assert latest is not None and latest["body"] == report["body"]
        pool.close()

        # A second restore over the data is refused; so is a damaged backup.
        with pytest.raises(BackupError, match="already holds data"):
            restore(target_dsn, empty, tmp_path / "backup", quiet=True)
        assert table_counts(target_dsn) == taken.counts
        damaged = tmp_path / "backup" / "objects" / keys[0]
        damaged.write_bytes(b"not what was stored")
        third = fresh_database(pg_admin_dsn)
        try:
            with pytest.raises(BackupError, match="does not match its manifest"):
                restore(third, empty, tmp_path / "backup", quiet=True)
        finally:
            drop_database(pg_admin_dsn, psycopg.conninfo.conninfo_to_dict(third)["dbname"])
        with pytest.raises(BackupError, match="not empty"):
            backup(source_dsn, store, tmp_path / "backup", quiet=True)
    finally:
        for dsn in (source_dsn, target_dsn):
            drop_database(pg_admin_dsn, str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]))
