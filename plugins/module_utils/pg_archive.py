# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database backups (pg_dump) and verified restores (pg_restore).

A backup is whole when both its archive and its JSON manifest exist: the
archive is renamed into place only after pg_dump succeeded and pg_restore
--list read it back, and the manifest is written after that. The manifest is
read in the same snapshot that pg_dump dumps (an exported snapshot), so its
table list and schema version describe exactly what the archive holds.
Restores hold the database's advisory lock for their whole run, as migrations do.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import shutil
import time

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic, checksum, runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.migrations import read_schema_version
from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import (
    PgConnection, database_exists, database_lock, find_tool, identifier, row_estimates, server_major, server_version,
    sql, user_tables,
)

MANIFEST_KIND = "treazrisland.ops/db_backup"
MANIFEST_SUFFIX = ".manifest.json"
EXTENSIONS = {"custom": ".dump", "directory": ".dir"}
MAX_IDENTIFIER = 63
SESSION_WAIT_SECONDS = 10


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
        tables = user_tables(conn)
        encoding, collate, ctype = conn.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
            "WHERE datname = current_database()").fetchone()
        started = utc_now()
        argv = [pg_dump.path, "--format=" + fmt, "--snapshot=" + snapshot, "--no-password",
                "--dbname=" + db.conninfo()]
        if params["compress"]:
            argv.append("--compress=" + params["compress"])
        try:
            if fmt == "custom":
                archive = _dump_to_file(db, argv, pg_restore, path, tables, params["timeout"])
            else:
                archive = _dump_to_directory(db, argv + ["--jobs=%d" % jobs], pg_restore, path, tables,
                                             params["timeout"])
        except OSError as error:
            raise OpsError("writing backup %s failed: %s; nothing was left behind" % (path, error.strerror or error))
    finished = utc_now()

    manifest = dict(
        archive["manifest"], kind=MANIFEST_KIND, manifest_version=1, archive=os.path.basename(path), format=fmt,
        database=db.dbname, encoding=encoding, lc_collate=collate, lc_ctype=ctype, server=_server_label(db),
        server_version=plan["server_version"], server_major=major, pg_dump_version=pg_dump.version,
        pg_dump_major=pg_dump.major, started_at=iso(started), finished_at=iso(finished),
        schema_version=schema_version, tables=tables, toc_entries=archive["toc_entries"],
    )
    atomic.write_json(plan["manifest_path"], manifest)
    removed = _apply_retention(dest, db.dbname, params["keep"], path) if params["keep"] else []
    return dict(
        plan, changed=True, sha256=manifest["sha256"], size=manifest["size"], schema_version=schema_version,
        table_count=len(tables), toc_entries=archive["toc_entries"], started_at=manifest["started_at"],
        finished_at=manifest["finished_at"], duration_seconds=round((finished - started).total_seconds(), 3),
        removed=removed,
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


def _dump_to_file(db, argv, pg_restore, path, tables, timeout):
    """Custom format: stream stdout to disk, hashing it on the way (one pass)."""
    with atomic.atomic_file(path, replace=False) as target:
        writer = checksum.HashingWriter(target.handle)
        db.run_client(argv, "pg_dump of %s" % db.describe(), sink=writer, timeout=timeout)
        target.handle.flush()
        toc_entries = _verify_archive(pg_restore, target.temp_path, tables)
    return {"manifest": {"sha256": writer.hexdigest(), "size": writer.size}, "toc_entries": toc_entries}


def _dump_to_directory(db, argv, pg_restore, path, tables, timeout):
    """Directory format: pg_dump writes the files itself, so they are hashed after."""
    with atomic.atomic_directory(path) as temp_dir:
        db.run_client(argv + ["--file=" + temp_dir], "pg_dump of %s" % db.describe(), timeout=timeout)
        entries = checksum.checksum_entries(temp_dir)
        toc_entries = _verify_archive(pg_restore, temp_dir, tables)
    files = {rel: sha for rel, sha, _size in entries}
    return {
        "manifest": {"sha256": checksum.digest_text(checksum.format_sums(entries)), "files": files,
                     "size": sum(size for _rel, _sha, size in entries)},
        "toc_entries": toc_entries,
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
    admin_db = db.with_dbname(params["maintenance_db"])
    # Held from before anything is read to the end, so no migration runs while the database is replaced.
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
        sessions = _sessions(admin, db.dbname)
        plan = {
            "database": db.dbname, "method": params["method"], "src": src, "sha256": actual, "format": fmt,
            "pg_restore": pg_restore.as_dict(), "server_version": server_version(admin),
            "database_existed": live_exists, "schema_version": (manifest or {}).get("schema_version"),
        }
        if params["method"] == "clean" and not live_exists:
            raise OpsError("database %s does not exist; method=clean restores into an existing database, "
                           "method=swap creates it" % db.dbname)
        if sessions and not params["terminate_sessions"]:
            raise OpsError(
                "database %s has %d other session(s): stop application traffic first, or set "
                "terminate_sessions=true; nothing was restored" % (db.dbname, sessions), **plan)
        if check_mode:
            return dict(plan, changed=False, msg="archive verified; would restore it into %s" % db.dbname)
        started = time.monotonic()
        if params["method"] == "swap":
            outcome = _restore_swap(db, admin, pg_restore, src, manifest, params, live_exists)
        else:
            outcome = _restore_clean(db, admin, pg_restore, src, manifest, params)
    outcome.update(plan, changed=True, duration_seconds=round(time.monotonic() - started, 3))
    return outcome


def _sessions(admin, dbname):
    return admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)
    ).fetchone()[0]


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
    stamp = utc_now().strftime("%Y%m%d%H%M%S")
    scratch = side_name(db.dbname, "__restoring_" + stamp)
    aside = side_name(db.dbname, "__before_restore_" + stamp)
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
    return dict(shape, previous_database=previous)


def _restore_clean(db, admin, pg_restore, src, manifest, params):
    """The guide's pg_restore --clean --if-exists into the existing database."""
    if params["terminate_sessions"]:
        _terminate_sessions(admin, db.dbname)
    argv = _restore_argv(db, pg_restore, src, params)
    argv[1:1] = ["--clean", "--if-exists"] + (["--single-transaction"] if params["single_transaction"] else [])
    db.run_client(argv, "pg_restore of %s into %s" % (src, db.dbname), timeout=params["timeout"])
    return dict(_inspect(db, manifest), previous_database=None)
