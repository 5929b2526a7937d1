# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the schema version from the migrations table of a migration tool.

Treazrisland uses Prisma Migrate; teams that reuse the roles use other tools,
so each tool is a dialect: which table it keeps, how to tell it from another
tool's table of the same name, how to list what it applied, and (where the
tool's file names make it possible) which files of a release are pending.
"""

from __future__ import annotations

import os
import re

from ansible_collections.treazrisland.ops.plugins.module_utils import checksum
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import sql


class Migration:
    """One row of a migrations table."""

    def __init__(self, name, checksum=None, failed=False, logs=None):
        self.name = name
        self.checksum = checksum
        self.failed = failed
        self.logs = logs

    def as_dict(self):
        result = {"name": self.name}
        if self.checksum is not None:
            result["checksum"] = self.checksum
        if self.logs:
            result["logs"] = self.logs
        return result


class Dialect:
    """A migration tool's table. Subclasses say how to read it."""

    name = None
    table = None
    columns = ()  # columns that must exist for the table to be this tool's
    without = ()  # columns that must not exist (tells rails from golang-migrate)
    release_layout = None  # how the tool names its files, when pending can be computed

    def matches(self, columns):
        return set(self.columns) <= columns and not set(self.without) & columns

    def read(self, conn, table):
        """(applied migrations in apply order, failed or dirty ones)."""
        raise NotImplementedError

    def local_migrations(self, directory):
        """[(name, checksum or None)] of a release's migrations directory, in apply order."""
        raise OpsError("pending migrations cannot be computed for %s from a directory" % self.name)


def _rows(conn, query, table):
    return conn.execute(sql.SQL(query).format(table=table)).fetchall()


class Prisma(Dialect):
    name, table = "prisma", "_prisma_migrations"
    columns = ("migration_name", "checksum", "finished_at", "rolled_back_at")
    release_layout = "<dir>/<timestamp>_<name>/migration.sql"

    def read(self, conn, table):
        rows = _rows(conn, "SELECT migration_name, checksum, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, "
                           "logs FROM {table} ORDER BY started_at, migration_name", table)
        applied = [Migration(name, digest) for name, digest, finished, rolled_back, _logs in rows
                   if finished and not rolled_back]
        # Unfinished and not rolled back: Prisma refuses to apply anything after it.
        failed = [Migration(name, digest, True, logs) for name, digest, finished, rolled_back, logs in rows
                  if not finished and not rolled_back]
        return applied, failed

    def local_migrations(self, directory):
        found = []
        for entry in sorted(os.listdir(directory)):
            script = os.path.join(directory, entry, "migration.sql")
            if os.path.isfile(script):
                found.append((entry, checksum.sha256_file(script)[0]))
        return found


class Knex(Dialect):
    name, table = "knex", "knex_migrations"
    columns = ("name", "batch", "migration_time")
    release_layout = "<dir>/<timestamp>_<name>.js|ts"

    def read(self, conn, table):
        return [Migration(row[0]) for row in _rows(conn, "SELECT name FROM {table} ORDER BY id", table)], []

    def local_migrations(self, directory):
        return [(entry, None) for entry in sorted(os.listdir(directory))
                if re.match(r"^\d+_.+\.(js|ts|cjs|mjs)$", entry)]


class TypeORM(Dialect):
    name, table = "typeorm", "migrations"
    columns = ("timestamp", "name")

    def read(self, conn, table):
        return [Migration(row[0]) for row in _rows(conn, 'SELECT name FROM {table} ORDER BY "timestamp", id',
                                                   table)], []


class Flyway(Dialect):
    name, table = "flyway", "flyway_schema_history"
    columns = ("installed_rank", "version", "script", "success")
    release_layout = "<dir>/V<version>__<description>.sql"

    def read(self, conn, table):
        rows = _rows(conn, "SELECT version, script, checksum, success FROM {table} "
                           "WHERE version IS NOT NULL ORDER BY installed_rank", table)
        applied = [Migration(version, None if digest is None else str(digest)) for version, _s, digest, ok in rows
                   if ok]
        failed = [Migration(version, logs="script %s failed" % script) for version, script, _d, ok in rows if not ok]
        return applied, failed

    def local_migrations(self, directory):
        found = []
        for entry in os.listdir(directory):
            match = re.match(r"^V([\d._]+)__.+\.sql$", entry)
            if match:
                version = match.group(1).replace("_", ".")
                found.append((version, None))
        return sorted(found, key=lambda item: [int(part) for part in item[0].split(".")])


class GolangMigrate(Dialect):
    name, table = "golang-migrate", "schema_migrations"
    columns = ("version", "dirty")
    release_layout = "<dir>/<version>_<name>.up.sql"

    def read(self, conn, table):
        # One row: the current version, and whether its migration stopped half-way.
        rows = _rows(conn, "SELECT version, dirty FROM {table}", table)
        applied = [Migration(str(version)) for version, dirty in rows if not dirty]
        failed = [Migration(str(version), failed=True, logs="dirty: the migration stopped half-way")
                  for version, dirty in rows if dirty]
        return applied, failed

    def local_migrations(self, directory):
        found = {}
        for entry in os.listdir(directory):
            match = re.match(r"^(\d+)_.+\.up\.sql$", entry)
            if match:
                found[int(match.group(1))] = str(int(match.group(1)))
        return [(found[key], None) for key in sorted(found)]

    @staticmethod
    def pending(applied, local):
        # golang-migrate keeps only the current version: everything numbered above it is pending.
        current = int(applied[-1].name) if applied else -1
        return [name for name, _digest in local if int(name) > current]


class Alembic(Dialect):
    name, table = "alembic", "alembic_version"
    columns = ("version_num",)

    def read(self, conn, table):
        # One row per head; with several heads the version is their sorted list.
        heads = sorted(row[0] for row in _rows(conn, "SELECT version_num FROM {table}", table))
        return ([Migration("+".join(heads))] if heads else []), []


class Django(Dialect):
    name, table = "django", "django_migrations"
    columns = ("app", "name", "applied")

    def read(self, conn, table):
        return [Migration("%s.%s" % row) for row in _rows(conn, "SELECT app, name FROM {table} ORDER BY id",
                                                          table)], []


class Rails(Dialect):
    name, table = "rails", "schema_migrations"
    columns = ("version",)
    without = ("dirty",)
    release_layout = "<dir>/<version>_<name>.rb"

    def read(self, conn, table):
        return [Migration(row[0]) for row in _rows(conn, "SELECT version FROM {table} ORDER BY version", table)], []

    def local_migrations(self, directory):
        return sorted((entry.split("_", 1)[0], None) for entry in os.listdir(directory)
                      if re.match(r"^\d+_.+\.rb$", entry))


# Detection order: the first whose table exists with the right columns wins.
DIALECTS = [Prisma(), Flyway(), Knex(), Django(), Alembic(), TypeORM(), GolangMigrate(), Rails()]
DIALECT_NAMES = [dialect.name for dialect in DIALECTS]


def _table_columns(conn, qualified):
    """Column names of a table (schema-qualified or by search_path), or None if there is none."""
    oid = conn.execute("SELECT to_regclass(%s)::oid", (qualified,)).fetchone()[0]
    if oid is None:
        return None
    rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
                        (oid,)).fetchall()
    return {row[0] for row in rows}


def _qualified(schema, table):
    return '"%s"."%s"' % (schema, table) if schema else '"%s"' % table


def detect(conn, dialect_name=None, table=None, schema=None):
    """(dialect, table identifier, table name) of the database's migrations table.

    Raises OpsError naming every table looked for when none is found.
    """
    candidates = [d for d in DIALECTS if d.name == dialect_name] if dialect_name else DIALECTS
    looked_for = []
    for dialect in candidates:
        name = table or dialect.table
        looked_for.append("%s (%s)" % (_qualified(schema, name).replace('"', ""), dialect.name))
        columns = _table_columns(conn, _qualified(schema, name))
        if columns is not None and (dialect_name or dialect.matches(columns)):
            identifier = sql.Identifier(schema, name) if schema else sql.Identifier(name)
            return dialect, identifier, name
    database = conn.execute("SELECT current_database()").fetchone()[0]
    raise OpsError("no migrations table found in database %s; looked for %s" % (database, ", ".join(looked_for)))


def inspect(conn, dialect_name=None, table=None, schema=None, migrations_dir=None, missing_ok=False):
    """Everything known about the schema version, as the db_schema_version module returns it.

    With missing_ok, a database without any migrations table is a database at
    no version (its first migration creates the table), of the named dialect or Prisma.
    """
    try:
        dialect, identifier, name = detect(conn, dialect_name, table, schema)
        applied, failed = dialect.read(conn, identifier)
    except OpsError:
        if not missing_ok:
            raise
        dialect = next(d for d in DIALECTS if d.name == (dialect_name or "prisma"))
        name, applied, failed = table or dialect.table, [], []
    state = {
        "dialect": dialect.name,
        "table": name,
        "version": applied[-1].name if applied else None,
        "applied_count": len(applied),
        "applied": [m.name for m in applied],
        "failed_migrations": [m.as_dict() for m in failed],
    }
    if migrations_dir:
        state.update(compare_release(dialect, applied, migrations_dir))
    return state


def compare_release(dialect, applied, migrations_dir):
    """Pending migrations of a release, and applied ones whose file changed since."""
    if not os.path.isdir(migrations_dir):
        raise OpsError("migrations directory %s does not exist" % migrations_dir)
    local = dialect.local_migrations(migrations_dir)
    applied_names = {m.name for m in applied}
    if isinstance(dialect, GolangMigrate):
        pending = dialect.pending(applied, local)
    else:
        pending = [name for name, _digest in local if name not in applied_names]
    local_digests = dict(local)
    mismatches = [
        {"name": m.name, "applied_checksum": m.checksum, "file_checksum": local_digests[m.name]}
        for m in applied
        if local_digests.get(m.name) and m.checksum and local_digests[m.name] != m.checksum
    ]
    return {
        "migrations_dir": migrations_dir,
        "pending": pending,
        "checksum_mismatches": mismatches,
        "missing_from_release": sorted(applied_names - set(local_digests)) if local else [],
        "release_version": local[-1][0] if local else None,
    }


def read_schema_version(conn):
    """Short form for backup manifests: {dialect, table, version, applied_count}, or None without a table."""
    try:
        dialect, identifier, name = detect(conn)
    except OpsError:
        return None
    applied, _failed = dialect.read(conn, identifier)
    return {"dialect": dialect.name, "table": name, "version": applied[-1].name if applied else None,
            "applied_count": len(applied)}


def read_failed_migrations(conn):
    """Names of the failed or unfinished migrations (rows, or golang-migrate's dirty version); [] without a table."""
    try:
        dialect, identifier, _name = detect(conn)
    except OpsError:
        return []
    _applied, failed = dialect.read(conn, identifier)
    return [m.name for m in failed]
