"""A throwaway ``moto_server`` (moto[server]) on a free 127.0.0.1 port: AWS APIs in memory.

One process serves every service moto mocks (Secrets Manager, S3, CloudFront...)
on one endpoint; it accepts any credentials, so these are random per server. (Named
motoserver, not moto: a script run from sandbox/ would otherwise shadow the moto package.)

    with MotoServer() as moto:
        client = moto.client("secretsmanager")
        moto.module_params()   # aws_endpoint_url, aws_region, keys: the collection's aws_* options
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REGION = "us-east-1"
READY_TIMEOUT = 20.0


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def moto_server_program():
    """moto_server of this Python's environment (the project's .venv), else from PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), "moto_server")
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server not found: run bash sandbox/setup.sh (moto[server] in requirements.txt)")
    return found


class MotoServer:
    def __init__(self):
        self.port = None
        self.process = None
        self.log_path = None
        self.access_key = "AK" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_hex(20)

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        self.port = free_port()
        fd, self.log_path = tempfile.mkstemp(prefix="treazrisland-moto-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen([moto_server_program(), "-H", "127.0.0.1", "-p", str(self.port)],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("moto_server exited at start: %s" % self.log_tail())
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("moto_server did not answer on %s within %.0f s" % (self.endpoint, READY_TIMEOUT))

    def _answers(self):
        try:
            urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, size=2000):
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - size))
                return handle.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def client(self, service):
        import boto3  # pylint: disable=import-outside-toplevel

        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def module_params(self):
        """The collection's aws_* connection options for this server."""
        return {"aws_endpoint_url": self.endpoint, "aws_region": REGION, "aws_access_key_id": self.access_key,
                "aws_secret_access_key": self.secret_key}
