"""Backups and restores against real PostgreSQL clusters: content must come back identical."""

from __future__ import annotations

import hashlib
import json
import os
import stat

from helpers import run_module
from sandbox.sample_db import MIGRATIONS, table_fingerprints


def fingerprints(cluster, dbname):
    with cluster.connect(dbname) as conn:
        return table_fingerprints(conn)


def backup(cluster, dbname, dest, **options):
    run = run_module("db_backup", dict(dsn=cluster.dsn(dbname), dest=dest, **options))
    assert not run.failed, run.msg
    return run.result


def test_round_trip_to_another_cluster_gives_identical_tables(pg_a, pg_b, sample_db, backup_dir):
    result = backup(pg_a, sample_db, backup_dir)

    assert result["changed"] is True
    path = result["path"]
    assert os.path.basename(path).startswith("backup_") and path.endswith(".dump")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(result["manifest_path"]).st_mode) == 0o600
    with open(path, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == result["sha256"]
    with open(result["manifest_path"]) as handle:
        manifest = json.load(handle)
    assert manifest["sha256"] == result["sha256"]
    assert manifest["size"] == os.path.getsize(path)
    assert manifest["database"] == sample_db and manifest["format"] == "custom"
    assert manifest["server_version"].startswith("15.") and manifest["pg_dump_version"].startswith("15.")
    assert manifest["schema_version"] == {"dialect": "prisma", "table": "_prisma_migrations",
                                          "version": MIGRATIONS[-1], "applied_count": len(MIGRATIONS)}
    assert manifest["tables"] == ['analytics.play_event', 'public.Rom', 'public.User', 'public._prisma_migrations']
    assert manifest["started_at"] <= manifest["finished_at"]
    # Nothing but the archive and its manifest (no temporary file left).
    assert sorted(os.listdir(backup_dir)) == sorted([os.path.basename(path), os.path.basename(result["manifest_path"])])

    run = run_module("db_restore", dict(pg_b.params("restored_app"), src=path))
    assert not run.failed, run.msg
    restored = run.result
    assert restored["changed"] is True and restored["database_existed"] is False
    assert restored["table_count"] == 4
    assert restored["rows"]["public.Rom"] == 200_000
    assert restored["restored_schema_version"]["version"] == MIGRATIONS[-1]
    assert fingerprints(pg_b, "restored_app") == fingerprints(pg_a, sample_db)
    assert fingerprints(pg_a, sample_db)["public.Rom"][0] == 200_000


def test_directory_format_with_parallel_jobs_round_trips(pg_a, pg_b, sample_db, backup_dir):
    result = backup(pg_a, sample_db, backup_dir, format="directory", jobs=2)
    assert os.path.isdir(result["path"]) and result["path"].endswith(".dir")
    with open(result["manifest_path"]) as handle:
        manifest = json.load(handle)
    assert "toc.dat" in manifest["files"]

    run = run_module("db_restore", dict(pg_b.params("restored_dir"), src=result["path"], jobs=2))
    assert not run.failed, run.msg
    assert fingerprints(pg_b, "restored_dir") == fingerprints(pg_a, sample_db)


def test_every_backup_run_writes_a_new_backup(pg_a, sample_db, backup_dir):
    first = backup(pg_a, sample_db, backup_dir)
    second = backup(pg_a, sample_db, backup_dir)
    assert first["changed"] and second["changed"]
    assert first["path"] != second["path"]
    assert os.path.exists(first["path"]) and os.path.exists(second["path"])


def test_swap_restore_keeps_the_previous_database_aside(pg_a, sample_db, backup_dir):
    pg_a.execute("CREATE DATABASE swap_target TEMPLATE %s" % sample_db)
    result = backup(pg_a, "swap_target", backup_dir)
    before = fingerprints(pg_a, "swap_target")
    pg_a.execute("""UPDATE "Rom" SET title = 'changed after backup' WHERE id <= 10""", "swap_target")
    pg_a.execute("DELETE FROM analytics.play_event", "swap_target")
    changed_state = fingerprints(pg_a, "swap_target")

    run = run_module("db_restore", dict(pg_a.params("swap_target"), src=result["path"]))
    assert not run.failed, run.msg
    previous = run.result["previous_database"]
    assert previous.startswith("swap_target__before_restore_")
    assert fingerprints(pg_a, "swap_target") == before
    assert fingerprints(pg_a, previous) == changed_state
    assert not [name for name in pg_a.databases() if "__restoring_" in name]


def test_clean_restore_in_place(pg_a, sample_db, backup_dir):
    pg_a.execute("CREATE DATABASE clean_target TEMPLATE %s" % sample_db)
    result = backup(pg_a, "clean_target", backup_dir)
    before = fingerprints(pg_a, "clean_target")
    pg_a.execute("""TRUNCATE "User" CASCADE""", "clean_target")
    databases = pg_a.databases()

    run = run_module("db_restore", dict(pg_a.params("clean_target"), src=result["path"], method="clean"))
    assert not run.failed, run.msg
    assert run.result["previous_database"] is None
    assert fingerprints(pg_a, "clean_target") == before
    assert pg_a.databases() == databases


def test_restore_refuses_while_sessions_are_open_unless_told_to_end_them(pg_a, sample_db, backup_dir):
    pg_a.execute("CREATE DATABASE busy_target TEMPLATE %s" % sample_db)
    result = backup(pg_a, "busy_target", backup_dir)
    pg_a.execute("DELETE FROM analytics.play_event", "busy_target")
    changed_state = fingerprints(pg_a, "busy_target")
    databases = pg_a.databases()

    with pg_a.connect("busy_target") as app_session:
        run = run_module("db_restore", dict(pg_a.params("busy_target"), src=result["path"]))
        assert run.failed
        assert run.msg == ("database busy_target has 1 other session(s): stop application traffic first, "
                           "or set terminate_sessions=true; nothing was restored")
        assert pg_a.databases() == databases
        assert fingerprints(pg_a, "busy_target") == changed_state

        run = run_module("db_restore", dict(pg_a.params("busy_target"), src=result["path"],
                                            terminate_sessions=True, drop_previous=True))
        assert not run.failed, run.msg
        assert app_session.closed or app_session.broken or _session_is_dead(app_session)
    assert run.result["previous_database"] is None
    assert pg_a.databases() == databases
    assert fingerprints(pg_a, "busy_target")["analytics.play_event"][0] == 20_000


def _session_is_dead(conn):
    try:
        conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any error proves the session was ended
        return True
    return False


def test_retention_keeps_the_newest_backups_of_that_database_only(pg_a, sample_db, backup_dir):
    pg_a.execute("CREATE DATABASE other_app")
    other = backup(pg_a, "other_app", backup_dir)
    written = [backup(pg_a, sample_db, backup_dir, keep=2) for _round in range(3)]

    assert written[0]["removed"] == [] and written[1]["removed"] == []
    assert written[2]["removed"] == [written[0]["path"]]
    assert not os.path.exists(written[0]["path"]) and not os.path.exists(written[0]["manifest_path"])
    for kept in written[1:] + [other]:
        assert os.path.exists(kept["path"]) and os.path.exists(kept["manifest_path"])


def test_check_mode_writes_nothing_and_reports_no_change(pg_a, pg_b, sample_db, backup_dir):
    run = run_module("db_backup", dict(dsn=pg_a.dsn(sample_db), dest=backup_dir), check=True)
    assert not run.failed, run.msg
    assert run.result["changed"] is False
    assert run.result["path"].startswith(backup_dir)
    assert os.listdir(backup_dir) == []

    real = backup(pg_a, sample_db, backup_dir)
    files = sorted(os.listdir(backup_dir))
    databases = pg_b.databases()
    run = run_module("db_restore", dict(pg_b.params("check_mode_target"), src=real["path"]), check=True)
    assert not run.failed, run.msg
    assert run.result["changed"] is False and run.result["sha256"] == real["sha256"]
    assert pg_b.databases() == databases
    assert sorted(os.listdir(backup_dir)) == files


def test_password_with_passfile_special_characters_reaches_pg_dump(pg_a, sample_db, backup_dir):
    password = "c0l:on\\back slash'q"
    pg_a.execute("CREATE ROLE backup_operator LOGIN SUPERUSER PASSWORD '%s'" % password.replace("'", "''"))
    run = run_module("db_backup", dict(host="127.0.0.1", port=pg_a.port, user="backup_operator",
                                       password=password, dbname=sample_db, dest=backup_dir))
    assert not run.failed, run.msg
    assert run.result["table_count"] == 4
