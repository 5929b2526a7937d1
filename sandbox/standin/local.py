"""One stand-in app on 127.0.0.1, outside the SSH hosts: for tests of one piece (gate, maintenance, load balancer).

Unpacks a release artifact into its own directory laid out like a host's base (``current``, ``shared``),
writes ``backend/.env`` from the values given, and starts the app on free ports (HTTP and metrics).
The database and object storage are whatever the values say; /health reports them as the real app does.

    with LocalApp(artifact, {"DATABASE_URL": dsn, ...}) as app:
        urllib.request.urlopen(app.url + "/version")      # app.metrics_url: Prometheus text
        app.maintenance("writes")                          # the flag the stand-in reads; None ends it
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

from sandbox.owned import OwnedServer, free_port

READY_TIMEOUT = 15.0
# Enough for the app to start; /health reports the database and bucket as down when they are not real.
DEFAULTS = {
    "NODE_ENV": "production", "JWT_SECRET": "local-stand-in-jwt-secret-of-40-chars-xx",
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "OBJECT_STORAGE_ENDPOINT": "127.0.0.1",
    "OBJECT_STORAGE_PORT": "1", "OBJECT_STORAGE_ACCESS_KEY": "none", "OBJECT_STORAGE_SECRET_KEY": "none",
    "OBJECT_STORAGE_BUCKET": "none", "ROM_UPLOAD_LIMIT_MB": "512",
}


class LocalApp(OwnedServer):
    LOG = "shared/app.log"
    STOP_TIMEOUT = 5

    def __init__(self, artifact, values=None):
        self.artifact = artifact
        self.values = dict(DEFAULTS, **(values or {}))
        self.metrics_port = None

    @property
    def metrics_url(self):
        return "http://127.0.0.1:%d/metrics" % self.metrics_port

    def start(self):
        self.base = tempfile.mkdtemp(prefix="treazrisland-local-app-")
        release = os.path.join(self.base, "release")
        os.makedirs(os.path.join(self.base, "shared"))
        with tarfile.open(self.artifact) as tar:
            tar.extractall(release)  # the sandbox's own artifact
        os.symlink(release, os.path.join(self.base, "current"))
        self.port, self.metrics_port = free_port(), free_port()
        values = dict(self.values, PORT=str(self.port), METRICS_PORT=str(self.metrics_port))
        backend = os.path.join(self.base, "current", "backend")
        with open(os.path.join(backend, ".env"), "w", encoding="utf-8") as handle:
            handle.writelines("%s=%s\n" % item for item in values.items())
        with open(os.path.join(self.base, self.LOG), "ab") as log:
            self.process = subprocess.Popen([sys.executable, os.path.join(backend, "app.py")], cwd=backend,
                                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        log = self.log_tail()
        self.stop()
        raise RuntimeError("the stand-in app did not start: %s" % log)

    def maintenance(self, scope):
        """Maintenance flag of this app: "writes", "all", or None to end it."""
        flag = os.path.join(self.base, "shared", "maintenance")
        if scope is None:
            if os.path.exists(flag):
                os.unlink(flag)
            return
        with open(flag, "w", encoding="utf-8") as handle:
            handle.write(scope)
