"""A stand-in for `prisma migrate deploy`, for the tests and the demo only.

Prisma's CLI cannot run on these machines (it downloads its engines at first
use), so this applies a release's migrations the way it does, on disk and in
the database: `<dir>/<timestamp>_<name>/migration.sql` in name order, each in
a transaction, with `_prisma_migrations` rows written as Prisma writes them
(id, sha256 checksum of the file, started_at, finished_at, logs,
applied_steps_count). A failing file leaves its row unfinished with the error
in `logs`, and nothing is applied past an unfinished row (Prisma's P3009).

    DATABASE_URL=... python prisma_migrate.py deploy DIR [--to NAME]   (--to: stop after NAME)
    DATABASE_URL=... python prisma_migrate.py down DIR --to NAME   (runs down.sql files; Prisma has none:
                                                                     this plays a team's own down tool)

Drills for the fault tests: --pause S waits S seconds after each migration (time to interrupt the run),
--first-sql SQL runs SQL before anything else (a live write landing after the snapshot), --fail-before-start
exits 1 before any migration (a command that cannot start).

The modules never use this: they run whatever command the operator configures.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import uuid

import psycopg

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS _prisma_migrations (
    id                  VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum            VARCHAR(64) NOT NULL,
    finished_at         TIMESTAMPTZ,
    migration_name      VARCHAR(255) NOT NULL,
    logs                TEXT,
    rolled_back_at      TIMESTAMPTZ,
    started_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count INTEGER NOT NULL DEFAULT 0
)"""


def release_migrations(directory):
    names = sorted(entry for entry in os.listdir(directory)
                   if os.path.isfile(os.path.join(directory, entry, "migration.sql")))
    return [(name, os.path.join(directory, name, "migration.sql")) for name in names]


def deploy(conn, directory, stop_after=None, pause=0):
    conn.execute(CREATE_TABLE)
    failed = conn.execute("SELECT migration_name FROM _prisma_migrations "
                          "WHERE finished_at IS NULL AND rolled_back_at IS NULL").fetchall()
    if failed:
        print("Error: P3009\n\nmigrate found failed migrations in the target database, new migrations will not "
              "be applied.\nThe `%s` migration started at ... failed" % failed[0][0], file=sys.stderr)
        return 1
    applied = {row[0] for row in conn.execute(
        "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL")}
    pending = [(name, path) for name, path in release_migrations(directory)
               if name not in applied and (stop_after is None or name <= stop_after)]
    if not pending:
        print("No pending migrations to apply.")
        return 0
    print("%d migrations found in prisma/migrations" % len(pending))
    for name, path in pending:
        with open(path, "rb") as handle:
            script = handle.read()
        row_id = str(uuid.uuid4())
        conn.execute("INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at) "
                     "VALUES (%s, %s, %s, clock_timestamp())", (row_id, hashlib.sha256(script).hexdigest(), name))
        try:
            with conn.transaction():
                conn.execute(script.decode("utf-8"))
                conn.execute("UPDATE _prisma_migrations SET finished_at = clock_timestamp(), applied_steps_count = 1 "
                             "WHERE id = %s", (row_id,))
        except psycopg.Error as error:
            message = "Migration `%s` failed to apply cleanly to the shadow database.\nDatabase error:\n%s" % (
                name, str(error).strip())
            conn.execute("UPDATE _prisma_migrations SET logs = %s WHERE id = %s", (message, row_id))
            print("Applying migration `%s`" % name)
            print("Error: P3018\n\nA migration failed to apply. New migrations cannot be applied before the error is "
                  "recovered from.\n\nMigration name: %s\n\nDatabase error message:\n\n%s" % (name, str(error).strip()),
                  file=sys.stderr)
            return 1
        print("Applying migration `%s`" % name, flush=True)
        time.sleep(pause)
    print("All migrations have been successfully applied.")
    return 0


def down(conn, directory, target):
    applied = [row[0] for row in conn.execute(
        "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL "
        "ORDER BY migration_name DESC")]
    if target not in applied:
        print("down: %s is not an applied migration" % target, file=sys.stderr)
        return 1
    for name in applied[:applied.index(target)]:
        path = os.path.join(directory, name, "down.sql")
        if not os.path.isfile(path):
            print("down: %s has no down.sql" % name, file=sys.stderr)
            return 1
        with open(path) as handle, conn.transaction():
            conn.execute(handle.read())
            conn.execute("DELETE FROM _prisma_migrations WHERE migration_name = %s", (name,))
        print("Reverted migration `%s`" % name)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["deploy", "down"])
    parser.add_argument("directory")
    parser.add_argument("--to")
    parser.add_argument("--pause", type=float, default=0)
    parser.add_argument("--first-sql")
    parser.add_argument("--fail-before-start", action="store_true")
    args = parser.parse_args()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        if args.first_sql:
            conn.execute(args.first_sql)
        if args.fail_before_start:
            print("migrate: cannot start (drill)", file=sys.stderr)
            return 1
        if args.action == "deploy":
            return deploy(conn, args.directory, args.to or None, args.pause)
        return down(conn, args.directory, args.to)


if __name__ == "__main__":
    sys.exit(main())
