"""A stand-in for Treazrisland's backend, for the sandbox: an HTTP service with /health.

Like the real one, /health answers HTTP 200 even when degraded; its JSON
``status`` says "ok" or "degraded". It reads its configuration from the .env
of its release directory (linked to the shared one), checks that every key its
release requires is set, and that the database's _prisma_migrations has reached
the release's newest migration. /version answers the release it runs (an
optional version endpoint; Treazrisland itself has none).
"""

from __future__ import annotations

import http.server
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read_env(path):
    values = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip().removeprefix("export ").strip()] = value.strip().strip('"').strip("'")
    return values


def release_file(name):
    with open(os.path.join(HERE, name)) as handle:
        return handle.read().strip()


def expected_migration():
    directory = os.path.join(HERE, "backend", "prisma", "migrations")
    names = sorted(n for n in os.listdir(directory) if os.path.isdir(os.path.join(directory, n)))
    return names[-1] if names else None


def problems(env):
    found = [key for key in release_file("required-env.txt").split() if not env.get(key)]
    found = ["missing configuration: %s" % key for key in found]
    if os.path.exists(os.path.join(HERE, "BROKEN")):
        found.append("this release is broken on purpose")
    # A drill: the operator lists releases that must report degraded on this host.
    if release_file("VERSION") in env.get("DEGRADED_VERSIONS", "").split(","):
        found.append("degraded on purpose on this host (DEGRADED_VERSIONS)")
    try:
        import psycopg  # pylint: disable=import-outside-toplevel
        with psycopg.connect(env["DATABASE_URL"], connect_timeout=3) as conn:
            row = conn.execute("SELECT max(migration_name) FROM _prisma_migrations WHERE finished_at IS NOT NULL "
                               "AND rolled_back_at IS NULL").fetchone()
        if row[0] is None or row[0] < expected_migration():
            found.append("database schema %s is behind %s" % (row[0], expected_migration()))
    except Exception as error:  # noqa: BLE001 - any database trouble makes the app degraded
        found.append("database: %s" % str(error).strip().splitlines()[0])
    return found


def maintenance_flag():
    """shared/maintenance beside the release: while it exists, writes are refused (the maintenance hook)."""
    # Textually: HERE is <base>/current, a symlink, and the file system would take ".." from its target.
    return os.path.normpath(os.path.join(HERE, os.pardir, "shared", "maintenance"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        """POST /users {"email": ...}: a write of live traffic, refused with 503 in maintenance."""
        if self.path != "/users":
            self.send_error(404)
            return
        if os.path.exists(maintenance_flag()):
            self.send_error(503, "maintenance")
            return
        email = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))["email"]
        try:
            import psycopg  # pylint: disable=import-outside-toplevel
            with psycopg.connect(read_env(os.path.join(HERE, ".env"))["DATABASE_URL"], connect_timeout=3) as conn:
                conn.execute('INSERT INTO "User" (email) VALUES (%s)', (email,))
        except Exception as error:  # noqa: BLE001 - the database is away: the write is refused
            self.send_error(503, str(error).strip().splitlines()[0])
            return
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/health":
            issues = problems(read_env(os.path.join(HERE, ".env")))
            body = {"status": "degraded" if issues else "ok", "problems": issues}
        elif self.path == "/version":
            body = {"version": release_file("VERSION")}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    env = read_env(os.path.join(HERE, ".env"))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", int(env.get("APP_PORT", "8080"))), Handler)
    print("treazrisland stand-in %s listening" % release_file("VERSION"), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
