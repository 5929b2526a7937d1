"""Choosing client programs, and keeping passwords off the command line."""

from __future__ import annotations

import os

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils import postgres
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError


def fake_install(root, version):
    """A stand-in pg_dump that only answers --version: enough to test the choice, nothing else."""
    bin_dir = root / ("pg" + version) / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("pg_dump", "pg_restore"):
        program = bin_dir / name
        program.write_text("#!/bin/sh\necho '%s (PostgreSQL) %s'\n" % (name, version))
        program.chmod(0o755)
    return str(bin_dir)


def test_same_major_first_then_nearest_newer(tmp_path):
    dirs = [fake_install(tmp_path, v) for v in ("18.1", "15.18", "16.4", "14.9")]
    assert postgres.find_tool("pg_dump", 15, dirs).version == "15.18"
    assert postgres.find_tool("pg_dump", 17, dirs).version == "18.1"
    chosen = postgres.find_tool("pg_dump", 16, dirs)
    assert chosen.path == os.path.join(dirs[2], "pg_dump")
    assert chosen.sibling("pg_restore").path == os.path.join(dirs[2], "pg_restore")


def test_only_older_tools_is_a_clear_error(tmp_path):
    dirs = [fake_install(tmp_path, "15.18")]
    with pytest.raises(OpsError) as raised:
        postgres.find_tool("pg_dump", 16, dirs)
    assert raised.value.msg.startswith("no pg_dump of PostgreSQL 16 or newer is installed")
    assert "pg_dump 15.18 (%s/pg_dump)" % dirs[0] in raised.value.msg
    assert "apt-get install postgresql-client-16" in raised.value.msg


def test_dsn_password_goes_to_a_0600_passfile_not_to_argv():
    spec = postgres.PgConnection({"dsn": "postgresql://app:p%3Aw%5Cd@db.internal:6432/treazrisland?sslmode=require"})
    assert spec.password == "p:w\\d"
    assert "p:w" not in spec.conninfo() and "password" not in spec.conninfo()
    assert spec.describe() == "app@db.internal:6432/treazrisland"
    with spec.client_env() as env:
        passfile = env["PGPASSFILE"]
        assert oct(os.stat(passfile).st_mode & 0o777) == "0o600"
        assert open(passfile).read() == "*:*:*:*:p\\:w\\\\d\n"
    assert not os.path.exists(passfile)


def test_explicit_options_override_the_dsn():
    spec = postgres.PgConnection({"dsn": "postgresql://app:pw@db/one", "dbname": "two", "port": 5433})
    assert spec.describe() == "app@db:5433/two"


def test_lock_key_is_a_stable_signed_64_bit_key_of_the_database_name():
    assert postgres.lock_key("treazrisland") == 5903215093123825328
    keys = [postgres.lock_key(name) for name in ("treazrisland", "treazrisland__before_restore_20261203081000",
                                                 "treazrisland__restoring_20261203081000", "")]
    assert len(set(keys)) == len(keys)
    assert all(-2 ** 63 <= key < 2 ** 63 for key in keys)
    assert any(key < 0 for key in map(postgres.lock_key, ("a", "b", "c", "d", "e", "f", "g", "h")))


def test_lock_holder_is_described_for_the_message():
    holder = {"pid": 1234, "application_name": "treazrisland.ops db_migrate", "client_addr": "10.0.0.1",
              "client_port": 50000, "backend_start": "2026-12-03T08:10:00Z", "state": "idle"}
    assert postgres.describe_holder(holder) == (
        "pid 1234, application db_migrate, from 10.0.0.1, since 2026-12-03T08:10:00Z")
    local = dict(holder, application_name="psql", client_addr=None, client_port=-1)
    assert postgres.describe_holder(local) == "pid 1234, application psql, from the local socket, since " \
                                              "2026-12-03T08:10:00Z"
    hidden = dict(holder, application_name="", client_addr=None, client_port=None, backend_start=None)
    assert postgres.describe_holder(hidden) == ("pid 1234, application unnamed, from an address not visible to this "
                                                "role, since an unknown time")
