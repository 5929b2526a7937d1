"""The demo (`make demo`): a local Treazrisland deployment upgraded under live traffic, then rescued by a rollback.

1. builds the sandbox: three app hosts (network namespaces with their own sshd), HAProxy in front of them,
   PostgreSQL, a local S3 server (rclone serve s3) with an asset bucket and a backup bucket, the stand-in
   app's releases, and deploys 1.4.0;
2. upgrades 1.4.0 -> 1.5.0 with playbooks/upgrade.yml, rolling, host by host drained in HAProxy, with HAProxy
   refusing writes (503 + Retry-After) from the snapshot to the end of the migrations, and a webhook told
   when it starts and ends;
3. 1.5.0 -> 1.5.3 as a canary (the first host at 10%, then 50%, then all of its weight, gated at each step);
4. attempts 1.5.5 as a canary, each of whose reads takes 400 ms more: at its first step the release gate finds
   its p95 worse than the baseline host's by more than the margin, and everything is rolled back;
5. 1.5.3 -> 1.5.4 blue/green (the new release beside the old one on a second port, one switch in HAProxy);
6. prints, for each case, the requests sent through HAProxy meanwhile (a steady mix of reads and writes, at
   least 5,000), the failed ones, those the maintenance window refused on purpose, the p95 latency per phase
   and the wall time; then stops every server.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandbox.load import Load, PhasedLoad  # noqa: E402
from sandbox.receiver import Receiver  # noqa: E402
from sandbox.site import COLOR_PORTS, Site, run_playbook  # noqa: E402
from sandbox.standin.releases import build  # noqa: E402

PLAYBOOK = os.path.join(REPO, "playbooks", "upgrade.yml")
MIN_REQUESTS = 5000  # per case: the load goes on after a short run until this many were sent
RATE = 60  # requests per second, what the sandbox's 2 cores carry beside an upgrade


def say(text):
    print("\n=== demo: %s" % text, flush=True)


def run_phases(site, after):
    """The phase names of the run started after the runs in `after`, then "after the run" once it is over."""
    known = {record["id"] for record in site.runs()}

    def names():
        fresh = [record for record in site.runs() if record["id"] not in known]
        found = [phase["name"] for phase in fresh[-1].get("phases", [])] if fresh else []
        color = site.lb.color() if hasattr(site.lb, "color") else None
        if color:
            found.append("traffic on %s" % color)
        return found + (["after the run"] if after.is_set() else [])
    return names


# The canary's p95 against the baseline's (app2, on the old release), probed by the gate itself.
CANARY_VS_BASELINE = {
    "name": "canary p95 vs baseline", "kind": "compare", "measure": "p95_ms", "requests": 5, "margin": 150,
    "canary_url": "http://{{ hostvars[inventory_hostname].ansible_host }}:4000/version",
    "baseline_url": "http://{{ hostvars['app2'].ansible_host }}:4000/version"}


def under_load(site, figures, title, version, **variables):
    """Run upgrade.yml under load through HAProxy; note the case's figures; return the run."""
    after = threading.Event()
    load = Load(site.lb.url, workers=4, requests=10 * MIN_REQUESTS, rate=RATE, prefix=title.split()[0])
    started = time.monotonic()
    with PhasedLoad(load, run_phases(site, after)) as phased:
        variables = dict(site.release_vars(version), treazrisland_lb_kind="haproxy", **variables)
        run = run_playbook(PLAYBOOK, site.inventory(), variables)
        wall = time.monotonic() - started
        after.set()
        while load.report()["sent"] < MIN_REQUESTS:
            time.sleep(0.2)
    figures.append({"case": title, "result": "ok" if run.returncode == 0 else "failed (expected)",
                    "wall_s": round(wall), "report": phased.report, "phases": phased.table()})
    return run


def print_figures(figures):
    say("live traffic through HAProxy during each case (%d requests/s, reads and writes)" % RATE)
    columns = ("case", "upgrade", "wall s", "sent", "failed", "refused", "p95 ms", "writes")
    print("  %-34s %-18s %7s %7s %6s %8s %8s %7s" % columns)
    for case in figures:
        report = case["report"]
        print("  %-34s %-18s %7d %7d %6d %8d %8s %7d" % (
            case["case"], case["result"], case["wall_s"], report["sent"], report["failed"],
            report["refused_by_maintenance"], report["p95_ms"], report["writes_accepted"]))
    for case in figures:
        print("\n  %s, per phase:" % case["case"])
        print("\n".join(case["phases"]))
    print("\n  refused: 503 with Retry-After from the maintenance window, on purpose; failed: any other error.")


def main():
    started = time.monotonic()
    output = os.path.join(REPO, "demo-output")
    shutil.rmtree(output, ignore_errors=True)
    os.makedirs(output)
    site = Site(output)
    figures = []
    try:
        say("building the sandbox: 3 app hosts behind HAProxy, PostgreSQL, an S3 server, the releases")
        site.start()
        artifacts = os.path.join(output, "artifacts")
        # Releases with 1.5.0's content under later versions (no new migration), and a slow one.
        for version in ("1.5.3", "1.5.4"):
            site.artifacts[version] = build(version, artifacts, version_of="1.5.0")
        site.artifacts["1.5.5"] = build("1.5.5", artifacts, version_of="1.5.0",
                                        overrides={"backend/DRILL.json": b'{"delay_ms": 400}\n'})
        first = run_playbook(site.first_deploy_playbook(), site.inventory(), site.release_vars("1.4.0"))
        if first.returncode:
            sys.exit("demo: the first deployment of 1.4.0 failed")
        site.lb.wait_until_up()
        say("1.4.0 serves on %s" % site.served())

        with Receiver() as webhook:
            say("rolling upgrade 1.4.0 -> 1.5.0 under load; HAProxy refuses writes during the data window")
            run = under_load(site, figures, "rolling 1.4.0 -> 1.5.0", "1.5.0", treazrisland_maintenance_kind="haproxy",
                             treazrisland_notify_url=webhook.url + "/hooks/demo")
            if run.returncode:
                sys.exit("demo: the upgrade to 1.5.0 failed")
            say("1.5.0 serves on %s; the asset bucket holds %d files; the webhook heard: %s" % (
                site.served(), len(site.assets()), ", ".join(r["json"]["event"] for r in webhook.requests)))

        say("canary 1.5.0 -> 1.5.3: the first host at 10%, 50%, then 100% of its weight, gated at each step")
        if under_load(site, figures, "canary 1.5.0 -> 1.5.3", "1.5.3", treazrisland_traffic_strategy="canary",
                      treazrisland_canary_pause=5).returncode:
            sys.exit("demo: the canary upgrade to 1.5.3 failed")

        say("canary 1.5.3 -> 1.5.5, slow on purpose: expect its release gate to fail against the baseline, "
            "then a rollback")
        attempt = under_load(site, figures, "failed canary 1.5.3 -> 1.5.5", "1.5.5",
                             treazrisland_traffic_strategy="canary", treazrisland_canary_checks=[CANARY_VS_BASELINE],
                             treazrisland_canary_bake_time=4, treazrisland_canary_interval=2,
                             treazrisland_canary_failure_limit=2)
        versions = site.served()
        if attempt.returncode == 0 or set(versions.values()) != {"1.5.3"}:
            sys.exit("demo: 1.5.5 should have failed and been rolled back to 1.5.3; hosts serve %s" % versions)
        say("the upgrade to 1.5.5 failed at its release gate as expected (its verdict is above) and was rolled "
            "back: %s" % versions)

        # Last: from here on the traffic goes to a color's backend, which the next blue/green switches again.
        say("blue/green 1.5.3 -> 1.5.4: the new release beside the old one, one switch in HAProxy")
        if under_load(site, figures, "blue/green 1.5.3 -> 1.5.4", "1.5.4", treazrisland_traffic_strategy="blue_green",
                      treazrisland_bake_time=5).returncode:
            sys.exit("demo: the blue/green upgrade to 1.5.4 failed")
        say("1.5.4 serves on the green port of every host: %s" % site.served(port=COLOR_PORTS["green"]))

        print_figures(figures)
        backups = site.variables["treazrisland_backup_dir"]
        say("done in %d s. Deployment log: %s\n    Backups and restore points: %s\n    %s\n    Run records:\n    %s" % (
            time.monotonic() - started, site.variables["treazrisland_deployment_log"], backups,
            "\n    ".join(sorted(os.listdir(os.path.join(backups, "restore-points")))),
            "\n    ".join("%s  %s -> %s  %s" % (run["id"], run.get("from_version"), run.get("to_version"),
                                                run["status"]) for run in site.runs())))
    finally:
        site.stop()


if __name__ == "__main__":
    main()
