# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Freezing the host's scheduled jobs for an upgrade (guide 1.2) and thawing exactly those afterwards.

A cron job line that matches the marker is commented out with ``#treazrisland-frozen <freeze id># `` in
front of it; a systemd timer that matches is stopped and/or disabled. What was done is written to the
record file *before* anything is changed, so an interrupted run leaves a record naming every entry it may
have touched: running ``frozen`` again finishes the freeze, ``thawed`` restores whatever it finds frozen.
Thawing restores only what the record names, never a line the operator commented out or a timer the
operator stopped before the freeze. ``freeze`` is the service of the ``schedule_freeze`` module.
"""

from __future__ import annotations

import collections
import json
import os
import re
import time

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic, runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

RECORD_VERSION = 1
PREFIX_WORD = "#treazrisland-frozen"
_FREEZE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# "NAME = value" lines of a crontab set the environment of its jobs; they are never jobs themselves.
_CRON_ENV = re.compile(r"""^\s*("[^"]*"|'[^']*'|[^\s="']+)\s*=""")
_SYSTEMCTL = ("--no-pager", "--no-ask-password")


def prefix(freeze_id):
    """What a frozen cron line starts with."""
    return "%s %s# " % (PREFIX_WORD, freeze_id)


def is_job(line):
    """Whether a crontab line (without its line ending) is a job: not blank, not a comment, not NAME=value."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#") and not _CRON_ENV.match(line)


def compile_marker(marker):
    if not marker:
        raise OpsError("marker is required to freeze (a regular expression or plain text, e.g. treazrisland)")
    try:
        return re.compile(marker)
    except re.error as error:
        raise OpsError("marker %r is not a valid regular expression: %s" % (marker, error))


def split_lines(text):
    """[(line, ending)] keeping each line ending as it was, so an untouched line is written back unchanged."""
    pairs = []
    for raw in text.splitlines(keepends=True):
        line = raw.rstrip("\r\n")
        pairs.append((line, raw[len(line):]))
    return pairs


def join_lines(pairs):
    return "".join(line + ending for line, ending in pairs)


def freeze_text(text, pattern, freeze_id):
    """(new text, [original lines frozen]) with every job line matching pattern commented out."""
    pairs, frozen = [], []
    for line, ending in split_lines(text):
        if is_job(line) and pattern.search(line):
            frozen.append(line)
            line = prefix(freeze_id) + line
        pairs.append((line, ending))
    return join_lines(pairs), frozen


def thaw_text(text, entries):
    """(new text, [lines restored], [entries not found frozen]) for the record entries of one file.

    Only lines equal to an entry's frozen form are restored, each entry once: a line the operator
    commented out (or froze under another id) is not in the record and stays as it is.
    """
    wanted = collections.Counter(entry["frozen"] for entry in entries)
    originals = {entry["frozen"]: entry["line"] for entry in entries}
    pairs, restored = [], []
    for line, ending in split_lines(text):
        if wanted.get(line, 0) > 0:
            wanted[line] -= 1
            line = originals[line]
            restored.append(line)
        pairs.append((line, ending))
    left = [entry for entry in entries if _take(wanted, entry["frozen"])]
    return join_lines(pairs), restored, left


def _take(counter, key):
    if counter.get(key, 0) > 0:
        counter[key] -= 1
        return True
    return False


def cron_files(params):
    """The crontab files to look at: /etc/crontab, /etc/cron.d/* and the users' crontabs in the spool dir."""
    files = []
    if params.get("crontab") and os.path.isfile(params["crontab"]):
        files.append(params["crontab"])
    for directory in (params.get("cron_d"), params.get("crontab_spool")):
        if not directory or not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            # Hidden and backup files are not read by cron (and our own temporary files are hidden).
            path = os.path.join(directory, name)
            if name.startswith(".") or name.endswith("~") or not os.path.isfile(path):
                continue
            files.append(path)
    return files


def read_text(path):
    """The file's text; bytes that are not UTF-8 (a Latin-1 comment) survive the round trip unchanged."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "surrogateescape")
    except OSError as error:
        raise OpsError("cannot read %s: %s" % (path, error.strerror or error))


def write_like(path, text):
    """Replace path atomically, keeping its mode and owner (cron refuses a crontab with the wrong ones)."""
    real = os.path.realpath(path)  # a symlinked cron.d entry stays a symlink
    info = os.stat(real)
    try:
        with atomic.atomic_file(real, mode=info.st_mode & 0o7777) as target:
            target.write(text.encode("utf-8", "surrogateescape"))
            if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
                os.chown(target.temp_path, info.st_uid, info.st_gid)
    except OSError as error:
        raise OpsError("cannot write %s: %s" % (path, error.strerror or error))


# ---- the record -----------------------------------------------------------------------------------------


def load_record(path):
    try:
        with open(path) as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise OpsError("freeze record %s cannot be read (%s); look at it before going on: it names the jobs to "
                       "restore" % (path, error))
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise OpsError("freeze record %s is not a version %d record; look at it before going on"
                       % (path, RECORD_VERSION))
    record.setdefault("cron", [])
    record.setdefault("timers", [])
    return record


def save_record(path, record):
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=atomic.PRIVATE_DIR, exist_ok=True)
        atomic.write_json(path, record)
    except OSError as error:
        raise OpsError("cannot write the freeze record %s: %s" % (path, error.strerror or error))


# ---- systemd timers -------------------------------------------------------------------------------------


def systemctl(params, *args, action=None):
    argv = [params["systemctl"]] + list(_SYSTEMCTL) + list(args)
    if action:
        return runner.check(argv, action, timeout=params["command_timeout"])
    return runner.run(argv, timeout=params["command_timeout"])


def timer_names(params):
    """Every timer systemd knows: those with a unit file and loaded ones (transient timers have no file)."""
    names = set()
    for listing in (("list-unit-files", "--type=timer", "--no-legend"),
                    ("list-units", "--type=timer", "--all", "--no-legend", "--plain")):
        result = systemctl(params, *listing, action="listing systemd timers")
        for line in result.stdout.splitlines():
            fields = line.split()
            if fields and fields[0].lstrip("●* ").endswith(".timer"):
                names.add(fields[0].lstrip("●* "))
    return sorted(names)


def timer_states(params, names):
    """{name: {Id, Description, Unit, LoadState, UnitFileState, ActiveState}} from one systemctl show."""
    if not names:
        return {}
    properties = []
    for name in ("Id", "Description", "Unit", "LoadState", "UnitFileState", "ActiveState"):
        properties += ["-p", name]
    result = systemctl(params, "show", *properties, *names, action="reading the state of systemd timers")
    states, current = {}, {}
    for line in result.stdout.splitlines() + [""]:
        if not line.strip():
            if current.get("Id"):
                states[current["Id"]] = current
            current = {}
            continue
        key, _sep, value = line.partition("=")
        current[key] = value
    return states


def is_enabled(state):
    return state.get("UnitFileState") == "enabled"


def is_active(state):
    return state.get("ActiveState") in ("active", "activating", "reloading")


def manage_timers(params):
    """Whether to look at systemd timers: as told, else only where systemd runs (it made /run/systemd/system)."""
    if params.get("timers") is not None:
        return params["timers"]
    return os.path.isdir("/run/systemd/system")


def matching_timers(params, pattern):
    """[{unit, enabled, active}] of the timers matching the marker (by name, description or triggered unit)."""
    found = []
    for name, state in sorted(timer_states(params, timer_names(params)).items()):
        text = " ".join((name, state.get("Description", ""), state.get("Unit", "")))
        if pattern.search(text):
            found.append({"unit": name, "enabled": is_enabled(state), "active": is_active(state)})
    return found


def describe_timer(unit, enabled, active):
    return "%s: %s, %s\n" % (unit, "enabled" if enabled else "disabled", "active" if active else "inactive")


# ---- the service ----------------------------------------------------------------------------------------


def freeze(params, check_mode):
    """The schedule_freeze module."""
    if params["state"] == "frozen":
        return _freeze(params, check_mode)
    return _thaw(params, check_mode)


def _freeze(params, check_mode):
    pattern = compile_marker(params.get("marker"))
    record = load_record(params["record"])
    resumed = record is not None
    if record is None:
        freeze_id = params.get("run_id") or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        if not _FREEZE_ID.match(freeze_id):
            raise OpsError("run_id %r cannot name a freeze: letters, digits and . _ : - only" % freeze_id)
        record = {"version": RECORD_VERSION, "run_id": freeze_id, "marker": params["marker"],
                  "frozen_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cron": [], "timers": []}
    freeze_id = record["run_id"]  # a record left by an earlier run keeps its id: thaw looks for that prefix

    # The plan: the new text of each cron file, new record entries, the timers to stop or disable.
    plans, new_cron = [], []
    for path in cron_files(params):
        before = read_text(path)
        after, lines = freeze_text(before, pattern, freeze_id)
        if not lines:
            continue
        plans.append((path, before, after, lines))
        # Entries an interrupted run recorded but did not freeze yet are in the record already.
        recorded = collections.Counter(entry["line"] for entry in record["cron"] if entry["file"] == path)
        present = collections.Counter(line for line, _end in split_lines(before))
        pending = {line: recorded[line] - present[prefix(freeze_id) + line] for line in recorded}
        for line in lines:
            if pending.get(line, 0) > 0:
                pending[line] -= 1
            else:
                new_cron.append({"file": path, "line": line, "frozen": prefix(freeze_id) + line})

    timers = matching_timers(params, pattern) if manage_timers(params) else []
    known = {timer["unit"] for timer in record["timers"]}
    # A timer already off (by the operator, or by this freeze earlier) is neither touched nor restored later.
    act_timers = [timer for timer in timers if timer["enabled"] or timer["active"]]

    changed = bool(plans or act_timers)
    record["cron"] += new_cron
    record["timers"] += [timer for timer in act_timers if timer["unit"] not in known]
    if not check_mode and (changed or record.get("complete") is False):
        record["complete"] = False
        save_record(params["record"], record)  # first: an interrupted run must still know what it touched
        for path, _before, after, _lines in plans:
            write_like(path, after)
        for timer in act_timers:
            if timer["active"]:
                systemctl(params, "stop", timer["unit"], action="stopping %s" % timer["unit"])
            if timer["enabled"]:
                systemctl(params, "disable", timer["unit"], action="disabling %s" % timer["unit"])
        record["complete"] = True
        save_record(params["record"], record)

    disabled_cron = [{"file": path, "line": line} for path, _before, _after, lines in plans for line in lines]
    result = {
        "changed": changed, "state": "frozen", "run_id": freeze_id, "record": params["record"],
        "disabled": {"cron": disabled_cron, "timers": [timer["unit"] for timer in act_timers]},
        "frozen": {"cron": [{"file": entry["file"], "line": entry["line"]} for entry in record["cron"]],
                   "timers": [timer["unit"] for timer in record["timers"]]},
    }
    if changed:
        result["diff"] = _diffs(plans, [(timer["unit"], (timer["enabled"], timer["active"]), (False, False))
                                        for timer in act_timers])
    result["msg"] = "%s %d cron job(s) and %d timer(s) matching %r%s; record %s" % (
        "would freeze" if check_mode else "froze", len(disabled_cron), len(act_timers), params["marker"],
        " (adding to freeze %s, recorded earlier)" % freeze_id if resumed else "", params["record"])
    return result


def _thaw(params, check_mode):
    record = load_record(params["record"])
    if record is None:
        return {"changed": False, "state": "thawed", "run_id": None, "record": params["record"],
                "restored": {"cron": [], "timers": []}, "missing": [],
                "msg": "nothing to thaw: no freeze record at %s" % params["record"]}

    by_file = collections.OrderedDict()
    for entry in record["cron"]:
        by_file.setdefault(entry["file"], []).append(entry)
    plans, restored_cron, missing = [], [], []
    for path, entries in by_file.items():
        if not os.path.isfile(path):
            missing += [{"file": path, "line": entry["line"], "why": "file gone"} for entry in entries]
            continue
        before = read_text(path)
        after, restored, left = thaw_text(before, entries)
        if restored:
            plans.append((path, before, after, restored))
            restored_cron += [{"file": path, "line": line} for line in restored]
        running = collections.Counter(line for line, _end in split_lines(after))
        for entry in left:
            # Restored by an interrupted thaw, or never frozen by an interrupted freeze: already running.
            if not _take(running, entry["line"]):
                missing.append({"file": path, "line": entry["line"], "why": "line gone"})

    act_timers = []
    states = timer_states(params, [timer["unit"] for timer in record["timers"]]) if record["timers"] else {}
    for timer in record["timers"]:
        state = states.get(timer["unit"], {})
        if state.get("LoadState", "not-found") == "not-found":
            missing.append({"timer": timer["unit"], "why": "unit gone"})
            continue
        enable = timer["enabled"] and not is_enabled(state)
        start = timer["active"] and not is_active(state)
        if enable or start:
            act_timers.append((timer["unit"], enable, start, (is_enabled(state), is_active(state)),
                               (timer["enabled"], timer["active"])))

    if not check_mode:
        for path, _before, after, _lines in plans:
            write_like(path, after)
        for unit, enable, start, _was, _now in act_timers:
            if enable:
                systemctl(params, "enable", unit, action="enabling %s" % unit)
            if start:
                systemctl(params, "start", unit, action="starting %s" % unit)
        try:
            os.unlink(params["record"])  # last: an interrupted thaw is finished by the next one
        except OSError as error:
            raise OpsError("restored the jobs but cannot remove the freeze record %s: %s"
                           % (params["record"], error.strerror or error))

    result = {
        "changed": True,  # the record goes, even when every job was running already
        "state": "thawed", "run_id": record["run_id"], "record": params["record"],
        "restored": {"cron": restored_cron, "timers": [unit for unit, *_rest in act_timers]},
        "missing": missing,
        "diff": _diffs(plans, [(unit, was, now) for unit, _enable, _start, was, now in act_timers]),
    }
    result["msg"] = "%s %d cron job(s) and %d timer(s) frozen by %s%s" % (
        "would restore" if check_mode else "restored", len(restored_cron), len(act_timers), record["run_id"],
        "; not found, left as they are: %s" % "; ".join(_missing_text(item) for item in missing) if missing else "")
    return result


def _missing_text(item):
    if "timer" in item:
        return "%s (%s)" % (item["timer"], item["why"])
    return "%r in %s (%s)" % (item["line"], item["file"], item["why"])


def _diffs(plans, timers):
    """One diff per cron file, one for the timers: the form Ansible's --diff shows as a list."""
    diffs = [{"before": before, "after": after, "before_header": path, "after_header": path}
             for path, before, after, _lines in plans]
    if timers:
        diffs.append({"before": "".join(describe_timer(unit, *was) for unit, was, _now in timers),
                      "after": "".join(describe_timer(unit, *now) for unit, _was, now in timers),
                      "before_header": "systemd timers", "after_header": "systemd timers"})
    return diffs
