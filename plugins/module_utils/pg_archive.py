# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database backups (pg_dump) and verified restores (pg_restore).

A backup is whole when both its archive and its JSON manifest exist: the
archive is renamed into place only after pg_dump succeeded and pg_restore
--list read it back, and the manifest is written after that. The manifest is
read in the same snapshot that pg_dump dumps (an exported snapshot), so its
table list, schema version, schema fingerprint and table stats describe exactly
what the archive holds.

A restore compares the live database with that record first (has it moved since
the backup?), and afterwards the database it set aside (which tables got writes
after the backup?). Restores hold the database's advisory lock for their whole
run, as migrations do.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import re
import shutil
import time

from ansible.module_utils.common.warnings import warn

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic, checksum, runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.migrations import (
    read_failed_migrations, read_schema_version,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.pg_state import (
    changed_tables, schema_fingerprint, table_stats,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import (
    PgConnection, database_exists, database_lock, find_tool, first_line, identifier, psycopg, row_estimates,
    server_major, server_version, sql, user_tables,
)

MANIFEST_KIND = "treazrisland.ops/db_backup"
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 2
ASIDE_INFIX = "__before_restore_"
STAMP_FORMAT = "%Y%m%d%H%M%S"
EXTENSIONS = {"custom": ".dump", "directory": ".dir"}
MAX_IDENTIFIER = 63
SESSION_WAIT_SECONDS = 10
# A client that just disconnected stays in pg_stat_activity for a moment.
SESSION_GRACE_SECONDS = 2


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def manifest_path_for(archive):
    return archive + MANIFEST_SUFFIX


# --------------------------------------------------------------------- backup


def backup(params, check_mode):
    db = PgConnection(params, application="db_backup")
    if not db.dbname:
        raise OpsError("no database named: set dbname, or a dsn that names one")
    if params["digest_max_bytes"] < 0:
        raise OpsError("digest_max_bytes must be 0 or more")
    fmt, jobs = params["format"], params["jobs"]
    if jobs > 1 and fmt != "directory":
        raise OpsError("jobs=%d needs format=directory: pg_dump dumps in parallel only into a directory" % jobs)
    if params["keep"] is not None and params["keep"] < 1:
        raise OpsError("keep must be at least 1 (the backup just written is always kept)")
    dest = params["dest"]
    _check_destination(dest)
    path = _new_archive_path(dest, params["name"], fmt, utc_now())

    with db.connect(autocommit=False) as conn:
        # One read-only snapshot for pg_dump and for what the manifest says.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        major = server_major(conn)
        pg_dump = find_tool("pg_dump", major, params["pg_bin_dir"])
        pg_restore = pg_dump.sibling("pg_restore")
        space = os.statvfs(dest)
        plan = {
            "path": path, "manifest_path": manifest_path_for(path), "format": fmt, "database": db.dbname,
            "server_version": server_version(conn), "pg_dump": pg_dump.as_dict(),
            "database_size": conn.execute("SELECT pg_database_size(current_database())").fetchone()[0],
            "dest_free_bytes": space.f_bavail * space.f_frsize,
        }
        if check_mode:
            return dict(plan, changed=False, msg="would write %s and its manifest" % path)
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        schema_version = read_schema_version(conn)
        failed_migrations = read_failed_migrations(conn)
        tables = user_tables(conn)
        encoding, collate, ctype = conn.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
            "WHERE datname = current_database()").fetchone()
        started = utc_now()
        argv = [pg_dump.path, "--format=" + fmt, "--snapshot=" + snapshot, "--no-password",
                "--dbname=" + db.conninfo()]
        if params["compress"]:
            argv.append("--compress=" + params["compress"])

        def describe():
            """What a restore compares later (has the schema moved, which tables got writes since), in the
            dump's snapshot. Read once the dump is verified, so pg_dump starts at once, and before the archive
            takes its name, so a failure here leaves nothing behind either."""
            try:
                return schema_fingerprint(conn), table_stats(conn, tables, params["digest_max_bytes"])
            except psycopg.Error as error:
                raise OpsError("reading the schema fingerprint and table stats of %s for the manifest failed: %s; "
                               "nothing was left behind" % (db.describe(), db.mask(first_line(error))))

        try:
            if fmt == "custom":
                archive = _dump_to_file(db, argv, pg_restore, path, tables, params["timeout"], describe)
            else:
                archive = _dump_to_directory(db, argv + ["--jobs=%d" % jobs], pg_restore, path, tables,
                                             params["timeout"], describe)
        except OSError as error:
            raise OpsError("writing backup %s failed: %s; nothing was left behind" % (path, error.strerror or error))
    finished = utc_now()
    fingerprint, stats = archive["state"]

    manifest = dict(
        archive["manifest"], kind=MANIFEST_KIND, manifest_version=MANIFEST_VERSION, archive=os.path.basename(path),
        format=fmt, database=db.dbname, encoding=encoding, lc_collate=collate, lc_ctype=ctype,
        server=_server_label(db), server_version=plan["server_version"], server_major=major,
        pg_dump_version=pg_dump.version, pg_dump_major=pg_dump.major, started_at=iso(started),
        finished_at=iso(finished), schema_version=schema_version, failed_migrations=failed_migrations, tables=tables,
        toc_entries=archive["toc_entries"], schema_fingerprint=fingerprint,
        digest_max_bytes=params["digest_max_bytes"], table_stats=stats,
    )
    atomic.write_json(plan["manifest_path"], manifest)
    removed = _apply_retention(dest, db.dbname, params["keep"], path) if params["keep"] else []
    return dict(
        plan, changed=True, sha256=manifest["sha256"], size=manifest["size"], schema_version=schema_version,
        schema_fingerprint=fingerprint, table_count=len(tables), toc_entries=archive["toc_entries"],
        started_at=manifest["started_at"], finished_at=manifest["finished_at"],
        duration_seconds=round((finished - started).total_seconds(), 3), removed=removed,
    )


def _server_label(db):
    return "%s:%s" % (db.info.get("host", "local socket"), db.info.get("port", "5432"))


def _check_destination(dest):
    if not os.path.isdir(dest):
        raise OpsError("destination directory %s does not exist" % dest)
    if not os.access(dest, os.W_OK | os.X_OK):
        raise OpsError("destination directory %s is not writable" % dest)


def _new_archive_path(dest, name, fmt, now):
    """A name no backup has yet; an explicit name that exists is an error, never overwritten."""
    if name:
        path = os.path.join(dest, name)
        if os.path.lexists(path) or os.path.lexists(manifest_path_for(path)):
            raise OpsError("%s already exists; a backup is never overwritten" % path)
        return path
    stem = os.path.join(dest, "backup_" + now.strftime("%Y%m%dT%H%M%SZ"))
    suffix = 0
    while True:
        path = "%s%s%s" % (stem, "-%d" % suffix if suffix else "", EXTENSIONS[fmt])
        if not os.path.lexists(path) and not os.path.lexists(manifest_path_for(path)):
            return path
        suffix += 1


def _dump_to_file(db, argv, pg_restore, path, tables, timeout, describe):
    """Custom format: stream stdout to disk, hashing it on the way (one pass)."""
    with atomic.atomic_file(path, replace=False) as target:
        writer = checksum.HashingWriter(target.handle)
        db.run_client(argv, "pg_dump of %s" % db.describe(), sink=writer, timeout=timeout)
        target.handle.flush()
        toc_entries = _verify_archive(pg_restore, target.temp_path, tables)
        state = describe()
    return {"manifest": {"sha256": writer.hexdigest(), "size": writer.size}, "toc_entries": toc_entries,
            "state": state}


def _dump_to_directory(db, argv, pg_restore, path, tables, timeout, describe):
    """Directory format: pg_dump writes the files itself, so they are hashed after."""
    with atomic.atomic_directory(path) as temp_dir:
        db.run_client(argv + ["--file=" + temp_dir], "pg_dump of %s" % db.describe(), timeout=timeout)
        entries = checksum.checksum_entries(temp_dir)
        toc_entries = _verify_archive(pg_restore, temp_dir, tables)
        state = describe()
    files = {rel: sha for rel, sha, _size in entries}
    return {
        "manifest": {"sha256": checksum.digest_text(checksum.format_sums(entries)), "files": files,
                     "size": sum(size for _rel, _sha, size in entries)},
        "toc_entries": toc_entries, "state": state,
    }


def _verify_archive(pg_restore, path, tables):
    """pg_restore --list must read the archive and list data for every table."""
    listing = runner.check([pg_restore.path, "--list", path], "verifying the archive with pg_restore --list").stdout
    entries = [line for line in listing.splitlines() if line.strip() and not line.startswith(";")]
    dumped = set()
    for line in entries:
        if " TABLE DATA " in line:
            # "<id>; <oid> <oid> TABLE DATA <schema> <table> <owner>"
            dumped.add(line.split(" TABLE DATA ", 1)[1].rsplit(" ", 1)[0])
    missing = [table for table in tables if "%s %s" % tuple(table.split(".", 1)) not in dumped]
    if missing:
        raise OpsError("the archive is incomplete: pg_restore --list shows no data for %s" % ", ".join(missing[:10]))
    return len(entries)


def _apply_retention(dest, dbname, keep, just_written):
    """Remove all but the newest ``keep`` backups of dbname in dest; never just_written."""
    found = []
    for manifest_path in glob.glob(os.path.join(glob.escape(dest), "*" + MANIFEST_SUFFIX)):
        try:
            with open(manifest_path) as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            continue  # not ours to judge, not ours to delete
        if manifest.get("kind") == MANIFEST_KIND and manifest.get("database") == dbname:
            found.append((manifest.get("finished_at", ""), os.path.join(dest, manifest["archive"]), manifest_path))
    found.sort(reverse=True)
    removed = []
    for _finished, archive, manifest_path in found[keep:]:
        if os.path.abspath(archive) == os.path.abspath(just_written):
            continue
        # Manifest first: a half-removed backup must never look whole.
        os.unlink(manifest_path)
        if os.path.isdir(archive) and not os.path.islink(archive):
            shutil.rmtree(archive)
        elif os.path.lexists(archive):
            os.unlink(archive)
        if os.path.isfile(archive + ".sha256"):  # written by checksum_manifest beside it
            os.unlink(archive + ".sha256")
        removed.append(archive)
    return removed


# -------------------------------------------------------------------- restore


def load_manifest(path):
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except ValueError:
        raise OpsError("manifest %s is not valid JSON; refusing to restore" % path)
    if manifest.get("kind") != MANIFEST_KIND:
        raise OpsError("%s is not a db_backup manifest" % path)
    return manifest


def archive_sha256(path, fmt):
    if fmt == "directory":
        return checksum.digest_text(checksum.format_sums(checksum.checksum_entries(path)))
    return checksum.sha256_file(path)[0]


def restore(params, check_mode, application="db_restore"):
    """The db_restore module; db_migrate's rehearsal calls it too, as ``application``."""
    src = params["src"]
    if not os.path.exists(src):
        raise OpsError("archive %s does not exist" % src)
    manifest_path = params["manifest"] or manifest_path_for(src.rstrip("/"))
    manifest = load_manifest(manifest_path) if os.path.exists(manifest_path) else None
    expected = params["sha256"] or (manifest or {}).get("sha256")
    if not expected:
        raise OpsError("no manifest at %s and no sha256 given: refusing to restore an archive that cannot be "
                       "checked" % manifest_path)
    fmt = (manifest or {}).get("format") or ("directory" if os.path.isdir(src) else "custom")
    actual = archive_sha256(src, fmt)
    if actual != expected.lower():
        raise OpsError("archive %s does not match its checksum: its sha256 is %s, expected %s; nothing was "
                       "restored" % (src, actual, expected), sha256=actual, expected_sha256=expected)

    db = PgConnection(params, application=application)
    if not db.dbname:
        raise OpsError("no target database named: set dbname, or a dsn that names one")
    if params["jobs"] > 1 and params["method"] == "clean" and params["single_transaction"]:
        raise OpsError("jobs > 1 cannot be combined with single_transaction")
    if params["keep_previous"] is not None and params["keep_previous"] < 1:
        raise OpsError("keep_previous must be at least 1 (the database just set aside is always kept; "
                       "drop_previous drops it)")
    if params["only_if_moved"] and manifest is None:
        raise OpsError("only_if_moved compares the database with the backup's manifest, and there is none at %s; "
                       "nothing was restored" % manifest_path)
    admin_db = db.with_dbname(params["maintenance_db"])
    # Held from before the comparison to the end, so no migration can move the database in between.
    # A check-mode run changes nothing and waits for nobody.
    lock = contextlib.nullcontext() if check_mode else database_lock(admin_db, db.dbname, params["lock_timeout"])
    with lock, admin_db.connect() as admin:
        major = server_major(admin)
        archive_major = (manifest or {}).get("pg_dump_major", 0)
        pg_restore = find_tool(
            "pg_restore", max(major, archive_major), params["pg_bin_dir"],
            reason="as the server runs PostgreSQL %d and the archive was written by pg_dump %s" % (
                major, (manifest or {}).get("pg_dump_version", "of an unknown version")))
        live_exists = database_exists(admin, db.dbname)
        moved, because = _moved(db, manifest, live_exists, params["only_if_moved"])
        sessions = _settled_sessions(admin, db.dbname)
        plan = {
            "database": db.dbname, "method": params["method"], "src": src, "sha256": actual, "format": fmt,
            "pg_restore": pg_restore.as_dict(), "server_version": server_version(admin),
            "database_existed": live_exists, "schema_version": (manifest or {}).get("schema_version"),
            "database_moved": moved, "moved_because": because, "other_sessions": sessions,
        }
        if params["only_if_moved"] and not moved:
            return dict(plan, changed=False, msg=_not_moved_message(db.dbname, manifest))
        if params["method"] == "clean" and not live_exists:
            raise OpsError("database %s does not exist; method=clean restores into an existing database, "
                           "method=swap creates it" % db.dbname)
        if check_mode:
            return dict(plan, changed=False, msg="archive verified; would restore it into %s" % db.dbname)
        if sessions and not params["terminate_sessions"]:
            raise OpsError(
                "database %s has %d other session(s): stop application traffic first, or set "
                "terminate_sessions=true; nothing was restored" % (db.dbname, sessions), **plan)
        started = time.monotonic()
        if params["method"] == "swap":
            outcome = _restore_swap(db, admin, pg_restore, src, manifest, params, live_exists)
            outcome["dropped_previous"] = (
                _drop_previous(admin, db.dbname, params["keep_previous"], outcome["previous_database"])
                if params["keep_previous"] else [])
        else:
            outcome = _restore_clean(db, admin, pg_restore, src, manifest, params)
            outcome["dropped_previous"] = []
    outcome.update(plan, changed=True, duration_seconds=round(time.monotonic() - started, 3))
    outcome["msg"] = _restored_message(db.dbname, src, outcome)
    return outcome


def _version_label(schema_version):
    return (schema_version or {}).get("version") or "none"


def _moved(db, manifest, live_exists, strict):
    """(moved, reasons): did the live database move since the backup, by its migrations table and its schema?

    A schema fingerprint is compared when the manifest has one (version 2); a
    version-1 manifest is compared by its schema version only, and the reasons say so.
    A database that cannot be read counts as moved, unless ``strict`` (only_if_moved):
    then that is an error, as restoring it could throw away writes for nothing.
    """
    if manifest is None:
        return True, ["no manifest to compare the database with: counted as moved"]
    if not live_exists:
        return True, ["database %s does not exist" % db.dbname]
    recorded_fingerprint = manifest.get("schema_fingerprint")
    try:
        with db.connect() as conn:
            version = read_schema_version(conn)
            failed = read_failed_migrations(conn)
            fingerprint = schema_fingerprint(conn) if recorded_fingerprint else None
    except (OpsError, psycopg.Error) as error:
        problem = db.mask(error.msg if isinstance(error, OpsError) else first_line(error))
        if strict:
            raise OpsError("cannot tell whether database %s moved since the backup: %s; nothing was restored" % (
                db.dbname, problem))
        return True, ["could not be compared with the backup (%s): counted as moved" % problem]
    then, version = manifest.get("schema_version") or {}, version or {}
    reasons = []
    if _version_label(then) != _version_label(version):
        reasons.append("schema version %s -> %s" % (_version_label(then), _version_label(version)))
    elif then.get("applied_count", 0) != version.get("applied_count", 0):
        reasons.append("applied migrations %s -> %s" % (then.get("applied_count", 0), version.get("applied_count", 0)))
    new_failed = [name for name in failed if name not in (manifest.get("failed_migrations") or [])]
    if new_failed:
        reasons.append("%d failed migration row%s: %s" % (
            len(new_failed), "" if len(new_failed) == 1 else "s", ", ".join(new_failed)))
    if recorded_fingerprint and fingerprint != recorded_fingerprint:
        reasons.append("schema differs from the backup's (tables, columns, indexes or constraints)")
    moved = bool(reasons)
    if not recorded_fingerprint:
        reasons.append("the manifest (version %s) records no schema fingerprint: compared by schema version only"
                       % manifest.get("manifest_version", 1))
    return moved, reasons


def _not_moved_message(dbname, manifest):
    if manifest.get("schema_fingerprint"):
        how = "schema version %s, same schema" % _version_label(manifest.get("schema_version"))
    else:
        how = "schema version %s; its manifest records no schema fingerprint, so only the version was compared" % (
            _version_label(manifest.get("schema_version")))
    return ("database %s has not moved since the backup (%s): not restored, so no write made since the backup is "
            "lost" % (dbname, how))


def _restored_message(dbname, src, outcome):
    msg = "restored %s into %s" % (src, dbname)
    if outcome.get("previous_database"):
        msg += "; the previous database is kept as %s" % outcome["previous_database"]
        writes = outcome.get("writes_after_backup")
        if writes:
            msg += "; tables written after the backup, whose rows are only there: %s" % ", ".join(
                "%s (%s)" % (change["table"], change["how"]) for change in writes)
        elif writes == []:
            msg += "; it holds no write made after the backup"
    if outcome.get("dropped_previous"):
        msg += "; dropped older previous databases: %s" % ", ".join(outcome["dropped_previous"])
    return msg


def _sessions(admin, dbname):
    """Client sessions on dbname. Autovacuum workers do not count: a fresh restore wakes them, and the
    server cancels them itself for a rename or a drop."""
    return admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'", (dbname,)
    ).fetchone()[0]


def _settled_sessions(admin, dbname, grace=SESSION_GRACE_SECONDS):
    """Client sessions on dbname, once those just closing (our own moved check's among them) are gone."""
    deadline = time.monotonic() + grace
    count = _sessions(admin, dbname)
    while count and time.monotonic() < deadline:
        time.sleep(0.1)
        count = _sessions(admin, dbname)
    return count


def _terminate_sessions(admin, dbname):
    """Terminate other sessions on dbname and wait until they are gone."""
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                  "AND pid <> pg_backend_pid()", (dbname,))
    deadline = time.monotonic() + SESSION_WAIT_SECONDS
    while _sessions(admin, dbname) and time.monotonic() < deadline:
        time.sleep(0.1)


def _restore_argv(db, pg_restore, src, params):
    argv = [pg_restore.path, "--exit-on-error", "--no-password", "--dbname=" + db.conninfo()]
    if params["jobs"] > 1:
        argv.append("--jobs=%d" % params["jobs"])
    if params["no_owner"]:
        argv.append("--no-owner")
    return argv + [src]


def side_name(dbname, suffix):
    """dbname with a suffix, cut to PostgreSQL's 63-byte identifier limit."""
    room = MAX_IDENTIFIER - len(suffix.encode("utf-8"))
    base = dbname.encode("utf-8")[:room].decode("utf-8", "ignore")
    return base + suffix


def _create_database(admin, name, like, manifest):
    """CREATE DATABASE name from template0, with the encoding/locale of the backup."""
    options = [sql.SQL("TEMPLATE template0")]
    if manifest and manifest.get("encoding"):
        options.append(sql.SQL("ENCODING {}").format(sql.Literal(manifest["encoding"])))
        options.append(sql.SQL("LC_COLLATE {}").format(sql.Literal(manifest["lc_collate"])))
        options.append(sql.SQL("LC_CTYPE {}").format(sql.Literal(manifest["lc_ctype"])))
    owner = like and admin.execute(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (like,)).fetchone()
    if owner:
        options.append(sql.SQL("OWNER {}").format(identifier(owner[0])))
    admin.execute(sql.SQL("CREATE DATABASE {} ").format(identifier(name)) + sql.SQL(" ").join(options))


def _drop_database(admin, name):
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier(name)))


def _inspect(db, manifest):
    """Check the restored database against the manifest; ANALYZE; return its shape."""
    with db.connect() as conn:
        tables = user_tables(conn)
        schema_version = read_schema_version(conn)
        if manifest:
            missing = sorted(set(manifest.get("tables", [])) - set(tables))
            if missing:
                raise OpsError("restored database %s lacks tables of the backup: %s" % (
                    db.dbname, ", ".join(missing[:10])))
            if schema_version != manifest.get("schema_version"):
                raise OpsError("restored database %s has schema version %s, the backup recorded %s" % (
                    db.dbname, schema_version, manifest.get("schema_version")))
        # pg_restore leaves planner statistics empty; the row estimates need them anyway.
        conn.execute("ANALYZE")
        return {"table_count": len(tables), "rows": row_estimates(conn), "restored_schema_version": schema_version}


def _restore_swap(db, admin, pg_restore, src, manifest, params, live_exists):
    """Restore into a new database, verify it, then swap names in one transaction."""
    stamp = utc_now().strftime(STAMP_FORMAT)
    scratch = side_name(db.dbname, "__restoring_" + stamp)
    aside = side_name(db.dbname, ASIDE_INFIX + stamp)
    _create_database(admin, scratch, db.dbname if live_exists else None, manifest)
    try:
        scratch_db = db.with_dbname(scratch)
        scratch_db.run_client(_restore_argv(scratch_db, pg_restore, src, params),
                              "pg_restore of %s into %s" % (src, scratch), timeout=params["timeout"])
        shape = _inspect(scratch_db, manifest)
        if params["terminate_sessions"]:
            _terminate_sessions(admin, db.dbname)
        try:
            with admin.transaction():
                if live_exists:
                    admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        identifier(db.dbname), identifier(aside)))
                admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    identifier(scratch), identifier(db.dbname)))
        except Exception as error:
            raise OpsError("the restored copy was verified but could not take the place of %s: %s; the live "
                           "database is unchanged" % (db.dbname, db.mask(str(error).strip())))
    except BaseException:
        _drop_database(admin, scratch)
        raise
    previous = aside if live_exists else None
    if previous and params["drop_previous"]:
        _drop_database(admin, previous)
        previous = None
    return dict(shape, previous_database=previous, writes_after_backup=_writes_after_backup(db, previous, manifest))


def _writes_after_backup(db, previous, manifest):
    """The tables of the backup whose rows differ in the previous database; None when unknown.

    Unknown: no previous database kept, or a manifest without table stats (version 1).
    The migrations table is left out: its new rows are the migrations themselves, not
    writes of the application. A failure here does not undo the restore, it is a warning.
    """
    recorded = (manifest or {}).get("table_stats")
    if not previous or recorded is None:
        return None
    migrations_table = (manifest.get("schema_version") or {}).get("table")
    skip = [name for name in recorded if migrations_table and name.split(".", 1)[-1] == migrations_table]
    try:
        with db.with_dbname(previous).connect(autocommit=False) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return changed_tables(conn, recorded, skip)
    except (OpsError, psycopg.Error) as error:
        warn("the restore succeeded, but %s could not be compared with the backup to find the writes made after "
             "it: %s" % (previous, db.mask(first_line(error))))
        return None


def _drop_previous(admin, dbname, keep, just_set_aside):
    """Drop dbname's previous databases (<db>__before_restore_<stamp>) beyond the newest ``keep``.

    Never the one just set aside. One still in use is kept (DROP without FORCE): someone may be
    copying rows out of it.
    """
    stamp_length = len(utc_now().strftime(STAMP_FORMAT))
    prefix = side_name(dbname, ASIDE_INFIX + "0" * stamp_length)[:-stamp_length]
    pattern = re.compile(re.escape(prefix) + r"[0-9]{%d}\Z" % stamp_length)
    names = sorted((row[0] for row in admin.execute("SELECT datname FROM pg_database")
                    if pattern.match(row[0])), reverse=True)
    dropped = []
    for name in names[keep:]:
        if name == just_set_aside:
            continue
        try:
            admin.execute(sql.SQL("DROP DATABASE {}").format(identifier(name)))
        except psycopg.errors.ObjectInUse:
            warn("%s was kept although keep_previous=%d: it is in use" % (name, keep))
            continue
        dropped.append(name)
    return dropped


def _restore_clean(db, admin, pg_restore, src, manifest, params):
    """The guide's pg_restore --clean --if-exists into the existing database."""
    if params["terminate_sessions"]:
        _terminate_sessions(admin, db.dbname)
    argv = _restore_argv(db, pg_restore, src, params)
    argv[1:1] = ["--clean", "--if-exists"] + (["--single-transaction"] if params["single_transaction"] else [])
    db.run_client(argv, "pg_restore of %s into %s" % (src, db.dbname), timeout=params["timeout"])
    return dict(_inspect(db, manifest), previous_database=None, writes_after_backup=None)
