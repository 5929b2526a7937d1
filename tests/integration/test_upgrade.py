"""The upgrade, rollback and restore playbooks on three SSH hosts, a real PostgreSQL and the stand-in app."""

from __future__ import annotations

import json
import os

import pytest

from helpers import REPO, deployed_site, run_playbook
from sandbox.sample_db import table_fingerprints
from sandbox.standin.releases import MIGRATIONS, release_files

PLAYBOOKS = os.path.join(REPO, "playbooks")


@pytest.fixture(scope="module")
def site(ssh_hosts, tmp_path_factory):
    """Release 1.4.0 serving on three hosts over a database at its schema (sandbox/site.py)."""
    with deployed_site(ssh_hosts, str(tmp_path_factory.mktemp("site")), "/opt/trz-upgrade") as deployment:
        yield deployment


def upgrade(site, version, hosts_inventory=None):
    return run_playbook(os.path.join(PLAYBOOKS, "upgrade.yml"), inventory=hosts_inventory or site.inventory(),
                        extra_vars=site.release_vars(version))


def fingerprints(site):
    with site.cluster.connect("treazrisland") as conn:
        return table_fingerprints(conn)


def release_assets(version):
    return {name[len("frontend/dist/"):]: data for name, data in release_files(version).items()
            if name.startswith("frontend/dist/")}


def env_files(site):
    return site.env_files()


def recap_changes(run):
    recap = run.output.split("PLAY RECAP")[-1]
    return {line.split()[0]: int(line.split("changed=")[1].split()[0]) for line in recap.splitlines() if "changed=" in line}


ALL = {"app1", "app2", "app3"}


def test_upgrade_to_1_5_0_then_a_second_run_changes_nothing_then_rollback_on_demand(site):
    before, env_before = fingerprints(site), env_files(site)
    assert site.assets() == release_assets("1.4.0")
    run = upgrade(site, "1.5.0")
    assert run.returncode == 0, run.output
    assert site.served() == dict.fromkeys(sorted(ALL), "1.5.0")
    assert site.assets() == release_assets("1.5.0")
    for host, (content, _mode) in env_files(site).items():
        # The new key comes with its documented default and comment; every other line is untouched.
        assert content == env_before[host][0] + b"# Largest ROM upload accepted\nROM_UPLOAD_LIMIT_MB=512\n", host
    applied = site.cluster.query("SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL",
                                 "treazrisland")
    assert applied == [(len(MIGRATIONS["1.4.0"]) + 3,)]

    again = upgrade(site, "1.5.0")
    assert again.returncode == 0, again.output
    assert set(recap_changes(again).values()) == {0}, again.output
    assert "Already at 1.5.0 on every host: nothing to do." in again.output

    back = run_playbook(os.path.join(PLAYBOOKS, "rollback.yml"), inventory=site.inventory(),
                        extra_vars=site.variables)
    assert back.returncode == 0, back.output
    assert site.served() == dict.fromkeys(sorted(ALL), "1.4.0")
    assert fingerprints(site) == before
    assert env_files(site) == env_before
    assert site.assets() == release_assets("1.4.0")


def test_asset_sync_failing_rolls_everything_back(site):
    before, env_before = fingerprints(site), env_files(site)
    # 1.5.0 drops 5 of the 61 assets: allowing no deletion makes the sync fail, after the migrations ran.
    run = run_playbook(os.path.join(PLAYBOOKS, "upgrade.yml"), inventory=site.inventory(),
                       extra_vars=dict(site.release_vars("1.5.0"), assets_max_delete="0"))
    assert run.returncode != 0
    assert "The upgrade to 1.5.0 failed at Upload the bundle, deleting what the release no longer has" in run.output
    assert "Rolled back to 1.4.0" in run.output
    assert site.served() == dict.fromkeys(sorted(ALL), "1.4.0")
    assert fingerprints(site) == before
    assert env_files(site) == env_before
    assert site.assets() == release_assets("1.4.0")


def test_second_deploy_batch_failing_its_health_gate_rolls_everything_back(site):
    # app2 (the second batch, serial 1) will answer HTTP 200 with status "degraded" once it runs 1.5.0.
    app2_env = os.path.join(site.hosts.hosts[1].opt, os.path.relpath(site.base, "/opt"), "shared", ".env")
    with open(app2_env, "a") as handle:
        handle.write("DEGRADED_VERSIONS=1.5.0\n")
    before, env_before = fingerprints(site), env_files(site)
    try:
        run = upgrade(site, "1.5.0", hosts_inventory=site.inventory(app2={"deploy_health_retries": 2}))
        assert run.returncode != 0
        assert ("The upgrade to 1.5.0 failed at app2: Say why the application is not healthy: app2 is not healthy at "
                "http://127.0.0.1:8080/health after 2 tries: ['degraded on purpose on this host (DEGRADED_VERSIONS)']"
                in run.output), run.output
        assert "Rolled back to 1.4.0" in run.output
        assert site.served() == dict.fromkeys(sorted(ALL), "1.4.0")
        assert fingerprints(site) == before
        assert env_files(site) == env_before
        assert site.assets() == release_assets("1.4.0")
    finally:
        with open(app2_env, "rb") as handle:
            content = handle.read()
        with open(app2_env, "wb") as handle:
            handle.write(content.replace(b"DEGRADED_VERSIONS=1.5.0\n", b""))


def test_restore_playbook_restores_a_restore_point_and_migrates_up_to_a_version(site):
    points = sorted(os.listdir(os.path.join(site.variables["treazrisland_backup_dir"], "restore-points")))
    chosen = points[0][:-len(".json")]
    databases = site.cluster.databases()
    run = run_playbook(os.path.join(PLAYBOOKS, "restore.yml"), inventory=site.inventory(), extra_vars=dict(
        site.variables, restore_point_id=chosen, restore_migrate_to="20250601000000_favorites",
        treazrisland_release_artifact=site.artifacts["1.5.0"]))
    assert run.returncode == 0, run.output
    assert site.cluster.query("SELECT max(migration_name) FROM _prisma_migrations", "treazrisland") == [
        ("20250601000000_favorites",)]
    aside = sorted(set(site.cluster.databases()) - set(databases))
    assert len(aside) == 1 and aside[0].startswith("treazrisland__before_restore_")
    assert site.served() == dict.fromkeys(sorted(ALL), "1.4.0")  # traffic is back


def test_preflight_reports_every_access_problem_together(site, tmp_path):
    inventory_path = site.inventory()
    with open(inventory_path) as handle:
        inventory_text = handle.read()
    # One more app host that does not exist, on the sandbox's own bridge.
    ghost = site.hosts.hosts[0].address.rsplit(".", 1)[0] + ".99"
    broken_inventory = tmp_path / "inventory.ini"
    broken_inventory.write_text(inventory_text.replace("[app]\n", "[app]\nghost ansible_host=%s ansible_timeout=3\n"
                                                       % ghost, 1))
    play = tmp_path / "preflight.yml"
    play.write_text(json.dumps([{"name": "preflight", "hosts": "localhost", "gather_facts": False,
                                 "roles": ["treazrisland.ops.preflight"]}]))
    wrong = site.cluster.dsn("treazrisland").replace(site.cluster.password, "wrong-password")
    run = run_playbook(str(play), inventory=str(broken_inventory), extra_vars=dict(
        site.release_vars("1.5.0"), treazrisland_database_url=wrong, treazrisland_s3_secret_key="wrong-s3-key"))
    assert run.returncode != 0
    message = [r for r in run.results if r["task"] == "Report every access problem together"][0]["result"]["msg"]
    assert message.startswith("preflight found 3 problem(s): ghost: Task failed: Data could not be sent to remote "
                              "host \"%s\"." % ghost)
    assert "; object storage: " in message and "wrong-s3-key" not in run.output
    assert "; database: cannot connect to postgres@127.0.0.1:%d/treazrisland: " % site.cluster.port in message
    assert 'password authentication failed for user "postgres"' in message
    assert "wrong-password" not in run.output
