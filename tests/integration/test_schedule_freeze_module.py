"""treazrisland.ops.schedule_freeze: freezing and thawing cron jobs and systemd timers.

The cron part runs against real crontab files in a temporary directory (/etc/crontab, /etc/cron.d and a
user spool laid out as Debian's). Debian's cron package is not installed here, so the real ``crontab``
binary is not used: the user crontabs are files in the spool directory, which is what it writes.
systemd is not running on these machines: the timer part runs against a stand-in ``systemctl`` (a script
written by the test) that keeps each unit's state in a JSON file of a temporary directory and logs its calls.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap

import pytest

from helpers import run_tasks
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.schedule_freeze import freeze

STANDIN_SYSTEMCTL = textwrap.dedent('''\
    #!%(python)s
    """Stand-in systemctl: unit states in %(units)s/<unit>.json, every call appended to calls.log."""
    import json, os, sys
    UNITS = %(units)r
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    with open(os.path.join(UNITS, "calls.log"), "a") as log:
        log.write(" ".join(args) + "\\n")
    def load(name):
        try:
            with open(os.path.join(UNITS, name + ".json")) as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None
    def save(name, unit):
        with open(os.path.join(UNITS, name + ".json"), "w") as handle:
            json.dump(unit, handle)
    names = sorted(name[:-5] for name in os.listdir(UNITS) if name.endswith(".timer.json"))
    verb = args[0]
    if verb == "list-unit-files":
        for name in names:
            print("%%s %%s enabled" %% (name, load(name)["file_state"]))
    elif verb == "list-units":
        for name in names:
            unit = load(name)
            if unit["active"]:
                print("%%s loaded active waiting %%s" %% (name, unit["description"]))
    elif verb == "show":
        wanted = [arg for arg in args[1:] if arg != "-p" and arg[0].islower()]
        blocks = []
        for name in wanted:
            unit = load(name)
            if unit is None:
                blocks.append("Id=%%s\\nLoadState=not-found\\nActiveState=inactive\\nUnitFileState=" %% name)
            else:
                blocks.append("Id=%%s\\nDescription=%%s\\nUnit=%%s\\nLoadState=loaded\\nActiveState=%%s\\n"
                              "UnitFileState=%%s" %% (name, unit["description"], unit["unit"],
                                                     "active" if unit["active"] else "inactive", unit["file_state"]))
        print("\\n\\n".join(blocks))
    elif verb in ("start", "stop", "enable", "disable"):
        unit = load(args[1])
        if unit is None:
            sys.exit("Unit %%s not found." %% args[1])
        if verb in ("start", "stop"):
            unit["active"] = verb == "start"
        else:
            unit["file_state"] = "enabled" if verb == "enable" else "disabled"
        save(args[1], unit)
    else:
        sys.exit("stand-in systemctl: unknown verb %%s" %% verb)
    ''')

SYNC = "*/5 * * * * app /opt/treazrisland/bin/sync"
REPORT = "0 2 * * * app /opt/treazrisland/bin/report"
CLEAN = "30 4 * * * root /usr/local/bin/treazrisland-clean --days 7"
HOURLY = "17 * * * * root cd / && run-parts --report /etc/cron.hourly"
MINE = "0 6 * * * /opt/treazrisland/bin/digest"
ETC_CRONTAB = "SHELL=/bin/sh\nTREAZRISLAND_HOME=/opt/treazrisland\n%s\n%s\n" % (HOURLY, CLEAN)
CRON_D = "# the operator's own pause:\n# %s\n%s\n" % (REPORT, SYNC)


class Host:
    """A host's scheduling in a temporary directory: cron files, a user spool, a stand-in systemctl."""

    def __init__(self, root):
        self.root = root
        for directory in ("etc/cron.d", "spool", "units", "state"):
            os.makedirs(os.path.join(root, directory))
        self.crontab = self.write("etc/crontab", ETC_CRONTAB, 0o644)
        self.cron_file = self.write("etc/cron.d/treazrisland", CRON_D, 0o644)
        self.write("etc/cron.d/.hidden", "* * * * * root treazrisland-never\n", 0o644)
        self.user_file = self.write("spool/app", "MAILTO=ops\n%s\n" % MINE, 0o600)
        os.chown(self.user_file, 1000, 1000)  # owned by the user, as crontab -u leaves it
        self.units = os.path.join(root, "units")
        self.systemctl = self.write("systemctl", STANDIN_SYSTEMCTL % {"python": sys.executable, "units": self.units},
                                    0o755)
        self.unit("treazrisland-cleanup.timer", "Clean old uploads", enabled=True, active=True)
        self.unit("rom-scan.timer", "Rescan ROMs", enabled=True, active=False, unit="treazrisland-scan.service")
        self.unit("treazrisland-stats.timer", "Stats, paused by the operator", enabled=False, active=False)
        self.unit("logrotate.timer", "Rotate logs", enabled=True, active=True)
        self.record = os.path.join(root, "state", "freeze.json")

    def write(self, relative, text, mode):
        path = os.path.join(self.root, relative)
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, mode)
        return path

    def unit(self, name, description, enabled, active, unit=None):
        with open(os.path.join(self.units, name + ".json"), "w") as handle:
            json.dump({"description": description, "unit": unit or name.replace(".timer", ".service"),
                       "file_state": "enabled" if enabled else "disabled", "active": active}, handle)

    def timers(self):
        states = {}
        for name in os.listdir(self.units):
            if name.endswith(".json"):
                with open(os.path.join(self.units, name)) as handle:
                    unit = json.load(handle)
                states[name[:-5]] = (unit["file_state"], unit["active"])
        return states

    def calls(self):
        try:
            with open(os.path.join(self.units, "calls.log")) as handle:
                return [line.strip() for line in handle if line.split()[0] in ("start", "stop", "enable", "disable")]
        except FileNotFoundError:
            return []

    def files(self):
        result = {}
        for path in (self.crontab, self.cron_file, self.user_file):
            with open(path) as handle:
                info = os.stat(path)
                result[path] = (handle.read(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
        return result

    def params(self, state, **extra):
        params = dict(state=state, marker="treazrisland", run_id=None, record=self.record, crontab=self.crontab,
                      cron_d=os.path.join(self.root, "etc/cron.d"), crontab_spool=os.path.join(self.root, "spool"),
                      timers=True, systemctl=self.systemctl, command_timeout=30)
        params.update(extra)
        return params

    def module_args(self, state, **extra):
        return {key: value for key, value in self.params(state, **extra).items() if value is not None}


@pytest.fixture
def host(tmp_path):
    return Host(str(tmp_path))


def frozen(line, run_id="r1"):
    return "#treazrisland-frozen %s# %s" % (run_id, line)


def test_freeze_then_thaw_changes_exactly_the_matching_jobs_and_timers_and_is_idempotent(host):
    original_files, original_timers = host.files(), host.timers()

    result = freeze(host.params("frozen", run_id="r1"), True)
    assert result["changed"] and result["disabled"]["timers"] == ["rom-scan.timer", "treazrisland-cleanup.timer"]
    assert (host.files(), host.timers(), host.calls()) == (original_files, original_timers, [])
    assert not os.path.exists(host.record)  # check mode writes nothing, not even the record

    result = freeze(host.params("frozen", run_id="r1"), False)
    assert result["changed"]
    assert sorted((entry["file"], entry["line"]) for entry in result["disabled"]["cron"]) == sorted([
        (host.crontab, CLEAN), (host.cron_file, SYNC), (host.user_file, MINE)])
    files = host.files()
    assert files[host.crontab] == (ETC_CRONTAB.replace(CLEAN, frozen(CLEAN)), 0o644, 0, 0)
    assert files[host.cron_file][0] == CRON_D.replace(SYNC, frozen(SYNC))
    assert files[host.user_file] == ("MAILTO=ops\n%s\n" % frozen(MINE), 0o600, 1000, 1000)  # mode, owner kept
    assert host.timers() == dict(original_timers, **{"treazrisland-cleanup.timer": ("disabled", False),
                                                     "rom-scan.timer": ("disabled", False)})
    assert host.calls() == ["disable rom-scan.timer", "stop treazrisland-cleanup.timer",
                            "disable treazrisland-cleanup.timer"]
    with open(host.record) as handle:
        record = json.load(handle)
    assert stat.S_IMODE(os.stat(host.record).st_mode) == 0o600 and record["run_id"] == "r1" and record["complete"]
    assert record["timers"] == [{"unit": "rom-scan.timer", "enabled": True, "active": False},
                                {"unit": "treazrisland-cleanup.timer", "enabled": True, "active": True}]
    assert {"file": host.cron_file, "line": SYNC, "frozen": frozen(SYNC)} in record["cron"]

    again = freeze(host.params("frozen", run_id="r2"), False)
    assert not again["changed"] and again["run_id"] == "r1" and again["disabled"] == {"cron": [], "timers": []}
    assert host.files() == files and os.path.exists(host.record) and len(host.calls()) == 3

    result = freeze(host.params("thawed", marker=None), True)
    assert result["changed"] and len(result["restored"]["cron"]) == 3 and host.files() == files
    result = freeze(host.params("thawed", marker=None), False)
    assert result["changed"] and result["missing"] == []
    assert result["restored"]["timers"] == ["rom-scan.timer", "treazrisland-cleanup.timer"]
    assert (host.files(), host.timers()) == (original_files, original_timers)
    assert not os.path.exists(host.record)
    assert not freeze(host.params("thawed", marker=None), False)["changed"]


def test_the_module_in_a_play_check_mode_diff_frozen_thawed(host):
    """The module end to end in one play; --diff shows the cron lines and the timers before and after."""
    original_files = host.files()
    args = host.module_args("frozen", run_id="r1")
    thaw = host.module_args("thawed", marker=None)
    tasks = [{"treazrisland.ops.schedule_freeze": args, "check_mode": True, "diff": True},
             {"treazrisland.ops.schedule_freeze": args, "diff": True},
             {"treazrisland.ops.schedule_freeze": thaw, "diff": True}]
    run = run_tasks(tasks)
    assert run.returncode == 0, run.output
    check, first, thawed = [record["result"] for record in run.results]
    assert check["changed"] and first["changed"], run.output
    assert check["disabled"] == first["disabled"] and len(first["disabled"]["cron"]) == 3
    assert "-%s\n+%s\n" % (SYNC, frozen(SYNC)) in run.output
    assert "-%s\n+%s\n" % (frozen(SYNC), SYNC) in run.output
    assert "-treazrisland-cleanup.timer: enabled, active\n" in run.output
    assert "+treazrisland-cleanup.timer: disabled, inactive\n" in run.output
    assert thawed["changed"] and len(thawed["restored"]["cron"]) == 3
    assert host.files() == original_files and not os.path.exists(host.record)


def test_what_the_operator_disabled_before_the_freeze_stays_disabled(host):
    """An operator's commented line and stopped timer are left alone by the freeze and by the thaw."""
    freeze(host.params("frozen", run_id="r1"), False)
    calls = host.calls()
    assert not any("treazrisland-stats" in call or "logrotate" in call for call in calls), calls
    assert frozen(REPORT) not in host.files()[host.cron_file][0]
    # Meanwhile the operator comments out another job by hand; the thaw must not bring it back either.
    host.write("etc/cron.d/manual", "# 0 1 * * * root treazrisland-manual\n", 0o644)
    result = freeze(host.params("thawed"), False)
    assert "0 1 * * * root treazrisland-manual" not in str(result["restored"])
    assert host.files()[host.cron_file][0] == CRON_D
    assert host.timers()["treazrisland-stats.timer"] == ("disabled", False)
    assert host.calls()[len(calls):] == ["enable rom-scan.timer", "enable treazrisland-cleanup.timer",
                                         "start treazrisland-cleanup.timer"]


def test_an_interrupted_freeze_is_finished_by_freezing_again_or_undone_by_thawing(host):
    """A run killed after writing its record: part of the jobs frozen, the rest not, timers untouched."""
    original_files, original_timers = host.files(), host.timers()
    result = freeze(host.params("frozen", run_id="r1"), True)  # the plan, as the killed run had recorded it
    record = {"version": 1, "run_id": "r1", "marker": "treazrisland", "complete": False,
              "cron": [{"file": e["file"], "line": e["line"], "frozen": frozen(e["line"])}
                       for e in result["disabled"]["cron"]],
              "timers": [{"unit": "treazrisland-cleanup.timer", "enabled": True, "active": True}]}
    with open(host.record, "w") as handle:
        json.dump(record, handle)
    host.write("etc/cron.d/treazrisland", CRON_D.replace(SYNC, frozen(SYNC)), 0o644)  # only this file got written

    result = freeze(host.params("thawed"), False)
    assert result["restored"]["cron"] == [{"file": host.cron_file, "line": SYNC}] and result["missing"] == []
    assert (host.files(), host.timers()) == (original_files, original_timers)
    assert not os.path.exists(host.record)

    with open(host.record, "w") as handle:
        json.dump(record, handle)
    host.write("etc/cron.d/treazrisland", CRON_D.replace(SYNC, frozen(SYNC)), 0o644)
    result = freeze(host.params("frozen", run_id="r9"), False)
    assert result["changed"] and result["run_id"] == "r1"
    with open(host.record) as handle:
        finished = json.load(handle)
    assert finished["complete"] and len(finished["cron"]) == 3, finished  # no entry recorded twice
    assert finished["timers"][0] == {"unit": "treazrisland-cleanup.timer", "enabled": True, "active": True}
    assert frozen(MINE) in host.files()[host.user_file][0]
    freeze(host.params("thawed"), False)
    assert (host.files(), host.timers()) == (original_files, original_timers)


def test_lines_gone_meanwhile_are_reported_and_a_damaged_record_stops_the_thaw(host):
    freeze(host.params("frozen", run_id="r1", timers=False), False)
    assert host.calls() == []
    os.unlink(host.user_file)
    result = freeze(host.params("thawed"), False)
    assert result["missing"] == [{"file": host.user_file, "line": MINE, "why": "file gone"}]
    assert "'%s' in %s (file gone)" % (MINE, host.user_file) in result["msg"]

    host.write("state/freeze.json", "{not json", 0o600)
    with pytest.raises(OpsError, match="freeze record .* cannot be read"):
        freeze(host.params("thawed"), False)


def test_bytes_that_are_not_utf8_come_back_unchanged(host):
    os.unlink(host.user_file)
    latin1 = b"# r\xe9sum\xe9 des t\xe2ches\n0 3 * * * root treazrisland-backup --label caf\xe9\n"
    path = os.path.join(host.root, "etc/cron.d/latin1")
    with open(path, "wb") as handle:
        handle.write(latin1)
    freeze(host.params("frozen", run_id="r1", timers=False), False)
    with open(path, "rb") as handle:
        assert handle.read() == latin1.replace(b"0 3 *", b"#treazrisland-frozen r1# 0 3 *")
    freeze(host.params("thawed"), False)
    with open(path, "rb") as handle:
        assert handle.read() == latin1
