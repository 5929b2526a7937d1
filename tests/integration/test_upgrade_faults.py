"""Faults injected into a real sandbox deployment: bad inputs, concurrent runs, live writes, a killed controller,
a lost host. Three SSH hosts (network namespaces), a real PostgreSQL, rclone serve s3 and the stand-in app.

Every test ends by checking what an operator would: which release each host serves, every table's fingerprint,
the asset bucket and the .env files, and the run record.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest

from helpers import REPO, deployed_site, finish_background, run_playbook
from sandbox.sample_db import table_fingerprints
from sandbox.site import APP_PORT, APPCTL, PYTHON, RUNNER
from sandbox.standin.releases import MIGRATIONS

PLAYBOOKS = os.path.join(REPO, "playbooks")
ALL = ["app1", "app2", "app3"]


@pytest.fixture(scope="module")
def site(ssh_hosts, tmp_path_factory):
    """Release 1.4.0 serving on three hosts over a database at its schema (sandbox/site.py)."""
    # A killed controller kills modules mid-run: their unpacked payloads stay in the temp dir. Once the site
    # is stopped every orphaned module has ended, and what they left is removed.
    payloads = os.path.join(tempfile.gettempdir(), "ansible_treazrisland.ops.*_payload_*")
    before = set(glob.glob(payloads))
    with deployed_site(ssh_hosts, str(tmp_path_factory.mktemp("faults")), "/opt/trz-faults") as deployment:
        yield deployment
    # Only those older than two minutes: the other pytest-xdist worker may be running a module right now.
    settled = time.time() - 120
    for left in set(glob.glob(payloads)) - before:
        if os.path.getmtime(left) < settled:
            shutil.rmtree(left, ignore_errors=True)


@pytest.fixture
def at_140(site):
    """Each test starts from 1.4.0 with no unfinished run; it leaves the same behind."""
    yield site
    runs = site.runs()
    assert not [r for r in runs if r["status"] in ("in_progress", "rolling_back", "rollback_incomplete")], runs
    assert not os.path.exists(os.path.join(site.variables["treazrisland_backup_dir"], "runs", "lock.json"))
    assert site.served() == dict.fromkeys(ALL, "1.4.0")
    assert site.metrics_versions() == dict.fromkeys(ALL, "1.4.0")  # the metrics port, as Prometheus sees it


def state(site):
    """What the deployment looks like: tables, hosts, bucket, .env files."""
    with site.cluster.connect("treazrisland") as conn:
        tables = table_fingerprints(conn)
    return {"tables": tables, "served": site.served(), "assets": site.assets(), "env": site.env_files()}


def backup_dir_listing(site):
    root = site.variables["treazrisland_backup_dir"]
    return sorted(os.path.relpath(path, root) for path in glob.glob(os.path.join(root, "**"), recursive=True))


def playbook(site, name, version=None, inventory=None, **extra):
    variables = dict(site.release_vars(version) if version else site.variables, **extra)
    return run_playbook(os.path.join(PLAYBOOKS, name), inventory=inventory or site.inventory(), extra_vars=variables)


def start_playbook(site, name, version=None, **extra):
    variables = dict(site.release_vars(version) if version else site.variables, **extra)
    return run_playbook(os.path.join(PLAYBOOKS, name), inventory=site.inventory(), extra_vars=variables,
                        background=True)


def wait_for(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.1)


def kill_tree(process):
    """Kill ansible-playbook and every process under it, workers (which call setsid) included: a dead controller."""
    parent = psutil.Process(process.pid)
    family = [parent] + parent.children(recursive=True)
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    finish_background(process)


def migrate_command(*drill):
    return [PYTHON, RUNNER, "deploy", "backend/prisma/migrations"] + list(drill)


LIVE_WRITE = "INSERT INTO \"User\" (email) VALUES ('late-%s@treazris.land')"


def last_message(run):
    failed = [r for r in run.results if r["status"] == "failed"]
    return (failed[-1] if failed else run.results[-1])["result"].get("msg", "")


# ---------------------------------------------------------------- bad input


BAD_INPUTS = [
    ({"treazrisland_target_version": "1.5"}, "target version (treazrisland_target_version) '1.5' is not a release "
     "version: expected MAJOR.MINOR.PATCH (for example 1.5.0), nothing was changed"),
    ({"treazrisland_target_version": "latest"}, "target version (treazrisland_target_version) 'latest' is not a "
     "release version: expected MAJOR.MINOR.PATCH (for example 1.5.0), nothing was changed"),
    ({"treazrisland_target_version": "../../etc", "treazrisland_allow_major": True},
     "target version (treazrisland_target_version) '../../etc' is not a release version: expected MAJOR.MINOR.PATCH "
     "(for example 1.5.0), nothing was changed"),
    ({"treazrisland_release_artifact": "/nonexistent/treazrisland-1.5.0.tar.gz"}, "release artifact "
     "/nonexistent/treazrisland-1.5.0.tar.gz (treazrisland_release_artifact) does not exist on the control host; "
     "nothing was changed"),
    ({"treazrisland_release_sha256": "0" * 64}, "has sha256 "),
    ({"treazrisland_release_artifact": "1.6.0"}, "holds version 1.6.0 (its VERSION), not the target version 1.5.0; "
     "nothing was changed"),
]


def test_each_bad_input_fails_in_preflight_with_its_message_and_changes_nothing(at_140, tmp_path):
    site = at_140
    before, listing, databases = state(site), backup_dir_listing(site), site.cluster.databases()
    for overrides, message in BAD_INPUTS:
        overrides = dict(overrides)
        if overrides.get("treazrisland_release_artifact") == "1.6.0":
            overrides["treazrisland_release_artifact"] = site.artifacts["1.6.0"]
        run = playbook(site, "upgrade.yml", "1.5.0", **overrides)
        assert run.returncode != 0, run.output
        assert message in last_message(run), (message, run.output)
        assert [r["task"] for r in run.results if r["status"] == "failed"] == [
            "Check the target version, the artifact and the app group before anything changes (guide 1.1)"]
    # An inventory whose app group is empty.
    empty = tmp_path / "empty.ini"
    empty.write_text("[app]\n\n[local]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n" % PYTHON)
    run = playbook(site, "upgrade.yml", "1.5.0", inventory=str(empty))
    assert run.returncode != 0
    assert last_message(run) == ("the inventory group of the app hosts (app) has no hosts: add them, or set "
                                 "treazrisland_app_group; nothing was changed")
    assert state(site) == before
    assert backup_dir_listing(site) == listing
    assert site.cluster.databases() == databases
    assert not glob.glob(os.path.join(site.variables["treazrisland_backup_dir"], "releases", "*"))


# ---------------------------------------------------------------- live writes


def test_a_row_written_after_the_snapshot_survives_a_failure_before_any_migration(at_140):
    site = at_140
    before, databases = state(site), site.cluster.databases()
    # The migration command writes a row (live traffic after the snapshot), then cannot start.
    run = playbook(site, "upgrade.yml", "1.5.0", treazrisland_migrate_command=migrate_command(
        "--first-sql", LIVE_WRITE % "before-migrate", "--fail-before-start"))
    assert run.returncode != 0
    message = last_message(run)
    assert message.startswith("The upgrade to 1.5.0 failed at Apply the release's migrations"), message
    assert "Database: not restored: it had not moved since the snapshot, so every write made since is kept." in message
    assert site.cluster.query("SELECT count(*) FROM \"User\" WHERE email = 'late-before-migrate@treazris.land'",
                              "treazrisland") == [(1,)]
    after = state(site)
    assert {k: v for k, v in after.items() if k != "tables"} == {k: v for k, v in before.items() if k != "tables"}
    changed = {name for name in before["tables"] if before["tables"][name] != after["tables"].get(name)}
    assert changed == {"public.User"}
    assert site.cluster.databases() == databases  # no aside copy: nothing was restored
    site.cluster.execute("DELETE FROM \"User\" WHERE email LIKE 'late-%'", "treazrisland")


def test_a_failed_migration_restores_and_names_the_tables_written_after_the_snapshot(at_140):
    site = at_140
    before, databases = state(site), site.cluster.databases()
    run = playbook(site, "upgrade.yml", "1.5.1", treazrisland_migrate_command=migrate_command(
        "--first-sql", LIVE_WRITE % "during-migrate"))
    assert run.returncode != 0
    message = last_message(run)
    aside = sorted(set(site.cluster.databases()) - set(databases))
    assert len(aside) == 1 and aside[0].startswith("treazrisland__before_restore_"), aside
    assert "Database: restored from " in message and "since it had moved (" in message, message
    assert ("Tables written after the snapshot, whose new rows are only in %s: public.User" % aside[0]) in message
    assert message.startswith("The upgrade to 1.5.1 failed at Apply the release's migrations (guide 3.2), rehearsed "
                              "first when asked (guide 3.1): migrating "), message
    assert "Rolled back to 1.4.0 with restore point " in message
    assert state(site) == before
    assert site.cluster.query("SELECT count(*) FROM \"User\" WHERE email LIKE 'late-%'", aside[0]) == [(1,)]


def post_user(address, email):
    """A write of live traffic through the stand-in app; its HTTP status, or None when nothing answered."""
    request = urllib.request.Request("http://%s:%d/users" % (address, APP_PORT), data=json.dumps({"email": email}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def test_with_a_maintenance_hook_writes_are_refused_during_the_restore_and_none_accepted_is_lost(at_140):
    """Live traffic writes through app1 all along a failed upgrade: every write the app accepted is in the live
    database or in the aside one the message names; during the restore window the hook makes the app refuse."""
    site = at_140
    hook = [PYTHON, APPCTL, "maintenance", site.base]
    answers, stop = [], threading.Event()

    def live_traffic():
        number = 0
        while not stop.is_set():
            number += 1
            email = "live-%d@treazris.land" % number
            answers.append((email, post_user(site.hosts.hosts[0].address, email)))
            time.sleep(0.05)

    databases = site.cluster.databases()
    writer = threading.Thread(target=live_traffic)
    writer.start()
    try:
        run = playbook(site, "upgrade.yml", "1.5.1", treazrisland_migrate_command=migrate_command("--pause", "2"),
                       treazrisland_maintenance_command=hook + ["on"],
                       treazrisland_maintenance_off_command=hook + ["off"])
    finally:
        stop.set()
        writer.join()
    assert run.returncode != 0
    aside = sorted(set(site.cluster.databases()) - set(databases))
    assert len(aside) == 1, aside
    accepted = {email for email, status in answers if status == 201}

    def users(database):
        rows = site.cluster.query("SELECT email FROM \"User\" WHERE email LIKE 'live-%'", database)
        return {row[0] for row in rows}

    live, kept_aside = users("treazrisland"), users(aside[0])
    assert accepted - live - kept_aside == set()  # no accepted write vanished
    assert kept_aside and kept_aside <= accepted  # writes after the snapshot: only in the aside database...
    assert ("Tables written after the snapshot, whose new rows are only in %s: public.User" % aside[0]
            in last_message(run))  # ...which the message names
    assert 503 in {status for _email, status in answers}  # the window refused writes
    assert post_user(site.hosts.hosts[0].address, "live-after@treazris.land") == 201  # and it is closed again
    site.cluster.execute("DELETE FROM \"User\" WHERE email LIKE 'live-%'", "treazrisland")


# ---------------------------------------------------------------- concurrency


def test_second_upgrade_and_a_rollback_started_during_an_upgrade_fail_naming_it(at_140):
    site = at_140
    before = state(site)
    # The first run holds the lock for a while: one migration, a pause, the failing one, its own rollback.
    first = start_playbook(site, "upgrade.yml", "1.5.1", treazrisland_migrate_command=migrate_command("--pause", "8"))
    lock = os.path.join(site.variables["treazrisland_backup_dir"], "runs", "lock.json")
    wait_for(lambda: os.path.exists(lock), "the first upgrade's lock")
    with open(lock) as handle:
        holder = json.load(handle)
    second = start_playbook(site, "upgrade.yml", "1.5.0")
    rollback = start_playbook(site, "rollback.yml")
    refused = [finish_background(second), finish_background(rollback)]
    done = finish_background(first)
    for run in refused:
        assert run.returncode != 0
        assert last_message(run).startswith("another run holds the deployment lock: run %s (upgrade, by "
                                            % holder["run_id"]), run.output
    assert done.returncode != 0
    assert "Rolled back to 1.4.0 with restore point " in last_message(done)
    assert [record["status"] for record in site.runs() if record["id"] == holder["run_id"]] == ["rolled_back"]
    assert state(site) == before


# ---------------------------------------------------------------- interrupted runs


def phases_of_new_run(site, known):
    """[(phase, result)] of the run started after the runs in known (ids), or [] while there is none."""
    fresh = [record for record in site.runs() if record["id"] not in known]
    return [(p["name"], p["result"]) for p in fresh[-1].get("phases", [])] if fresh else []


def sleeping_in_database(site):
    return site.cluster.query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'",
                              "postgres")[0][0] > 0


@pytest.mark.parametrize("kill_point", ["after the backup", "during migrations", "during the rollback"])
def test_controller_killed_then_a_rerun_refuses_to_start_over_and_rollback_converges(at_140, kill_point):
    site = at_140
    before = state(site)
    applied = len(MIGRATIONS["1.4.0"])
    known = {record["id"] for record in site.runs()}

    def moment():
        if kill_point == "after the backup":
            return ("migrate", "started") in phases_of_new_run(site, known) and sleeping_in_database(site)
        if kill_point == "during migrations":
            # >= and a long pause: on a busy machine the poll may come late, never after the last migration.
            return site.cluster.query("SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL",
                                      "treazrisland")[0][0] >= applied + 1
        return ("rollback", "started") in phases_of_new_run(site, known)

    if kill_point == "after the backup":
        # The migration command waits before touching anything: the controller dies with the backup done.
        version, command = "1.5.0", migrate_command("--first-sql", "SELECT pg_sleep(60)")
    elif kill_point == "during migrations":
        version, command = "1.5.0", migrate_command("--pause", "20")
    else:
        # 1.5.1's second migration fails; the controller dies once the automatic rollback has begun.
        version, command = "1.5.1", migrate_command()
    upgrade = start_playbook(site, "upgrade.yml", version, treazrisland_migrate_command=command)
    wait_for(moment, kill_point, timeout=240)
    kill_tree(upgrade)
    run_id = site.runs()[-1]["id"]
    again = playbook(site, "upgrade.yml", "1.5.0")
    assert again.returncode != 0
    message = last_message(again)
    assert message.startswith("run %s (upgrade 1.4.0 -> %s, by " % (run_id, version)), message
    assert "The deployment may be half-changed, so no new restore point is taken over it" in message
    if kill_point == "during migrations":
        assert "(status in_progress; completed: lock, backup; started but not completed: migrate)" in message
    back = playbook(site, "rollback.yml")
    assert back.returncode == 0, back.output
    assert "of unfinished %s" % run_id in back.output
    assert state(site) == before
    assert site.runs()[-1]["status"] == "rolled_back"
    if kill_point == "after the backup":
        assert "not restored: it had not moved since the snapshot" in back.output


def test_an_orphaned_migration_and_a_rollback_never_overlap(at_140):
    """Only ansible-playbook is killed: its worker (setsid) keeps migrating; the rollback takes the stale lock, and
    its restore waits for the migration's advisory lock instead of swapping the database under it."""
    site = at_140
    before = state(site)
    applied = len(MIGRATIONS["1.4.0"])
    upgrade = start_playbook(site, "upgrade.yml", "1.5.0", treazrisland_migrate_command=migrate_command("--pause", "3"))
    # >=: on a busy machine the poll may see the second migration already; the orphan still has one to go.
    wait_for(lambda: site.cluster.query("SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL",
                                        "treazrisland")[0][0] >= applied + 1, "the first new migration")
    upgrade.kill()
    finish_background(upgrade)
    back = playbook(site, "rollback.yml")
    assert back.returncode == 0, back.output
    # The orphan finished all three migrations before the restore replaced the database.
    assert site.cluster.query("SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL", [
        name for name in site.cluster.databases() if name.startswith("treazrisland__before_restore_")][-1]) == [
        (applied + 3,)]
    assert state(site) == before


def test_controller_killed_between_deploy_batches_then_rollback_puts_the_whole_fleet_back(at_140):
    site = at_140
    before = state(site)
    kill_between_deploy_batches(site)
    back = playbook(site, "rollback.yml")
    assert back.returncode == 0, back.output
    assert state(site) == before


# ---------------------------------------------------------------- a lost host


def test_a_host_lost_mid_batch_does_not_stop_the_rollback_of_the_others(at_140):
    site = at_140
    before = state(site)
    lost = site.hosts.hosts[1]
    known = {record["id"] for record in site.runs()}
    upgrade = start_playbook(site, "upgrade.yml", "1.5.0", treazrisland_task_timeout=10, treazrisland_host_timeout=5)
    wait_for(lambda: ("deploy app2", "started") in phases_of_new_run(site, known), "app2's batch", timeout=240)
    # Its network goes silent and its application dies; its sshd stays, for when the network comes back.
    subprocess.run(["ip", "netns", "exec", lost.namespace, "ip", "link", "set", "eth0", "down"], check=True)
    try:
        # The stand-in's appctl keeps one pid file per port (sandbox/standin/appctl.py).
        pid_file = os.path.join(lost.opt, os.path.relpath(site.base, "/opt"), "shared", "app-%d.pid" % APP_PORT)
        with open(pid_file) as handle, contextlib.suppress(ProcessLookupError):
            os.kill(int(handle.read()), signal.SIGKILL)
        done = finish_background(upgrade)  # a hang would end here, at its 600 s limit
        assert done.returncode != 0
        message = last_message(done)
        assert "Rollback INCOMPLETE" in message, message
        assert "Not rolled back: app2 (" in message
        assert ("Finish with: ansible-playbook playbooks/rollback.yml -i %s --limit app2,localhost" % site.inventory()
                in message)
        served = site.served_where_reachable()
        assert served == {"app1": "1.4.0", "app3": "1.4.0"}
        assert site.runs()[-1]["status"] == "rollback_incomplete"
    finally:
        subprocess.run(["ip", "netns", "exec", lost.namespace, "ip", "link", "set", "eth0", "up"], check=True)
    finish = run_playbook(os.path.join(PLAYBOOKS, "rollback.yml"), inventory=site.inventory(),
                          extra_vars=site.variables, limit="app2,localhost")
    assert finish.returncode == 0, finish.output
    assert state(site) == before


# ---------------------------------------------------------------- resume (last: it leaves 1.5.0)


def kill_between_deploy_batches(site):
    """Upgrade to 1.5.0, killed once app1 runs 1.5.0 and before app3 does: a mixed fleet on the 1.5.0 schema."""
    known = {record["id"] for record in site.runs()}
    upgrade = start_playbook(site, "upgrade.yml", "1.5.0")
    wait_for(lambda: ("deploy app1", "changed") in phases_of_new_run(site, known), "the first deploy batch", timeout=240)
    kill_tree(upgrade)
    served = site.served()
    assert served["app1"] == "1.5.0" and served["app3"] == "1.4.0", served


def test_controller_killed_between_deploy_batches_then_resume_finishes_the_fleet(site):
    """Last of the module: it leaves 1.5.0 deployed."""
    kill_between_deploy_batches(site)
    resumed = playbook(site, "upgrade.yml", "1.5.0", treazrisland_resume=True)
    assert resumed.returncode == 0, resumed.output
    assert site.served() == dict.fromkeys(ALL, "1.5.0")
    record = site.runs()[-1]
    assert record["status"] == "complete"
    assert sum(1 for p in record["phases"] if p["name"] == "backup") == 1  # no second snapshot on resume
    assert not os.path.exists(os.path.join(site.variables["treazrisland_backup_dir"], "runs", "lock.json"))
