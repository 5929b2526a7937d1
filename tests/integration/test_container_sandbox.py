"""The container sandbox of issue 12 (sandbox/docker_engine.py): a real dockerd, a real registry, real images and Compose.

What the compose deploy strategy will stand on, checked here on its own: the engine starts from nothing but Debian's
packages and leaves no process behind, the registry serves the API the collection will resolve tags with, a tag
resolves to the digest that was pushed, a build pushed over a tag moves the tag while the old digest stays pullable
(the same image id after a pull), and a container of a release image, started by digest with ``docker-compose`` and
``init: true``, answers the stand-in's /health with its database and bucket up, and stops at once.

Compose is docker-compose v1 (1.29): the v2 plugin (``docker compose``) is in no registry reachable here, so the
tests can only run v1.

One engine for the module (its data root in .build/docker keeps the base image between runs); where dockerd cannot
run, every test is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.request

import pytest

from sandbox.docker_engine import RELEASE_REPOSITORY, DockerEngine, DockerUnavailable, available
from sandbox.owned import free_port
from sandbox.standin.local import DEFAULTS

AVAILABLE = available()
pytestmark = pytest.mark.skipif(AVAILABLE is not True, reason=str(AVAILABLE))

BUCKET = "treazrisland-container"


@pytest.fixture(scope="module")
def engine(docker_engine):
    """The module's engine and registry (tests/conftest.py)."""
    return docker_engine


@pytest.fixture(scope="module")
def first_release(engine):
    """Release 1.4.0 built and pushed as its own tag."""
    return engine.push_release("1.4.0")


def _get(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # 127.0.0.1 only
        return answer.status, answer.read()


def test_engine_runs_on_its_own_data_root_and_socket(engine):
    info = json.loads(engine.docker("info", "--format", "{{json .}}").stdout)
    assert info["DockerRootDir"] == engine.data_root
    assert info["Driver"] == "overlay2"
    assert engine.server_version and os.path.exists(engine.socket)
    with open(engine.pidfile, encoding="utf-8") as handle:
        assert int(handle.read()) == engine.process.pid


def test_a_stopped_engine_leaves_no_process(engine):
    """A second, bare engine (no registry, no image) beside the module's: started, asked, stopped, nothing left."""
    lone = DockerEngine("test_container_sandbox_bare", registry=False)
    try:
        lone.start()
    except DockerUnavailable as error:
        pytest.skip("dockerd cannot run here: %s" % error)
    try:
        pid = lone.process.pid
        assert lone.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        running = lone.leftover_processes()
        assert pid in running and len(running) >= 2, running  # dockerd and the containerd it started
    finally:
        lone.stop()
    assert not lone.leftover_processes()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not os.path.exists(lone.exec_root)
    assert engine.docker("version").returncode == 0  # the module's engine, beside it, still runs


def test_a_missing_dockerd_is_a_reason_to_skip_not_a_pass(tmp_path):
    missing = DockerEngine(directory=str(tmp_path / "engine"), dockerd=str(tmp_path / "no-dockerd"))
    with pytest.raises(DockerUnavailable, match="no-dockerd not found: run bash sandbox/setup.sh"):
        missing.start()


def test_the_registry_serves_the_v2_api(engine):
    status, body = _get(engine.registry.url + "/v2/")
    assert (status, json.loads(body)) == (200, {})
    assert engine.registry.manifest_digest(RELEASE_REPOSITORY, "no-such-tag") is None


def test_a_pushed_release_resolves_to_its_digest_through_the_registry_api(engine, first_release):
    assert first_release.tag == "%s/%s:1.4.0" % (engine.registry.address, RELEASE_REPOSITORY)
    digest, media_type, body = engine.registry.manifest(RELEASE_REPOSITORY, "1.4.0")
    # The digest is the manifest's own sha256, as served with the Accept header: what a host pins.
    assert digest == first_release.digest == "sha256:" + hashlib.sha256(body).hexdigest()
    assert media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert json.loads(body)["config"]["digest"] == first_release.image_id
    assert first_release.reference == "%s/%s@%s" % (engine.registry.address, RELEASE_REPOSITORY, digest)
    assert engine.registry.tags(RELEASE_REPOSITORY) == ["1.4.0"]
    labels = engine.inspect(first_release.reference)["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == "1.4.0"


def test_a_build_pushed_over_the_tag_moves_it_and_the_old_digest_stays_pullable(engine, first_release):
    moved = engine.push_release("1.4.0", version_of="1.5.0")
    assert moved.digest != first_release.digest and moved.image_id != first_release.image_id
    assert engine.registry.manifest_digest(RELEASE_REPOSITORY, "1.4.0") == moved.digest
    assert engine.registry.manifest_digest(RELEASE_REPOSITORY, first_release.digest) == first_release.digest

    # Gone from the engine, the old image comes back by its digest, byte for byte (the same image id).
    engine.remove_image(first_release.image_id)
    assert not engine.image_exists(first_release.reference)
    assert engine.pull(first_release.reference) == first_release.image_id

    # A digest taken out of the registry cannot be pulled any more (what a rollback's preflight must find first).
    engine.registry.delete_manifest(RELEASE_REPOSITORY, moved.digest)
    assert engine.registry.manifest_digest(RELEASE_REPOSITORY, moved.digest) is None
    engine.remove_image(moved.image_id)
    pulled = engine.docker("pull", moved.reference, check=False)
    assert pulled.returncode != 0 and "manifest unknown" in pulled.stderr, pulled.stderr


COMPOSE_FILE = """version: "2.4"
services:
  backend:
    image: %(image)s
    # A Python PID 1 ignores SIGTERM: without an init every stop waits for the 10 s timeout.
    init: true
    network_mode: host
    env_file: backend.env
"""


def test_a_release_container_started_by_digest_with_compose_answers_health(engine, first_release, pg_a,
                                                                           moto_server, tmp_path):
    moto_server.make_bucket(BUCKET)
    port, metrics_port = free_port(), free_port()
    values = dict(DEFAULTS, PORT=str(port), METRICS_PORT=str(metrics_port), DATABASE_URL=pg_a.dsn(),
                  OBJECT_STORAGE_ENDPOINT="127.0.0.1", OBJECT_STORAGE_PORT=str(moto_server.port),
                  OBJECT_STORAGE_ACCESS_KEY=moto_server.access_key, OBJECT_STORAGE_SECRET_KEY=moto_server.secret_key,
                  OBJECT_STORAGE_BUCKET=BUCKET)
    (tmp_path / "backend.env").write_text("".join("%s=%s\n" % item for item in values.items()))
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE % {"image": first_release.reference})
    project = ["--project-name", "sandbox-test", "--file", str(tmp_path / "docker-compose.yml")]
    engine.compose(*project, "up", "--detach", cwd=str(tmp_path))
    try:
        container = engine.compose(*project, "ps", "--quiet", "backend", cwd=str(tmp_path)).stdout.strip()
        details = engine.inspect_container(container)
        assert details["Config"]["Image"] == first_release.reference
        assert details["Image"] == first_release.image_id and details["HostConfig"]["Init"] is True

        deadline = time.monotonic() + 20
        while True:
            try:
                status, body = _get("http://127.0.0.1:%d/health" % port)
                break
            except OSError:
                assert time.monotonic() < deadline, engine.docker("logs", container).stderr
                time.sleep(0.1)
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok", health  # psycopg and boto3 of the image, against both
        assert json.loads(_get("http://127.0.0.1:%d/version" % port)[1]) == {"version": "1.4.0"}
        assert b"treazrisland_build_info" in _get("http://127.0.0.1:%d/metrics" % metrics_port)[1]

        # The image's own healthcheck (what the deploy strategy reads besides the JSON gate).
        deadline = time.monotonic() + 15
        while engine.inspect_container(container)["State"]["Health"]["Status"] != "healthy":
            assert time.monotonic() < deadline, engine.inspect_container(container)["State"]["Health"]
            time.sleep(0.2)

        # Stopped, it ended on the SIGTERM (143, through the init), not on the SIGKILL that Compose sends when the
        # stop timeout runs out (137): without init, a Python PID 1 ignores SIGTERM.
        engine.compose(*project, "stop", cwd=str(tmp_path))
        assert engine.inspect_container(container)["State"]["ExitCode"] == 143
    finally:
        engine.compose(*project, "down", cwd=str(tmp_path))
    with pytest.raises(OSError):
        _get("http://127.0.0.1:%d/health" % port, timeout=1)
