"""The database lock: migrations and restores of one database never overlap, against a real cluster.

db_migrate and db_restore hold a session-level advisory lock in the maintenance database,
keyed by the target database's name, for their whole run. A real migration that sleeps
holds it for a while (as an orphaned migration would after the controller died).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import psycopg
import pytest

from helpers import REPO, finish_background, run_module, run_tasks

DEPLOY = [sys.executable, os.path.join(REPO, "sandbox", "prisma_migrate.py"), "deploy"]
BASE = {"20250101000000_init": 'CREATE TABLE "Rom" (id serial PRIMARY KEY, title text NOT NULL);'}
SLOW = {"20250701000000_rom_platform": 'SELECT pg_sleep(%s); ALTER TABLE "Rom" ADD COLUMN platform text;'}


def lock_key(dbname):
    """The key as the brief defines it: signed 64 bits of sha256("treazrisland.ops:" + name)."""
    digest = hashlib.sha256(("treazrisland.ops:" + dbname).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def write_release(root, migrations):
    directory = root / "prisma" / "migrations"
    directory.mkdir(parents=True)
    for name, script in migrations.items():
        (directory / name).mkdir()
        (directory / name / "migration.sql").write_text(script + "\n")
    return str(directory)


def migrate_args(pg, dbname, release, **more):
    return dict(dsn=pg.dsn(dbname), command=DEPLOY + [release], migrations_dir=release, **more)


@pytest.fixture
def app_db(pg_a, tmp_path, request):
    """A database with the base release applied, and the migrations directory of a slow next release."""
    name = "lock_" + request.node.name[5:30].lower()
    pg_a.create_database(name)
    base = write_release(tmp_path / "base", BASE)
    run = run_module("db_migrate", migrate_args(pg_a, name, base))
    assert not run.failed, run.msg
    return name


def slow_release(tmp_path, seconds):
    return write_release(tmp_path / "next", dict(BASE, **{k: v % seconds for k, v in SLOW.items()}))


def holder(pg, dbname):
    """(pid, backend_start in UTC) of the session holding dbname's lock in the postgres database, or None."""
    unsigned = lock_key(dbname) & 0xFFFFFFFFFFFFFFFF
    rows = pg.query(
        """SELECT l.pid, to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           JOIN pg_database d ON d.oid = l.database AND d.datname = 'postgres'
           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
             AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid""",
        params=(unsigned >> 32, unsigned & 0xFFFFFFFF))
    return rows[0] if rows else None


def wait_for_holder(pg, dbname, process=None):
    deadline = time.monotonic() + 60
    while True:
        found = holder(pg, dbname)
        if found:
            return found
        assert time.monotonic() < deadline, "nobody took the lock of %s" % dbname
        assert process is None or process.poll() is None, "the background run ended before taking the lock"
        time.sleep(0.1)


def locked_message(dbname, pid, since, application, origin="127.0.0.1"):
    return ("database %s is locked by another treazrisland.ops run (pid %d, application %s, from %s, since %s): "
            "nothing was done; wait for it to finish or stop it" % (dbname, pid, application, origin, since))


def versions(pg, dbname):
    return pg.query("SELECT migration_name, finished_at IS NOT NULL FROM _prisma_migrations ORDER BY 1", dbname)


def database_oid(pg, dbname):
    return pg.query("SELECT oid FROM pg_database WHERE datname = %s", params=(dbname,))[0][0]


def test_a_held_lock_stops_migrations_up_and_down_with_the_holder_named_until_it_is_released(
        pg_a, app_db, tmp_path):
    release = write_release(tmp_path / "next", dict(BASE, **{"20250701000000_rom_platform":
                                                             'ALTER TABLE "Rom" ADD COLUMN platform text;'}))
    before = versions(pg_a, app_db)
    with psycopg.connect(pg_a.dsn("postgres"), autocommit=True, application_name="treazrisland.ops db_restore") \
            as other_run:
        assert other_run.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(app_db),)).fetchone()[0]
        pid, since = holder(pg_a, app_db)

        started = time.monotonic()
        run = run_module("db_migrate", migrate_args(pg_a, app_db, release, lock_timeout=2))
        assert run.failed
        assert run.msg == locked_message(app_db, pid, since, "db_restore")
        assert run.result["lock_holder"]["pid"] == pid
        assert run.result["lock_holder"]["application_name"] == "treazrisland.ops db_restore"
        assert time.monotonic() - started >= 2
        assert versions(pg_a, app_db) == before
        assert pg_a.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'Rom' "
                          "AND column_name = 'platform'", app_db) == [(0,)]

        # Check mode changes nothing, so it does not wait for the lock.
        check = run_module("db_migrate", migrate_args(pg_a, app_db, release, lock_timeout=0), check=True)
        assert not check.failed, check.msg
        assert check.result["pending"] == ["20250701000000_rom_platform"]
    # Released (the session ended): the migration proceeds.
    run = run_module("db_migrate", migrate_args(pg_a, app_db, release, lock_timeout=2))
    assert not run.failed, run.msg
    assert run.result["changed"] is True and run.result["version"] == "20250701000000_rom_platform"

    down = [sys.executable, os.path.join(REPO, "sandbox", "prisma_migrate.py"), "down", release, "--to", "{to}"]
    (tmp_path / "next" / "prisma" / "migrations" / "20250701000000_rom_platform" / "down.sql").write_text(
        'ALTER TABLE "Rom" DROP COLUMN platform;\n')
    down_args = dict(dsn=pg_a.dsn(app_db), direction="down", to="20250101000000_init", down_command=down)
    with psycopg.connect(pg_a.dsn("postgres"), autocommit=True) as other_run:
        other_run.execute("SELECT pg_advisory_lock(%s)", (lock_key(app_db),))
        pid, since = holder(pg_a, app_db)
        run = run_module("db_migrate", dict(down_args, lock_timeout=0))
        assert run.failed
        assert run.msg == locked_message(app_db, pid, since, "unnamed")
        assert versions(pg_a, app_db)[-1] == ("20250701000000_rom_platform", True)
    run = run_module("db_migrate", down_args)
    assert not run.failed, run.msg
    assert run.result["changed"] is True and run.result["version"] == "20250101000000_init"


def test_a_restore_waits_for_a_running_migration_names_it_and_proceeds_once_it_is_done(
        pg_a, app_db, tmp_path, backup_dir):
    backup = run_module("db_backup", dict(dsn=pg_a.dsn(app_db), dest=backup_dir))
    assert not backup.failed, backup.msg
    release = slow_release(tmp_path, 12)
    migration = run_tasks([{"name": "slow", "ignore_errors": True,
                            "treazrisland.ops.db_migrate": migrate_args(pg_a, app_db, release)}], background=True)
    pid, since = wait_for_holder(pg_a, app_db, migration)
    assert pg_a.query("SELECT application_name FROM pg_stat_activity WHERE pid = %s", params=(pid,)) == [
        ("treazrisland.ops db_migrate",)]
    databases, oid = pg_a.databases(), database_oid(pg_a, app_db)

    run = run_module("db_restore", dict(pg_a.params(app_db), src=backup.result["path"], terminate_sessions=True,
                                        lock_timeout=2))
    assert run.failed
    assert run.msg == locked_message(app_db, pid, since, "db_migrate")
    assert pg_a.databases() == databases and database_oid(pg_a, app_db) == oid

    migrated = finish_background(migration)
    assert not migrated.failed, migrated.msg
    assert migrated.result["changed"] is True and migrated.result["version"] == "20250701000000_rom_platform"
    # The migration was not cut short by a restore swapping the database under it.
    assert database_oid(pg_a, app_db) == oid
    assert versions(pg_a, app_db) == [("20250101000000_init", True), ("20250701000000_rom_platform", True)]

    run = run_module("db_restore", dict(pg_a.params(app_db), src=backup.result["path"], terminate_sessions=True,
                                        lock_timeout=2))
    assert not run.failed, run.msg
    assert run.result["changed"] is True
    assert run.result["restored_schema_version"]["version"] == "20250101000000_init"
    assert run.result["previous_database"].startswith(app_db + "__before_restore_")


def test_a_second_migration_waits_for_the_first_then_finds_nothing_pending(pg_a, app_db, tmp_path):
    release = slow_release(tmp_path, 6)
    first = run_tasks([{"name": "first", "ignore_errors": True,
                        "treazrisland.ops.db_migrate": migrate_args(pg_a, app_db, release)}], background=True)
    wait_for_holder(pg_a, app_db, first)

    second = run_module("db_migrate", migrate_args(pg_a, app_db, release))
    first = finish_background(first)
    assert not first.failed, first.msg
    assert first.result["changed"] is True and first.result["version"] == "20250701000000_rom_platform"
    assert not second.failed, second.msg
    assert second.result["changed"] is False
    assert second.result["msg"] == "no pending migration"
    assert second.result["version"] == "20250701000000_rom_platform"
    assert versions(pg_a, app_db) == [("20250101000000_init", True), ("20250701000000_rom_platform", True)]
