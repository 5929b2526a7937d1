"""A stand-in for Treazrisland's backend, for the sandbox: what the collection meets on a real host.

Like the real backend (checked by running it; ../shared/notes in the project's history):

- It runs from the release's ``backend/`` directory and reads its configuration the
  way dotenv-flow 3 over Node's dotenv 8 does: ``.env``, ``.env.local``,
  ``.env.<NODE_ENV>``, ``.env.<NODE_ENV>.local`` in its working directory, later
  files winning, values parsed by dotenv's rules (quotes stripped, ``\\n`` in
  double quotes, every other backslash kept).
- Without a required key (``src/config/required-env.txt``), or with a JWT_SECRET
  shorter than 32 characters, it exits at once with "Invalid environment
  configuration".
- It listens on ``PORT`` from that configuration, on every address, and serves
  Prometheus metrics on a second port (9464).
- ``GET /health`` answers HTTP 200 even when degraded, with
  ``{"status": "ok" | "degraded", "dependencies": {"redis", "prisma", "objectStorage"}}``,
  each ``{"status": "up" | "down", "error": ...}``. Its database check is ``SELECT 1``:
  an unmigrated database looks healthy here too.

Sandbox additions: ``/version`` answers the release it runs (Treazrisland has no
such endpoint); ``POST /users`` is a live write, refused (503) while
``<base>/shared/maintenance`` exists; two drills report a fourth dependency,
``drill``, as down: a release holding ``backend/BROKEN``, and a host whose
``DEGRADED_VERSIONS`` lists the release. A release holding ``backend/DRILL.json``
(``{"error_rate": 0.2, "delay_ms": 150}``) answers that share of its reads with 500
and slows them, while its /health stays "ok": what only a metrics gate can see.
``GET /roms`` reads the ``Rom`` table, so it fails on an unmigrated database. The
maintenance flag answers 503 with ``Retry-After``; holding the word ``all`` it
refuses every route but /health.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))  # <release>/backend
RELEASE = os.path.dirname(HERE)
METRICS_PORT = 9464  # the real backend's default; METRICS_PORT in its configuration moves it
_DOTENV_LINE = re.compile(r"^\s*([\w.-]+)\s*=\s*(.*)?\s*$")


def parse_dotenv(text):
    """Node dotenv 8's parse: one KEY=value per line, no export, no inline comments, no escapes but \\n."""
    values = {}
    for line in re.split(r"\n|\r|\r\n", text):
        match = _DOTENV_LINE.match(line)
        if not match:
            continue
        value = match.group(2) or ""
        quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"
        if quoted:
            value = value[1:-1].replace("\\n", "\n") if value[0] == '"' else value[1:-1]
        else:
            value = value.strip()
        values[match.group(1)] = value
    return values


def load_env():
    """dotenv-flow's files in the working directory; the process environment wins over all of them."""
    node_env = os.environ.get("NODE_ENV")
    names = [".env", ".env.local"] + ([".env.%s" % node_env, ".env.%s.local" % node_env] if node_env else [])
    values = {}
    for name in names:
        if os.path.exists(name):
            with open(name, encoding="utf-8") as handle:
                values.update(parse_dotenv(handle.read()))
    values.update((key, value) for key, value in os.environ.items() if key in values)
    return values


def release_file(name):
    with open(os.path.join(RELEASE, name)) as handle:
        return handle.read().strip()


def invalid_configuration(env):
    required = release_file("backend/src/config/required-env.txt").split()
    problems = ["%s: Required" % key for key in required if not env.get(key)]
    if env.get("JWT_SECRET") and len(env["JWT_SECRET"]) < 32:
        problems.append("JWT_SECRET: String must contain at least 32 character(s)")
    if env.get("PORT") and not env["PORT"].isdigit():
        problems.append("PORT: Expected number")
    return problems


def database_check(env):
    try:
        import psycopg  # pylint: disable=import-outside-toplevel
        with psycopg.connect(env["DATABASE_URL"], connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return {"status": "up"}
    except Exception as error:  # noqa: BLE001 - any database trouble is reported, as the real check does
        return {"status": "down", "error": str(error).strip().splitlines()[0]}


_S3_CLIENTS = {}


def _s3_client(env, host, port):
    """One client per process, as the real backend keeps one: making a boto3 client costs more than the check."""
    key = (host, port)
    if key not in _S3_CLIENTS:
        import boto3  # pylint: disable=import-outside-toplevel
        from botocore.config import Config  # pylint: disable=import-outside-toplevel
        scheme = "https" if env.get("OBJECT_STORAGE_USE_SSL", "false") == "true" else "http"
        _S3_CLIENTS[key] = boto3.client("s3", endpoint_url="%s://%s:%d" % (scheme, host, port), region_name="us-east-1",
                                        aws_access_key_id=env["OBJECT_STORAGE_ACCESS_KEY"],
                                        aws_secret_access_key=env["OBJECT_STORAGE_SECRET_KEY"],
                                        config=Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 1}))
    return _S3_CLIENTS[key]


def object_storage_check(env):
    host, port = env["OBJECT_STORAGE_ENDPOINT"], int(env["OBJECT_STORAGE_PORT"])
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return {"status": "down", "error": "connect ECONNREFUSED %s:%d" % (host, port)}
    except OSError as error:
        return {"status": "down", "error": "connect %s %s:%d" % (error.strerror or error, host, port)}
    try:
        _s3_client(env, host, port).head_bucket(Bucket=env["OBJECT_STORAGE_BUCKET"])
        return {"status": "up"}
    except Exception as error:  # noqa: BLE001 - the bucket check failed: reported as the real app does
        return {"status": "down", "error": str(error).strip().splitlines()[0]}


def health(env):
    dependencies = {"redis": {"status": "up"}, "prisma": database_check(env), "objectStorage": object_storage_check(env)}
    if os.path.exists(os.path.join(HERE, "BROKEN")):
        dependencies["drill"] = {"status": "down", "error": "this release is broken on purpose"}
    elif release_file("VERSION") in env.get("DEGRADED_VERSIONS", "").split(","):
        dependencies["drill"] = {"status": "down", "error": "degraded on purpose on this host (DEGRADED_VERSIONS)"}
    healthy = all(dependency["status"] == "up" for dependency in dependencies.values())
    return {"status": "ok" if healthy else "degraded", "dependencies": dependencies}


class Drill:
    """backend/DRILL.json of a release: a share of its reads answered 500, each read slowed."""

    def __init__(self):
        path = os.path.join(HERE, "DRILL.json")
        settings = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                settings = json.load(handle)
        self.error_rate = float(settings.get("error_rate", 0))
        self.delay = float(settings.get("delay_ms", 0)) / 1000.0
        self.reads = 0
        self.lock = threading.Lock()

    def misbehave(self):
        """Sleep the drill's delay; True when this read is one of the share answered 500 (evenly spread)."""
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.reads += 1
            return int(self.reads * self.error_rate) != int((self.reads - 1) * self.error_rate)


DRILL = Drill()


def maintenance_flag():
    """<base>/shared/maintenance: while it exists, writes are refused (the maintenance hook)."""
    # Textually: RELEASE is <base>/current, a symlink, and the file system would take ".." from its target.
    return os.path.normpath(os.path.join(RELEASE, os.pardir, "shared", "maintenance"))


class Metrics:
    """Prometheus text format: requests by route and status, and a latency histogram."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}
        self.durations = {}

    def observe(self, method, route, status, seconds):
        with self.lock:
            key = (method, route, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            counts, total = self.durations.get(route, ([0] * len(self.BUCKETS), [0, 0.0]))
            for index, bound in enumerate(self.BUCKETS):
                if seconds <= bound:
                    counts[index] += 1
            total[0] += 1
            total[1] += seconds
            self.durations[route] = (counts, total)

    def text(self):
        lines = ["# TYPE treazrisland_build_info gauge",
                 'treazrisland_build_info{version="%s"} 1' % release_file("VERSION"),
                 "# TYPE http_requests_total counter"]
        with self.lock:
            for (method, route, status), count in sorted(self.requests.items()):
                lines.append('http_requests_total{method="%s",route="%s",status_code="%d"} %d'
                             % (method, route, status, count))
            lines.append("# TYPE http_request_duration_seconds histogram")
            for route, (counts, (count, seconds)) in sorted(self.durations.items()):
                for bound, cumulative in zip(self.BUCKETS, counts):
                    lines.append('http_request_duration_seconds_bucket{route="%s",le="%s"} %d' % (route, bound, cumulative))
                lines.append('http_request_duration_seconds_bucket{route="%s",le="+Inf"} %d' % (route, count))
                lines.append('http_request_duration_seconds_sum{route="%s"} %f' % (route, seconds))
                lines.append('http_request_duration_seconds_count{route="%s"} %d' % (route, count))
        return "\n".join(lines) + "\n"


METRICS = Metrics()


class Handler(http.server.BaseHTTPRequestHandler):
    env = {}

    def do_POST(self):  # noqa: N802 - http.server's naming
        """POST /users {"email": ...}: a write of live traffic, refused with 503 in maintenance."""
        started = time.monotonic()
        status = self._post_users() if self.path == "/users" else self._send_error(404, "not found")
        METRICS.observe("POST", self.path, status, time.monotonic() - started)

    def _maintenance(self):
        """None outside maintenance, else what it refuses: "writes" or "all"."""
        try:
            with open(maintenance_flag(), encoding="utf-8") as handle:
                return "all" if handle.read().strip() == "all" else "writes"
        except FileNotFoundError:
            return None

    def _post_users(self):
        if self._maintenance():
            return self._send_unavailable()
        email = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))["email"]
        try:
            import psycopg  # pylint: disable=import-outside-toplevel
            with psycopg.connect(self.env["DATABASE_URL"], connect_timeout=3) as conn:
                conn.execute('INSERT INTO "User" (email) VALUES (%s)', (email,))
        except Exception as error:  # noqa: BLE001 - the database is away: the write is refused
            return self._send_error(503, str(error).strip().splitlines()[0])
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return 201

    def do_GET(self):  # noqa: N802 - http.server's naming
        started = time.monotonic()
        if self.path == "/health":
            status = self._send_json(health(self.env))
        elif self._maintenance() == "all":
            status = self._send_unavailable()
        elif self.path in ("/version", "/roms") and DRILL.misbehave():
            status = self._send_error(500, "failing on purpose (DRILL.json)")
        elif self.path == "/version":
            status = self._send_json({"version": release_file("VERSION")})
        elif self.path == "/roms":
            status = self._get_roms()
        else:
            status = self._send_error(404, "not found")
        METRICS.observe("GET", self.path, status, time.monotonic() - started)

    def _get_roms(self):
        try:
            import psycopg  # pylint: disable=import-outside-toplevel
            with psycopg.connect(self.env["DATABASE_URL"], connect_timeout=3) as conn:
                rows = conn.execute('SELECT id, title FROM "Rom" ORDER BY id LIMIT 20').fetchall()
        except Exception as error:  # noqa: BLE001 - a missing table is what an unmigrated database gives
            return self._send_error(500, str(error).strip().splitlines()[0])
        return self._send_json({"roms": [{"id": rom_id, "title": title} for rom_id, title in rows]})

    def _send_unavailable(self):
        data = b"maintenance\n"
        self.send_response(503)
        self.send_header("Retry-After", "30")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return 503

    def _send_json(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return 200

    def _send_error(self, status, reason):
        self.send_error(status, reason)
        return status

    def log_message(self, *args):
        pass


class MetricsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path != "/metrics":
            self.send_error(404)
            return
        data = METRICS.text().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    env = load_env()
    problems = invalid_configuration(env)
    if problems:
        print("Invalid environment configuration: %s" % "; ".join(problems), file=sys.stderr, flush=True)
        return 1
    Handler.env = env
    metrics_port = int(env.get("METRICS_PORT") or METRICS_PORT)
    metrics = http.server.ThreadingHTTPServer(("0.0.0.0", metrics_port), MetricsHandler)
    threading.Thread(target=metrics.serve_forever, daemon=True).start()
    server = http.server.ThreadingHTTPServer(("0.0.0.0", int(env["PORT"])), Handler)
    print("treazrisland stand-in %s listening on %s, metrics on %d"
          % (release_file("VERSION"), env["PORT"], metrics_port), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
