"""The deploy role on three SSH hosts, with the stand-in app answering /health from each host."""

from __future__ import annotations

import json
import tarfile
import os
import sys
import urllib.request

import pytest

from helpers import REPO, run_module, run_playbook
from sandbox.hosts import CONTROLLER_ADDRESS
from sandbox.pgcluster import PgCluster

BASE = "/opt/deploytest"
APPCTL = os.path.join(REPO, "sandbox", "standin", "appctl.py")


@pytest.fixture(scope="module")
def deployment(ssh_hosts, release_artifacts, tmp_path_factory):
    """A database at release 1.4.0's schema reachable from the hosts, and each host's shared .env."""
    with PgCluster(name="deploy", also_listen=CONTROLLER_ADDRESS) as cluster:
        cluster.create_database("treazrisland")
        only_140 = tmp_path_factory.mktemp("release-1.4.0")
        with tarfile.open(release_artifacts["1.4.0"]) as tar:
            tar.extractall(only_140)  # the sandbox's own artifact
        run = run_module("db_migrate", dict(
            dsn=cluster.dsn("treazrisland"), migrations_dir=str(only_140 / "backend/prisma/migrations"),
            command=[sys.executable, os.path.join(REPO, "sandbox", "prisma_migrate.py"), "deploy",
                     str(only_140 / "backend/prisma/migrations")]))
        assert not run.failed, run.msg
        for number, host in enumerate(ssh_hosts.hosts):
            shared = os.path.join(host.opt, os.path.basename(BASE), "shared")
            os.makedirs(shared, exist_ok=True)
            with open(os.path.join(shared, ".env"), "w") as handle:
                handle.write("APP_PORT=%d\nDATABASE_URL=%s\nJWT_SECRET=s3cret-%d\nOBJECT_STORAGE_BUCKET=assets\n"
                             "LOG_LEVEL=info\nROM_UPLOAD_LIMIT_MB=512\n" % (
                                 8080, cluster.dsn("treazrisland", CONTROLLER_ADDRESS), number))
        yield cluster
        for host in ssh_hosts.hosts:  # the hosts are shared with other tests: free the app's port
            ssh_hosts.ssh(host, [sys.executable, APPCTL, "stop", BASE])


def deploy_play(tmp_path, version, artifact, serial=1):
    play = [{
        "name": "deploy", "hosts": "app", "gather_facts": False, "serial": serial,
        "roles": [{"role": "treazrisland.ops.deploy", "vars": {
            "deploy_base_dir": BASE, "deploy_version": version, "deploy_artifact": artifact,
            "deploy_restart_command": [sys.executable, APPCTL, "restart", BASE, sys.executable],
            "deploy_health_url": "http://127.0.0.1:8080/health", "deploy_version_url": "http://127.0.0.1:8080/version",
            "deploy_health_retries": 5, "deploy_health_delay": 1}}],
    }]
    path = tmp_path / ("deploy-%s.yml" % version)
    path.write_text(json.dumps(play))
    return str(path)


def served_versions(ssh_hosts):
    versions = {}
    for host in ssh_hosts.hosts:
        with urllib.request.urlopen("http://%s:8080/version" % host.address, timeout=5) as answer:
            versions[host.name] = json.load(answer)["version"]
    return versions


def test_deploy_in_serial_batches_with_health_gate(ssh_hosts, deployment, release_artifacts, tmp_path):
    run = run_playbook(deploy_play(tmp_path, "1.4.0", release_artifacts["1.4.0"]), inventory=ssh_hosts.inventory())
    assert run.returncode == 0, run.output
    assert served_versions(ssh_hosts) == {"app1": "1.4.0", "app2": "1.4.0", "app3": "1.4.0"}

    # 1.6.0 is broken on purpose: the first batch fails its health gate and the play stops there.
    broken = run_playbook(deploy_play(tmp_path, "1.6.0", release_artifacts["1.6.0"]), inventory=ssh_hosts.inventory())
    assert broken.returncode != 0
    gate = [r for r in broken.results if r["task"] == "Say why the application is not healthy"]
    assert gate[-1]["host"] == "app1" and gate[-1]["status"] == "failed"
    assert gate[-1]["result"]["msg"].startswith("app1 is not healthy at http://127.0.0.1:8080/health after 5 tries: [")
    assert "this release is broken on purpose" in gate[-1]["result"]["msg"]
    assert served_versions(ssh_hosts) == {"app1": "1.6.0", "app2": "1.4.0", "app3": "1.4.0"}
