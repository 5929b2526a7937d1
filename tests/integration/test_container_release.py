"""container_release_info and container_release against a real dockerd, a real registry and docker-compose.

A Compose project of the stand-in backend (network_mode host, ``init: true``) is switched by digest through the
collection's pin file, as the compose deploy strategy will do on each host: a tag resolved once through the
registry's API (and through ``docker pull``), a second run that changes nothing, an upgrade, a rollback to the
recorded digest that runs byte for byte the image that ran before (its image id) even after the tag was pushed
over, and a digest gone from the registry that fails with the old container still serving and the pin file put
back.

Compose is docker-compose v1 (1.29): the v2 plugin (``docker compose``) is in no registry reachable here, so only
v1 can run; the module asks for the plugin first. Where dockerd cannot run, every test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

from helpers import run_tasks
from sandbox.docker_engine import RELEASE_REPOSITORY, available
from sandbox.owned import free_port
from sandbox.standin.local import DEFAULTS

AVAILABLE = available()
pytestmark = pytest.mark.skipif(AVAILABLE is not True, reason=str(AVAILABLE))

BUCKET = "treazrisland-compose"
PROJECT = "trz-release-test"
COMPOSE_FILE = """version: "2.4"
services:
  backend:
    image: %(image)s
    init: true
    network_mode: host
    env_file: backend.env
"""


@pytest.fixture(scope="module")
def engine(docker_engine):
    """The module's engine and registry (tests/conftest.py)."""
    return docker_engine


@pytest.fixture(scope="module")
def releases(engine):
    """1.4.0 and 1.5.0 pushed under their tags."""
    return {version: engine.push_release(version) for version in ("1.4.0", "1.5.0")}


@pytest.fixture(scope="module")
def project(engine, releases, pg_a, moto_server, tmp_path_factory):
    """The operator's compose file (tagged 1.4.0, as written by hand) and its .env; the pin file beside them."""
    directory = tmp_path_factory.mktemp("compose")
    moto_server.make_bucket(BUCKET)
    port = free_port()
    values = dict(DEFAULTS, PORT=str(port), METRICS_PORT=str(free_port()), DATABASE_URL=pg_a.dsn(),
                  OBJECT_STORAGE_ENDPOINT="127.0.0.1", OBJECT_STORAGE_PORT=str(moto_server.port),
                  OBJECT_STORAGE_ACCESS_KEY=moto_server.access_key, OBJECT_STORAGE_SECRET_KEY=moto_server.secret_key,
                  OBJECT_STORAGE_BUCKET=BUCKET)
    (directory / "backend.env").write_text("".join("%s=%s\n" % item for item in values.items()))
    (directory / "compose.yml").write_text(COMPOSE_FILE % {"image": releases["1.4.0"].tag})
    layout = {"dir": str(directory), "file": str(directory / "compose.yml"),
              "pin_file": str(directory / "compose.treazrisland-ops.yml"), "port": port}
    yield layout
    engine.compose("-p", PROJECT, "-f", layout["file"], "down", cwd=layout["dir"], check=False)


def module(engine, name, args, check=False, diff=False):
    """One task of the module against the engine (its socket and client configuration in the task's environment)."""
    environment = {key: engine.env[key] for key in ("DOCKER_HOST", "DOCKER_CONFIG")}
    run = run_tasks([{"name": name, "treazrisland.ops." + name: args, "environment": environment,
                      "ignore_errors": True}], check=check, diff=diff)
    assert run.results, run.output
    record = run.results[-1]
    return dict(record["result"], failed=record["status"] == "failed"), run


def switch(engine, project, image, check=False, diff=False):
    return module(engine, "container_release", dict(
        image=image, project=PROJECT, files=[project["file"]], services=["backend"], pin_file=project["pin_file"],
        wait_timeout=60), check=check, diff=diff)


def served(project):
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/version" % project["port"], timeout=3) as answer:
                return json.load(answer)["version"]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_tag_resolves_to_the_pushed_digest_through_the_registry_and_through_docker(engine, releases):
    tag = releases["1.5.0"].tag
    by_api, _run = module(engine, "container_release_info", {"image": tag})
    assert by_api["resolved"] == {"image": tag, "name": tag.rsplit(":", 1)[0], "tag": "1.5.0",
                                  "digest": releases["1.5.0"].digest, "pinned": releases["1.5.0"].reference}
    by_pull, _run = module(engine, "container_release_info", {"image": tag, "resolve_with": "docker"})
    assert by_pull["resolved"]["digest"] == releases["1.5.0"].digest
    missing, _run = module(engine, "container_release_info", {"image": tag.rsplit(":", 1)[0] + ":9.9.9"})
    assert missing["failed"] and missing["msg"] == "image %s:9.9.9: the registry %s has no manifest 9.9.9 (no such tag)" % (
        tag.rsplit(":", 1)[0], engine.registry.address), missing


def test_a_tag_is_refused_only_a_digest_is_run(engine, releases, project):
    result, _run = switch(engine, project, releases["1.4.0"].tag)
    assert result["failed"] and result["msg"].startswith(
        "image %s has no digest: give name@sha256:..." % releases["1.4.0"].tag), result
    assert not os.path.exists(project["pin_file"])


def test_switch_then_nothing_to_do_then_upgrade_then_roll_back_to_the_same_image(engine, releases, project):
    first, _run = switch(engine, project, releases["1.4.0"].reference)
    assert first["changed"] and first["restarted"] == ["backend"], first
    assert first["after"] == {"backend": releases["1.4.0"].digest}
    assert first["image_ids"] == {"backend": releases["1.4.0"].image_id}
    assert served(project) == "1.4.0"
    with open(project["pin_file"], encoding="utf-8") as handle:
        pinned = handle.read()
    assert releases["1.4.0"].reference in pinned and (os.stat(project["pin_file"]).st_mode & 0o777) == 0o644
    info, _run = module(engine, "container_release_info", {"project": PROJECT})
    assert info["digests"] == {"backend": releases["1.4.0"].digest}, info
    assert info["services"]["backend"][0]["health"] in ("starting", "healthy"), info

    again, run = switch(engine, project, releases["1.4.0"].reference)
    assert not again["changed"] and again["restarted"] == [], again
    assert "changed=0" in run.output

    # Check mode with diff: says what it would do, does nothing.
    planned, run = switch(engine, project, releases["1.5.0"].reference, check=True, diff=True)
    assert planned["changed"] and planned["restarted"] == ["backend"], planned
    assert releases["1.5.0"].digest in run.output and served(project) == "1.4.0"

    upgraded, _run = switch(engine, project, releases["1.5.0"].reference)
    assert upgraded["changed"] and upgraded["before"] == {"backend": releases["1.4.0"].digest}, upgraded
    assert upgraded["after"] == {"backend": releases["1.5.0"].digest}
    assert served(project) == "1.5.0"
    with open(project["pin_file"] + ".previous", encoding="utf-8") as handle:
        assert handle.read() == pinned  # the pin file it replaced, kept
    with open(project["file"], encoding="utf-8") as handle:
        assert handle.read() == COMPOSE_FILE % {"image": releases["1.4.0"].tag}  # the operator's file, untouched

    # 1.4.0's tag pushed over by another build, and the old image gone from the engine: the rollback asks for the
    # recorded digest, gets it back from the registry, and runs byte for byte the image that ran before.
    moved = engine.push_release("1.4.0", version_of="1.5.0")
    assert moved.digest != releases["1.4.0"].digest
    engine.remove_image(releases["1.4.0"].image_id)
    back, _run = switch(engine, project, releases["1.4.0"].reference)
    assert back["changed"] and back["image_ids"] == {"backend": releases["1.4.0"].image_id}, back
    assert served(project) == "1.4.0"


def test_a_digest_gone_from_the_registry_fails_and_the_old_container_keeps_serving(engine, releases, project):
    """Run after the rollback above: 1.4.0 serves. A build that is pushed, then deleted from the registry and
    from the engine (a garbage collection), cannot be started: the module fails, saying so, the old container
    still answers and the pin file names what runs."""
    gone = engine.push_release("1.5.9", version_of="1.5.0")
    engine.registry.delete_manifest(RELEASE_REPOSITORY, gone.digest)
    engine.remove_image(gone.image_id)
    current = served(project)
    with open(project["pin_file"], encoding="utf-8") as handle:
        pinned = handle.read()

    refused, _run = module(engine, "container_release_info", {"image": gone.reference})
    assert refused["failed"] and refused["msg"] == (
        "image %s: the registry %s has no manifest %s (pushed over, or deleted by a garbage collection)"
        % (gone.reference, engine.registry.address, gone.digest)), refused

    failed, _run = switch(engine, project, gone.reference)
    assert failed["failed"] and "the pin file was put back (previous digests)" in failed["msg"], failed
    assert "manifest unknown" in failed["msg"] or "not found" in failed["msg"], failed["msg"]
    assert served(project) == current
    with open(project["pin_file"], encoding="utf-8") as handle:
        assert handle.read() == pinned
