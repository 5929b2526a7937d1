#!/usr/bin/env python3
"""Benchmark: wall time of the upgrade (1.4.0 -> 1.5.0) and of the rollback after it, on 3 and 12 app hosts.

Run by ``make bench``. For each fleet size N the script builds the sandbox deployment of the tests
(sandbox/site.py: N network namespaces with their own sshd, HAProxy in front of them, a PostgreSQL
cluster, an S3 server, release 1.4.0 deployed), then, for each configuration, times
``playbooks/upgrade.yml`` to 1.5.0 and ``playbooks/rollback.yml`` right after it, with the variables the
tests use (Site.variables, Site.inventory(), Site.release_vars()) and ``treazrisland_lb_kind: haproxy``
(each batch drained before its restart, as in the first upgrade test, without a load).

Configurations (``--configs``):

- ``default``: what an operator gets without tuning: ``treazrisland_serial`` unset (one host, then a quarter
  of the fleet per batch: 3 batches for 3 hosts, 5 for 12) and ansible.cfg's forks (25);
- ``one-per-batch``: ``treazrisland_serial: 1``, the default before 2026-12-03 (N batches);
- ``thirds``: ``treazrisland_serial: [1, '34%']`` (3 batches for 3 hosts, 4 for 12: 1, 4, 4, 3).

Per run: the playbook's wall time, its CPU seconds (controller: ansible-playbook and its workers; hosts: their
sshd and what it ran, not the apps; every host shares this machine's cores, so on a busy machine the CPU
figure is the steady one), the run record's segments (<backup_dir>/runs/<id>.json, whole seconds), the commit
and the modified collection files (the playbooks are the working tree's), and the tasks that took longest
(bench/callback/task_timer.py: from a task's start to each host's result; an occurrence lasts until its
slowest host, occurrences of one task in several batches add up). Between runs the hosts forget release 1.5.0
(its directory, artifact copy and sample), so that every upgrade copies and unpacks it as the first one did.
Figures are printed as a table and written as JSON to bench/results/upgrade.json. Nothing is asserted: a
failed playbook stops the bench.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandbox.hosts import BRIDGE, SshHosts, namespaces_permitted  # noqa: E402  (needs REPO on sys.path)
from sandbox.site import Site  # noqa: E402

BENCH = os.path.join(REPO, "bench")
PLAYBOOKS = os.path.join(REPO, "playbooks")
DEFAULT_OUTPUT = os.path.join(BENCH, "results", "upgrade.json")
BASE = "/opt/trz-bench"
FROM_VERSION, TO_VERSION = "1.4.0", "1.5.0"
GOAL_RATIO = 2.0  # the issue: 12 hosts in less than twice the time of 3
CONFIGS = {
    "default": {"serial": None, "forks": None},
    "one-per-batch": {"serial": 1, "forks": None},
    "thirds": {"serial": [1, "34%"], "forks": None},
}
TOP_TASKS = 8

STARTED = time.monotonic()


class BenchError(Exception):
    pass


def log(message):
    print("[%6.1fs] %s" % (time.monotonic() - STARTED, message), file=sys.stderr, flush=True)


def load_average():
    with open("/proc/loadavg") as handle:
        return [float(value) for value in handle.read().split()[:3]]


def busy_cores():
    """Cores busy over one second, from /proc/stat (all processes of the machine, ours included)."""
    def sample():
        with open("/proc/stat") as handle:
            fields = [int(value) for value in handle.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    total1, idle1 = sample()
    time.sleep(1.0)
    total2, idle2 = sample()
    return round((1 - (idle2 - idle1) / max(total2 - total1, 1)) * os.cpu_count(), 2)


def hosts_cpu_seconds(fleet):
    """CPU seconds used so far by the hosts' sshd and everything it ran (sessions, shells, modules): each live
    process of their namespaces with its reaped descendants. The apps are left out: a restarted app is a
    daemon nobody reaps, so its CPU would vanish with it, and the others idle along at a steady rate."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for host in fleet.hosts:
        pids = subprocess.run(["ip", "netns", "pids", host.namespace], capture_output=True, text=True,
                              check=False).stdout.split()
        for pid in pids:
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    if b"backend/app.py" in handle.read():
                        continue
                with open("/proc/%s/stat" % pid) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def controller_cpu_seconds():
    """CPU seconds of this process's reaped children: ansible-playbook and its workers, ssh clients."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def code_version():
    """The commit and the collection files that differ from it: the bench runs the working tree's playbooks."""
    def git(*argv):
        return subprocess.run(["git"] + list(argv), cwd=REPO, capture_output=True, text=True, check=False).stdout
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "modified": git("status", "--porcelain", "--", "playbooks", "roles", "plugins").split("\n")[:-1]}


def batch_sizes(serial, hosts):
    """The deploy play's batches, as Ansible cuts them: each entry of serial in turn (an int, or a percentage
    of the fleet rounded down, at least 1), the last one repeated; unset is upgrade.yml's default."""
    entries = serial if isinstance(serial, list) else [1, "25%"] if serial is None else [serial]
    sizes = []
    while sum(sizes) < hosts:
        entry = entries[min(len(sizes), len(entries) - 1)]
        size = max(int(float(str(entry)[:-1]) / 100.0 * hosts), 1) if str(entry).endswith("%") else int(entry)
        sizes.append(min(size, hosts - sum(sizes)))
    return sizes


# ------------------------------------------------------------------- running


class Runner:
    """Runs the playbooks against one site, timed, with the task timer on."""

    def __init__(self, site, workdir):
        self.site = site
        self.workdir = workdir
        self.counter = 0
        self.cpu = {}  # CPU seconds of the last playbook: controller side and hosts side

    def playbook(self, path, extra_vars, forks=None):
        """Run a playbook (a path, or a name under playbooks/); return (wall seconds, task timings)."""
        self.counter += 1
        name = os.path.basename(path)
        path = os.path.join(PLAYBOOKS, path)  # an absolute path stays as it is
        prefix = os.path.join(self.workdir, "%02d-%s" % (self.counter, name.replace(".yml", "")))
        vars_path, timings, log_path = prefix + "-vars.json", prefix + "-tasks.jsonl", prefix + ".log"
        with open(os.open(vars_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
            json.dump(extra_vars, handle)  # secrets: a 0600 file, never the command line
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
                   ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(BENCH, "callback"), ANSIBLE_CALLBACKS_ENABLED="task_timer",
                   TASK_TIMER_OUTPUT=timings, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        env.pop("ANSIBLE_FORKS", None)
        if forks:
            env["ANSIBLE_FORKS"] = str(forks)
        argv = ["ansible-playbook", "-i", self.site.inventory(), path, "-e", "@" + vars_path]
        hosts_before, controller_before = hosts_cpu_seconds(self.site.hosts), controller_cpu_seconds()
        started = time.perf_counter()
        with open(log_path, "w") as output:
            completed = subprocess.run(argv, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, check=False)
        wall = time.perf_counter() - started
        self.cpu = {"controller": round(controller_cpu_seconds() - controller_before, 1),
                    "hosts": round(hosts_cpu_seconds(self.site.hosts) - hosts_before, 1)}
        os.unlink(vars_path)
        if completed.returncode:
            with open(log_path) as handle:
                raise BenchError("%s failed (exit %d):\n%s" % (name, completed.returncode, handle.read()[-4000:]))
        tasks = []
        if os.path.exists(timings):
            with open(timings) as handle:
                tasks = [json.loads(line) for line in handle]
        return wall, tasks

    def forget_target(self):
        """Every host back to not having 1.5.0 at all, so the next upgrade stages it as the first did."""
        rel = os.path.relpath(BASE, "/opt")
        for host in self.site.hosts.hosts:
            base = os.path.join(host.opt, rel)
            shutil.rmtree(os.path.join(base, "releases", TO_VERSION), ignore_errors=True)
            for path in glob.glob(os.path.join(base, "artifacts", "*%s*" % TO_VERSION)) + glob.glob(
                    os.path.join(base, "config-samples", "%s*" % TO_VERSION)):
                os.unlink(path)


def task_profile(tasks):
    """[(task, seconds, occurrences)], longest first: consecutive results of one task are one occurrence,
    lasting until its slowest host's result; a task's occurrences (one per batch) add up."""
    occurrences = []
    for record in tasks:
        if occurrences and occurrences[-1][0] == record["task"]:
            occurrences[-1][1] = max(occurrences[-1][1], record["seconds"])
        else:
            occurrences.append([record["task"], record["seconds"]])
    totals = {}
    for name, seconds in occurrences:
        total, count = totals.get(name, (0.0, 0))
        totals[name] = (total + seconds, count + 1)
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])
    return [{"task": name, "seconds": round(total, 2), "occurrences": count} for name, (total, count) in ranked]


def _moment(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def record_segments(record):
    """The run cut into consecutive segments at its phase notes: {segment: seconds} (whole seconds, the
    record's resolution), from the record's start (lock taken) to its end (run closed).

    upgrade: preflight (lock to backup), backup, migrate, assets, stage+config (every host staged and its
    .env brought in line, before the first batch), deploy (first batch started to last batch done), close.
    rollback: decide+data (plan, writes stopped, database and assets back), hosts (code, configuration,
    restart and health gate on every host, back into HAProxy), close.
    """
    phases = [p for p in record.get("phases", []) if "finished_at" in p]
    first = {}
    last = {}
    for phase in phases:
        kind = "deploy" if phase["name"].startswith("deploy ") else phase["name"]
        first.setdefault(kind, phase)
        last[kind] = phase
    if record.get("action") == "rollback":
        marks = [("decide+data", last.get("rollback data", {}).get("finished_at")),
                 ("hosts", last.get("rollback", {}).get("finished_at"))]
    else:
        marks = [("preflight", first.get("backup", {}).get("started_at")),
                 ("backup", last.get("backup", {}).get("finished_at")),
                 ("migrate", last.get("migrate", {}).get("finished_at")),
                 ("assets", last.get("assets", {}).get("finished_at")),
                 ("stage+config", first.get("deploy", {}).get("started_at")),
                 ("deploy", last.get("deploy", {}).get("finished_at"))]
    marks.append(("close", record.get("finished_at")))
    segments = {}
    previous = _moment(record["started_at"])
    for name, text in marks:
        if text:
            moment = _moment(text)
            segments[name] = (moment - previous).total_seconds()
            previous = moment
    batches = [{"name": p["name"], "seconds": (_moment(p["finished_at"]) - _moment(p["started_at"])).total_seconds()}
               for p in phases if p["name"].startswith("deploy ")]
    return segments, batches


def run_config(runner, label, config, hosts):
    site = runner.site
    forks = hosts if config["forks"] == "hosts" else config["forks"]
    extra = {"treazrisland_lb_kind": "haproxy"}
    if config["serial"] is not None:
        extra["treazrisland_serial"] = config["serial"]
    known = {record["id"] for record in site.runs()}
    code = code_version()
    runner.forget_target()
    cores_before = busy_cores()
    up_wall, up_tasks = runner.playbook("upgrade.yml", dict(site.release_vars(TO_VERSION), **extra), forks=forks)
    up_cpu = runner.cpu
    served = site.served()
    if set(served.values()) != {TO_VERSION}:
        raise BenchError("after the upgrade the hosts serve %s" % served)
    log("%d hosts, %s: upgrade %.1f s" % (hosts, label, up_wall))
    back_wall, back_tasks = runner.playbook("rollback.yml", dict(site.variables, **extra), forks=forks)
    back_cpu = runner.cpu
    served = site.served()
    if set(served.values()) != {FROM_VERSION}:
        raise BenchError("after the rollback the hosts serve %s" % served)
    log("%d hosts, %s: rollback %.1f s" % (hosts, label, back_wall))
    fresh = [record for record in site.runs() if record["id"] not in known]
    upgrade_record = next(r for r in fresh if r.get("action") == "upgrade")
    rollback_record = next(r for r in fresh if r.get("action") == "rollback")
    up_segments, batches = record_segments(upgrade_record)
    back_segments, _none = record_segments(rollback_record)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": load_average(), "code": code, "config": label, "hosts": hosts,
        "serial": config["serial"] if config["serial"] is not None else [1, "25%"],
        "batch_sizes": batch_sizes(config["serial"], hosts),
        "forks": forks or "ansible.cfg (25)", "busy_cores_before": cores_before,
        # outside: ansible-playbook's start and the checks before the lock, not in the record
        "upgrade": {"seconds": round(up_wall, 2), "cpu_seconds": up_cpu, "segments": up_segments,
                    "deploy_batches": batches,
                    "outside_record": round(up_wall - sum(up_segments.values()), 1),
                    "top_tasks": task_profile(up_tasks)[:TOP_TASKS], "record": upgrade_record.get("phases")},
        "rollback": {"seconds": round(back_wall, 2), "cpu_seconds": back_cpu, "segments": back_segments,
                     "outside_record": round(back_wall - sum(back_segments.values()), 1),
                     "top_tasks": task_profile(back_tasks)[:TOP_TASKS], "record": rollback_record.get("phases")},
    }


def bench_fleet(hosts, configs, workdir, done):
    """One site of `hosts` app hosts; every configuration run on it, in order; done(result) after each."""
    results = []
    started = time.perf_counter()
    fleet = SshHosts(count=hosts)
    site = None
    try:
        fleet.start()
        site = Site(os.path.join(workdir, "site-%d" % hosts), hosts=fleet, base=BASE).start()
        runner = Runner(site, os.path.join(workdir, "runs-%d" % hosts))
        os.makedirs(runner.workdir)
        first_wall, _tasks = runner.playbook(site.first_deploy_playbook(), site.release_vars(FROM_VERSION))
        site.lb.wait_until_up()
        log("%d hosts: site built and %s deployed in %.1f s (first deploy %.1f s)" % (
            hosts, FROM_VERSION, time.perf_counter() - started, first_wall))
        for label in configs:
            results.append(run_config(runner, label, CONFIGS[label], hosts))
            done(results[-1])
    finally:
        if site:
            site.stop()  # shared hosts: it stops the apps, then its servers
        fleet.stop()
    return results


# ------------------------------------------------------------------- figures


def ratio_table(results, sizes):
    """{config: {upgrade: ratio, rollback: ratio}} of the largest fleet over the smallest."""
    small, large = min(sizes), max(sizes)
    ratios = {}
    for label in dict.fromkeys(r["config"] for r in results):
        by = {r["hosts"]: r for r in results if r["config"] == label}
        if small in by and large in by and small != large:
            ratios[label] = {kind: round(by[large][kind]["seconds"] / by[small][kind]["seconds"], 2)
                             for kind in ("upgrade", "rollback")}
            ratios[label]["goal_met"] = ratios[label]["upgrade"] < GOAL_RATIO and ratios[label]["rollback"] < GOAL_RATIO
            for kind in ("upgrade", "rollback"):
                cpus = [by[size][kind].get("cpu_seconds") for size in (small, large)]
                if all(cpus):
                    # the work done, whatever the machine's other load: on 2 shared cores it bounds the wall time
                    ratios[label][kind + "_cpu"] = round(sum(cpus[1].values()) / max(sum(cpus[0].values()), 0.1), 2)
    return ratios


UPGRADE_SEGMENTS = ("preflight", "backup", "migrate", "assets", "stage+config", "deploy", "close")
ROLLBACK_SEGMENTS = ("decide+data", "hosts", "close")


def cpu_text(run):
    cpu = run.get("cpu_seconds")
    return "%.0f+%.0f" % (cpu["controller"], cpu["hosts"]) if cpu else "?"


def print_report(figures):
    out = ["", "upgrade %s -> %s, then rollback: wall seconds and the run records' segments (whole seconds); "
               "%d cores, load average %s at the start, %s at the end; 'busy' = cores busy in the second before "
               "the upgrade" % (FROM_VERSION, TO_VERSION, figures["cpus"], figures["load_average"]["start"],
                                figures["load_average"]["end"])]
    header = "%-13s %5s %9s %5s %5s | %7s %7s %s %7s | %8s %7s %s %7s" % (
        "config", "hosts", "batches", "forks", "busy", "upgrade", "cpu", " ".join(
            "%*s" % (max(len(k), 6), k) for k in UPGRADE_SEGMENTS), "outside",
        "rollback", "cpu", " ".join("%*s" % (max(len(k), 6), k) for k in ROLLBACK_SEGMENTS), "outside")
    out.append(header)
    out.append("-" * len(header))
    for r in figures["runs"]:
        up, back = r["upgrade"], r["rollback"]
        out.append("%-13s %5d %9s %5s %5.2f | %7.1f %7s %s %7.1f | %8.1f %7s %s %7.1f" % (
            r["config"], r["hosts"], "+".join(map(str, r["batch_sizes"])), str(r["forks"]).split()[0][:5],
            r["busy_cores_before"], up["seconds"], cpu_text(up),
            " ".join("%*.0f" % (max(len(k), 6), up["segments"].get(k, 0)) for k in UPGRADE_SEGMENTS),
            up["outside_record"], back["seconds"], cpu_text(back),
            " ".join("%*.0f" % (max(len(k), 6), back["segments"].get(k, 0)) for k in ROLLBACK_SEGMENTS),
            back["outside_record"]))
    out.append("cpu: CPU seconds of the controller (ansible-playbook, its workers, ssh) + of the hosts (sshd sessions, "
               "modules; not the apps); every host shares this machine's %d cores" % figures["cpus"])
    for label, ratio in figures["ratios"].items():
        out.append("%s: %d hosts / %d hosts = upgrade %.2f, rollback %.2f (goal < %.0f): %s; CPU seconds: "
                   "upgrade %s, rollback %s" % (
                       label, max(figures["hosts"]), min(figures["hosts"]), ratio["upgrade"], ratio["rollback"],
                       GOAL_RATIO, "met" if ratio["goal_met"] else "MISSED", ratio.get("upgrade_cpu", "?"),
                       ratio.get("rollback_cpu", "?")))
    for r in figures["runs"]:
        for kind in ("upgrade", "rollback"):
            top = ", ".join("%s %.1f s%s" % (t["task"], t["seconds"],
                                             " (x%d)" % t["occurrences"] if t["occurrences"] > 1 else "")
                            for t in r[kind]["top_tasks"][:4])
            out.append("  %s, %d hosts, %s: longest tasks: %s" % (r["config"], r["hosts"], kind, top))
    print("\n".join(out))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="3,12", help="fleet sizes, comma-separated (default 3,12)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="configurations, comma-separated, among %s (default all)" % ", ".join(CONFIGS))
    parser.add_argument("--workdir", default=None, help="scratch directory (default: a new one under /tmp)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--merge", action="store_true",
                        help="keep the output file's runs of other (hosts, config) pairs, e.g. to rerun one fleet")
    return parser.parse_args()


def main():
    # A SIGTERM unwinds like an error, so that the hosts, servers and scratch are removed.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit("upgrade_bench: stopped by SIGTERM"))
    args = parse_args()
    sizes = [int(value) for value in args.hosts.split(",")]
    configs = [value for value in args.configs.split(",") if value]
    unknown = [value for value in configs if value not in CONFIGS]
    if unknown:
        raise BenchError("unknown configuration(s) %s; choose among %s" % (", ".join(unknown), ", ".join(CONFIGS)))
    if not namespaces_permitted():
        raise BenchError("cannot create network namespaces (run as root, as make bench does)")
    # The bridge's name comes from this process's pid: another run's bridge of that name would be torn down.
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False).returncode == 0:
        raise BenchError("bridge %s exists: another sandbox run uses it; start the bench again" % BRIDGE)
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "cpus": os.cpu_count(), "hosts": sizes, "configs": {k: CONFIGS[k] for k in configs},
               "load_average": {"start": load_average()}, "busy_cores_at_start": busy_cores(), "runs": []}
    if args.merge and os.path.exists(args.output):
        with open(args.output) as handle:
            kept = [run for run in json.load(handle).get("runs", [])
                    if run["hosts"] not in sizes or run["config"] not in configs]
        figures["runs"] = kept
        figures["hosts"] = sorted(set(sizes) | {run["hosts"] for run in kept})

    def save(partial):
        figures["partial"] = partial
        figures["runs"].sort(key=lambda run: (run["hosts"], list(CONFIGS).index(run["config"])))
        figures["ratios"] = ratio_table(figures["runs"], figures["hosts"])
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as handle:
            json.dump(figures, handle, indent=2, sort_keys=True)
            handle.write("\n")

    def done(result):
        # Written after every run: a long bench stopped part way keeps what it measured.
        figures["runs"].append(result)
        save(True)

    workdir = tempfile.mkdtemp(prefix="treazrisland-upgrade-bench-", dir=args.workdir)
    try:
        for hosts in sizes:
            bench_fleet(hosts, configs, workdir, done)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures["load_average"]["end"] = load_average()
    save(False)
    print_report(figures)
    log("figures written to %s" % args.output)


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        sys.exit("upgrade_bench: %s" % error)
