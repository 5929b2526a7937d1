# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connections and client tools, with the password kept off argv.

A connection comes from a DSN (the ``DATABASE_URL`` form or libpq key=value)
and/or explicit options. Client programs get the connection string without
its password on their command line and the password through a temporary 0600
passfile named by PGPASSFILE; psycopg gets it as a keyword argument.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import hashlib
import os
import re
import tempfile
import time
import traceback
from urllib.parse import quote, urlencode

from ansible_collections.treazrisland.ops.plugins.module_utils import runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

try:
    import psycopg
    from psycopg import conninfo as psycopg_conninfo
    from psycopg import sql
except ImportError:
    psycopg = psycopg_conninfo = sql = None
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

# Where distributions install versioned client programs; PATH is searched too.
DEFAULT_BIN_DIRS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/usr/local/pgsql*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)

CONNECTION_ARGUMENT_SPEC = dict(
    dsn=dict(type="str", no_log=True, aliases=["database_url"]),
    host=dict(type="str"),
    port=dict(type="int"),
    user=dict(type="str"),
    password=dict(type="str", no_log=True),
    dbname=dict(type="str", aliases=["database"]),
    sslmode=dict(type="str", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
    connect_timeout=dict(type="int", default=10),
    pg_bin_dir=dict(type="list", elements="path"),
)

# Modules that change a database hold its lock (database_lock) and wait this long for it.
LOCK_ARGUMENT_SPEC = dict(
    lock_timeout=dict(type="int", default=300),
)

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")

APPLICATION = "treazrisland.ops"
LOCK_NAMESPACE = APPLICATION + ":"
LOCK_POLL_SECONDS = 0.5


def require_psycopg():
    if psycopg is None:
        raise OpsError(
            "the Python library psycopg (version 3) is required on the managed host: pip install 'psycopg[binary]'",
            exception=PSYCOPG_IMPORT_ERROR,
        )


class PgConnection:
    """Where a database is, built from module parameters; never prints its password."""

    def __init__(self, params, application=None):
        """``application`` (a module name) goes into application_name, so pg_stat_activity tells who it is."""
        require_psycopg()
        info = {}
        if params.get("dsn"):
            try:
                info = psycopg_conninfo.conninfo_to_dict(params["dsn"])
            except psycopg.Error:
                # The DSN itself is never echoed: it carries the password.
                raise OpsError("dsn is not a valid PostgreSQL connection string (URI or key=value form)")
        for key in ("host", "port", "user", "password", "dbname", "sslmode"):
            if params.get(key) not in (None, ""):
                info[key] = str(params[key])
        if not str(info.get("port", "0")).isdigit():
            raise OpsError("the port of the connection must be a number, not %r" % info["port"])
        self.password = info.pop("password", None)
        self.info = info
        self.connect_timeout = params.get("connect_timeout") or 10
        self.dsn = params.get("dsn")
        self.application_name = APPLICATION + (" " + application if application else "")

    @property
    def dbname(self):
        return self.info.get("dbname")

    @property
    def secrets(self):
        return [s for s in (self.password, self.dsn) if s]

    def with_dbname(self, dbname):
        other = object.__new__(PgConnection)
        other.__dict__.update(self.__dict__)
        other.info = dict(self.info, dbname=dbname)
        return other

    def describe(self):
        """user@host:port/dbname, for messages."""
        return "%s@%s:%s/%s" % (
            self.info.get("user", "<default user>"), self.info.get("host", "<default host>"),
            self.info.get("port", "5432"), self.info.get("dbname", "<default database>"),
        )

    def mask(self, text):
        return runner.mask(text, self.secrets)

    def conninfo(self):
        """libpq connection string without the password, safe on a command line."""
        return psycopg_conninfo.make_conninfo(**self.info)

    def url(self):
        """postgresql:// URL with the password, for a DATABASE_URL environment variable only."""
        query = {k: v for k, v in self.info.items() if k not in ("host", "port", "user", "dbname")}
        userinfo = quote(self.info.get("user", ""), safe="")
        if self.password is not None:
            userinfo += ":" + quote(self.password, safe="")
        return "postgresql://%s@%s:%s/%s%s" % (
            userinfo, quote(self.info.get("host", "localhost"), safe=""), self.info.get("port", "5432"),
            quote(self.info.get("dbname", ""), safe=""), ("?" + urlencode(query)) if query else "")

    def connect(self, autocommit=True):
        try:
            return psycopg.connect(
                self.conninfo(), password=self.password, connect_timeout=self.connect_timeout,
                autocommit=autocommit, application_name=self.application_name,
            )
        except psycopg.Error as error:
            raise OpsError("cannot connect to %s: %s" % (self.describe(), self.mask(first_line(error))))

    @contextlib.contextmanager
    def client_env(self):
        """Environment for pg_dump/pg_restore: a temporary passfile, no prompt."""
        env = {"PGCONNECT_TIMEOUT": str(self.connect_timeout), "PGAPPNAME": self.application_name}
        if self.password is None:
            yield env
            return
        fd, path = tempfile.mkstemp(prefix="treazrisland-pgpass-")
        try:
            os.fchmod(fd, 0o600)
            escaped = self.password.replace("\\", "\\\\").replace(":", "\\:")
            os.write(fd, ("*:*:*:*:%s\n" % escaped).encode("utf-8"))
            os.close(fd)
            env["PGPASSFILE"] = path
            yield env
        finally:
            os.unlink(path)

    def run_client(self, argv, action, **kwargs):
        """Run a libpq client program with this connection's passfile; OpsError on failure."""
        with self.client_env() as env:
            return runner.check(argv, action, env=env, secrets=self.secrets, **kwargs)


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__


def server_major(conn):
    number = int(conn.execute("SHOW server_version_num").fetchone()[0])
    return number // 10000


def server_version(conn):
    return conn.execute("SHOW server_version").fetchone()[0]


class PgTool:
    """One installed client program (pg_dump, pg_restore) and its version."""

    def __init__(self, path, version, major):
        self.path = path
        self.version = version
        self.major = major

    def sibling(self, name):
        """The program of the same installation, e.g. pg_restore next to pg_dump."""
        path = os.path.join(os.path.dirname(self.path), name)
        if not os.access(path, os.X_OK):
            raise OpsError("%s has no %s beside it (%s)" % (self.path, name, path))
        return PgTool(path, self.version, self.major)

    def as_dict(self):
        return {"path": self.path, "version": self.version}


def installed_tools(name, bin_dirs=None):
    """Every distinct installed ``name`` with its version, from bin_dirs or the defaults and PATH."""
    if bin_dirs:
        directories = list(bin_dirs)
    else:
        directories = [d for pattern in DEFAULT_BIN_DIRS for d in sorted(glob.glob(pattern))]
        directories += os.environ.get("PATH", "").split(os.pathsep)
    tools, seen = [], set()
    for directory in directories:
        path = os.path.join(directory, name)
        real = os.path.realpath(path)
        # Debian's /usr/bin/pg_dump is pg_wrapper, which picks a version at run time: skip it.
        if real in seen or os.path.basename(real) != name or not os.access(real, os.X_OK):
            continue
        seen.add(real)
        result = runner.run([path, "--version"])
        match = _VERSION.search(result.stdout or "")
        if result.ok and match:
            version = match.group(1) + ("." + match.group(2) if match.group(2) else "")
            tools.append(PgTool(path, version, int(match.group(1))))
    return tools


def find_tool(name, min_major, bin_dirs=None, reason=None):
    """The installed ``name`` of major min_major, else the nearest newer one.

    The same major gives the most portable archive; a newer one still reads and
    writes for an older server, an older one refuses a newer server.
    """
    tools = installed_tools(name, bin_dirs)
    fitting = sorted((t for t in tools if t.major >= min_major), key=lambda t: (t.major, t.path))
    if fitting:
        return fitting[0]
    found = ", ".join("%s %s (%s)" % (name, t.version, t.path) for t in tools) or "none"
    where = ", ".join(bin_dirs) if bin_dirs else "the usual PostgreSQL directories and PATH"
    raise OpsError(
        "no %s of PostgreSQL %d or newer is installed, %s; found in %s: %s. Install the client of "
        "PostgreSQL %d (Debian/Ubuntu: apt-get install postgresql-client-%d from apt.postgresql.org) "
        "or point pg_bin_dir at one." % (
            name, min_major, reason or "and the server runs PostgreSQL %d" % min_major, where, found,
            min_major, min_major),
        installed=[t.as_dict() for t in tools],
    )


def user_tables(conn):
    """Schema-qualified names of the ordinary tables pg_dump dumps data for.

    Partitioned parents hold no rows of their own; extension members are dumped
    as CREATE EXTENSION, not as data.
    """
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY 1
        """
    ).fetchall()
    return [row[0] for row in rows]


def row_estimates(conn):
    """{schema.table: estimated rows} from the planner statistics (run ANALYZE first)."""
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname, GREATEST(c.reltuples, 0)::bigint
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%'
        ORDER BY 1
        """
    ).fetchall()
    return dict(rows)


def database_exists(conn, dbname):
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def identifier(name):
    return sql.Identifier(name)


# ---------------------------------------------------------- database lock


def lock_key(dbname):
    """The advisory lock key of a database: signed 64 bits of sha256("treazrisland.ops:" + name).

    Keyed by name, not by oid, so that the names swapped by a restore keep their lock.
    """
    digest = hashlib.sha256((LOCK_NAMESPACE + dbname).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def database_lock(admin_db, dbname, timeout):
    """Hold the session-level advisory lock of dbname, taken in admin_db (the maintenance database).

    The lock lives on a connection of its own, held for the whole ``with`` block and
    released when it closes (also when the process dies). Polls pg_try_advisory_lock for
    up to ``timeout`` seconds, then fails naming the session that holds it.
    """
    if timeout is None or timeout < 0:
        raise OpsError("lock_timeout must be 0 or more seconds")
    key = lock_key(dbname)
    conn = admin_db.connect()
    try:
        deadline = time.monotonic() + timeout
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            if time.monotonic() >= deadline:
                holder = lock_holder(conn, key)
                if holder is None:  # released in between: one more try
                    if conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                        break
                    holder = {}
                raise OpsError(
                    "database %s is locked by another %s run (%s): nothing was done; wait for it to finish or "
                    "stop it" % (dbname, APPLICATION, describe_holder(holder)), lock_holder=holder)
            time.sleep(min(LOCK_POLL_SECONDS, max(deadline - time.monotonic(), 0.01)))
        yield
    finally:
        conn.close()


def lock_holder(conn, key):
    """{pid, application_name, client_addr, client_port, backend_start, state} of the session holding key."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(
        """
        SELECT l.pid, a.application_name, host(a.client_addr), a.client_port, a.backend_start, a.state
        FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
        LIMIT 1
        """, (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone()
    if row is None:
        return None
    pid, application, address, port, since, state = row
    if since is not None:
        since = since.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"pid": pid, "application_name": application, "client_addr": address, "client_port": port,
            "backend_start": since, "state": state}


def describe_holder(holder):
    """pid 1234, application db_migrate, from 10.0.0.1, since 2026-12-03T08:10:00Z"""
    if not holder:
        return "holder unknown"
    application = holder.get("application_name") or "unnamed"
    if application.startswith(APPLICATION + " "):
        application = application[len(APPLICATION) + 1:]
    if holder.get("client_addr"):
        origin = holder["client_addr"]
    elif holder.get("client_port") == -1:
        origin = "the local socket"
    else:
        origin = "an address not visible to this role"
    return "pid %s, application %s, from %s, since %s" % (
        holder["pid"], application, origin, holder.get("backend_start") or "an unknown time")
