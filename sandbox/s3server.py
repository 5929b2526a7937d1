"""Throwaway S3-compatible servers on 127.0.0.1 for the tests, the demo and the benchmarks.

Two kinds, because they disagree where real stores disagree:

- ``moto``: ``moto_server`` (moto[server]), the most faithful to AWS: multipart ETags with the
  ``-N`` suffix, versioning, conditional requests, bucket policies (anonymous GET on a public
  bucket), CloudFront. Everything lives in its memory: a restart starts empty.
- ``rclone``: ``rclone serve s3`` over a directory, like a self-hosted MinIO: a multipart ETag is
  a plain MD5, user-metadata keys come back title-cased, no versioning, and keys with ``..`` or
  ``//`` are refused. Objects are plain files under ``data_dir/<bucket>/``, so they survive a
  restart on the same port.

Keys are random per server and reach rclone through its environment, never its command line.

    with S3Server("moto") as server:
        server.make_bucket("assets", public=True)
        server.module_params()   # endpoint_url, access_key, secret_key, region for the modules
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from sandbox.owned import OwnedServer, free_port

KINDS = ("moto", "rclone")
REGION = "us-east-1"
READY_TIMEOUT = 20.0


def _venv_bin(name):
    """A program installed next to this Python (the project's .venv), else from PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if not found:
        raise RuntimeError("%s not found: run bash sandbox/setup.sh" % name)
    return found


class S3Server(OwnedServer):
    """One S3 server of ``kind`` (moto or rclone) on a free 127.0.0.1 port."""

    STOP_TIMEOUT = 5

    def __init__(self, kind, name=None, also_listen=None):
        if kind not in KINDS:
            raise ValueError("kind must be one of %s" % ", ".join(KINDS))
        self.kind = kind
        self.name = name or kind
        self.access_key = "AK" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_hex(20)
        self.port = None
        self.base = None
        self.process = None
        # rclone only: a second address (the sandbox bridge), so that app hosts reach the bucket as the app does.
        self.also_listen = also_listen

    # lifecycle -------------------------------------------------------------
    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def data_dir(self):
        """Where rclone keeps the objects (rclone only)."""
        return os.path.join(self.base, "data")

    def start(self):
        if self.base is None:
            self.base = tempfile.mkdtemp(prefix="treazrisland-s3-%s-" % self.name)
            os.mkdir(self.data_dir)
            self.port = free_port()
        try:
            self._spawn()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self):
        log = open(os.path.join(self.base, "server.log"), "ab")
        env = dict(os.environ)
        if self.kind == "moto":
            argv = [_venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        else:
            argv = [_venv_bin("rclone"), "serve", "s3", "--addr", "127.0.0.1:%d" % self.port,
                    "--config", os.path.join(self.base, "rclone.conf"), self.data_dir]
            if self.also_listen:
                argv[3:3] = ["--addr", "%s:%d" % (self.also_listen, self.port)]
            # rclone reads list flags from the environment as CSV: one quoted field "key,secret".
            env.update(RCLONE_AUTH_KEY='"%s,%s"' % (self.access_key, self.secret_key),
                       RCLONE_CACHE_DIR=os.path.join(self.base, "cache"))
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                            start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("%s exited at start: %s" % (self.kind, self.log_tail()))
            if self._answers():
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("%s did not answer on %s within %.0f s: %s" % (
            self.kind, self.endpoint, READY_TIMEOUT, self.log_tail()))

    def _answers(self):
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer (403 for rclone without a signature) means it is up
        except OSError:
            return False

    def kill(self):
        """Stop the process at once (SIGKILL), keeping data_dir: a crash, for interruption tests."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self):
        """Start again on the same port (rclone keeps its objects, moto starts empty)."""
        self.kill()
        self._spawn()

    def pause(self):
        """SIGSTOP: the port still accepts connections, nothing answers."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self):
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
        super().stop()

    # use ---------------------------------------------------------------------
    def module_params(self):
        """The connection options of the collection's S3 modules for this server."""
        return {"endpoint_url": self.endpoint, "access_key": self.access_key, "secret_key": self.secret_key,
                "region": REGION}

    def aws_params(self):
        """The same connection as the aws_* options of the config modules (Secrets Manager on moto)."""
        return {"aws_endpoint_url": self.endpoint, "aws_region": REGION, "aws_access_key_id": self.access_key,
                "aws_secret_access_key": self.secret_key}

    def client(self, service="s3"):
        """A boto3 client configured the way the modules configure theirs."""
        import boto3  # pylint: disable=import-outside-toplevel
        from botocore.config import Config  # pylint: disable=import-outside-toplevel

        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        response_checksum_validation="when_required", retries={"max_attempts": 2})
        return boto3.client(service, endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=REGION, config=config)

    def make_bucket(self, bucket, public=False):
        """Create a bucket; ``public`` lets anyone GET its objects (moto only: rclone has no policies)."""
        client = self.client()
        client.create_bucket(Bucket=bucket)
        if public:
            if self.kind != "moto":
                raise ValueError("public buckets need moto (rclone serve s3 has no bucket policies)")
            policy = {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::%s/*" % bucket}]}
            client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        return bucket

    def public_url(self, bucket, key=""):
        """Plain-HTTP address of a public bucket (moto's path-style endpoint)."""
        return "%s/%s/%s" % (self.endpoint, bucket, key)

    def objects(self, bucket, prefix=""):
        """{key: bytes} of every object under prefix (for small test trees)."""
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found

    def keys(self, bucket, prefix=""):
        client = self.client()
        return sorted(item["Key"] for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix) for item in page.get("Contents", []))


if __name__ == "__main__":
    # Keep one server running for manual work: python -m sandbox.s3server moto|rclone
    with S3Server(sys.argv[1] if len(sys.argv) > 1 else "moto") as running:
        print("%s on %s (access key %s); Ctrl-C stops it" % (running.kind, running.endpoint,
                                                               running.access_key), file=sys.stderr)
        try:
            running.process.wait()
        except KeyboardInterrupt:
            pass
