# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that builds S3 clients, words S3 errors, and runs S3 work safely.

Two clients from the same connection options:

- obstore (Rust ``object_store``) for the data plane: listing, upload, download, delete.
  botocore spends about 1.5 ms of CPU per request, which is the bottleneck on a small
  controller; obstore's requests cost a fraction of that. Only its synchronous API is used,
  from a bounded thread pool (``bounded_map``): its calls release the GIL.
- boto3 for control calls (CloudFront, server-side CopyObject across buckets, DeleteObjects
  for keys obstore cannot address, checking encryption), configured with path-style
  addressing, signature v4 and ``response_checksum_validation="when_required"`` (without
  it a 304 from some S3-compatible servers crashes botocore).

A process that used obstore's async API sometimes aborts (SIGABRT) while the interpreter
shuts down, after all its work is done. ``isolated`` runs the S3 work in a forked child that
hands its result over a pipe and leaves with ``os._exit``, so that no interpreter shutdown
ever runs where the Rust runtime lives, and a result that was delivered stays delivered.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import importlib.util
import json
import os
import queue
import re
import signal
import sys
import threading
import traceback
import urllib.parse

from ansible.module_utils.common.warnings import warn

from ansible_collections.treazrisland.ops.plugins.module_utils import checksum, runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

# boto3 is imported on first use: its 0.25 s of imports are wasted on a sync that only
# transfers (every object on the data plane goes through obstore).
HAS_BOTO3 = importlib.util.find_spec("boto3") is not None

try:
    import obstore
    import obstore.exceptions
    import obstore.store
    HAS_OBSTORE = True
except ImportError:
    HAS_OBSTORE = False

SCHEME = "s3://"
MIB = 1024 * 1024

# The connection options every S3 module takes (documented in doc_fragments/s3.py).
CONNECTION_ARGUMENT_SPEC = dict(
    endpoint_url=dict(type="str", aliases=["s3_url"]),
    region=dict(type="str", default="us-east-1", aliases=["aws_region"]),
    access_key=dict(type="str", no_log=True, aliases=["aws_access_key_id"]),
    secret_key=dict(type="str", no_log=True, aliases=["aws_secret_access_key"]),
    session_token=dict(type="str", no_log=True, aliases=["aws_session_token"]),
    validate_certs=dict(type="bool", default=True),
    timeout=dict(type="int", default=60),
    retries=dict(type="int", default=3),
)


def connection_argument_spec(**extra):
    spec = {name: dict(option) for name, option in CONNECTION_ARGUMENT_SPEC.items()}
    spec.update(extra)
    return spec


# --------------------------------------------------------------------------- locations


class S3Location:
    """``s3://bucket/prefix``: keys below it are ``prefix/<relative path>``."""

    def __init__(self, bucket, prefix):
        self.bucket = bucket
        self.prefix = prefix

    def key(self, rel):
        return self.prefix + "/" + rel if self.prefix else rel

    def rel(self, key):
        """The relative path of key, or None when key is not below the prefix."""
        if not self.prefix:
            return key
        head = self.prefix + "/"
        return key[len(head):] if key.startswith(head) else None

    @property
    def list_prefix(self):
        return self.prefix + "/" if self.prefix else ""

    def __str__(self):
        return SCHEME + self.bucket + ("/" + self.prefix if self.prefix else "")


_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_location(text):
    """An S3Location for ``s3://...``, None for anything else (a local path)."""
    if not text.startswith(SCHEME):
        return None
    bucket, _sep, prefix = text[len(SCHEME):].partition("/")
    if not _BUCKET_NAME.match(bucket):
        raise OpsError("%s: %r is not a valid bucket name" % (text, bucket))
    return S3Location(bucket, prefix.strip("/"))


def normalize_etag(etag):
    """ETags without their quotes (moto quotes them in listings, rclone does not)."""
    return (etag or "").strip('"')


# --------------------------------------------------------------------------- clients


def require_libraries(boto=True, data_plane=True):
    missing = []
    if boto and not HAS_BOTO3:
        missing.append("boto3")
    if data_plane and not HAS_OBSTORE:
        missing.append("obstore")
    if missing:
        raise OpsError("this module needs the Python librar%s %s on the host that runs it (pip install %s)" % (
            "ies" if len(missing) > 1 else "y", " and ".join(missing), " ".join(missing)))


class S3Connection:
    """Clients built from the shared connection options; credentials stay inside."""

    def __init__(self, params, concurrency=16):
        self.endpoint_url = params.get("endpoint_url")
        self.region = params.get("region") or "us-east-1"
        self.validate_certs = params.get("validate_certs", True)
        self.timeout = max(1, params.get("timeout") or 60)
        self.retries = max(0, params.get("retries") if params.get("retries") is not None else 3)
        self.concurrency = max(1, concurrency)
        self._access_key = params.get("access_key")
        self._secret_key = params.get("secret_key")
        self._session_token = params.get("session_token")
        if bool(self._access_key) != bool(self._secret_key):
            raise OpsError("access_key and secret_key go together: give both or neither")
        self._boto = {}
        self._stores = {}
        self._lock = threading.Lock()

    @property
    def secrets(self):
        return [s for s in (self._secret_key, self._session_token) if s]

    def _credentials(self):
        """Explicit keys, else boto3's chain (environment, profile, instance role) for both clients."""
        if self._access_key:
            return self._access_key, self._secret_key, self._session_token
        if not HAS_BOTO3:
            return None
        import boto3  # pylint: disable=import-outside-toplevel
        found = boto3.session.Session().get_credentials()
        if found is None:
            return None
        frozen = found.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token

    def boto3(self, service="s3"):
        require_libraries(data_plane=False)
        import boto3  # pylint: disable=import-outside-toplevel
        import botocore.config  # pylint: disable=import-outside-toplevel
        with self._lock:
            if service not in self._boto:
                config = botocore.config.Config(
                    signature_version="s3v4", s3={"addressing_style": "path"},
                    response_checksum_validation="when_required",
                    connect_timeout=self.timeout, read_timeout=self.timeout,
                    retries={"max_attempts": self.retries + 1, "mode": "standard"},
                    max_pool_connections=self.concurrency)
                credentials = self._credentials() or (None, None, None)
                self._boto[service] = boto3.client(
                    service, endpoint_url=self.endpoint_url, region_name=self.region,
                    aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1],
                    aws_session_token=credentials[2], verify=self.validate_certs, config=config)
            return self._boto[service]

    def store(self, bucket, encryption=None, kms_key_id=None):
        """The obstore S3Store of a bucket (writes with the given server-side encryption)."""
        require_libraries(boto=False)
        cache_key = (bucket, encryption, kms_key_id)
        with self._lock:
            if cache_key not in self._stores:
                config = {"region": self.region, "virtual_hosted_style_request": False}
                if self.endpoint_url:
                    config["endpoint"] = self.endpoint_url
                credentials = self._credentials()
                if credentials:
                    config.update(access_key_id=credentials[0], secret_access_key=credentials[1])
                    if credentials[2]:
                        config["session_token"] = credentials[2]
                else:
                    config["skip_signature"] = True
                if encryption:
                    config["server_side_encryption"] = encryption
                    if kms_key_id:
                        config["sse_kms_key_id"] = kms_key_id
                timeout = datetime.timedelta(seconds=self.timeout)
                client_options = {
                    "allow_http": bool(self.endpoint_url and self.endpoint_url.startswith("http://")),
                    "allow_invalid_certificates": not self.validate_certs,
                    "timeout": timeout, "connect_timeout": datetime.timedelta(seconds=min(self.timeout, 10)),
                    "pool_max_idle_per_host": str(self.concurrency),
                }
                retry_config = {
                    "max_retries": self.retries,
                    "retry_timeout": timeout * (self.retries + 1),
                    "backoff": {"init_backoff": datetime.timedelta(milliseconds=100),
                                "max_backoff": datetime.timedelta(seconds=2), "base": 2},
                }
                self._stores[cache_key] = obstore.store.S3Store(
                    bucket, config=config, client_options=client_options, retry_config=retry_config)
            return self._stores[cache_key]


# --------------------------------------------------------------------------- errors


def describe_error(error, secrets=()):
    """One line for an S3 error from boto3, obstore or the network, without secrets."""
    if _is_client_error(error):
        info = error.response.get("Error", {})
        text = "%s: %s" % (info.get("Code", "error"), info.get("Message") or error)
    else:
        # obstore appends a multi-line "Debug source:" dump; its first line says it all.
        text = str(error).strip().split("\n", maxsplit=1)[0] or type(error).__name__
    return runner.mask(text, secrets)


def is_not_found(error):
    # obstore raises the builtin FileNotFoundError for a missing object.
    if isinstance(error, FileNotFoundError) or (HAS_OBSTORE and isinstance(error, obstore.exceptions.NotFoundError)):
        return True
    if _is_client_error(error):
        return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchBucket", "NotFound")
    return False


def _is_client_error(error):
    """A botocore ClientError; botocore is loaded only if something used boto3."""
    exceptions = sys.modules.get("botocore.exceptions")
    return exceptions is not None and isinstance(error, exceptions.ClientError)


# --------------------------------------------------------------------------- concurrency


def bounded_map(function, items, workers):
    """Yield (item, result, error) for function(item) over items, at most ``workers`` at a time.

    Tasks are submitted as slots free up, so 100,000 items never become 100,000 futures.
    Results come in completion order, through a queue (concurrent.futures.wait would re-arm
    a waiter on every pending future at each completion). When the caller stops iterating,
    tasks not yet started are cancelled; those running finish.
    """
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    finished = queue.SimpleQueue()
    pending = {}
    try:
        iterator = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < workers * 2:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                future = pool.submit(function, item)
                pending[future] = item
                future.add_done_callback(finished.put)
            if not pending:
                return
            future = finished.get()
            item = pending.pop(future)
            error = future.exception()
            yield item, (None if error else future.result()), error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class ByteBudget:
    """Caps the bytes that concurrent transfers hold in memory at once.

    A transfer larger than the whole budget still runs, alone.
    """

    def __init__(self, limit):
        self.limit = limit
        self.in_use = 0
        self._condition = threading.Condition()

    def acquire(self, amount):
        with self._condition:
            while self.in_use and self.in_use + amount > self.limit:
                self._condition.wait()
            self.in_use += amount

    def release(self, amount):
        with self._condition:
            self.in_use -= amount
            self._condition.notify_all()


# --------------------------------------------------------------------------- isolation


def isolated(service):
    """``service(params, check_mode)`` run in a forked child (see the module docstring)."""

    def run(params, check_mode):
        return run_in_child(service, params, check_mode)

    return run


def run_in_child(function, *args):
    """Run function(*args) in a forked child; return its result or raise its OpsError.

    The child writes one JSON document to a pipe and ends with os._exit, skipping the
    interpreter shutdown. The parent trusts a complete document whatever the child's exit
    status; a child that dies before writing one is a failure with the signal named.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is the result it sends
        os.close(read_fd)
        _child(write_fd, function, args)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        for chunk in iter(lambda: pipe.read(1024 * 1024), b""):
            chunks.append(chunk)
    _pid, status = os.waitpid(pid, 0)
    try:
        outcome = json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError:
        outcome = None
    if not isinstance(outcome, dict) or outcome.get("complete") is not True:
        raise OpsError("the S3 transfer process ended before reporting its result (%s); "
                       "run the task again: it resumes where it stopped" % _describe_status(status))
    if os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0:
        warn("the S3 transfer process %s after it reported its complete result; the result stands"
             % _describe_status(status))
    if outcome["kind"] == "error":
        raise OpsError(outcome["msg"], **outcome["details"])
    if outcome["kind"] == "crash":
        raise OpsError("unexpected error: %s" % outcome["msg"], exception=outcome["traceback"])
    result = outcome["result"]
    for message in result.pop("warnings", []):
        warn(message)
    return result


def _child(write_fd, function, args):
    status = 0
    try:
        # The module's stdout must carry the parent's JSON result alone.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        try:
            outcome = {"kind": "result", "result": function(*args)}
        except OpsError as error:
            outcome = {"kind": "error", "msg": error.msg, "details": error.details}
        except BaseException as error:  # pylint: disable=broad-except
            outcome = {"kind": "crash", "msg": "%s: %s" % (type(error).__name__, error),
                       "traceback": traceback.format_exc()}
        outcome["complete"] = True
        data = json.dumps(outcome, default=str).encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(write_fd, view)
            view = view[written:]
        os.close(write_fd)
    except BaseException:  # pylint: disable=broad-except
        status = 70
    finally:
        os._exit(status)  # pylint: disable=protected-access


def _describe_status(status):
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "signal"
        return "killed by signal %d (%s)" % (number, name)
    return "exit status %d" % os.WEXITSTATUS(status)


def sha256_of_object(store, key):
    """sha256 of an object's content, streamed."""
    return checksum.digest_chunks(obstore.get(store, key).stream(min_chunk_size=MIB))[0]


def quote_key(key):
    """A key as it appears in a URL path (CDN purges, HTTP spot checks)."""
    return urllib.parse.quote(key, safe="/~!$&'()*+,;=:@")
