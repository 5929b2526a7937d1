"""Schema versions and migrations against the real PostgreSQL of the harness.

The migration command is sandbox/prisma_migrate.py, which applies migrations
on disk and in _prisma_migrations as `prisma migrate deploy` does (Prisma's CLI
cannot run here: it downloads its engines at first use).
"""

from __future__ import annotations

import os
import sys

import pytest

from helpers import REPO, run_module, run_tasks

RUNNER = os.path.join(REPO, "sandbox", "prisma_migrate.py")
DEPLOY = [sys.executable, RUNNER, "deploy"]

BASE = {
    "20250101000000_init": ('CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL UNIQUE);',
                            'DROP TABLE "User";'),
    "20250301000000_rom": ('CREATE TABLE "Rom" (id serial PRIMARY KEY, title text NOT NULL);', 'DROP TABLE "Rom";'),
}
NEW = {
    "20250601000000_favorites": ('CREATE TABLE "Favorite" (user_id int REFERENCES "User"(id), rom_id int '
                                 'REFERENCES "Rom"(id), PRIMARY KEY (user_id, rom_id));', 'DROP TABLE "Favorite";'),
    "20250701000000_rom_platform": ('ALTER TABLE "Rom" ADD COLUMN platform text NOT NULL DEFAULT \'NES\';'
                                    'CREATE INDEX rom_platform_idx ON "Rom"(platform);',
                                    'ALTER TABLE "Rom" DROP COLUMN platform;'),
    "20250801000000_user_name": ('ALTER TABLE "User" ADD COLUMN display_name text;',
                                 'ALTER TABLE "User" DROP COLUMN display_name;'),
}
BROKEN_SECOND = dict(NEW)
BROKEN_SECOND["20250701000000_rom_platform"] = ('ALTER TABLE "NoSuchTable" ADD COLUMN platform text;', '')


def write_release(root, migrations):
    """A release's backend/prisma/migrations directory, as Prisma lays it out."""
    directory = root / "backend" / "prisma" / "migrations"
    directory.mkdir(parents=True)
    (directory / "migration_lock.toml").write_text('provider = "postgresql"\n')
    for name, (up, down) in migrations.items():
        (directory / name).mkdir()
        (directory / name / "migration.sql").write_text(up + "\n")
        if down:
            (directory / name / "down.sql").write_text(down + "\n")
    return str(directory)


@pytest.fixture
def app_db(pg_a, tmp_path, request):
    """A database at version N: the base release applied by the Prisma-like runner."""
    name = "mig_" + request.node.name[5:40].lower()
    pg_a.create_database(name)
    base = write_release(tmp_path / "release-1.0.0", BASE)
    run = run_module("db_migrate", dict(dsn=pg_a.dsn(name), command=DEPLOY + [base], migrations_dir=base))
    assert not run.failed and run.result["version"] == "20250301000000_rom", run.output
    return name


def migrate_args(pg, dbname, migrations_dir, **more):
    return dict(dsn=pg.dsn(dbname), command=DEPLOY + [migrations_dir], migrations_dir=migrations_dir, **more)


def test_release_with_three_new_migrations_moves_the_version_by_three_then_reports_no_change(
        pg_a, app_db, tmp_path):
    release = write_release(tmp_path / "release-1.1.0", dict(BASE, **NEW))
    log = str(tmp_path / "deploy.log")

    run = run_module("db_migrate", migrate_args(pg_a, app_db, release, log_path=log,
                                                validate={"tables": ["public.Favorite"],
                                                          "indexes": ["rom_platform_idx"]}))
    assert not run.failed, run.msg
    assert run.result["changed"] is True
    assert run.result["version_before"] == "20250301000000_rom"
    assert run.result["pending"] == sorted(NEW)
    assert run.result["version"] == "20250801000000_user_name"
    assert run.result["applied"] == sorted(BASE) + sorted(NEW)
    assert "All migrations have been successfully applied." in run.result["output"]
    assert pg_a.query("SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL", app_db) == [(5,)]
    with open(log) as handle:
        logged = handle.read()
    assert "All migrations have been successfully applied." in logged and pg_a.password not in logged
    assert oct(os.stat(log).st_mode & 0o777) == "0o600"

    again = run_module("db_migrate", migrate_args(pg_a, app_db, release))
    assert not again.failed and again.result["changed"] is False
    assert again.result["version"] == "20250801000000_user_name"


def test_check_mode_reports_pending_and_runs_nothing(pg_a, app_db, tmp_path):
    release = write_release(tmp_path / "release-1.1.0", dict(BASE, **NEW))
    run = run_module("db_migrate", migrate_args(pg_a, app_db, release), check=True)
    assert not run.failed and run.result["changed"] is False
    assert run.result["pending"] == sorted(NEW)
    assert pg_a.query("SELECT count(*) FROM _prisma_migrations", app_db) == [(2,)]


def test_failing_second_migration_stops_at_n_plus_one_with_its_own_error(pg_a, app_db, tmp_path):
    release = write_release(tmp_path / "release-1.1.0", dict(BASE, **BROKEN_SECOND))
    run = run_module("db_migrate", migrate_args(pg_a, app_db, release))
    assert run.failed
    assert run.msg.startswith("migrating postgres@127.0.0.1:%d/%s failed: migration 20250701000000_rom_platform "
                              "failed: Migration `20250701000000_rom_platform` failed to apply" % (pg_a.port, app_db))
    assert 'relation "NoSuchTable" does not exist' in run.msg
    assert [row["name"] for row in run.result["failed_migrations"]] == ["20250701000000_rom_platform"]
    assert run.result["version"] == "20250601000000_favorites"  # N + 1

    schema = run_module("db_schema_version", dict(dsn=pg_a.dsn(app_db), migrations_dir=release))
    assert schema.result["version"] == "20250601000000_favorites"
    assert schema.result["failed_migrations"][0]["name"] == "20250701000000_rom_platform"

    # The failed row blocks every later run, before anything runs.
    again = run_module("db_migrate", migrate_args(pg_a, app_db, release))
    assert again.failed
    assert again.msg == ("migration 20250701000000_rom_platform failed earlier and blocks every later one; resolve "
                         "it first (for Prisma: prisma migrate resolve), nothing was run")


def test_applied_migration_edited_afterwards_is_refused_before_anything_runs(pg_a, app_db, tmp_path):
    release = write_release(tmp_path / "release-1.1.0", dict(BASE, **NEW))
    init = os.path.join(release, "20250101000000_init", "migration.sql")
    with open(init, "a") as handle:
        handle.write("-- edited after it was applied\n")

    schema = run_module("db_schema_version", dict(dsn=pg_a.dsn(app_db), migrations_dir=release))
    assert [m["name"] for m in schema.result["checksum_mismatches"]] == ["20250101000000_init"]

    run = run_module("db_migrate", migrate_args(pg_a, app_db, release))
    assert run.failed
    assert run.msg == ("applied migration(s) 20250101000000_init were edited after being applied (checksum "
                       "mismatch between the database and %s); nothing was run" % release)
    assert pg_a.query("SELECT count(*) FROM _prisma_migrations", app_db) == [(2,)]


def test_rehearsal_catches_a_failing_release_before_production_is_touched(pg_a, app_db, tmp_path, backup_dir):
    backup = run_module("db_backup", dict(dsn=pg_a.dsn(app_db), dest=backup_dir))
    assert not backup.failed, backup.msg
    release = write_release(tmp_path / "release-1.1.0", dict(BASE, **BROKEN_SECOND))
    databases = pg_a.databases()

    run = run_module("db_migrate", migrate_args(pg_a, app_db, release, rehearse=True, backup_dir=backup_dir))
    assert run.failed
    assert run.msg.startswith("rehearsal on a copy of %s failed, production was not touched: migration "
                              "20250701000000_rom_platform failed" % os.path.basename(backup.result["path"]))
    assert pg_a.query("SELECT count(*) FROM _prisma_migrations", app_db) == [(2,)]
    assert pg_a.databases() == databases  # the scratch copy is gone

    good = write_release(tmp_path / "release-1.1.1", dict(BASE, **NEW))
    run = run_module("db_migrate", migrate_args(pg_a, app_db, good, rehearse=True, backup_dir=backup_dir))
    assert not run.failed, run.msg
    assert run.result["rehearsal"]["version"] == run.result["version"] == "20250801000000_user_name"
    assert pg_a.databases() == databases


def test_down_without_a_down_command_advises_the_restore_and_with_one_reaches_the_version(pg_a, app_db, tmp_path):
    release = write_release(tmp_path / "release-1.1.0", dict(BASE, **NEW))
    assert not run_module("db_migrate", migrate_args(pg_a, app_db, release)).failed

    run = run_module("db_migrate", dict(dsn=pg_a.dsn(app_db), direction="down", to="20250301000000_rom"))
    assert run.failed
    assert run.msg == ("no down_command is configured, and Prisma has no down migrations: restore the pre-upgrade "
                       "backup instead (treazrisland.ops.db_restore, or playbooks/restore.yml); nothing was run")
    assert pg_a.query("SELECT count(*) FROM _prisma_migrations", app_db) == [(5,)]

    down = [sys.executable, RUNNER, "down", release, "--to", "{to}"]
    run = run_module("db_migrate", dict(dsn=pg_a.dsn(app_db), direction="down", to="20250301000000_rom",
                                        down_command=down))
    assert not run.failed, run.msg
    assert run.result["changed"] is True and run.result["version"] == "20250301000000_rom"
    assert pg_a.query("SELECT to_regclass('\"Favorite\"') IS NULL", app_db) == [(True,)]

    again = run_module("db_migrate", dict(dsn=pg_a.dsn(app_db), direction="down", to="20250301000000_rom",
                                          down_command=down))
    assert not again.failed and again.result["changed"] is False


def test_validate_reports_every_failure_read_only(pg_a, app_db):
    ok = run_module("db_validate", dict(
        dsn=pg_a.dsn(app_db), tables=["public.User", "Rom"], columns={"public.User": ["id", "email"]},
        constraints=["User_email_key"], queries=[{"name": "no users yet", "sql": 'SELECT count(*) FROM "User"',
                                                  "expect": 0}],
        wait_for={"sql": "SELECT true", "timeout": 5, "interval": 0.1}))
    assert not ok.failed, ok.msg
    assert ok.result["changed"] is False and ok.result["checks"] == 5 and ok.result["polls"] == 1

    bad = run_module("db_validate", dict(
        dsn=pg_a.dsn(app_db), tables=["public.Favorite"], columns={"public.User": ["display_name"]},
        indexes=["rom_platform_idx"], queries=[{"sql": 'DELETE FROM "User" RETURNING id', "expect": []}]))
    assert bad.failed
    assert bad.msg == (
        "validation of postgres@127.0.0.1:%d/%s failed: table public.Favorite does not exist; table public.User "
        "lacks column(s) display_name; index rom_platform_idx does not exist; query DELETE FROM \"User\" RETURNING "
        "id failed: cannot execute DELETE in a read-only transaction" % (pg_a.port, app_db))

    waited = run_module("db_validate", dict(dsn=pg_a.dsn(app_db), wait_for={
        "sql": 'SELECT count(*) > 0 FROM "User"', "timeout": 1, "interval": 0.2}))
    assert waited.failed
    assert waited.msg.startswith('SELECT count(*) > 0 FROM "User" did not become true within 1 seconds (')


DIALECT_TABLES = {
    "prisma": ("CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL, "
               "finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz, "
               "started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count integer NOT NULL DEFAULT 0);"
               "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at) VALUES "
               "('1', 'a', now(), '20240101_init', now() - interval '2 min'),"
               "('2', 'b', now(), '20240201_next', now() - interval '1 min'),"
               "('3', 'c', NULL, '20240301_broken', now())", "20240201_next", 2, 1),
    "knex": ("CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch integer, "
             "migration_time timestamptz); CREATE TABLE knex_migrations_lock (index serial PRIMARY KEY, is_locked int);"
             "INSERT INTO knex_migrations (name, batch, migration_time) VALUES "
             "('20240101_init.js', 1, now()), ('20240201_users.js', 2, now())", "20240201_users.js", 2, 0),
    "typeorm": ('CREATE TABLE migrations (id SERIAL PRIMARY KEY, "timestamp" bigint NOT NULL, name varchar NOT NULL);'
                "INSERT INTO migrations (\"timestamp\", name) VALUES (1700000000000, 'Init1700000000000'), "
                "(1710000000000, 'AddUsers1710000000000')", "AddUsers1710000000000", 2, 0),
    "flyway": ("CREATE TABLE flyway_schema_history (installed_rank INT NOT NULL PRIMARY KEY, version VARCHAR(50), "
               "description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL, script VARCHAR(1000) NOT NULL, "
               "checksum INT, installed_by VARCHAR(100) NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT now(), "
               "execution_time INT NOT NULL, success BOOLEAN NOT NULL);"
               "INSERT INTO flyway_schema_history VALUES (1, '1', 'init', 'SQL', 'V1__init.sql', 123, 'app', now(), 5, "
               "true), (2, '1.1', 'users', 'SQL', 'V1_1__users.sql', 456, 'app', now(), 5, true), (3, NULL, 'views', "
               "'SQL', 'R__views.sql', 789, 'app', now(), 5, true)", "1.1", 2, 0),
    "golang-migrate": ("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);"
                       "INSERT INTO schema_migrations VALUES (20240201, false)", "20240201", 1, 0),
    "alembic": ("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc "
                "PRIMARY KEY (version_num)); INSERT INTO alembic_version VALUES ('ae1027a6acf')", "ae1027a6acf", 1, 0),
    "django": ("CREATE TABLE django_migrations (id bigserial PRIMARY KEY, app varchar(255) NOT NULL, name varchar(255) "
               "NOT NULL, applied timestamptz NOT NULL); INSERT INTO django_migrations (app, name, applied) VALUES "
               "('contenttypes', '0001_initial', now()), ('games', '0002_rom', now())", "games.0002_rom", 2, 0),
    "rails": ("CREATE TABLE schema_migrations (version character varying NOT NULL PRIMARY KEY);"
              "CREATE TABLE ar_internal_metadata (key character varying PRIMARY KEY, value character varying, "
              "created_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL);"
              "INSERT INTO schema_migrations VALUES ('20240101000000'), ('20240201000000')", "20240201000000", 2, 0),
}


def test_version_is_read_for_every_dialect_from_each_tools_table_shape(pg_a):
    tasks = []
    for dialect, (ddl, _version, _count, _failed) in DIALECT_TABLES.items():
        dbname = "dialect_" + dialect.replace("-", "_")
        pg_a.create_database(dbname)
        pg_a.execute(ddl, dbname)
        tasks.append({"name": dialect, "treazrisland.ops.db_schema_version": {"dsn": pg_a.dsn(dbname)}})
    pg_a.create_database("dialect_none")
    pg_a.execute("CREATE TABLE unrelated (id int)", "dialect_none")
    tasks.append({"name": "none", "ignore_errors": True,
                  "treazrisland.ops.db_schema_version": {"dsn": pg_a.dsn("dialect_none")}})

    run = run_tasks(tasks, check=True)
    results = {record["task"]: record for record in run.results}
    for dialect, (_ddl, version, count, failed) in DIALECT_TABLES.items():
        result = results[dialect]["result"]
        assert result["dialect"] == dialect, result
        assert result["version"] == version and result["applied_count"] == count
        assert len(result["failed_migrations"]) == failed and result["changed"] is False
    assert results["none"]["status"] == "failed"
    assert results["none"]["result"]["msg"] == (
        "no migrations table found in database dialect_none; looked for _prisma_migrations (prisma), "
        "flyway_schema_history (flyway), knex_migrations (knex), django_migrations (django), alembic_version "
        "(alembic), migrations (typeorm), schema_migrations (golang-migrate), schema_migrations (rails)")


def test_golang_migrate_dirty_version_is_reported_as_failed(pg_a, tmp_path):
    pg_a.create_database("dialect_dirty")
    pg_a.execute("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);"
                 "INSERT INTO schema_migrations VALUES (2, true)", "dialect_dirty")
    for name in ("1_init.up.sql", "1_init.down.sql", "2_users.up.sql", "3_roms.up.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    run = run_module("db_schema_version", dict(dsn=pg_a.dsn("dialect_dirty"), migrations_dir=str(tmp_path)))
    assert run.result["dialect"] == "golang-migrate"
    assert run.result["version"] is None and run.result["failed_migrations"][0]["name"] == "2"
