"""Has the database moved since the backup, and which tables got writes after it? Against a real cluster.

The manifest (version 2) records the schema fingerprint and per-table stats in the snapshot
pg_dump dumps; db_restore compares the live database with it before restoring (only_if_moved)
and the database it set aside after a swap (writes_after_backup).
"""

from __future__ import annotations

import json
import re
import time

import pytest

from helpers import run_module
from sandbox.sample_db import MIGRATIONS, populate, table_fingerprints

VERSION = MIGRATIONS[-1]
TABLES = ["analytics.play_event", "public.Rom", "public.User", "public._prisma_migrations"]
NEW_USER = "after-backup@treazris.land"
SCHEMA_DIFFERS = "schema differs from the backup's (tables, columns, indexes or constraints)"
V1_NOTE = "the manifest (version 1) records no schema fingerprint: compared by schema version only"


@pytest.fixture
def target(pg_a, sample_db, request):
    """A copy of the sample database (200,000 roms) for one test."""
    name = "moved_" + request.node.name[5:30].lower()
    pg_a.execute('CREATE DATABASE "%s" TEMPLATE "%s"' % (name, sample_db))
    return name


def backup(pg, dbname, dest, **options):
    run = run_module("db_backup", dict(dsn=pg.dsn(dbname), dest=dest, **options))
    assert not run.failed, run.msg
    with open(run.result["manifest_path"]) as handle:
        return run.result, json.load(handle)


def restore(pg, dbname, src, check=False, **options):
    return run_module("db_restore", dict(pg.params(dbname), src=src, **options), check=check)


def fingerprints(pg, dbname):
    with pg.connect(dbname) as conn:
        return table_fingerprints(conn)


def asides(pg, dbname):
    return [name for name in pg.databases() if re.fullmatch(re.escape(dbname) + r"__before_restore_\d{14}", name)]


def test_manifest_version_2_records_the_schema_fingerprint_and_table_stats(pg_a, target, backup_dir):
    result, manifest = backup(pg_a, target, backup_dir)
    assert manifest["manifest_version"] == 2
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["schema_fingerprint"])
    assert result["schema_fingerprint"] == manifest["schema_fingerprint"]
    assert manifest["failed_migrations"] == [] and manifest["digest_max_bytes"] == 268435456
    stats = manifest["table_stats"]
    assert sorted(stats) == TABLES
    assert {name: stat["rows"] for name, stat in stats.items()} == {
        name: pg_a.query('SELECT count(*) FROM "%s"."%s"' % tuple(name.split(".")), target)[0][0] for name in TABLES}
    assert stats["public.Rom"]["rows"] == 200_000
    assert stats["public.User"]["columns"] == ["id", "email", "role", "preferences", "created_at"]
    for stat in stats.values():
        assert re.fullmatch(r"[0-9a-f]{32}", stat["digest"]) and stat["writes"] is None

    # A second backup of the unchanged database records the same fingerprint and digests.
    _result, again = backup(pg_a, target, backup_dir)
    assert again["schema_fingerprint"] == manifest["schema_fingerprint"] and again["table_stats"] == stats


def test_moved_database_is_restored_and_the_tables_written_after_the_backup_are_named(pg_a, target, backup_dir):
    result, _manifest = backup(pg_a, target, backup_dir)
    at_backup = fingerprints(pg_a, target)

    plan = restore(pg_a, target, result["path"], check=True, only_if_moved=True)
    assert not plan.failed, plan.msg
    assert plan.result["database_moved"] is False and plan.result["moved_because"] == []

    pg_a.execute("""INSERT INTO "User" (email) VALUES ('%s')""" % NEW_USER, target)
    pg_a.execute("""UPDATE "Rom" SET title = 'renamed after the backup' WHERE id = 7""", target)
    # What a migration does: a new column (and no row written).
    pg_a.execute("ALTER TABLE analytics.play_event ADD COLUMN source text NOT NULL DEFAULT 'web'", target)
    moved_state = fingerprints(pg_a, target)
    databases = pg_a.databases()

    with pg_a.connect(target) as app_session:  # the application is still connected: the plan still works
        plan = restore(pg_a, target, result["path"], check=True, only_if_moved=True)
        assert not plan.failed, plan.msg
        assert plan.result["changed"] is False and plan.result["other_sessions"] == 1
        assert plan.result["database_moved"] is True and plan.result["moved_because"] == [SCHEMA_DIFFERS]
        assert pg_a.databases() == databases
        app_session.execute("SELECT 1")

    run = restore(pg_a, target, result["path"], only_if_moved=True, terminate_sessions=True)
    assert not run.failed, run.msg
    restored = run.result
    assert restored["changed"] is True and restored["database_moved"] is True
    assert restored["moved_because"] == [SCHEMA_DIFFERS]
    previous = restored["previous_database"]
    assert previous.startswith(target + "__before_restore_")
    assert restored["writes_after_backup"] == [
        {"table": "public.Rom", "rows_at_backup": 200_000, "rows_now": 200_000, "how": "changed (digest)"},
        {"table": "public.User", "rows_at_backup": 500, "rows_now": 501, "how": "changed (row count)"},
    ]
    assert restored["dropped_previous"] == []
    assert restored["msg"] == (
        "restored %s into %s; the previous database is kept as %s; tables written after the backup, whose rows are "
        "only there: public.Rom (changed (digest)), public.User (changed (row count))" % (result["path"], target,
                                                                                          previous))
    assert fingerprints(pg_a, target) == at_backup
    assert fingerprints(pg_a, previous) == moved_state
    assert pg_a.query('SELECT count(*) FROM "User" WHERE email = %s', previous, (NEW_USER,)) == [(1,)]
    assert pg_a.query('SELECT count(*) FROM "User" WHERE email = %s', target, (NEW_USER,)) == [(0,)]

    # The restored database is the backup again: asked once more, it has not moved.
    again = restore(pg_a, target, result["path"], only_if_moved=True)
    assert not again.failed, again.msg
    assert again.result["changed"] is False and again.result["database_moved"] is False


def test_unmoved_database_is_not_restored_and_keeps_the_rows_written_since(pg_a, target, backup_dir):
    result, _manifest = backup(pg_a, target, backup_dir)
    pg_a.execute("""INSERT INTO "User" (email) VALUES ('%s')""" % NEW_USER, target)
    pg_a.execute("DELETE FROM analytics.play_event WHERE id <= 100", target)
    written = fingerprints(pg_a, target)
    databases = pg_a.databases()

    run = restore(pg_a, target, result["path"], only_if_moved=True, terminate_sessions=True)
    assert not run.failed, run.msg
    assert run.result["changed"] is False
    assert run.result["database_moved"] is False and run.result["moved_because"] == []
    assert run.msg == ("database %s has not moved since the backup (schema version %s, same schema): not restored, "
                       "so no write made since the backup is lost" % (target, VERSION))
    assert "previous_database" not in run.result
    assert pg_a.databases() == databases
    assert fingerprints(pg_a, target) == written
    assert pg_a.query('SELECT count(*) FROM "User" WHERE email = %s', target, (NEW_USER,)) == [(1,)]


def test_a_new_schema_version_and_a_failed_migration_row_count_as_moved(pg_a, target, backup_dir):
    result, _manifest = backup(pg_a, target, backup_dir)
    pg_a.execute("INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, logs) VALUES "
                 "('failed-1', 'x', '20250701000000_rom_platform', now(), 'Database error')", target)
    plan = restore(pg_a, target, result["path"], check=True, only_if_moved=True)
    assert not plan.failed, plan.msg
    assert plan.result["database_moved"] is True
    assert plan.result["moved_because"] == ["1 failed migration row: 20250701000000_rom_platform"]

    pg_a.execute("UPDATE _prisma_migrations SET finished_at = now() WHERE id = 'failed-1'", target)
    plan = restore(pg_a, target, result["path"], check=True, only_if_moved=True)
    assert plan.result["database_moved"] is True
    assert plan.result["moved_because"] == ["schema version %s -> 20250701000000_rom_platform" % VERSION]

    # A database that is not there has moved too (there is nothing to lose).
    plan = restore(pg_a, target + "_gone", result["path"], check=True, only_if_moved=True)
    assert plan.result["database_moved"] is True
    assert plan.result["moved_because"] == ["database %s_gone does not exist" % target]


def test_a_database_that_cannot_be_read_is_never_restored_by_only_if_moved(pg_a, target, backup_dir):
    result, _manifest = backup(pg_a, target, backup_dir)
    pg_a.execute('ALTER DATABASE "%s" ALLOW_CONNECTIONS false' % target)
    databases = pg_a.databases()

    run = restore(pg_a, target, result["path"], only_if_moved=True, terminate_sessions=True)
    assert run.failed
    assert run.msg.startswith("cannot tell whether database %s moved since the backup: cannot connect to "
                              "postgres@127.0.0.1:%d/%s: " % (target, pg_a.port, target))
    assert run.msg.endswith("; nothing was restored")
    assert pg_a.password not in run.output
    assert pg_a.databases() == databases

    plan = restore(pg_a, target, result["path"], check=True)
    assert not plan.failed, plan.msg
    assert plan.result["database_moved"] is True
    assert plan.result["moved_because"][0].startswith("could not be compared with the backup (cannot connect to ")


def test_version_1_manifest_is_compared_by_schema_version_only_and_still_restores(
        pg_a, target, backup_dir, tmp_path):
    result, manifest = backup(pg_a, target, backup_dir)
    for key in ("schema_fingerprint", "table_stats", "failed_migrations", "digest_max_bytes"):
        del manifest[key]
    manifest["manifest_version"] = 1
    old_manifest = tmp_path / "v1.manifest.json"
    old_manifest.write_text(json.dumps(manifest))
    pg_a.execute('ALTER TABLE "Rom" ADD COLUMN rating int', target)  # invisible to a version-1 manifest
    databases = pg_a.databases()

    run = restore(pg_a, target, result["path"], manifest=str(old_manifest), only_if_moved=True)
    assert not run.failed, run.msg
    assert run.result["changed"] is False and run.result["database_moved"] is False
    assert run.result["moved_because"] == [V1_NOTE]
    assert run.msg == ("database %s has not moved since the backup (schema version %s; its manifest records no "
                       "schema fingerprint, so only the version was compared): not restored, so no write made since "
                       "the backup is lost" % (target, VERSION))
    assert pg_a.databases() == databases

    pg_a.execute("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at) VALUES "
                 "('new-1', 'x', now(), '20250701000000_rom_platform', now())", target)
    run = restore(pg_a, target, result["path"], manifest=str(old_manifest), only_if_moved=True)
    assert not run.failed, run.msg
    assert run.result["changed"] is True and run.result["database_moved"] is True
    assert run.result["moved_because"] == ["schema version %s -> 20250701000000_rom_platform" % VERSION, V1_NOTE]
    assert run.result["writes_after_backup"] is None  # a version-1 manifest has no table stats to compare with
    assert run.result["previous_database"].startswith(target + "__before_restore_")
    assert pg_a.query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'rating'", target) == [(0,)]


def test_tables_above_digest_max_bytes_are_compared_by_write_counters(pg_a, target, backup_dir):
    result, manifest = backup(pg_a, target, backup_dir, digest_max_bytes=1_000_000)
    stats = manifest["table_stats"]
    assert stats["public.Rom"]["digest"] is None and stats["public.Rom"]["writes"] == 0
    assert stats["analytics.play_event"]["digest"] is None
    assert stats["public.User"]["digest"] is not None and stats["public.User"]["writes"] is None

    pg_a.execute("""UPDATE "Rom" SET title = 'renamed after the backup' WHERE id = 7""", target)
    pg_a.execute("INSERT INTO analytics.play_event (user_id, rom_id, played_at) VALUES (1, 1, now())", target)
    pg_a.execute("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at) VALUES "
                 "('new-1', 'x', now(), '20250701000000_rom_platform', now())", target)

    run = restore(pg_a, target, result["path"], only_if_moved=True)
    assert not run.failed, run.msg
    # _prisma_migrations gained a row too, but that is the migration itself, not a write of the application.
    assert run.result["writes_after_backup"] == [
        {"table": "analytics.play_event", "rows_at_backup": 20_000, "rows_now": 20_001, "how": "changed (row count)"},
        {"table": "public.Rom", "rows_at_backup": 200_000, "rows_now": 200_000,
         "how": "changed (write counters, table above digest_max_bytes)"},
    ]


def test_keep_previous_drops_the_older_previous_databases_only(pg_a, backup_dir):
    target = "keep_target"
    pg_a.create_database(target)
    with pg_a.connect(target) as conn:
        populate(conn, rom_rows=1000, users=20, events=100)
    for name in (target + "__before_restore_20200101000000", target + "__before_restore_20210101000000",
                 "other__before_restore_20200101000000", target + "__before_restore_notes"):
        pg_a.create_database(name)
    result, _manifest = backup(pg_a, target, backup_dir)

    first = restore(pg_a, target, result["path"])
    assert not first.failed, first.msg
    assert first.result["dropped_previous"] == []
    assert len(asides(pg_a, target)) == 3
    time.sleep(1.1)  # previous databases are named by the second

    second = restore(pg_a, target, result["path"], keep_previous=1)
    assert not second.failed, second.msg
    newest = second.result["previous_database"]
    assert second.result["dropped_previous"] == [first.result["previous_database"],
                                                 target + "__before_restore_20210101000000",
                                                 target + "__before_restore_20200101000000"]
    assert asides(pg_a, target) == [newest]
    assert "other__before_restore_20200101000000" in pg_a.databases()
    assert target + "__before_restore_notes" in pg_a.databases()
    assert second.result["writes_after_backup"] == []
    assert second.result["msg"].endswith("; it holds no write made after the backup; dropped older previous "
                                         "databases: %s" % ", ".join(second.result["dropped_previous"]))

    refused = restore(pg_a, target, result["path"], keep_previous=0)
    assert refused.failed
    assert refused.msg == ("keep_previous must be at least 1 (the database just set aside is always kept; "
                           "drop_previous drops it)")
