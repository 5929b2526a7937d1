# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a release's migration command with a version gate (guide 3), and going down (guide 7).

The module never applies migrations itself: it runs the command the team
configured (for Treazrisland `pnpm ... prisma:migrate:deploy`), with the
database URL in its environment, and judges the outcome by the migrations
table, read before and after, not by the exit code alone.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import shlex

from ansible_collections.treazrisland.ops.plugins.module_utils import pg_archive, runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.migrations import DIALECT_NAMES, inspect
from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import (
    LOCK_ARGUMENT_SPEC, PgConnection, database_lock, identifier, sql,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.validate import CHECKS_ARGUMENT_SPEC, validate_database

DEFAULT_COMMAND = ["pnpm", "--filter", "@treazrisland/backend", "prisma:migrate:deploy"]
OUTPUT_TAIL = 20000

VERSION_ARGUMENT_SPEC = dict(
    dialect=dict(type="str", choices=DIALECT_NAMES),
    migrations_table=dict(type="str"),
    migrations_schema=dict(type="str"),
    migrations_dir=dict(type="path"),
)


def _inspect(db, params, missing_ok=True):
    with db.connect() as conn:
        return inspect(conn, params["dialect"], params["migrations_table"], params["migrations_schema"],
                       params["migrations_dir"], missing_ok)


def schema_version(params, check_mode):
    """The db_schema_version module: read-only."""
    state = _inspect(PgConnection(params), params, missing_ok=False)
    return dict(state, changed=False)


def _argv(command):
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _run_command(db, argv, params, label):
    """Run a migration command against db; return (result, output) with secrets masked."""
    env = dict(params["environment"] or {})
    env[params["database_url_env"]] = db.url()
    secrets = db.secrets + [db.url()] + [str(v) for v in (params["environment"] or {}).values() if v]
    result = runner.run(argv, env=env, cwd=params["chdir"], timeout=params["timeout"], secrets=secrets)
    output = runner.mask((result.stdout or "") + result.stderr, secrets)[-OUTPUT_TAIL:]
    _log(params["log_path"], label, runner.display_command(argv, secrets), result, output)
    return result, output


def _log(path, label, command, result, output):
    """Append the command and its output to the deployment log (0600)."""
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write("=== %s %s: %s (exit %s)\n%s\n" % (
            datetime.datetime.now(datetime.timezone.utc).isoformat(), label, command, result.returncode,
            output.rstrip()))


def _refuse_broken_state(state):
    """Nothing runs over a failed migration or an applied file edited since."""
    if state["failed_migrations"]:
        first = state["failed_migrations"][0]
        raise OpsError("migration %s failed earlier and blocks every later one; resolve it first (for Prisma: "
                       "prisma migrate resolve), nothing was run" % first["name"],
                       failed_migrations=state["failed_migrations"], version=state["version"])
    if state.get("checksum_mismatches"):
        names = ", ".join(m["name"] for m in state["checksum_mismatches"])
        raise OpsError("applied migration(s) %s were edited after being applied (checksum mismatch between the "
                       "database and %s); nothing was run" % (names, state["migrations_dir"]),
                       checksum_mismatches=state["checksum_mismatches"], version=state["version"])


def _judge(before, after, result, output, params, where):
    """Fail unless the command succeeded, left no failed row, and reached the target version."""
    details = dict(version_before=before["version"], version=after["version"],
                   failed_migrations=after["failed_migrations"], output=output)
    if after["failed_migrations"]:
        failed = after["failed_migrations"][-1]
        raise OpsError("%s: migration %s failed: %s" % (where, failed["name"], (failed.get("logs") or "").strip()),
                       **details)
    if not result.ok:
        raise OpsError("%s: %s" % (where, result.failure("the migration command")), **details)
    if params["expect_version"] and after["version"] != params["expect_version"]:
        raise OpsError("%s: the schema version is %s after the migration, expected %s" % (
            where, after["version"], params["expect_version"]), **details)
    if not params["expect_version"] and after.get("pending"):
        raise OpsError("%s: migrations of the release still pending after the command: %s" % (
            where, ", ".join(after["pending"])), **details)


def newest_backup(backup_dir, dbname):
    """The newest backup of dbname in backup_dir that has a db_backup manifest."""
    found = []
    for manifest_path in glob.glob(os.path.join(glob.escape(backup_dir), "*" + pg_archive.MANIFEST_SUFFIX)):
        try:
            with open(manifest_path) as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            continue
        if manifest.get("kind") == pg_archive.MANIFEST_KIND and manifest.get("database") == dbname:
            found.append((manifest["finished_at"], os.path.join(backup_dir, manifest["archive"])))
    if not found:
        raise OpsError("no backup of %s with a manifest in %s to rehearse on" % (dbname, backup_dir))
    return max(found)[1]


def _rehearse(db, argv, params):
    """Restore the newest backup into a scratch database, migrate and validate it there, drop it."""
    archive = params["rehearsal_backup"] or newest_backup(params["backup_dir"], db.dbname)
    scratch = pg_archive.side_name(db.dbname, "__rehearsal_" + pg_archive.utc_now().strftime("%Y%m%d%H%M%S"))
    restore_params = dict(params, src=archive, dbname=scratch, manifest=None, sha256=None, method="swap", jobs=1,
                          no_owner=False, single_transaction=True, terminate_sessions=False, drop_previous=False,
                          maintenance_db=params["maintenance_db"], only_if_moved=False, keep_previous=None)
    # The restore takes the scratch database's lock; production's is already held by migrate().
    pg_archive.restore(restore_params, check_mode=False, application="db_migrate")
    scratch_db = db.with_dbname(scratch)
    try:
        before = _inspect(scratch_db, params)
        result, output = _run_command(scratch_db, argv, params, "rehearsal on %s" % scratch)
        after = _inspect(scratch_db, params)
        where = "rehearsal on a copy of %s failed, production was not touched" % os.path.basename(archive)
        _judge(before, after, result, output, params, where)
        if params["validate"]:
            try:
                validate_database(scratch_db, params["validate"])
            except OpsError as error:
                raise OpsError("%s: %s" % (where, error.msg), **error.details)
        return {"backup": archive, "version_before": before["version"], "version": after["version"]}
    finally:
        with db.with_dbname(params["maintenance_db"]).connect() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier(scratch)))


def migrate(params, check_mode):
    """The db_migrate module: up or down, holding the database's lock for the whole run (not in check mode).

    The lock is what keeps a migration and a restore apart, also a migration left running
    after the controller died; a second migration waits for the first, then finds nothing pending.
    """
    db = PgConnection(params, application="db_migrate")
    run = _migrate_up
    if params["direction"] == "down":
        _check_down_arguments(params)
        run = _migrate_down
    if check_mode:
        return run(db, params, check_mode)
    with database_lock(db.with_dbname(params["maintenance_db"]), db.dbname, params["lock_timeout"]):
        return run(db, params, check_mode)


def _migrate_up(db, params, check_mode):
    before = _inspect(db, params)
    _refuse_broken_state(before)
    outcome = {"version_before": before["version"], "pending": before.get("pending")}
    nothing_to_do = (before["version"] == params["expect_version"] if params["expect_version"]
                     else params["migrations_dir"] and not before["pending"])
    if nothing_to_do:
        return dict(outcome, changed=False, version=before["version"], msg="no pending migration")
    if check_mode:
        return dict(outcome, changed=False, version=before["version"],
                    msg="would run the migration command; pending: %s" % (before.get("pending") or "unknown"))
    argv = [part.replace("{to}", params["expect_version"] or "") for part in _argv(params["command"])]
    if params["rehearse"]:
        outcome["rehearsal"] = _rehearse(db, argv, params)
    result, output = _run_command(db, argv, params, "migrate %s" % db.describe())
    after = _inspect(db, params)
    _judge(before, after, result, output, params, "migrating %s failed" % db.describe())
    if params["validate"]:
        validate_database(db, params["validate"])
    return dict(outcome, changed=after["version"] != before["version"] or after["applied"] != before["applied"],
                version=after["version"], applied=after["applied"], output=output)


def _check_down_arguments(params):
    if not params["to"]:
        raise OpsError("direction=down needs to: the version to go back to")
    if not params["down_command"]:
        raise OpsError(
            "no down_command is configured, and Prisma has no down migrations: restore the pre-upgrade backup "
            "instead (treazrisland.ops.db_restore, or playbooks/restore.yml); nothing was run")


def _migrate_down(db, params, check_mode):
    target = params["to"]
    before = _inspect(db, params)
    if before["version"] == target:
        return dict(changed=False, version=target, version_before=target, msg="already at %s" % target)
    if target not in before["applied"]:
        raise OpsError("%s is not an applied migration of %s; applied: %s" % (
            target, db.describe(), ", ".join(before["applied"][-5:])))
    if check_mode:
        return dict(changed=False, version=before["version"], version_before=before["version"],
                    msg="would run the down command to reach %s" % target)
    argv = [part.replace("{to}", target) for part in _argv(params["down_command"])]
    result, output = _run_command(db, argv, params, "down to %s on %s" % (target, db.describe()))
    after = _inspect(db, params)
    details = dict(version_before=before["version"], version=after["version"], output=output)
    if not result.ok:
        raise OpsError("going down to %s failed: %s" % (target, result.failure("the down command")), **details)
    if after["version"] != target:
        raise OpsError("the down command ran but the schema version is %s, not %s" % (after["version"], target),
                       **details)
    return dict(details, changed=True, applied=after["applied"])


MIGRATE_ARGUMENT_SPEC = dict(
    VERSION_ARGUMENT_SPEC,
    **LOCK_ARGUMENT_SPEC,
    command=dict(type="raw", default=DEFAULT_COMMAND),
    chdir=dict(type="path"),
    environment=dict(type="dict", no_log=True),
    database_url_env=dict(type="str", default="DATABASE_URL"),
    timeout=dict(type="int", default=1800),
    expect_version=dict(type="str"),
    direction=dict(type="str", choices=["up", "down"], default="up"),
    to=dict(type="str"),
    down_command=dict(type="raw"),
    log_path=dict(type="path"),
    rehearse=dict(type="bool", default=False),
    rehearsal_backup=dict(type="path"),
    backup_dir=dict(type="path"),
    maintenance_db=dict(type="str", default="postgres"),
    validate=dict(type="dict", options=CHECKS_ARGUMENT_SPEC),
)
