"""The upgrade, rollback and restore playbooks on three SSH hosts, a real PostgreSQL and the stand-in app."""

from __future__ import annotations

import json
import os
import sys
import tarfile
import urllib.request

import pytest

from helpers import REPO, run_module, run_playbook
from sandbox.hosts import CONTROLLER_ADDRESS
from sandbox.pgcluster import PgCluster
from sandbox.sample_db import table_fingerprints
from sandbox.standin.releases import MIGRATIONS, build

BASE = "/opt/trz-upgrade"
PLAYBOOKS = os.path.join(REPO, "playbooks")
PYTHON = sys.executable
APPCTL = os.path.join(REPO, "sandbox", "standin", "appctl.py")
RUNNER = os.path.join(REPO, "sandbox", "prisma_migrate.py")


@pytest.fixture(scope="module")
def site(ssh_hosts, release_artifacts, tmp_path_factory):
    """Release 1.4.0 running on three hosts over a database at its schema; the variables of the deployment."""
    work = tmp_path_factory.mktemp("upgrade")
    with PgCluster(name="upgrade", also_listen=CONTROLLER_ADDRESS) as cluster:
        cluster.create_database("treazrisland")
        artifacts = dict(release_artifacts)
        # 1.5.1: release 1.5.0 whose second new migration fails.
        broken = {"backend/prisma/migrations/20250701000000_rom_platform/migration.sql":
                  b'ALTER TABLE "NoSuchTable" ADD COLUMN platform text;\n'}
        artifacts["1.5.1"] = build("1.5.1", str(work / "artifacts"), version_of="1.5.0", overrides=broken)
        variables = {
            "treazrisland_database_url": cluster.dsn("treazrisland"),
            "treazrisland_backup_dir": str(work / "backups"),
            "treazrisland_base_dir": BASE,
            "treazrisland_migrate_command": [PYTHON, RUNNER, "deploy", "backend/prisma/migrations", "--to", "{to}"],
            "treazrisland_restart_command": [PYTHON, APPCTL, "restart", BASE, PYTHON],
            "treazrisland_stop_command": [PYTHON, APPCTL, "stop", BASE],
            "treazrisland_health_url": "http://127.0.0.1:8080/health",
            "treazrisland_version_url": "http://127.0.0.1:8080/version",
            "treazrisland_deployment_log": str(work / "deploy.log"),
        }
        os.makedirs(variables["treazrisland_backup_dir"])
        staged = work / "1.4.0"
        with tarfile.open(artifacts["1.4.0"]) as tar:
            tar.extractall(staged)  # the sandbox's own artifact
        run = run_module("db_migrate", dict(dsn=cluster.dsn("treazrisland"), chdir=str(staged),
                                            command=[PYTHON, RUNNER, "deploy", "backend/prisma/migrations"]))
        assert not run.failed, run.msg
        cluster.execute("""INSERT INTO "User" (email) SELECT 'player' || g || '@treazris.land'
                           FROM generate_series(1, 50) g;
                           INSERT INTO "Rom" (title, asset_uri) SELECT 'Game ' || g, 's3://assets/roms/' || g
                           FROM generate_series(1, 500) g""", "treazrisland")
        for number, host in enumerate(ssh_hosts.hosts):
            shared = os.path.join(host.opt, os.path.basename(BASE), "shared")
            os.makedirs(shared)
            with open(os.path.join(shared, ".env"), "w") as handle:
                handle.write("APP_PORT=8080\nDATABASE_URL=%s\nJWT_SECRET=s3cret-%d\nOBJECT_STORAGE_BUCKET=assets\n"
                             "LOG_LEVEL=info\nROM_UPLOAD_LIMIT_MB=512\n" % (
                                 cluster.dsn("treazrisland", CONTROLLER_ADDRESS), number))
        deploy = work / "deploy-1.4.0.yml"
        deploy.write_text(json.dumps([{"name": "first deploy", "hosts": "app", "gather_facts": False,
                                       "roles": ["treazrisland.ops.deploy"]}]))
        run = run_playbook(str(deploy), inventory=ssh_hosts.inventory(), extra_vars=dict(
            variables, treazrisland_target_version="1.4.0", treazrisland_release_artifact=artifacts["1.4.0"]))
        assert run.returncode == 0, run.output
        yield {"cluster": cluster, "vars": variables, "artifacts": artifacts, "hosts": ssh_hosts}


def inventory(site, **host_vars):
    """The hosts' inventory; the health gates give a stopped app 5 seconds."""
    return site["hosts"].inventory(host_vars=host_vars, deploy_health_retries=5, verify_health_retries=5)


def upgrade(site, version, hosts_inventory=None):
    variables = dict(site["vars"], treazrisland_target_version=version,
                     treazrisland_release_artifact=site["artifacts"][version])
    return run_playbook(os.path.join(PLAYBOOKS, "upgrade.yml"), inventory=hosts_inventory or inventory(site),
                        extra_vars=variables)


def served(site):
    versions = {}
    for host in site["hosts"].hosts:
        with urllib.request.urlopen("http://%s:8080/version" % host.address, timeout=5) as answer:
            versions[host.name] = json.load(answer)["version"]
    return versions


def fingerprints(site):
    with site["cluster"].connect("treazrisland") as conn:
        return table_fingerprints(conn)


def recap_changes(run):
    recap = run.output.split("PLAY RECAP")[-1]
    return {line.split()[0]: int(line.split("changed=")[1].split()[0]) for line in recap.splitlines() if "changed=" in line}


ALL = {"app1", "app2", "app3"}


def test_upgrade_to_1_5_0_then_a_second_run_changes_nothing_then_rollback_on_demand(site):
    before = fingerprints(site)
    run = upgrade(site, "1.5.0")
    assert run.returncode == 0, run.output
    assert served(site) == dict.fromkeys(sorted(ALL), "1.5.0")
    applied = site["cluster"].query("SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL",
                                    "treazrisland")
    assert applied == [(len(MIGRATIONS["1.4.0"]) + 3,)]

    again = upgrade(site, "1.5.0")
    assert again.returncode == 0, again.output
    assert set(recap_changes(again).values()) == {0}, again.output
    assert "Already at 1.5.0 on every host: nothing to do." in again.output

    back = run_playbook(os.path.join(PLAYBOOKS, "rollback.yml"), inventory=inventory(site),
                        extra_vars=site["vars"])
    assert back.returncode == 0, back.output
    assert served(site) == dict.fromkeys(sorted(ALL), "1.4.0")
    assert fingerprints(site) == before


def test_failed_migration_rolls_everything_back(site):
    before = fingerprints(site)
    run = upgrade(site, "1.5.1")
    assert run.returncode != 0
    assert "The upgrade to 1.5.1 failed at Apply the release's migrations (guide 3.2), rehearsed first when asked" \
           " (guide 3.1): migrating" in run.output
    assert "Rolled back to 1.4.0" in run.output
    assert served(site) == dict.fromkeys(sorted(ALL), "1.4.0")
    assert fingerprints(site) == before


def test_second_deploy_batch_failing_its_health_gate_rolls_everything_back(site):
    before = fingerprints(site)
    # app2's health endpoint does not answer: the second batch (serial 1) fails its gate.
    broken_gate = inventory(site, app2={"deploy_health_url": "http://127.0.0.1:9/health", "deploy_health_retries": 1})
    run = upgrade(site, "1.5.0", hosts_inventory=broken_gate)
    assert run.returncode != 0
    assert "The upgrade to 1.5.0 failed at app2: Wait until the application reports healthy" in run.output
    assert "Rolled back to 1.4.0" in run.output
    assert served(site) == dict.fromkeys(sorted(ALL), "1.4.0")
    assert fingerprints(site) == before


def test_restore_playbook_restores_a_restore_point_and_migrates_up_to_a_version(site):
    points = sorted(os.listdir(os.path.join(site["vars"]["treazrisland_backup_dir"], "restore-points")))
    chosen = points[0][:-len(".json")]
    databases = site["cluster"].databases()
    run = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), inventory=inventory(site), extra_vars=dict(
        site["vars"], restore_point_id=chosen, restore_migrate_to="20250601000000_favorites",
        treazrisland_release_artifact=site["artifacts"]["1.5.0"]))
    assert run.returncode == 0, run.output
    assert site["cluster"].query("SELECT max(migration_name) FROM _prisma_migrations", "treazrisland") == [
        ("20250601000000_favorites",)]
    aside = sorted(set(site["cluster"].databases()) - set(databases))
    assert len(aside) == 1 and aside[0].startswith("treazrisland__before_restore_")
    assert served(site) == dict.fromkeys(sorted(ALL), "1.4.0")  # traffic is back
