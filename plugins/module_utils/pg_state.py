# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a database's schema and tables look like, recorded in a backup manifest and compared later.

- ``schema_fingerprint``: sha256 of a canonical listing of the user schema (tables, columns with
  type, nullability and default, indexes, constraints, enum types and their labels), so that
  "did the schema move since the backup" is one comparison.
- ``table_stats``: per table, the exact row count, the column names and a digest of the rows
  projected on those columns, or, for a table above a size limit, its write counters.
- ``changed_tables``: the tables of another database (the one a restore set aside) whose rows
  differ from recorded table stats, i.e. the writes a restore would otherwise lose.

Everything is computed by the server, one catalog query plus one query per table; only the
digests come back to Python.
"""

from __future__ import annotations

import contextlib
import hashlib

from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import psycopg, sql

# Schemas that belong to PostgreSQL itself; everything else is the user's. (The queries using it take
# no parameters, so % is literal.)
_USER_NAMESPACE = """
    {ns}.nspname NOT IN ('pg_catalog', 'information_schema')
    AND {ns}.nspname NOT LIKE 'pg\\_toast%' AND {ns}.nspname NOT LIKE 'pg\\_temp\\_%'
"""

CHANGED_DIGEST = "changed (digest)"
CHANGED_ROWS = "changed (row count)"
CHANGED_WRITES = "changed (write counters, table above digest_max_bytes)"
DROPPED = "dropped"


@contextlib.contextmanager
def _qualified_names(conn):
    """An empty search_path while inside, so every name the server prints is schema-qualified.

    format_type(), pg_get_indexdef() and friends print names relative to the search_path;
    with none, two sessions with different settings still list the same text.
    """
    previous = conn.execute("SELECT current_setting('search_path')").fetchone()[0]
    conn.execute("SELECT set_config('search_path', '', false)")
    try:
        yield
    finally:
        if not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            conn.execute("SELECT set_config('search_path', %s, false)", (previous,))


def _user(alias):
    return _USER_NAMESPACE.format(ns=alias)


def schema_listing(conn):
    """The user schema as sorted lines of text, one per table, column, index, constraint and enum type."""
    lines = []
    with _qualified_names(conn):
        for name, kind in conn.execute(
                "SELECT format('%I.%I', n.nspname, c.relname), c.relkind FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND " + _user("n")):
            lines.append("table %s kind=%s" % (name, kind))
        for row in conn.execute(
                """
                SELECT format('%I.%I', n.nspname, c.relname),
                       row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                       quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,
                       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
                       CASE WHEN a.attcollation <> t.typcollation
                            THEN (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co
                                  JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation)
                       END
                FROM pg_attribute a
                JOIN pg_class c ON c.oid = a.attrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_type t ON t.oid = a.atttypid
                LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p') AND """ + _user("n")):
            table, position, column, type_name, not_null, default, identity, generated, collation = row
            lines.append("column %s %04d %s %s%s%s%s%s%s" % (
                table, position, column, type_name, " NOT NULL" if not_null else " NULL",
                " DEFAULT %s" % default if default is not None else "",
                " IDENTITY %s" % identity if identity else "", " GENERATED %s" % generated if generated else "",
                " COLLATE %s" % collation if collation else ""))
        for table, definition in conn.execute(
                "SELECT format('%I.%I', n.nspname, c.relname), pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND " + _user("n")):
            lines.append("index %s %s" % (table, definition))
        # NOT NULL is recorded with its column; PostgreSQL 18 also lists it as a constraint ('n'),
        # which would make one schema read differently on two server versions.
        for owner, name, definition in conn.execute(
                """
                SELECT format('%I.%I', n.nspname, coalesce(c.relname, t.typname)), quote_ident(con.conname),
                       pg_get_constraintdef(con.oid)
                FROM pg_constraint con
                JOIN pg_namespace n ON n.oid = con.connamespace
                LEFT JOIN pg_class c ON c.oid = con.conrelid AND con.conrelid <> 0
                LEFT JOIN pg_type t ON t.oid = con.contypid AND con.contypid <> 0
                WHERE con.contype <> 'n' AND """ + _user("n")):
            lines.append("constraint %s %s %s" % (owner, name, definition))
        for name, labels in conn.execute(
                "SELECT format('%I.%I', n.nspname, t.typname), "
                "string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_type t "
                "JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE " + _user("n") + " GROUP BY 1"):
            lines.append("enum %s (%s)" % (name, labels))
    return sorted(lines)


def schema_fingerprint(conn):
    """sha256 (hex) of schema_listing: equal fingerprints, same tables, columns, indexes, constraints, enums."""
    return hashlib.sha256("\n".join(schema_listing(conn)).encode("utf-8")).hexdigest()


def _catalog(conn):
    """{schema.table: (schema, table, [columns], [primary key columns], total bytes, writes)} of plain tables."""
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname, n.nspname, c.relname,
               array(SELECT a.attname::text FROM pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
               pg_total_relation_size(c.oid),
               s.n_tup_ins + s.n_tup_upd + s.n_tup_del
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE c.relkind = 'r' AND """ + _user("n")).fetchall()
    return {row[0]: row[1:] for row in rows}


def _table(schema, table):
    return sql.Identifier(schema, table)


def _digest_query(schema, table, columns):
    """count(*) and md5 over the md5 of each row projected on columns, in the order of those row digests.

    One md5 per row keeps the aggregate small (32 bytes a row, whatever the row's size);
    ordering by it makes the digest independent of the physical order and of a primary key a
    migration may have changed, and works for columns of types without ordering (json, point).
    """
    row = sql.SQL("md5(ROW({})::text)").format(sql.SQL(", ").join(
        sql.SQL("t.{}").format(sql.Identifier(column)) for column in columns))
    return sql.SQL("SELECT count(*), md5(coalesce(string_agg({row}, '' ORDER BY {row} COLLATE \"C\"), '')) "
                   "FROM {table} t").format(row=row, table=_table(schema, table))


def _count(conn, schema, table):
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_table(schema, table))).fetchone()[0]


def table_stats(conn, tables, digest_max_bytes):
    """{schema.table: {rows, columns, digest, writes}} for tables (as postgres.user_tables names them).

    ``digest`` is null for a table larger than digest_max_bytes (pg_total_relation_size);
    such a table records ``writes`` (inserted + updated + deleted tuples of pg_stat_user_tables)
    instead, null otherwise. Run it in the snapshot whose content it describes.
    """
    catalog = _catalog(conn)
    stats = {}
    for name in tables:
        schema, table, columns, size, writes = catalog[name]
        if size > digest_max_bytes:
            stats[name] = {"rows": _count(conn, schema, table), "columns": columns, "digest": None,
                           "writes": writes}
            continue
        rows, digest = conn.execute(_digest_query(schema, table, columns)).fetchone()
        stats[name] = {"rows": rows, "columns": columns, "digest": digest, "writes": None}
    return stats


def changed_tables(conn, recorded, skip=()):
    """[{table, rows_at_backup, rows_now, how}] for the tables of recorded table stats whose rows differ in conn.

    ``how``: "dropped", "changed (row count)", "changed (digest)" (also when a recorded column
    is gone) or "changed (write counters, table above digest_max_bytes)". Tables in skip are
    not compared.
    """
    catalog = _catalog(conn)
    changed = []
    for name in sorted(recorded):
        if name in skip:
            continue
        then = recorded[name]
        entry = {"table": name, "rows_at_backup": then.get("rows"), "rows_now": None}
        if name not in catalog:
            changed.append(dict(entry, how=DROPPED))
            continue
        schema, table, columns, _size, writes = catalog[name]
        kept = set(then.get("columns") or []) <= set(columns)
        if then.get("digest") is not None and kept:
            rows, digest = conn.execute(_digest_query(schema, table, then["columns"])).fetchone()
        else:
            rows, digest = _count(conn, schema, table), None
        entry["rows_now"] = rows
        if rows != then.get("rows"):
            how = CHANGED_ROWS
        elif then.get("digest") is not None:
            how = CHANGED_DIGEST if digest != then["digest"] else None
        else:
            how = CHANGED_WRITES if writes != then.get("writes") else None
        if how:
            changed.append(dict(entry, how=how))
    return changed
