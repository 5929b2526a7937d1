# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-migration smoke checks, read-only (guide 3.3).

Every check runs in a READ ONLY transaction, so even a query given by the
operator cannot write.
"""

from __future__ import annotations

import time

from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import PgConnection

# The argument spec of the checks, shared by db_validate and db_migrate's validate option.
CHECKS_ARGUMENT_SPEC = dict(
    tables=dict(type="list", elements="str", default=[]),
    columns=dict(type="dict", default={}),
    indexes=dict(type="list", elements="str", default=[]),
    constraints=dict(type="list", elements="str", default=[]),
    queries=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str"),
        sql=dict(type="str", required=True),
        expect=dict(type="raw", required=True),
    )),
    wait_for=dict(type="dict", options=dict(
        sql=dict(type="str", required=True),
        timeout=dict(type="int", default=300),
        interval=dict(type="float", default=5),
    )),
)


def _split(name):
    schema, _dot, table = name.rpartition(".")
    return schema or None, table


def _relation_exists(conn, name, kinds):
    schema, relation = _split(name)
    qualified = '"%s"."%s"' % (schema, relation) if schema else '"%s"' % relation
    row = conn.execute("SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)", (qualified,)).fetchone()
    return row is not None and row[0] in kinds


def _missing_columns(conn, table, columns):
    schema, relation = _split(table)
    qualified = '"%s"."%s"' % (schema, relation) if schema else '"%s"' % relation
    rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                        "AND NOT attisdropped", (qualified,)).fetchall()
    present = {row[0] for row in rows}
    return [column for column in columns if column not in present]


def _constraint_exists(conn, name):
    schema, constraint = _split(name)
    row = conn.execute(
        "SELECT 1 FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE c.conname = %s AND (%s::text IS NULL OR n.nspname = %s)", (constraint, schema, schema)).fetchone()
    return row is not None


def _normalise(rows):
    """Rows as lists of plain values; a single value stands for a one-row one-column result."""
    plain = [[value if isinstance(value, (int, float, str, bool, type(None))) else str(value) for value in row]
             for row in rows]
    return plain


def _expected(expect):
    if isinstance(expect, list) and all(isinstance(row, list) for row in expect):
        return expect
    return [[expect]]


def run_checks(conn, checks):
    """Return a list of failures (strings), empty when every check passed."""
    failures = []
    for table in checks.get("tables") or []:
        if not _relation_exists(conn, table, ("r", "p", "v", "m", "f")):
            failures.append("table %s does not exist" % table)
    for table, columns in (checks.get("columns") or {}).items():
        if not _relation_exists(conn, table, ("r", "p", "v", "m", "f")):
            failures.append("table %s does not exist" % table)
            continue
        missing = _missing_columns(conn, table, columns)
        if missing:
            failures.append("table %s lacks column(s) %s" % (table, ", ".join(missing)))
    for index in checks.get("indexes") or []:
        if not _relation_exists(conn, index, ("i", "I")):
            failures.append("index %s does not exist" % index)
    for constraint in checks.get("constraints") or []:
        if not _constraint_exists(conn, constraint):
            failures.append("constraint %s does not exist" % constraint)
    for query in checks.get("queries") or []:
        label = query.get("name") or query["sql"]
        try:
            rows = _normalise(conn.execute(query["sql"]).fetchall())
        except Exception as error:  # pylint: disable=broad-except
            conn.rollback()
            failures.append("query %s failed: %s" % (label, str(error).strip().splitlines()[0]))
            continue
        if rows != _expected(query["expect"]):
            failures.append("query %s returned %s, expected %s" % (label, rows, _expected(query["expect"])))
    return failures


def wait_until(conn, wait_for):
    """Poll a query until it returns true, or fail after the timeout (backfill jobs)."""
    deadline = time.monotonic() + wait_for["timeout"]
    polls = 0
    while True:
        polls += 1
        value = conn.execute(wait_for["sql"]).fetchone()
        conn.rollback()  # a new snapshot for the next poll
        if value and value[0] is True:
            return polls
        if time.monotonic() >= deadline:
            raise OpsError("%s did not become true within %d seconds (%d polls)" % (
                wait_for["sql"], wait_for["timeout"], polls))
        time.sleep(wait_for["interval"])


def validate_database(db, checks):
    """Run every check on db read-only; OpsError listing all failures."""
    with db.connect(autocommit=False) as conn:
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn.commit()
        polls = wait_until(conn, checks["wait_for"]) if checks.get("wait_for") else 0
        failures = run_checks(conn, checks)
        conn.rollback()
    counted = sum(len(checks.get(key) or []) for key in ("tables", "columns", "indexes", "constraints", "queries"))
    if failures:
        raise OpsError("validation of %s failed: %s" % (db.describe(), "; ".join(failures)), failures=failures)
    return {"checks": counted, "polls": polls}


def validate(params, check_mode):
    """The db_validate module: read-only, so check mode runs the same checks."""
    result = validate_database(PgConnection(params), params)
    result.update(changed=False, msg="all %d check(s) passed" % result["checks"])
    return result
