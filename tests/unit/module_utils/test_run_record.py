"""The run record and the deployment lock, on real files and real processes."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils import run_record
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.run_record import RUN_ARGUMENT_SPEC


def params(runs_dir, **overrides):
    values = {name: spec.get("default") for name, spec in RUN_ARGUMENT_SPEC.items()}
    values.update(dir=str(runs_dir), **overrides)
    return values


def artifact(tmp_path, version_inside="1.5.0", name="treazrisland-1.5.0.tar.gz"):
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        data = (version_inside + "\n").encode()
        info = tarfile.TarInfo("VERSION")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return str(path)


def everything_in(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


@pytest.mark.parametrize("version", ["1.5", "latest", "../../etc", "1.5.0/..", "", "v1.5.0", "1.5.0 "])
def test_a_bad_target_version_is_refused_naming_the_input_and_nothing_is_written(tmp_path, version):
    runs = tmp_path / "runs"
    with pytest.raises(OpsError) as raised:
        run_record.run_record(params(runs, state="started", to_version=version, artifact=artifact(tmp_path),
                                     app_hosts=["app1"]), False)
    assert raised.value.msg == ("target version (treazrisland_target_version) %r is not a release version: expected "
                                "MAJOR.MINOR.PATCH (for example 1.5.0), nothing was changed" % version)
    assert not runs.exists()


def test_artifact_checks_missing_wrong_sha_wrong_version_and_empty_group(tmp_path):
    runs = tmp_path / "runs"
    good = artifact(tmp_path)
    with pytest.raises(OpsError) as raised:
        run_record.run_record(params(runs, state="validated", to_version="1.5.0", artifact=str(tmp_path / "nope.tgz"),
                                     app_hosts=["app1"]), False)
    assert raised.value.msg == ("release artifact %s (treazrisland_release_artifact) does not exist on the control "
                                "host; nothing was changed" % (tmp_path / "nope.tgz"))
    with pytest.raises(OpsError) as raised:
        run_record.run_record(params(runs, state="validated", to_version="1.5.0", artifact=good,
                                     artifact_sha256="0" * 64, app_hosts=["app1"]), False)
    assert raised.value.msg.startswith("release artifact %s has sha256 " % good)
    assert raised.value.msg.endswith(", expected %s; nothing was changed" % ("0" * 64))
    other = artifact(tmp_path, version_inside="1.4.0", name="renamed.tar.gz")
    with pytest.raises(OpsError) as raised:
        run_record.run_record(params(runs, state="validated", to_version="1.5.0", artifact=other,
                                     app_hosts=["app1"]), False)
    assert raised.value.msg == ("release artifact %s holds version 1.4.0 (its VERSION), not the target version "
                                "1.5.0; nothing was changed" % other)
    with pytest.raises(OpsError) as raised:
        run_record.run_record(params(runs, state="validated", to_version="1.5.0", artifact=good, app_hosts=[],
                                     app_group="app"), False)
    assert raised.value.msg == ("the inventory group of the app hosts (app) has no hosts: add them, or set "
                                "treazrisland_app_group; nothing was changed")
    checked = run_record.run_record(params(runs, state="validated", to_version="1.5.0", artifact=good,
                                           app_hosts=["app1"]), False)
    assert checked["artifact_version"] == "1.5.0" and len(checked["artifact_sha256"]) == 64
    assert not runs.exists()


def start_upgrade(runs, **overrides):
    values = dict(state="started", action="upgrade", from_version="1.4.0", to_version="1.5.0", app_hosts=["app1"])
    values.update(overrides)
    return run_record.run_record(params(runs, **values), False)


def test_lock_is_refused_while_its_holder_lives_and_taken_over_once_it_died(tmp_path):
    runs = tmp_path / "runs"
    first = start_upgrade(runs)
    record_path = runs / (first["run_id"] + ".json")
    assert stat.S_IMODE(os.stat(record_path).st_mode) == 0o600
    holder = json.loads((runs / "lock.json").read_text())
    # Make a live process of this controller the holder, as ansible-playbook would be.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder.update(pid=sleeper.pid, pid_started=run_record._proc_stat(sleeper.pid)[1])
        (runs / "lock.json").write_text(json.dumps(holder))
        with pytest.raises(OpsError) as raised:
            start_upgrade(runs)
        assert raised.value.msg == (
            "another run holds the deployment lock: run %s (upgrade, by %s on %s, pid %d, since %s). Nothing was "
            "done. Wait for it to finish; if its controller is gone for good, release the lock with: "
            "ansible-playbook playbooks/unlock.yml -e treazrisland_unlock_run=%s" % (
                first["run_id"], holder["operator"], socket.gethostname(), sleeper.pid, holder["started_at"],
                first["run_id"]))
        with pytest.raises(OpsError) as raised:
            run_record.run_record(params(runs, state="unlocked", run_id=first["run_id"]), False)
        assert "still looks alive" in raised.value.msg and (runs / "lock.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # The holder died (the controller was killed): its lock is stale, but its run is unfinished with no restore
    # point yet, so it changed nothing and the new run supersedes it.
    second = start_upgrade(runs)
    assert second["took_over_stale_lock"]["run_id"] == first["run_id"]
    assert json.loads(record_path.read_text())["status"] == "abandoned"
    assert json.loads((runs / "lock.json").read_text())["run_id"] == second["run_id"]


def test_unfinished_run_with_a_restore_point_is_never_started_over(tmp_path):
    runs = tmp_path / "runs"
    first = start_upgrade(runs)
    point = tmp_path / "rp.json"
    point.write_text(json.dumps({"id": "RP1", "app_version": "1.4.0"}))
    run_record.run_record(params(runs, state="phase", run_id=first["run_id"], phase="backup", phase_result="changed",
                                 restore_point={"id": "RP1", "path": str(point), "app_version": "1.4.0"}), False)
    run_record.run_record(params(runs, state="phase", run_id=first["run_id"], phase="migrate",
                                 phase_result="started"), False)
    os.unlink(runs / "lock.json")  # as if its controller died and the lock was released
    with pytest.raises(OpsError) as raised:
        start_upgrade(runs, inventory_hint="inv.ini")
    assert raised.value.msg == (
        "run %s (upgrade 1.4.0 -> 1.5.0, by %s on %s, started %s) did not finish (status in_progress; completed: "
        "lock, backup; started but not completed: migrate). The deployment may be half-changed, so no new restore "
        "point is taken over it. Either resume it: ansible-playbook playbooks/upgrade.yml -i inv.ini "
        "-e treazrisland_target_version=1.5.0 -e treazrisland_resume=true, or roll it back to restore point RP1: "
        "ansible-playbook playbooks/rollback.yml -i inv.ini" % (
            first["run_id"], first["run"]["operator"], socket.gethostname(), first["run"]["started_at"]))
    assert not (runs / "lock.json").exists()  # the refused run took no lock
    assert json.loads(point.read_text())["status"] == "in_progress"
    with pytest.raises(OpsError) as raised:
        start_upgrade(runs, to_version="1.6.0", resume=True)
    assert "was an upgrade to 1.5.0, not 1.6.0" in raised.value.msg
    resumed = start_upgrade(runs, resume=True)
    assert resumed["resumed"] and resumed["run_id"] == first["run_id"]
    assert resumed["restore_point"]["id"] == "RP1"
    # A rollback takes the same run and its restore point once the resumed run let go of the lock.
    os.unlink(runs / "lock.json")
    rollback = run_record.run_record(params(runs, state="started", action="rollback"), False)
    assert rollback["run_id"] == first["run_id"] and rollback["run"]["status"] == "rolling_back"
    done = run_record.run_record(params(runs, state="finished", run_id=first["run_id"], outcome="rolled_back"), False)
    assert done["lock_released"] and not (runs / "lock.json").exists()
    assert json.loads(point.read_text())["status"] == "rolled_back"
    assert start_upgrade(runs)["run_id"] != first["run_id"]  # nothing unfinished any more


def test_rollback_without_an_unfinished_run_uses_the_last_complete_upgrade(tmp_path):
    runs = tmp_path / "runs"
    first = start_upgrade(runs)
    run_record.run_record(params(runs, state="phase", run_id=first["run_id"], phase="backup",
                                 restore_point={"id": "RP1", "path": "", "app_version": "1.4.0"}), False)
    run_record.run_record(params(runs, state="finished", run_id=first["run_id"], outcome="complete"), False)
    rollback = run_record.run_record(params(runs, state="started", action="rollback"), False)
    assert rollback["run_id"] != first["run_id"]
    assert rollback["restore_point"]["id"] == "RP1"
    assert (rollback["run"]["from_version"], rollback["run"]["to_version"]) == ("1.5.0", "1.4.0")
    with pytest.raises(OpsError) as raised:
        start_upgrade(runs)  # the rollback holds the lock (this very process is its holder)
    assert raised.value.msg.startswith("another run holds the deployment lock: run %s (rollback" % rollback["run_id"])
    run_record.run_record(params(runs, state="finished", run_id=rollback["run_id"], outcome="rolled_back"), False)
    upgraded = json.loads((runs / (first["run_id"] + ".json")).read_text())
    assert upgraded["rolled_back_by"] == rollback["run_id"]


def test_a_phase_of_a_run_that_lost_the_lock_fails(tmp_path):
    runs = tmp_path / "runs"
    first = start_upgrade(runs)
    holder = json.loads((runs / "lock.json").read_text())
    holder["run_id"] = "someone-else"
    (runs / "lock.json").write_text(json.dumps(holder))
    with pytest.raises(OpsError) as raised:
        run_record.run_record(params(runs, state="phase", run_id=first["run_id"], phase="migrate"), False)
    assert raised.value.msg.startswith("run %s no longer holds the deployment lock (run someone-else" % first["run_id"])


def test_check_mode_writes_nothing(tmp_path):
    runs = tmp_path / "runs"
    result = run_record.run_record(params(runs, state="started", to_version="1.5.0", app_hosts=["a"]), True)
    assert result["changed"] is False
    assert not runs.exists()
