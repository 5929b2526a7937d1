"""The upgrade, rollback and restore playbooks on three SSH hosts, a real PostgreSQL and the stand-in app."""

from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest

from helpers import REPO, deployed_site, run_playbook
from sandbox.hosts import CONTROLLER_ADDRESS
from sandbox.load import Load
from sandbox.receiver import Receiver
from sandbox.sample_db import table_fingerprints
from sandbox.standin.releases import MIGRATIONS, REQUIRED_ENV, release_files

PLAYBOOKS = os.path.join(REPO, "playbooks")


@pytest.fixture(scope="module")
def site(ssh_hosts, tmp_path_factory):
    """Release 1.4.0 serving on three hosts over a database at its schema (sandbox/site.py)."""
    with deployed_site(ssh_hosts, str(tmp_path_factory.mktemp("site")), "/opt/trz-upgrade") as deployment:
        yield deployment


def upgrade(site, version, hosts_inventory=None):
    return run_playbook(os.path.join(PLAYBOOKS, "upgrade.yml"), inventory=hosts_inventory or site.inventory(),
                        extra_vars=site.release_vars(version))


def upgrade_with(site, version, **variables):
    return run_playbook(os.path.join(PLAYBOOKS, "upgrade.yml"), inventory=site.inventory(),
                        extra_vars=dict(site.release_vars(version), **variables))


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


def load_from_the_migrations_on(site, load, at_start=None):
    """A thread that starts the load once the next run noted its migrations: the snapshot is taken by then, so
    the rollback's restore gives back exactly the database of before (the load's rows go aside with it).
    at_start, if given, is called at that moment too (to look at the hosts mid-run)."""
    known = {record["id"] for record in site.runs()}
    done = threading.Event()

    def watch():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not done.is_set():
            fresh = [record for record in site.runs() if record["id"] not in known]
            if fresh and any(phase["name"] == "migrate" for phase in fresh[-1].get("phases", [])):
                load.start()
                if at_start:
                    at_start()
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher, done


CRON_LINES = {
    "crontab": "SHELL=/bin/sh\n# treazrisland-sync is paused by hand:\n# 0 3 * * * root treazrisland-sync --full\n"
               "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n",
    "cron.d/treazrisland": "TREAZRISLAND_HOME=/opt/treazrisland\n*/5 * * * * app treazrisland-sync --roms\n"
                           "0 4 * * * app /usr/local/bin/logrotate-other\n",
}


def cron_files(root):
    """{host: {relative path: text}} of the sandbox hosts' cron files (the hosts share the controller's /etc)."""
    found = {}
    for host in sorted(ALL):
        found[host] = {}
        for name in CRON_LINES:
            with open(os.path.join(root, host, name), encoding="utf-8") as handle:
                found[host][name] = handle.read()
    return found


def window_variables(site, receiver, cron_root):
    """Maintenance by HAProxy, jobs matching treazrisland-sync frozen in each host's own cron files, announcements."""
    for host in ALL:
        os.makedirs(os.path.join(cron_root, host, "cron.d"), exist_ok=True)
        os.makedirs(os.path.join(cron_root, host, "spool"), exist_ok=True)
        for name, text in CRON_LINES.items():
            with open(os.path.join(cron_root, host, name), "w", encoding="utf-8") as handle:
                handle.write(text)
    per_host = cron_root + "/{{ inventory_hostname }}"
    return {"treazrisland_maintenance_kind": "haproxy", "treazrisland_freeze_marker": "treazrisland-sync",
            "treazrisland_freeze_record": per_host + "/freeze.json", "treazrisland_freeze_crontab": per_host + "/crontab",
            "treazrisland_freeze_cron_d": per_host + "/cron.d", "treazrisland_freeze_crontab_spool": per_host + "/spool",
            "treazrisland_notify_url": receiver.url + "/hooks/T0KEN-of-the-webhook"}


def test_upgrade_to_1_5_0_then_a_second_run_changes_nothing_then_rollback_on_demand(site, tmp_path):
    before, env_before = fingerprints(site), env_files(site)
    assert site.assets() == release_assets("1.4.0")
    site.lb.wait_until_up()
    receiver = Receiver().start()
    cron_root = str(tmp_path / "cron")
    window = window_variables(site, receiver, cron_root)
    cron_before = cron_files(cron_root)
    mid_run = {}

    def look_mid_run():
        mid_run["cron"] = cron_files(cron_root)
        mid_run["map"] = site.lb.command("show map %s" % site.lb.maintenance_map)

    # Live traffic through HAProxy while the rolling deploy drains each host before its restart: a bounded
    # load (reads and writes, 60 requests/s) from the migrations to the end of the upgrade.
    load = Load(site.lb.url, workers=4, requests=30000, rate=60)
    watcher, watching = load_from_the_migrations_on(site, load, at_start=look_mid_run)
    try:
        run = upgrade_with(site, "1.5.0", treazrisland_lb_kind="haproxy", **window)
    finally:
        watching.set()
        watcher.join()
        report = load.stop() if load.started else None
        receiver.stop()
    assert run.returncode == 0, run.output
    print("load through HAProxy during the rolling upgrade:", report)
    assert report is not None, run.output
    assert not report["budget_spent"], report  # the load lasted the whole deploy
    assert report["failed"] == 0 and report["sent"] >= 1000, report
    # HAProxy refused the writes of the migrations' window itself (503 + Retry-After), then took them again.
    assert report["refused_by_maintenance"] > 0 and report["writes_accepted"] > 0, report
    assert " treazrisland writes" in mid_run["map"], mid_run
    assert site.lb.command("show map %s" % site.lb.maintenance_map).strip() == ""
    # The matching jobs were frozen during the run (not the operator's own commented line), and are back.
    for host in ALL:
        assert mid_run["cron"][host]["cron.d/treazrisland"].count("#treazrisland-frozen ") == 1, mid_run["cron"][host]
        assert "#treazrisland-frozen" not in mid_run["cron"][host]["crontab"], mid_run["cron"][host]
    assert cron_files(cron_root) == cron_before
    assert not [name for name in os.listdir(os.path.join(cron_root, "app1")) if name.startswith("freeze")]
    events = [(r["json"]["event"], r["json"].get("from_version"), r["json"].get("to_version"))
              for r in receiver.requests]
    assert events == [("started", "1.4.0", "1.5.0"), ("succeeded", "1.4.0", "1.5.0")], receiver.requests
    assert "T0KEN" not in run.output
    written = {row[0] for row in site.cluster.query(
        "SELECT email FROM \"User\" WHERE email LIKE %s", "treazrisland", (load.email_pattern,))}
    assert load.accepted and load.accepted <= written  # every write accepted has its row
    drained = [r for r in run.results if r["task"] == "Drain the server in HAProxy and wait for its sessions to end"]
    assert sorted(r["host"] for r in drained) == sorted(ALL) and all(r["result"]["changed"] for r in drained), drained
    assert set(site.lb.wait_until_up().values()) == {"UP"}
    assert site.served() == dict.fromkeys(sorted(ALL), "1.5.0")
    assert site.assets() == release_assets("1.5.0")
    for host, (content, _mode) in env_files(site).items():
        # The new key comes with its documented default and comment; every other line is untouched.
        assert content == env_before[host][0] + b"# Largest ROM upload accepted\nROM_UPLOAD_LIMIT_MB=512\n", host
    applied = site.cluster.query("SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL",
                                 "treazrisland")
    assert applied == [(len(MIGRATIONS["1.4.0"]) + 3,)]
    # backend/.env.example is sparse, as the real one: the keys its code uses are required, not deprecated.
    compared = [r for r in run.results if r["task"] == "Compare the live configuration with the sample (guide 5.1)"]
    assert sorted(r["host"] for r in compared) == sorted(ALL)
    for result in (r["result"] for r in compared):
        assert result["added"] == ["ROM_UPLOAD_LIMIT_MB"] and result["removed"] == [], result
        assert sorted(result["required_unlisted"]) == sorted(
            set(REQUIRED_ENV) - {"NODE_ENV", "PORT"} | {"OBJECT_STORAGE_USE_SSL"}), result  # optional, read by the app
        assert "backend/src/config/required-env.txt" in result["required_unlisted"]["JWT_SECRET"], result

    again = upgrade(site, "1.5.0")
    assert again.returncode == 0, again.output
    assert set(recap_changes(again).values()) == {0}, again.output
    assert "Already at 1.5.0 on every host: nothing to do." in again.output

    # An operator's server left drained (by hand, or by an interrupted run) is enabled again by the rollback.
    site.lb.command("set server app/app2 state drain")
    with Receiver() as receiver:
        back = run_playbook(os.path.join(PLAYBOOKS, "rollback.yml"), inventory=site.inventory(),
                            extra_vars=dict(site.variables, treazrisland_lb_kind="haproxy",
                                            **window_variables(site, receiver, cron_root)))
    assert back.returncode == 0, back.output
    assert [(r["json"]["event"], r["json"]["to_version"]) for r in receiver.requests] == [("rolled_back", "1.4.0")]
    assert site.lb.command("show map %s" % site.lb.maintenance_map).strip() == ""
    assert site.served() == dict.fromkeys(sorted(ALL), "1.4.0")
    assert set(site.lb.wait_until_up().values()) == {"UP"}
    assert fingerprints(site) == before
    assert env_files(site) == env_before
    assert site.assets() == release_assets("1.4.0")


def test_asset_sync_failing_rolls_everything_back(site, tmp_path):
    """With the maintenance window and the freeze on: the rollback ends the window and thaws the jobs too."""
    before, env_before = fingerprints(site), env_files(site)
    cron_root = str(tmp_path / "cron")
    with Receiver() as receiver:
        window = window_variables(site, receiver, cron_root)
        cron_before = cron_files(cron_root)
        # 1.5.0 drops 5 of the 61 assets: allowing no deletion makes the sync fail, after the migrations ran.
        run = upgrade_with(site, "1.5.0", assets_max_delete="0", treazrisland_lb_kind="haproxy", **window)
    assert run.returncode != 0
    assert "The upgrade to 1.5.0 failed at Upload the bundle, deleting what the release no longer has" in run.output
    assert "Rolled back to 1.4.0" in run.output
    assert site.served() == dict.fromkeys(sorted(ALL), "1.4.0")
    assert fingerprints(site) == before
    assert env_files(site) == env_before
    assert site.assets() == release_assets("1.4.0")
    assert site.lb.command("show map %s" % site.lb.maintenance_map).strip() == ""
    assert cron_files(cron_root) == cron_before
    assert not [name for name in os.listdir(os.path.join(cron_root, "app1")) if name.startswith("freeze")]
    assert [r["json"]["event"] for r in receiver.requests] == ["started", "rolled_back"], receiver.requests


def test_a_host_that_cannot_be_frozen_stops_the_upgrade_before_the_restore_point_and_the_others_are_undone(
        site, tmp_path):
    """app2 holds a damaged freeze record (left by hand, or by a disk that filled up), so its freeze refuses to
    go on after app1 and app3 were frozen and HAProxy began refusing writes. Nothing else runs (no snapshot, no
    migration, no deploy); the window ends, app1's and app3's jobs come back exactly, app2's are untouched, its
    record is left for the operator to read (its thaw says so too), and the announcement says why."""
    before, env_before = fingerprints(site), env_files(site)
    points = os.path.join(site.variables["treazrisland_backup_dir"], "restore-points")
    points_before = sorted(os.listdir(points)) if os.path.isdir(points) else []
    cron_root = str(tmp_path / "cron")
    damaged = os.path.join(cron_root, "app2", "freeze.json")
    with Receiver() as receiver:
        window = window_variables(site, receiver, cron_root)
        with open(damaged, "w", encoding="utf-8") as handle:
            handle.write('{"version": 1, "cron": [')
        cron_before = cron_files(cron_root)
        run = upgrade_with(site, "1.5.0", treazrisland_lb_kind="haproxy", **window)
    assert run.returncode != 0
    refusal = (r"freeze record [^ ]*/app2/freeze\.json cannot be read \(Expecting value: line 1 column 25 \(char 24\)\); "
               r"look at it before going on: it names the jobs to restore")
    assert re.search(r"The upgrade to 1\.5\.0 stopped before the restore point \(app2: Freeze the scheduled jobs "
                     r"matching the marker: %s\)\. Nothing was changed" % refusal, run.output), run.output
    assert site.lb.command("show map %s" % site.lb.maintenance_map).strip() == ""
    assert cron_files(cron_root) == cron_before
    with open(damaged, encoding="utf-8") as handle:
        assert handle.read() == '{"version": 1, "cron": ['
    for host in ("app1", "app3"):
        assert not [name for name in os.listdir(os.path.join(cron_root, host)) if name.startswith("freeze")], host
    assert [r["json"]["event"] for r in receiver.requests] == ["started", "failed"], receiver.requests
    assert receiver.requests[1]["json"]["result"].startswith("stopped before the restore point at app2"), receiver.requests
    assert (sorted(os.listdir(points)) if os.path.isdir(points) else []) == points_before
    assert fingerprints(site) == before
    assert env_files(site) == env_before
    assert site.served() == dict.fromkeys(sorted(ALL), "1.4.0")


def test_object_storage_lost_at_the_health_gate_is_named_and_the_rollback_finishes_once_it_is_back(site):
    """The S3 server stops as app2's batch starts: app2's gate names objectStorage and its error (the backend
    answers HTTP 200, "degraded"). The automatic rollback cannot put the assets back nor pass its own gate
    without the bucket, says so and gives the command; once the bucket is back, that command finishes it."""
    before, env_before = fingerprints(site), env_files(site)
    known = {record["id"] for record in site.runs()}
    s3_stopped = threading.Event()

    def stop_s3_when_app2_deploys():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not s3_stopped.is_set():
            fresh = [record for record in site.runs() if record["id"] not in known]
            if fresh and any(phase["name"] == "deploy app2" for phase in fresh[-1].get("phases", [])):
                site.s3.kill()
                s3_stopped.set()
            time.sleep(0.1)

    watcher = threading.Thread(target=stop_s3_when_app2_deploys, daemon=True)
    watcher.start()
    try:
        run = upgrade(site, "1.5.0", hosts_inventory=site.inventory(app2={"deploy_health_retries": 2}))
    finally:
        stopped_by_watcher = s3_stopped.is_set()
        s3_stopped.set()
        watcher.join()
        if site.s3.process is None:
            site.s3.restart()  # the bucket comes back, whatever happened
    assert stopped_by_watcher, run.output
    assert run.returncode != 0
    assert ("The upgrade to 1.5.0 failed at app2: Wait until the application reports healthy: not healthy at "
            "http://127.0.0.1:4000/health after 2 tries in ") in run.output, run.output
    assert ('HTTP 200, status "degraded"; objectStorage down: connect ECONNREFUSED %s:%d'
            % (CONTROLLER_ADDRESS, site.s3.port)) in run.output, run.output
    assert "Rollback INCOMPLETE" in run.output, run.output
    assert "Finish with: ansible-playbook playbooks/rollback.yml -i " in run.output, run.output

    # The bucket is back (site.s3.restart() above): the operator runs the command the message gave.
    finish = run_playbook(os.path.join(PLAYBOOKS, "rollback.yml"), inventory=site.inventory(),
                          extra_vars=site.variables)
    assert finish.returncode == 0, finish.output
    assert "Rolled back to 1.4.0" in finish.output
    assert site.served() == dict.fromkeys(sorted(ALL), "1.4.0")
    assert fingerprints(site) == before
    assert env_files(site) == env_before
    assert site.assets() == release_assets("1.4.0")


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
    # No restart command given: the default, systemctl restart treazrisland-backend, for a unit nobody installed.
    variables = {key: value for key, value in site.release_vars("1.5.0").items() if key != "treazrisland_restart_command"}
    runs_before = site.runs()
    run = run_playbook(str(play), inventory=str(broken_inventory), extra_vars=dict(
        variables, treazrisland_database_url=wrong, treazrisland_s3_secret_key="wrong-s3-key"))
    assert run.returncode != 0
    message = [r for r in run.results if r["task"] == "Report every access problem together"][0]["result"]["msg"]
    assert message.startswith("preflight found 6 problem(s): ghost: Task failed: Data could not be sent to remote "
                              "host \"%s\"." % ghost)
    advice = (": Treazrisland ships no systemd unit; install one (docs/examples/treazrisland-backend.service) or set "
              "treazrisland_restart_command (docs/upgrade.md, Restarting the backend)")
    for host in sorted(ALL):
        # This machine has systemctl but no systemd running: it cannot even tell whether the unit exists.
        assert re.search("; %s: restart command systemctl restart treazrisland-backend: (systemctl not found on this "
                         "host|systemctl cannot tell whether unit treazrisland-backend exists \\(.+\\)|no systemd "
                         "unit treazrisland-backend on this host)%s" % (host, re.escape(advice)), message), message
    assert site.runs() == runs_before  # nothing started, nothing locked
    assert not os.path.exists(os.path.join(site.variables["treazrisland_backup_dir"], "runs", "lock.json"))
    assert "; object storage: " in message and "wrong-s3-key" not in run.output
    assert "; database: cannot connect to postgres@127.0.0.1:%d/treazrisland: " % site.cluster.port in message
    assert 'password authentication failed for user "postgres"' in message
    assert "wrong-password" not in run.output
