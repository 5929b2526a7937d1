"""The upgrade's traffic strategies under live load through HAProxy: a canary that passes, one that fails, blue/green.

Each case runs upgrade.yml on the three sandbox hosts behind HAProxy (sandbox/site.py) while sandbox/load.py
sends reads and writes through it, and prints the requests, failures and p95 latency of each phase the run
record notes (migrate, each deploy batch, the rollback).
"""

from __future__ import annotations

import os
import re
import time

import pytest

from helpers import REPO, deployed_site, run_playbook
from sandbox.load import Load, PhasedLoad
from sandbox.standin.releases import build

PLAYBOOKS = os.path.join(REPO, "playbooks")
ALL = ["app1", "app2", "app3"]
STEP_TASK = "Enable the server in HAProxy at the step's weight"
DRAIN_TASK = "Drain the server in HAProxy and wait for its sessions to end"
SWITCH_TASK = "Send the traffic to the color's backend in HAProxy, in one runtime API call"


@pytest.fixture(scope="module")
def site(ssh_hosts, tmp_path_factory):
    """Release 1.4.0 serving on three hosts behind HAProxy, over a database at its schema (sandbox/site.py)."""
    with deployed_site(ssh_hosts, str(tmp_path_factory.mktemp("site")), "/opt/trz-traffic") as deployment:
        yield deployment


def weights(site):
    """{server: (current weight, configured weight)} of the app backend, as HAProxy reports them."""
    lines = [line.split() for line in site.lb.command("show servers state %s" % site.lb.backend).splitlines()[1:]
             if line.strip()]
    rows = [dict(zip(lines[0][1:], line)) for line in lines[1:]]
    return {row["srv_name"]: (int(row["srv_uweight"]), int(row["srv_iweight"])) for row in rows}


def run_phases(site):
    """The phases of the run started from now on, as its run record notes them; a blue/green switch is a phase
    of its own (the traffic on the new color, the old one warm: the bake)."""
    known = {record["id"] for record in site.runs()}
    colors = [site.lb.color()]

    def names():
        fresh = [record for record in site.runs() if record["id"] not in known]
        found = [phase["name"] for phase in (fresh[-1].get("phases", []) if fresh else [])]
        now = site.lb.color()
        if now != colors[-1]:
            colors.append(now)
        return found + ["traffic on %s" % color for color in colors[1:]]
    return names


class PhasedRun(PhasedLoad):
    """sandbox.load.PhasedLoad over the run's phases, printed at the end (pytest -s shows them)."""

    def __init__(self, site, load):
        super().__init__(load, run_phases(site))

    def __exit__(self, *exc):
        super().__exit__(*exc)
        print("load through HAProxy:", self.report)
        print("\n".join(self.table()))


def written(site, load):
    return {row[0] for row in site.cluster.query("SELECT email FROM \"User\" WHERE email LIKE %s", "treazrisland",
                                                 (load.email_pattern,))}


def upgrade(site, version, **variables):
    """upgrade.yml with a canary behind HAProxy; no asset upload (test_upgrade.py covers it), to keep the run short."""
    return run_playbook(os.path.join(PLAYBOOKS, "upgrade.yml"), inventory=site.inventory(), extra_vars=dict(
        site.release_vars(version), treazrisland_lb_kind="haproxy", treazrisland_traffic_strategy="canary",
        treazrisland_assets_uri="", **variables))


def test_canary_takes_its_steps_under_load_then_the_fleet_follows(site):
    started = time.monotonic()
    site.lb.wait_until_up()
    assert weights(site) == dict.fromkeys(ALL, (100, 100))
    # 60 requests/s, as the rolling upgrade test: what the sandbox's 2 cores carry beside the upgrade.
    load = Load(site.lb.url, workers=4, requests=40000, rate=60, prefix="canary")
    with PhasedRun(site, load) as phased:
        # Each step runs 3 s under traffic before its gate, so the canary serves at 10% and 50% of its weight.
        run = upgrade(site, "1.5.0", treazrisland_canary_steps=[10, 50, 100], treazrisland_canary_pause=3)
    assert run.returncode == 0, run.output
    report = phased.report
    assert not report["budget_spent"], report  # the load lasted the whole upgrade
    assert report["failed"] == 0 and report["sent"] >= 3000, (report, phased.phases)
    assert load.accepted and load.accepted <= written(site, load)  # every write accepted has its row

    # The canary, app1, came back from its drain at 10%, then 50%, then its full weight, gated at each step;
    # the others were drained and enabled at full weight, batch after batch.
    steps = [(r["host"], r["result"]["weight"]) for r in run.results if r["task"] == STEP_TASK]
    assert steps == [("app1", 10), ("app1", 50), ("app1", 100)], steps
    drained = [r["host"] for r in run.results if r["task"] == DRAIN_TASK]
    assert drained == ALL, drained
    batches = [phase["name"] for phase in site.runs()[-1]["phases"] if phase["name"].startswith("deploy ")]
    assert batches[0] == "deploy app1", batches
    assert site.served() == dict.fromkeys(ALL, "1.5.0")
    assert weights(site) == dict.fromkeys(ALL, (100, 100))
    assert set(site.lb.wait_until_up().values()) == {"UP"}
    print("wall time: %.0f s" % (time.monotonic() - started))


GATE_TASK = "Gate the step on the canary's metrics (release gate)"
# The canary's p95 against the baseline's (app2, still on the old release), each probed by the gate itself;
# templated for the canary host, as a play would for every canary.
CANARY_VS_BASELINE = {
    "name": "canary p95 vs baseline", "kind": "compare", "measure": "p95_ms", "requests": 5, "margin": 150,
    "canary_url": "http://{{ hostvars[inventory_hostname].ansible_host }}:4000/version",
    "baseline_url": "http://{{ hostvars['app2'].ansible_host }}:4000/version"}


def test_a_canary_slower_than_its_baseline_fails_its_release_gate_and_rolls_back_under_load(site):
    """1.5.2 is 1.5.0 (same migrations) whose reads each take 400 ms more (backend/DRILL.json): its /health is
    fine, so it passes the health gate and takes its first step, 10 % of its weight; the release gate then finds
    its p95 worse than the baseline's by more than the margin, and the automatic rollback puts it back. Its users
    saw slow answers for the bake, no failure; the database did not move."""
    started = time.monotonic()
    site.artifacts["1.5.2"] = build("1.5.2", os.path.join(site.work, "artifacts"), version_of="1.5.0",
                                    overrides={"backend/DRILL.json": b'{"delay_ms": 400}\n'})
    # A weight left at a step by an interrupted canary (or by hand) is full again after the rollback.
    site.lb.command("set server %s/app3 weight 10" % site.lb.backend)
    load = Load(site.lb.url, workers=4, requests=40000, rate=60, prefix="failed-canary")
    with PhasedRun(site, load) as phased:
        # The database did not move, so only the switched host needs a restart: the rollback's default restarts
        # every host at once, undrained.
        run = upgrade(site, "1.5.2", treazrisland_canary_steps=[10, 50, 100], rollback_restart_always=False,
                      treazrisland_canary_checks=[CANARY_VS_BASELINE], treazrisland_canary_bake_time=4,
                      treazrisland_canary_interval=2, treazrisland_canary_failure_limit=2)
    assert run.returncode != 0
    assert re.search(r'The upgrade to 1\.5\.2 failed at app1: %s: release gate failed after 2 of 3 samples '
                     r'\([0-9.]+ s\): check "canary p95 vs baseline": canary [0-9.]+ > limit [0-9.]+ '
                     r'\(baseline [0-9.]+ \+ 150\) in 2 of 2 samples' % re.escape(GATE_TASK), run.output), run.output
    assert "Rolled back to 1.5.0" in run.output, run.output
    gate = next(r["result"] for r in run.results if r["task"] == GATE_TASK)
    worst = gate["checks"][0]["worst"]
    assert worst["canary"] >= 400 > worst["baseline"], gate["checks"][0]
    report = phased.report
    assert not report["budget_spent"], report
    assert report["failed"] == 0 and report["sent"] >= 3000, (report, phased.phases)
    assert load.accepted and load.accepted <= written(site, load)  # not restored: every accepted write is kept

    # The canary took its first step only; it was drained by the deploy, then by the rollback before its
    # restart. The other hosts, unchanged over an unmoved database, were neither drained nor restarted.
    steps = [(r["host"], r["result"]["weight"]) for r in run.results if r["task"] == STEP_TASK]
    assert steps == [("app1", 10)], steps
    assert [r["host"] for r in run.results if r["task"] == DRAIN_TASK] == ["app1", "app1"]
    assert site.served() == dict.fromkeys(ALL, "1.5.0")
    assert weights(site) == dict.fromkeys(ALL, (100, 100))
    assert set(site.lb.wait_until_up().values()) == {"UP"}
    print("wall time: %.0f s" % (time.monotonic() - started))


def test_blue_green_switches_every_host_at_once_under_load(site):
    """The new release starts beside the old one on the green port of every host, is gated there, takes all the
    traffic in one HAProxy call, bakes 5 s with blue warm; then blue is stopped and the release is current."""
    started = time.monotonic()
    site.lb.wait_until_up()
    assert site.lb.color() is None  # no entry: the default backend, the blue port, serves
    source = set(site.served().values())
    # Alone (-k blue) the fleet runs 1.4.0; after the canary tests, 1.5.0, and 1.5.3 (1.5.0 again) is the next release.
    target = "1.5.0" if source == {"1.4.0"} else "1.5.3"
    if target not in site.artifacts:
        site.artifacts[target] = build(target, os.path.join(site.work, "artifacts"), version_of="1.5.0")
    load = Load(site.lb.url, workers=4, requests=40000, rate=60, prefix="blue-green")
    with PhasedRun(site, load) as phased:
        run = run_playbook(os.path.join(PLAYBOOKS, "upgrade.yml"), inventory=site.inventory(), extra_vars=dict(
            site.release_vars(target), treazrisland_lb_kind="haproxy", treazrisland_traffic_strategy="blue_green",
            treazrisland_serial="100%", treazrisland_bake_time=5, treazrisland_assets_uri="",
            # The new color starts beside the old one on a machine shared with other runs: room for a slow start.
            deploy_health_retries=30))
    assert run.returncode == 0, run.output
    print("blue/green %s -> %s" % (", ".join(sorted(source)), target))
    report = phased.report
    assert not report["budget_spent"], report
    assert report["failed"] == 0 and report["sent"] >= 2000, (report, phased.phases)
    assert load.accepted and load.accepted <= written(site, load)  # every write accepted has its row
    assert "traffic on green" in [phase["phase"] for phase in phased.phases]

    # One switch, once for the fleet, from the default (blue) to green; no host was drained.
    switches = [(r["host"], r["result"]["previous_value"], r["result"]["value"], r["result"]["changed"])
                for r in run.results if r["task"] == SWITCH_TASK]
    assert len(switches) == 1 and switches[0][1:] == (None, "green", True), switches
    assert not [r for r in run.results if r["task"] == DRAIN_TASK]
    assert site.lb.color() == "green"
    with open(site.lb.color_map) as handle:  # persisted: a reload keeps the traffic on green
        assert handle.read().split() == ["active", "green"]
    assert set(site.lb.server_status("app_green").values()) == {"UP"}
    green, blue = site.variables["treazrisland_blue_green_ports"]["green"], site.variables["treazrisland_blue_green_ports"]["blue"]
    assert site.served(green) == dict.fromkeys(ALL, target)
    assert site.served_where_reachable(blue) == {}  # the old color was stopped after the bake
    assert site.current() == dict.fromkeys(ALL, target)
    print("wall time: %.0f s" % (time.monotonic() - started))


def test_a_new_color_slower_than_allowed_fails_its_bake_and_the_traffic_goes_back_in_one_call_under_load(site):
    """1.5.7 has the running release's migrations, and each read takes 400 ms more (backend/DRILL.json). It
    starts on the idle color, passes the health gate there and takes all the traffic; the release gate of the
    bake finds its p95 over the bound, so the traffic goes back to the old color, still warm, in one call, and
    the rollback stops the new one. Users saw slow answers for the bake, no failure."""
    started = time.monotonic()
    live = site.lb.color() or "blue"  # no entry: the default backend, blue, serves
    new = "green" if live == "blue" else "blue"
    ports = site.variables["treazrisland_blue_green_ports"]
    source = set(site.served(ports[live]).values())
    assert len(source) == 1, source
    (version,) = source
    site.artifacts["1.5.7"] = build("1.5.7", os.path.join(site.work, "artifacts"),
                                    version_of="1.4.0" if version == "1.4.0" else "1.5.0",
                                    overrides={"backend/DRILL.json": b'{"delay_ms": 400}\n'})
    # Each host's gate probes its own new color.
    check = {"name": "new color p95", "kind": "http", "requests": 5, "max_p95_ms": 250,
             "url": "http://{{ hostvars[inventory_hostname].ansible_host }}:%d/version" % ports[new]}
    load = Load(site.lb.url, workers=4, requests=40000, rate=60, prefix="blue-green-back")
    with PhasedRun(site, load) as phased:
        run = run_playbook(os.path.join(PLAYBOOKS, "upgrade.yml"), inventory=site.inventory(), extra_vars=dict(
            site.release_vars("1.5.7"), treazrisland_lb_kind="haproxy", treazrisland_traffic_strategy="blue_green",
            treazrisland_serial="100%", treazrisland_assets_uri="", treazrisland_bake_time=4,
            treazrisland_blue_green_checks=[check], treazrisland_canary_interval=2,
            treazrisland_canary_failure_limit=2, deploy_health_retries=30))
    assert run.returncode != 0
    assert re.search(r"The upgrade to 1\.5\.7 failed at app[123]: .*Bake under the release gate's checks: release gate "
                     r'failed after 2 of 3 samples \([0-9.]+ s\): check "new color p95": p95 [0-9.]+ ms > max 250 ms '
                     r"in 2 of 2 samples; the traffic is on the %s color again \(the previous release\)" % live,
                     run.output), run.output
    assert "Rolled back to %s" % version in run.output, run.output
    report = phased.report
    assert not report["budget_spent"], report
    assert report["failed"] == 0 and report["sent"] >= 2000, (report, phased.phases)
    assert load.accepted and load.accepted <= written(site, load)  # the database did not move: nothing restored
    assert "traffic on %s" % new in [phase["phase"] for phase in phased.phases]

    # To the new color, back at once by the deploy's own rescue, and the rollback found it there.
    switches = [(r["result"]["value"], r["result"]["changed"]) for r in run.results if r["task"] == SWITCH_TASK]
    assert switches == [(new, True), (live, True), (live, False)], switches
    assert site.lb.color() == live
    assert site.served(ports[live]) == dict.fromkeys(ALL, version)
    assert site.served_where_reachable(ports[new]) == {}  # the failed release was stopped
    assert site.current() == dict.fromkeys(ALL, version)
    print("wall time: %.0f s" % (time.monotonic() - started))
