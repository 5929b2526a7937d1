"""A throwaway Prometheus (Debian's package, 2.42) scraping the targets a test gives it, owned by the harness.

It listens on a free 127.0.0.1 port, scrapes every second (so a gate's rate() windows fill within seconds)
and keeps its storage in its own temporary directory, which stop() removes. Optionally it starts Debian's
prometheus-postgres-exporter on a free port too (job ``postgres``); the exporter reads its connection
string from DATA_SOURCE_NAME in its environment, never from its command line. With ``basic_auth`` (user,
password) its HTTP API asks for those credentials (a bcrypt hash in its web configuration file).

    with Prometheus({"baseline": app.metrics_url, "canary": canary.metrics_url}, postgres_dsn=dsn) as prom:
        prom.wait_for('sum(rate(http_requests_total{job="canary"}[5s]))')
        # prom.url: what treazrisland.ops.release_gate's prometheus_url points at
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from sandbox.owned import OwnedServer, free_port, stop_process

PROMETHEUS = "/usr/bin/prometheus"
POSTGRES_EXPORTER = "/usr/bin/prometheus-postgres-exporter"
READY_TIMEOUT = 30.0

CONFIG_HEAD = """global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
"""

JOB = """  - job_name: %(job)s
    scheme: %(scheme)s
    metrics_path: %(path)s
    static_configs:
      - targets: [%(target)s]
"""


def available(exporter=False):
    """True when the binaries run here; else the reason, for pytest.skip."""
    for binary in (PROMETHEUS, POSTGRES_EXPORTER) if exporter else (PROMETHEUS,):
        if not os.access(binary, os.X_OK):
            return "%s not found: run bash sandbox/setup.sh (Debian's %s package)" % (
                binary, os.path.basename(binary))
        try:
            subprocess.run([binary, "--version"], capture_output=True, timeout=20, check=True)
        except (OSError, subprocess.SubprocessError) as error:
            return "%s does not run here: %s" % (binary, error)
    return True


def _get(url, timeout=2.0, headers=None):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as answer:
        return answer.read()  # 127.0.0.1 only


def _bcrypt(password):
    """Prometheus' web configuration wants bcrypt; the C library's crypt() makes it (cost 4: a test's password)."""
    import warnings  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # pylint: disable=import-outside-toplevel,deprecated-module
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("this system's crypt() makes no bcrypt hash")
    return hashed


class Prometheus(OwnedServer):
    LOG = "prometheus.log"
    # Its storage is thrown away with its directory: no reason to wait for a tidy shutdown.
    STOP_TIMEOUT = 2

    def __init__(self, targets, postgres_dsn=None, basic_auth=None):
        """targets: {job name: metrics URL}; postgres_dsn: also run the postgres exporter as job ``postgres``;
        basic_auth: (user, password) the API asks for."""
        self.targets = dict(targets)
        self.postgres_dsn = postgres_dsn
        self.basic_auth = basic_auth
        self.headers = {}
        self.exporter = None
        self.exporter_port = None

    def start(self):
        reason = available(exporter=bool(self.postgres_dsn))
        if reason is not True:
            raise RuntimeError(reason)
        self.base = tempfile.mkdtemp(prefix="treazrisland-prometheus-")
        try:
            targets = dict(self.targets)
            if self.postgres_dsn:
                self._start_exporter()
                targets["postgres"] = "http://127.0.0.1:%d/metrics" % self.exporter_port
            self.port = free_port()
            config = os.path.join(self.base, "prometheus.yml")
            with open(config, "w", encoding="utf-8") as handle:
                handle.write(CONFIG_HEAD)
                for job, url in targets.items():
                    parts = urllib.parse.urlsplit(url)
                    handle.write(JOB % {"job": json.dumps(job), "scheme": parts.scheme, "path": json.dumps(parts.path),
                                        "target": json.dumps(parts.netloc)})
            argv = [PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(self.base, "data"),
                    "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"]
            if self.basic_auth:
                user, password = self.basic_auth
                web = os.path.join(self.base, "web.yml")
                with open(os.open(web, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as handle:
                    handle.write("basic_auth_users:\n  %s: %s\n" % (json.dumps(user), json.dumps(_bcrypt(password))))
                argv.append("--web.config.file=" + web)
                pair = ("%s:%s" % (user, password)).encode()
                self.headers = {"Authorization": "Basic " + base64.b64encode(pair).decode()}
            with open(os.path.join(self.base, self.LOG), "ab") as log:
                self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                start_new_session=True)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_exporter(self):
        self.exporter_port = free_port()
        env = dict(os.environ, DATA_SOURCE_NAME=self.postgres_dsn)
        with open(os.path.join(self.base, "exporter.log"), "ab") as log:
            self.exporter = subprocess.Popen(
                [POSTGRES_EXPORTER, "--web.listen-address=127.0.0.1:%d" % self.exporter_port,
                 "--disable-settings-metrics", "--log.level=warn"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.exporter.poll() is not None:
                raise RuntimeError("postgres exporter exited at start: %s" % self._tail("exporter.log"))
            try:
                _get("http://127.0.0.1:%d/metrics" % self.exporter_port)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("postgres exporter did not answer within %.0f s" % READY_TIMEOUT)

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("prometheus exited at start: %s" % self.log_tail())
            try:
                _get(self.url + "/-/ready", headers=self.headers)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("prometheus was not ready on %s within %.0f s: %s" % (
            self.url, READY_TIMEOUT, self.log_tail()))

    def _tail(self, name):
        try:
            with open(os.path.join(self.base, name), "rb") as handle:
                return handle.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def query(self, promql):
        """The result list of an instant query (the test's own look, not the module's client)."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        return json.loads(_get(url, timeout=5, headers=self.headers))["data"]["result"]

    def wait_for(self, promql, timeout=20.0):
        """Wait until the query returns a series with a number; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.query(promql)
            except (OSError, ValueError, KeyError):
                result = []
            values = [float(series["value"][1]) for series in result]
            if values and values[0] == values[0]:  # not NaN
                return values[0]
            if time.monotonic() > deadline:
                raise RuntimeError("no value for %s after %.0f s; targets: %s" % (promql, timeout, self.targets_health()))
            time.sleep(0.2)

    def targets_health(self):
        try:
            active = json.loads(_get(self.url + "/api/v1/targets", headers=self.headers))["data"]["activeTargets"]
        except (OSError, ValueError, KeyError) as error:
            return str(error)
        return {target["labels"]["job"]: (target["health"], target["lastError"]) for target in active}

    def stop(self):
        stop_process(self.exporter, timeout=self.STOP_TIMEOUT)
        self.exporter = None
        super().stop()
