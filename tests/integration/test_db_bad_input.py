"""Bad input and failures mid-way: one clear message, and nothing lost or left looking whole."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time

import pytest

from helpers import finish_background, run_module, run_tasks
from sandbox.pgcluster import DEBIAN_BIN, embedded_bin_dir, free_port


@contextlib.contextmanager
def tmpfs(options):
    """A small tmpfs mounted for one test (the tests run as root)."""
    path = tempfile.mkdtemp(prefix="treazrisland-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)
        os.rmdir(path)


def test_wrong_password(pg_a, sample_db, backup_dir):
    params = dict(pg_a.params(sample_db), password="not-the-password", dest=backup_dir)
    run = run_module("db_backup", params)
    assert run.failed
    assert run.msg.startswith("cannot connect to postgres@127.0.0.1:%d/%s: " % (pg_a.port, sample_db))
    assert 'password authentication failed for user "postgres"' in run.msg
    assert os.listdir(backup_dir) == []


def test_unreachable_host(backup_dir):
    port = free_port()  # nothing listens there
    run = run_module("db_backup", dict(host="127.0.0.1", port=port, user="app", password="x", dbname="app",
                                       dest=backup_dir, connect_timeout=3))
    assert run.failed
    assert run.msg.startswith("cannot connect to app@127.0.0.1:%d/app: " % port)
    assert "Connection refused" in run.msg
    assert os.listdir(backup_dir) == []


def test_database_that_does_not_exist(pg_a, backup_dir):
    run = run_module("db_backup", dict(dsn=pg_a.dsn("no_such_db"), dest=backup_dir))
    assert run.failed
    assert 'database "no_such_db" does not exist' in run.msg
    assert os.listdir(backup_dir) == []


def test_invalid_dsn_is_refused_without_echoing_it(backup_dir):
    run = run_module("db_backup", dict(dsn="host=127.0.0.1 password=s3cret-in-dsn dbname", dest=backup_dir))
    assert run.failed
    assert run.msg == "dsn is not a valid PostgreSQL connection string (URI or key=value form)"
    assert "s3cret-in-dsn" not in run.output

    run = run_module("db_backup", dict(dsn="postgresql://u:s3cret-in-dsn@127.0.0.1:notaport/db", dest=backup_dir))
    assert run.failed and run.msg == "the port of the connection must be a number, not 'notaport'"
    assert "s3cret-in-dsn" not in run.output


def test_missing_destination(pg_a, sample_db, tmp_path):
    dest = str(tmp_path / "nowhere")
    run = run_module("db_backup", dict(dsn=pg_a.dsn(sample_db), dest=dest))
    assert run.failed and run.msg == "destination directory %s does not exist" % dest


def test_destination_not_writable(pg_a, sample_db):
    with tmpfs("ro,size=1m") as readonly:
        run = run_module("db_backup", dict(dsn=pg_a.dsn(sample_db), dest=readonly))
        assert run.failed and run.msg == "destination directory %s is not writable" % readonly
        assert os.listdir(readonly) == []


def test_parallel_jobs_need_directory_format(pg_a, sample_db, backup_dir):
    run = run_module("db_backup", dict(dsn=pg_a.dsn(sample_db), dest=backup_dir, jobs=4))
    assert run.failed
    assert run.msg == "jobs=4 needs format=directory: pg_dump dumps in parallel only into a directory"


def test_disk_full_during_the_dump_leaves_nothing(pg_a, sample_db):
    # The sample dump is about 3 MB: it cannot fit in 1 MB.
    with tmpfs("size=1m") as small:
        run = run_module("db_backup", dict(dsn=pg_a.dsn(sample_db), dest=small))
        assert run.failed
        assert run.msg.startswith("writing backup %s/backup_" % small)
        assert run.msg.endswith(": No space left on device; nothing was left behind")
        assert os.listdir(small) == []


def _pg_dump_pids(port):
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"/pg_dump") and any(b"port=%d" % port in arg for arg in argv):
            pids.append(int(pid))
    return pids


def test_pg_dump_killed_mid_way_leaves_no_backup(pg_a, sample_db, backup_dir):
    # A session holding an exclusive lock makes pg_dump wait, so it can be killed while running.
    with pg_a.connect(sample_db, autocommit=False) as blocker:
        blocker.execute('LOCK TABLE "Rom" IN ACCESS EXCLUSIVE MODE')
        process = run_module_in_background("db_backup", dict(dsn=pg_a.dsn(sample_db), dest=backup_dir))
        deadline = time.monotonic() + 60
        while not _pg_dump_pids(pg_a.port):
            assert time.monotonic() < deadline and process.poll() is None, "pg_dump never started"
            time.sleep(0.05)
        assert any(name.endswith(".partial") for name in os.listdir(backup_dir))
        for pid in _pg_dump_pids(pg_a.port):
            os.kill(pid, signal.SIGKILL)
        run = finish_background(process)
    assert run.failed
    assert run.msg == ("pg_dump of postgres@127.0.0.1:%d/%s failed: pg_dump was killed by signal 9 (SIGKILL)"
                       % (pg_a.port, sample_db))
    assert os.listdir(backup_dir) == []


def run_module_in_background(module, args):
    task = {"name": module, "treazrisland.ops." + module: args, "ignore_errors": True}
    return run_tasks([task], background=True)


def _good_backup(pg_a, sample_db, backup_dir):
    run = run_module("db_backup", dict(dsn=pg_a.dsn(sample_db), dest=backup_dir))
    assert not run.failed, run.msg
    return run.result


def test_corrupted_archive_is_refused_before_pg_restore_runs(pg_a, pg_b, sample_db, backup_dir):
    backup = _good_backup(pg_a, sample_db, backup_dir)
    with open(backup["path"], "r+b") as handle:
        handle.seek(backup["size"] // 2)
        byte = handle.read(1)
        handle.seek(backup["size"] // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    pg_b.execute("CREATE DATABASE corrupt_target")
    pg_b.execute("CREATE TABLE canary (id int); INSERT INTO canary VALUES (42)", "corrupt_target")
    databases = pg_b.databases()

    for method in ("swap", "clean"):
        run = run_module("db_restore", dict(pg_b.params("corrupt_target"), src=backup["path"], method=method))
        assert run.failed
        assert run.msg.startswith("archive %s does not match its checksum: its sha256 is " % backup["path"])
        assert run.msg.endswith(", expected %s; nothing was restored" % backup["sha256"])
        assert pg_b.databases() == databases
        assert pg_b.query("SELECT id FROM canary", "corrupt_target") == [(42,)]


def test_archive_without_manifest_or_checksum_is_refused(pg_a, pg_b, sample_db, backup_dir):
    backup = _good_backup(pg_a, sample_db, backup_dir)
    os.unlink(backup["manifest_path"])
    run = run_module("db_restore", dict(pg_b.params("no_manifest"), src=backup["path"]))
    assert run.failed
    assert run.msg == ("no manifest at %s and no sha256 given: refusing to restore an archive that cannot be "
                       "checked" % backup["manifest_path"])
    run = run_module("db_restore", dict(pg_b.params("no_manifest"), src=backup["path"], sha256=backup["sha256"]))
    assert not run.failed, run.msg
    assert run.result["rows"]["public.Rom"] == 200_000


@pytest.fixture(scope="module")
def pg18_app(pg18):
    pg18.create_database("app18")
    pg18.execute("CREATE TABLE items (id int PRIMARY KEY, name text); "
                 "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g", "app18")
    return "app18"


def test_pg_dump_older_than_the_server_is_refused(pg18, pg18_app, backup_dir):
    debian_bin = DEBIAN_BIN[-1]
    run = run_module("db_backup", dict(dsn=pg18.dsn(pg18_app), dest=backup_dir, pg_bin_dir=[debian_bin]))
    assert run.failed
    assert run.msg == (
        "no pg_dump of PostgreSQL 18 or newer is installed, and the server runs PostgreSQL 18; found in %s: "
        "pg_dump 15.18 (%s/pg_dump). Install the client of PostgreSQL 18 (Debian/Ubuntu: apt-get install "
        "postgresql-client-18 from apt.postgresql.org) or point pg_bin_dir at one." % (debian_bin, debian_bin)
    )
    assert os.listdir(backup_dir) == []


def test_the_newer_pg_dump_is_chosen_for_a_newer_server_and_the_same_major_otherwise(
        pg_a, pg18, pg18_app, sample_db, backup_dir):
    both = [DEBIAN_BIN[-1], embedded_bin_dir()]
    run = run_module("db_backup", dict(dsn=pg18.dsn(pg18_app), dest=backup_dir, pg_bin_dir=both))
    assert not run.failed, run.msg
    assert run.result["pg_dump"]["version"].startswith("18.")
    with open(run.result["manifest_path"]) as handle:
        assert json.load(handle)["pg_dump_major"] == 18

    run = run_module("db_backup", dict(dsn=pg_a.dsn(sample_db), dest=backup_dir, pg_bin_dir=both))
    assert not run.failed, run.msg
    assert run.result["pg_dump"]["version"].startswith("15.")


def test_restore_of_a_newer_archive_needs_a_newer_pg_restore(pg18, pg18_app, pg_b, backup_dir):
    run = run_module("db_backup", dict(dsn=pg18.dsn(pg18_app), dest=backup_dir, pg_bin_dir=[embedded_bin_dir()]))
    assert not run.failed, run.msg
    databases = pg_b.databases()
    run = run_module("db_restore", dict(pg_b.params("from18"), src=run.result["path"], pg_bin_dir=[DEBIAN_BIN[-1]]))
    assert run.failed
    assert run.msg.startswith("no pg_restore of PostgreSQL 18 or newer is installed, as the server runs "
                              "PostgreSQL 15 and the archive was written by pg_dump 18.")
    assert pg_b.databases() == databases
