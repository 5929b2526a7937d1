# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run record and the deployment lock (upgrade, rollback, restore), kept on the control host.

Layout under ``runs_dir`` (inside the backup directory, so that a database
restore can never erase it)::

    <run id>.json   one record per run (0600): who, from/to, restore point, phases
    lock.json       the holder of the deployment lock, while a run holds it
    .mutex          flock()ed while the lock is checked and taken

A run is *unfinished* while its status is ``in_progress``, ``rolling_back`` or
``rollback_incomplete``. An unfinished run that already has a restore point
means the deployment may be half-changed: nothing starts over blindly; the
operator resumes it or rolls it back. A lock whose holder is gone (its
ansible-playbook process died on this controller, or it expired) is stale and
may be taken over; anything else needs an explicit, named release.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import getpass
import glob
import json
import os
import re
import secrets
import socket
import tarfile

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.release import HashingReader

RECORD_KIND = "treazrisland.ops/run"
LOCK_FILE = "lock.json"
UNFINISHED = ("in_progress", "rolling_back", "rollback_incomplete")
FINISHED = ("complete", "rolled_back", "failed", "refused", "abandoned")
# MAJOR.MINOR.PATCH with optional pre-release and build (semver.org); never a path separator.
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
PLAYBOOK_PROCESSES = ("ansible-playbook", "ansible-runner")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


# ------------------------------------------------------------------ inputs


def check_version(name, version):
    """A release version: semver, and so safe as one path component."""
    text = "" if version is None else str(version)
    if not SEMVER.match(text):
        raise OpsError("%s %r is not a release version: expected MAJOR.MINOR.PATCH (for example 1.5.0), "
                       "nothing was changed" % (name, text))
    return text


def inspect_artifact(path, expected_sha256=None, version_file=None):
    """The artifact's sha256 and the version written inside it, in one streamed pass."""
    if not path or not os.path.isfile(path):
        raise OpsError("release artifact %s (treazrisland_release_artifact) does not exist on the control host; "
                       "nothing was changed" % path)
    found_version = None
    try:
        with open(path, "rb") as raw:
            reader = HashingReader(raw)
            with tarfile.open(fileobj=reader, mode="r|*") as tar:
                for member in tar:
                    if version_file and member.isfile() and os.path.normpath(member.name) == version_file:
                        found_version = tar.extractfile(member).read(256).decode("utf-8", "replace").strip()
            while reader.read(1024 * 1024):
                pass
    except (tarfile.TarError, EOFError, OSError) as error:
        raise OpsError("release artifact %s cannot be read as a tar archive: %s; nothing was changed" % (path, error))
    digest = reader.hexdigest()
    if expected_sha256 and digest != expected_sha256.strip().lower():
        raise OpsError("release artifact %s has sha256 %s, expected %s; nothing was changed" % (
            path, digest, expected_sha256))
    return digest, found_version


def validate_upgrade(params):
    """Everything an upgrade needs, checked before anything changes; returns what was read."""
    target = check_version("target version (treazrisland_target_version)", params["to_version"])
    if params["app_hosts"] is not None and not params["app_hosts"]:
        raise OpsError("the inventory group of the app hosts (%s) has no hosts: add them, or set "
                       "treazrisland_app_group; nothing was changed" % (params["app_group"] or "app"))
    result = {"to_version": target}
    if params["artifact"] is not None:
        digest, inside = inspect_artifact(params["artifact"], params["artifact_sha256"], params["version_file"])
        if params["version_file"]:
            if inside is None:
                raise OpsError("release artifact %s has no %s: cannot tell which version it is, nothing was "
                               "changed" % (params["artifact"], params["version_file"]))
            if inside != target:
                raise OpsError("release artifact %s holds version %s (its %s), not the target version %s; "
                               "nothing was changed" % (params["artifact"], inside, params["version_file"], target))
        result.update(artifact_sha256=digest, artifact_version=inside)
    return result


# ------------------------------------------------------------------ controller processes


def _proc_stat(pid):
    """(parent pid, start time in clock ticks) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19])


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def playbook_process(pid=None):
    """(pid, start time) of the ansible-playbook process this module runs under.

    The topmost ancestor whose command line names ansible-playbook: the
    controller itself, not one of its (setsid) workers.
    """
    pid = pid or os.getpid()
    found = None
    seen = 0
    while pid > 1 and seen < 64:
        stat = _proc_stat(pid)
        if stat is None:
            break
        if any(name in _cmdline(pid) for name in PLAYBOOK_PROCESSES):
            found = (pid, stat[1])
        pid, seen = stat[0], seen + 1
    if found is None:
        stat = _proc_stat(os.getppid())
        found = (os.getppid(), stat[1] if stat else None)
    return found


def holder_alive(holder, moment):
    """Whether a lock holder may still be running: its process lives, or, on another controller, not expired."""
    if holder.get("expires_at") and parse_iso(holder["expires_at"]) < moment:
        return False
    if holder.get("controller") != socket.gethostname():
        return True  # cannot see its processes: trust the expiry
    stat = _proc_stat(int(holder.get("pid") or 0)) if holder.get("pid") else None
    return stat is not None and (holder.get("pid_started") is None or stat[1] == holder["pid_started"])


# ------------------------------------------------------------------ records


class Runs:
    """The run records and the lock of one deployment."""

    def __init__(self, runs_dir):
        self.dir = runs_dir
        self.lock_path = os.path.join(runs_dir, LOCK_FILE)

    def ensure(self):
        os.makedirs(self.dir, mode=atomic.PRIVATE_DIR, exist_ok=True)

    @contextlib.contextmanager
    def mutex(self):
        self.ensure()
        fd = os.open(os.path.join(self.dir, ".mutex"), os.O_RDWR | os.O_CREAT, atomic.PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def path(self, run_id):
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise OpsError("%r is not a run id" % run_id)
        return os.path.join(self.dir, run_id + ".json")

    def load(self, run_id):
        try:
            with open(self.path(run_id)) as handle:
                return json.load(handle)
        except FileNotFoundError:
            raise OpsError("no run %s in %s" % (run_id, self.dir))
        except ValueError:
            raise OpsError("run record %s is damaged (not JSON); look at it before going on" % self.path(run_id))

    def save(self, record):
        record["updated_at"] = iso(now())
        atomic.write_json(self.path(record["id"]), record)

    def all(self):
        found = []
        for path in glob.glob(os.path.join(glob.escape(self.dir), "*.json")):
            if os.path.basename(path) == LOCK_FILE:
                continue
            try:
                with open(path) as handle:
                    record = json.load(handle)
            except (OSError, ValueError):
                continue
            if record.get("kind") == RECORD_KIND:
                found.append(record)
        return sorted(found, key=lambda r: (r.get("started_at", ""), r["id"]))

    def unfinished(self):
        runs = [r for r in self.all() if r.get("status") in UNFINISHED]
        return runs[-1] if runs else None

    def last_complete_upgrade(self):
        runs = [r for r in self.all() if r.get("action") == "upgrade" and r.get("status") == "complete"
                and r.get("restore_point")]
        return runs[-1] if runs else None

    def holder(self):
        try:
            with open(self.lock_path) as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None
        except ValueError:
            return {"run_id": "unknown", "damaged": True}

    def write_lock(self, holder):
        atomic.write_json(self.lock_path, holder)

    def release(self, run_id):
        holder = self.holder()
        if holder and holder.get("run_id") == run_id:
            os.unlink(self.lock_path)
            return True
        return False


def describe_run(record):
    what = record.get("action", "run")
    if record.get("from_version") or record.get("to_version"):
        what += " %s -> %s" % (record.get("from_version") or "?", record.get("to_version") or "?")
    return "run %s (%s, by %s on %s, started %s)" % (
        record["id"], what, record.get("operator", "?"), record.get("controller", "?"), record.get("started_at", "?"))


def describe_holder(holder):
    return "run %s (%s, by %s on %s, pid %s, since %s)" % (
        holder.get("run_id"), holder.get("action", "?"), holder.get("operator", "?"), holder.get("controller", "?"),
        holder.get("pid", "?"), holder.get("started_at", "?"))


def phases_summary(record):
    done = [p["name"] for p in record.get("phases", []) if p.get("result") in ("ok", "changed", "skipped")]
    open_ = [p["name"] for p in record.get("phases", []) if p.get("result") in ("started", "failed")]
    text = "completed: %s" % (", ".join(done) or "nothing")
    if open_:
        text += "; started but not completed: %s" % ", ".join(open_)
    return text


def _new_id(action, moment):
    return "%s-%s-%s" % (moment.strftime("%Y%m%dT%H%M%SZ"), action, secrets.token_hex(3))


def _take_lock(runs, record, params, moment):
    pid, started = playbook_process()
    holder = {
        "run_id": record["id"], "action": record["action"], "operator": record["operator"],
        "controller": socket.gethostname(), "pid": pid, "pid_started": started, "started_at": iso(moment),
        "expires_at": iso(moment + datetime.timedelta(seconds=params["lock_ttl"])),
    }
    runs.write_lock(holder)
    return holder


def _refresh_lock(runs, run_id, params):
    """Prolong our lock; fail if another run holds it now."""
    holder = runs.holder()
    if not holder or holder.get("run_id") != run_id:
        raise OpsError("run %s no longer holds the deployment lock (%s); stopping here, nothing more was changed" % (
            run_id, describe_holder(holder) if holder else "nobody holds it"))
    holder["expires_at"] = iso(now() + datetime.timedelta(seconds=params["lock_ttl"]))
    runs.write_lock(holder)
    return holder


def _next_commands(record, params):
    inventory = params["inventory_hint"] or "<inventory>"
    resume = "ansible-playbook playbooks/upgrade.yml -i %s -e treazrisland_target_version=%s -e treazrisland_resume=true" % (
        inventory, record.get("to_version"))
    rollback = "ansible-playbook playbooks/rollback.yml -i %s" % inventory
    return resume, rollback


def start(params, check_mode):
    """state=started: take the lock and open (or resume) a run record."""
    runs = Runs(params["dir"])
    action = params["action"]
    checked = validate_upgrade(params) if action == "upgrade" else {}
    moment = now()
    with runs.mutex() if not check_mode else contextlib.nullcontext():
        holder = runs.holder() if os.path.isdir(runs.dir) else None
        taken_over = None
        if holder:
            if holder_alive(holder, moment) and not holder.get("damaged"):
                raise OpsError(
                    "another run holds the deployment lock: %s. Nothing was done. Wait for it to finish; if its "
                    "controller is gone for good, release the lock with: ansible-playbook playbooks/unlock.yml "
                    "-e treazrisland_unlock_run=%s" % (describe_holder(holder), holder.get("run_id")),
                    lock=holder)
            taken_over = holder
        unfinished = runs.unfinished() if os.path.isdir(runs.dir) else None
        resumed = False
        superseded = None
        if action == "upgrade":
            record, resumed, superseded = _upgrade_record(runs, unfinished, params, checked, moment)
        elif action == "rollback":
            record = _rollback_record(runs, unfinished, params, moment)
            resumed = record.get("action") == "upgrade"
        else:
            if unfinished and unfinished.get("restore_point"):
                raise OpsError("%s did not finish (%s). Roll it back first: %s" % (
                    describe_run(unfinished), phases_summary(unfinished), _next_commands(unfinished, params)[1]),
                    unfinished=unfinished)
            record = _new_record(action, params, moment)
        if check_mode:
            return dict(changed=False, run=record, run_id=record["id"], resumed=resumed, lock=holder,
                        msg="would take the deployment lock for %s" % describe_run(record))
        lock = _take_lock(runs, record, params, moment)
        note = {"name": "lock", "started_at": iso(moment), "finished_at": iso(moment), "result": "ok",
                "details": {"controller": lock["controller"], "pid": lock["pid"]}}
        if taken_over:
            note["details"]["took_over_stale_lock_of"] = taken_over.get("run_id")
        if resumed:
            note["details"]["resumed_by"] = "%s on %s" % (_operator(params), lock["controller"])
        record.setdefault("phases", []).append(note)
        runs.save(record)
        if superseded:
            runs.save(superseded)
    return dict(changed=True, run=record, run_id=record["id"], resumed=resumed, lock=lock,
                restore_point=record.get("restore_point"), took_over_stale_lock=taken_over, **checked)


def _operator(params):
    if params["operator"]:
        return params["operator"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _new_record(action, params, moment):
    return {
        "kind": RECORD_KIND, "id": _new_id(action, moment), "action": action, "operator": _operator(params),
        "controller": socket.gethostname(), "from_version": params["from_version"],
        "to_version": params["to_version"], "status": "in_progress", "started_at": iso(moment),
        "restore_point": None, "phases": [],
    }


def _upgrade_record(runs, unfinished, params, checked, moment):
    """(record, resumed, superseded record or None) for an upgrade."""
    if unfinished and not unfinished.get("restore_point") and unfinished.get("action") == "upgrade":
        # Stopped before its restore point existed: it changed nothing outside the backup directory.
        unfinished.update(status="abandoned", finished_at=iso(moment),
                          message="stopped before its restore point was written; nothing had changed")
        superseded, unfinished = unfinished, None
    else:
        superseded = None
    if unfinished:
        resume, rollback = _next_commands(unfinished, params)
        if unfinished["status"] != "in_progress" or unfinished.get("action") != "upgrade":
            raise OpsError(
                "%s did not finish (status %s; %s). The deployment may be half-changed, so no new restore point "
                "is taken over it, and a run whose rollback began cannot be resumed: finish its rollback to "
                "restore point %s: %s" % (
                    describe_run(unfinished), unfinished["status"], phases_summary(unfinished),
                    unfinished["restore_point"].get("id"), rollback), unfinished=unfinished)
        if not params["resume"]:
            raise OpsError(
                "%s did not finish (status %s; %s). The deployment may be half-changed, so no new restore point "
                "is taken over it. Either resume it: %s, or roll it back to restore point %s: %s" % (
                    describe_run(unfinished), unfinished["status"], phases_summary(unfinished), resume,
                    unfinished["restore_point"].get("id"), rollback), unfinished=unfinished)
        if unfinished.get("to_version") != checked["to_version"]:
            raise OpsError("%s was an upgrade to %s, not %s: resume it with -e treazrisland_target_version=%s, or "
                           "roll it back: %s" % (
                               describe_run(unfinished), unfinished.get("to_version"), checked["to_version"],
                               unfinished.get("to_version"), rollback), unfinished=unfinished)
        return unfinished, True, superseded
    if params["resume"]:
        raise OpsError("treazrisland_resume=true, but there is no unfinished upgrade in %s to resume; nothing "
                       "was changed" % runs.dir)
    return _new_record("upgrade", params, moment), False, superseded


def _rollback_record(runs, unfinished, params, moment):
    """The run a rollback works on: the unfinished one, else a new rollback run of the last upgrade."""
    if unfinished and unfinished.get("restore_point"):
        unfinished["status"] = "rolling_back"
        return unfinished
    if unfinished:
        # Stopped before its restore point existed: it changed nothing, there is nothing of it to roll back.
        unfinished.update(status="abandoned", finished_at=iso(moment),
                          message="stopped before its restore point was written; nothing had changed")
        runs.save(unfinished)
    record = _new_record("rollback", params, moment)
    last = runs.last_complete_upgrade()
    if last:
        record.update(restore_point=last["restore_point"], rolls_back=last["id"],
                      from_version=last.get("to_version"), to_version=last["restore_point"].get("app_version"))
    return record


def phase(params, check_mode):
    """state=phase: note a phase's start or end in the run record."""
    runs = Runs(params["dir"])
    with runs.mutex():
        record = runs.load(params["run_id"])
        if check_mode:
            return dict(changed=False, run=record, run_id=record["id"])
        _refresh_lock(runs, record["id"], params)
        moment = iso(now())
        phases = record.setdefault("phases", [])
        entry = next((p for p in reversed(phases) if p["name"] == params["phase"] and p["result"] == "started"), None)
        if entry is None or params["phase_result"] == "started":
            entry = {"name": params["phase"], "started_at": moment}
            phases.append(entry)
        entry["result"] = params["phase_result"]
        if params["phase_result"] != "started":
            entry["finished_at"] = moment
        if params["details"]:
            entry.setdefault("details", {}).update(params["details"])
        if params["restore_point"]:
            record["restore_point"] = dict(params["restore_point"], status="in_progress")
            _mark_restore_point(record, "in_progress")
        for key in ("from_version", "to_version"):
            if params[key] and not record.get(key):
                record[key] = params[key]
        if params["status"]:
            record["status"] = params["status"]
        runs.save(record)
    return dict(changed=True, run=record, run_id=record["id"])


def _mark_restore_point(record, status):
    """The restore point file carries its status too, so it reads right on its own."""
    point = record.get("restore_point") or {}
    point["status"] = status
    path = point.get("path")
    if path and os.path.isfile(path):
        with open(path) as handle:
            document = json.load(handle)
        if document.get("status") != status or document.get("run_id") != record["id"]:
            document.update(status=status, run_id=record["id"])
            atomic.write_json(path, document)


def finish(params, check_mode):
    """state=finished: close the run with its outcome, mark the restore point, release the lock."""
    runs = Runs(params["dir"])
    with runs.mutex():
        record = runs.load(params["run_id"])
        if check_mode:
            return dict(changed=False, run=record, run_id=record["id"])
        record["status"] = params["outcome"]
        if params["outcome"] in FINISHED:
            record["finished_at"] = iso(now())
        if params["summary"]:
            record["message"] = params["summary"]
        if params["details"]:
            record.setdefault("result", {}).update(params["details"])
        point_status = {"complete": "complete", "rolled_back": "rolled_back"}.get(params["outcome"])
        if point_status and record.get("restore_point"):
            _mark_restore_point(record, point_status)
        if record.get("rolls_back") and params["outcome"] == "rolled_back":
            upgraded = runs.load(record["rolls_back"])
            upgraded["rolled_back_by"] = record["id"]
            runs.save(upgraded)
        runs.save(record)
        released = runs.release(record["id"])
    return dict(changed=True, run=record, run_id=record["id"], lock_released=released)


def unlock(params, check_mode):
    """state=unlocked: release a lock by name (an operator's explicit decision)."""
    runs = Runs(params["dir"])
    with runs.mutex():
        holder = runs.holder()
        if not holder:
            return dict(changed=False, lock=None, msg="nobody holds the deployment lock")
        if holder.get("run_id") != params["run_id"]:
            raise OpsError("the deployment lock is held by %s, not by run %s: nothing was released" % (
                describe_holder(holder), params["run_id"]), lock=holder)
        if holder_alive(holder, now()) and not params["force"]:
            raise OpsError("%s still looks alive (its process runs on this controller, or its lock has not "
                           "expired): nothing was released; set force=true only if you are sure it is gone" %
                           describe_holder(holder), lock=holder)
        if not check_mode:
            os.unlink(runs.lock_path)
    return dict(changed=True, lock=holder, msg="released the lock of %s" % describe_holder(holder))


def inspect(params, check_mode):
    """state=inspected: read-only view of the lock and the unfinished run."""
    runs = Runs(params["dir"])
    holder = runs.holder() if os.path.isdir(runs.dir) else None
    unfinished = runs.unfinished() if os.path.isdir(runs.dir) else None
    return dict(changed=False, lock=holder, lock_alive=bool(holder and holder_alive(holder, now())),
                unfinished=unfinished, last_complete_upgrade=runs.last_complete_upgrade() if os.path.isdir(runs.dir)
                else None)


def run_record(params, check_mode):
    """The upgrade_run module."""
    handlers = {"started": start, "phase": phase, "finished": finish, "unlocked": unlock, "inspected": inspect,
                "validated": lambda p, c: dict(validate_upgrade(p), changed=False)}
    state = params["state"]
    needs = {"phase": ("run_id", "phase"), "finished": ("run_id", "outcome"), "unlocked": ("run_id",),
             "validated": ("to_version",)}
    missing = [name for name in needs.get(state, ()) if not params.get(name)]
    if missing:
        raise OpsError("state=%s needs %s" % (state, ", ".join(missing)))
    return handlers[state](params, check_mode)


RUN_ARGUMENT_SPEC = dict(
    dir=dict(type="path", required=True),
    state=dict(type="str", choices=["validated", "started", "phase", "finished", "unlocked", "inspected"],
               default="inspected"),
    action=dict(type="str", choices=["upgrade", "rollback", "restore"], default="upgrade"),
    run_id=dict(type="str"),
    resume=dict(type="bool", default=False),
    operator=dict(type="str"),
    from_version=dict(type="str"),
    to_version=dict(type="str"),
    artifact=dict(type="path"),
    artifact_sha256=dict(type="str"),
    version_file=dict(type="str", default="VERSION"),
    app_hosts=dict(type="list", elements="str"),
    app_group=dict(type="str"),
    phase=dict(type="str"),
    phase_result=dict(type="str", choices=["started", "ok", "changed", "failed", "skipped"], default="ok"),
    details=dict(type="dict"),
    restore_point=dict(type="dict"),
    status=dict(type="str", choices=list(UNFINISHED)),
    outcome=dict(type="str", choices=["complete", "rolled_back", "failed", "rollback_incomplete", "refused"]),
    summary=dict(type="str"),
    lock_ttl=dict(type="int", default=21600),
    force=dict(type="bool", default=False),
    inventory_hint=dict(type="str"),
)
