#!/usr/bin/env python3
"""Benchmark: s3_sync against `rclone sync --checksum` and `aws s3 sync`, as Ansible tasks.

Run by ``make bench``. One throwaway `rclone serve s3` (default; ``--server moto`` for moto)
on 127.0.0.1, one generated tree (10,000 files of 200 B to 200 KB, log-uniform, plus three
20 MB files), and three phases, each tool into its own prefix of the same bucket, the order
of the tools rotating every repetition:

1. first upload into an empty prefix, s3_sync's checksum cache emptied before each run;
2. no-change re-sync, s3_sync with its checksum cache (the first repetition fills it from the
   files read during the uploads) and, as a fourth contender ``s3_sync_uncached``, with
   ``checksum_cache: false``: every file read and hashed, as on a fresh checkout;
3. 100 files changed with the same size and their old mtime put back (``touch -r``), then
   a re-sync; afterwards each tool's copy of those 100 files is checked byte for byte.

Every run is one ansible-playbook task (our module, or ``ansible.builtin.command`` running
the other tool), timed by a callback from task start to result, so all three pay the same
Ansible overhead. Then peak memory: the module run directly (as Ansible runs it on a host)
on a tree of 100,000 small files: first upload, no-change re-sync (which hashes every file and
writes the checksum cache) and a second no-change re-sync (every sha256 from the cache),
measured with wait4's ru_maxrss, which covers the module process and its forked transfer process.

Figures are printed and written to bench/results/s3_bench.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)
sys.path.insert(0, BENCH)

from db_bench import COLLECTIONS, MODULES, check_ok, load_average, run_measured  # noqa: E402
from sandbox.s3server import S3Server  # noqa: E402

INVENTORY = os.path.join(REPO, "sandbox", "inventory.ini")
DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "s3_bench.json")
TOOLS = ("s3_sync", "rclone", "aws")
UNCACHED = "s3_sync_uncached"
BUCKET = "bench"
GOALS = {"first_over_rclone": 0.7, "nochange_over_rclone": 1.0, "aws_over_nochange": 3.0, "memory_mib": 200.0}

STARTED = time.monotonic()


class BenchError(Exception):
    pass


def log(message):
    print("[%6.1fs] %s" % (time.monotonic() - STARTED, message), file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ trees


def make_tree(root, files, big_files, min_size, max_size, seed=2026):
    """files of log-uniform size in [min_size, max_size] under 100 directories, plus big 20 MB files."""
    rng = random.Random(seed)
    total = 0
    chunk = os.urandom(1024 * 1024)  # sliced at random offsets: incompressible and cheap to make
    for number in range(files):
        size = int(math.exp(rng.uniform(math.log(min_size), math.log(max_size))))
        rel = "d%02d/f%06d.bin" % (number % 100, number)
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(number.to_bytes(8, "big") + _bytes(chunk, rng, size - 8))
        total += size
    for number in range(big_files):
        path = os.path.join(root, "roms", "big%d.bin" % number)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            for _part in range(20):
                handle.write(_bytes(chunk, rng, 1024 * 1024))
        total += 20 * 1024 * 1024
    return files + big_files, total


def _bytes(chunk, rng, size):
    out = bytearray()
    while len(out) < size:
        start = rng.randrange(len(chunk))
        out += chunk[start:start + size - len(out)]
    return bytes(out)


def change_files(root, rels, seed):
    """New content, same size, old mtime put back (what touch -r does)."""
    rng = random.Random(seed)
    for rel in rels:
        path = os.path.join(root, rel)
        before = os.stat(path)
        with open(path, "wb") as handle:
            handle.write(rng.randbytes(before.st_size))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


# --------------------------------------------------------------------- running


class Runner:
    """Runs one tool as one Ansible task and times the task."""

    def __init__(self, server, workdir, concurrency):
        self.server = server
        self.workdir = workdir
        self.concurrency = concurrency
        self.counter = 0
        rclone_config = os.path.join(workdir, "rclone.conf")
        open(rclone_config, "w").close()
        # The other tools get the keys through their environment, as the module gets its options.
        self.rclone_env = {
            "RCLONE_CONFIG": rclone_config, "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": server.endpoint, "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": server.access_key,
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": server.secret_key,
            "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true"}
        self.aws_env = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.path.join(workdir, "aws.conf"),
                        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(workdir, "aws.credentials")}
        self.bin = os.path.dirname(sys.executable)
        # s3_sync's checksum cache lives here; cold=True empties it before every s3_sync run.
        self.cache_home = os.path.join(workdir, "cache-home")
        self.cold = False

    def task(self, tool, src, prefix):
        if tool in ("s3_sync", UNCACHED):
            return {"name": tool, "treazrisland.ops.s3_sync": dict(
                self.server.module_params(), src=src, dest="s3://%s/%s" % (BUCKET, prefix),
                concurrency=self.concurrency, checksum_cache=tool == "s3_sync")}
        if tool == "rclone":
            return {"name": tool, "environment": self.rclone_env, "ansible.builtin.command": {"argv": [
                os.path.join(self.bin, "rclone"), "sync", "--checksum", src, "bench:%s/%s" % (BUCKET, prefix)]}}
        return {"name": tool, "environment": self.aws_env, "ansible.builtin.command": {"argv": [
            os.path.join(self.bin, "aws"), "s3", "sync", "--only-show-errors", "--endpoint-url",
            self.server.endpoint, src, "s3://%s/%s" % (BUCKET, prefix)]}}

    def run(self, tool, src, prefix):
        """(task seconds, playbook seconds, result) of one run."""
        self.counter += 1
        playbook = os.path.join(self.workdir, "play-%d.yml" % self.counter)
        timings = os.path.join(self.workdir, "timings-%d.jsonl" % self.counter)
        fd = os.open(playbook, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds the keys
        with os.fdopen(fd, "w") as handle:
            json.dump([{"name": "bench", "hosts": "localhost", "gather_facts": False,
                        "tasks": [self.task(tool, src, prefix)]}], handle)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(BENCH, "callback"), ANSIBLE_CALLBACKS_ENABLED="task_timer",
                   TASK_TIMER_OUTPUT=timings, ANSIBLE_NOCOLOR="1", XDG_CACHE_HOME=self.cache_home)
        if self.cold and tool == "s3_sync":
            shutil.rmtree(self.cache_home, ignore_errors=True)
        started = time.perf_counter()
        completed = subprocess.run(["ansible-playbook", "-i", INVENTORY, playbook], env=env, capture_output=True,
                                   text=True)
        playbook_seconds = time.perf_counter() - started
        os.unlink(playbook)
        with open(timings) as handle:
            records = [json.loads(line) for line in handle]
        os.unlink(timings)
        if completed.returncode != 0 or not records or records[-1]["status"] != "ok":
            raise BenchError("%s failed: %s" % (tool, (completed.stdout + completed.stderr)[-3000:]))
        return records[-1]["seconds"], playbook_seconds, records[-1]["result"]


def rotate(tools, rep):
    return tools[rep % len(tools):] + tools[:rep % len(tools)]


def summary(values, digits=3):
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "samples": [round(v, digits) for v in values]}


def run_phase(runner, name, reps, src, prefix_of, before_rep=None, after_rep=None, tools=TOOLS):
    seconds = {tool: [] for tool in tools}
    playbooks = {tool: [] for tool in tools}
    extra = []
    for rep in range(reps):
        context = before_rep(rep) if before_rep else None
        for tool in rotate(tools, rep):
            task_seconds, playbook_seconds, result = runner.run(tool, src, prefix_of(tool, rep))
            seconds[tool].append(task_seconds)
            playbooks[tool].append(playbook_seconds)
            note = ""
            if tool in ("s3_sync", UNCACHED):
                note = "uploaded %d, unchanged %d, hashed %d, cache hits %d" % (
                    result["counts"]["uploaded"], result["counts"]["unchanged"],
                    result["checksums"]["hashed_files"], result["checksums"]["cache_hits"])
            log("%-9s rep %d: %-7s %6.2f s task, %6.2f s playbook %s" % (name, rep + 1, tool, task_seconds,
                                                                        playbook_seconds, note))
        if after_rep:
            extra.append(after_rep(rep, context))
    return {"tools": {tool: {"task_seconds": summary(seconds[tool]), "playbook_seconds": summary(playbooks[tool])}
                      for tool in tools}, "checks": extra}


def ratios(phase):
    med = {tool: figures["task_seconds"]["median"] for tool, figures in phase["tools"].items()}
    found = {"s3_sync_over_rclone": round(med["s3_sync"] / med["rclone"], 3),
             "s3_sync_over_aws": round(med["s3_sync"] / med["aws"], 3),
             "aws_over_s3_sync": round(med["aws"] / med["s3_sync"], 2)}
    if UNCACHED in med:
        found.update(uncached_over_rclone=round(med[UNCACHED] / med["rclone"], 3),
                     aws_over_uncached=round(med["aws"] / med[UNCACHED], 2))
    return found


# ---------------------------------------------------------------------- memory


def module_direct(workdir, name, args, counter=[0]):  # pylint: disable=dangerous-default-value
    """Run the module as Ansible runs it on a host (its own Python process); Measured and result."""
    counter[0] += 1
    args_path = os.path.join(workdir, "args-%d.json" % counter[0])
    fd = os.open(args_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, XDG_CACHE_HOME=os.path.join(workdir, "cache-home"))
    try:
        measured = check_ok(run_measured([sys.executable, "-m", MODULES + name, args_path], env=env), name)
    finally:
        os.unlink(args_path)
    result = json.loads(measured.stdout)
    if result.get("failed"):
        raise BenchError("%s failed: %s" % (name, result.get("msg")))
    return measured, result


def bench_memory(server, workdir, files, concurrency):
    root = os.path.join(workdir, "tree-%d" % files)
    count, total = make_tree(root, files, 0, 200, 2000, seed=7)
    log("memory: %d files, %.1f MB" % (count, total / 1e6))
    args = dict(server.module_params(), src=root, dest="s3://%s/memory-%d" % (BUCKET, files), concurrency=concurrency)
    figures = {"files": count, "bytes": total}
    for label in ("first_upload", "no_change", "no_change_cached"):
        measured, result = module_direct(workdir, "s3_sync", args)
        figures[label] = {"wall_seconds": round(measured.wall, 2), "cpu_seconds": round(measured.cpu, 2),
                          "ru_maxrss_mib": round(measured.maxrss_mib, 1),
                          "uploaded": result["counts"]["uploaded"], "unchanged": result["counts"]["unchanged"],
                          "hashed": result["checksums"]["hashed_files"], "cache_hits": result["checksums"]["cache_hits"]}
        log("memory: %s of %d files: %.1f s, peak %.1f MiB (uploaded %d, hashed %d, cache hits %d)" % (
            label, files, measured.wall, measured.maxrss_mib, result["counts"]["uploaded"],
            result["checksums"]["hashed_files"], result["checksums"]["cache_hits"]))
    shutil.rmtree(root)
    return figures


# ---------------------------------------------------------------------- report


def versions():
    def first_line(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    bindir = os.path.dirname(sys.executable)
    import obstore  # pylint: disable=import-outside-toplevel
    return {"rclone": first_line([os.path.join(bindir, "rclone"), "version"]),
            "aws": subprocess.run([os.path.join(bindir, "aws"), "--version"], capture_output=True,
                                  text=True).stdout.strip() or "?",
            "obstore": obstore.__version__, "python": platform.python_version()}


def verdict(ok):
    return "meets the goal" if ok else "MISSES the goal"


def print_report(figures):
    out = []
    out.append("s3_sync benchmark, %s server, %d files (%.0f MB), %s" % (
        figures["server"], figures["tree"]["files"], figures["tree"]["bytes"] / 1e6, figures["date"]))
    out.append("%-22s %12s %12s %12s   %s" % ("task seconds (median)", "s3_sync", "rclone", "aws", "s3_sync/rclone"
                                                                                          "  s3_sync/aws"))
    for phase in ("first_upload", "no_change", "change_100"):
        tools = figures[phase]["tools"]
        ratio = figures[phase]["ratios"]
        out.append("%-22s %12.2f %12.2f %12.2f   %14.2f %12.2f" % (
            phase, tools["s3_sync"]["task_seconds"]["median"], tools["rclone"]["task_seconds"]["median"],
            tools["aws"]["task_seconds"]["median"], ratio["s3_sync_over_rclone"], ratio["s3_sync_over_aws"]))
    nochange = figures["no_change"]
    out.append("no change without the checksum cache: s3_sync %.2f s, s3_sync/rclone %.2f, aws/s3_sync %.2f" % (
        nochange["tools"][UNCACHED]["task_seconds"]["median"], nochange["ratios"]["uncached_over_rclone"],
        nochange["ratios"]["aws_over_uncached"]))
    for check in figures["change_100"]["checks"]:
        out.append("change rep %d: changed files stored correctly: %s" % (
            check["rep"], ", ".join("%s %d/100" % (tool, check["correct"][tool]) for tool in TOOLS)))
    goals = figures["goals"]
    out.append("first upload  s3_sync/rclone = %.2f (goal <= %.1f): %s" % (
        goals["first_over_rclone"]["value"], GOALS["first_over_rclone"], verdict(goals["first_over_rclone"]["ok"])))
    out.append("no change     s3_sync/rclone = %.2f (goal <= %.1f): %s" % (
        goals["nochange_over_rclone"]["value"], GOALS["nochange_over_rclone"],
        verdict(goals["nochange_over_rclone"]["ok"])))
    out.append("no change     aws/s3_sync    = %.2f (goal >= %.1f): %s" % (
        goals["aws_over_nochange"]["value"], GOALS["aws_over_nochange"], verdict(goals["aws_over_nochange"]["ok"])))
    if "memory" in figures:
        memory = figures["memory"]
        out.append("peak memory at %d files: first upload %.1f MiB, no change %.1f MiB, no change from the cache "
                   "%.1f MiB (goal < %.0f): %s" % (
                       memory["files"], memory["first_upload"]["ru_maxrss_mib"], memory["no_change"]["ru_maxrss_mib"],
                       memory["no_change_cached"]["ru_maxrss_mib"], GOALS["memory_mib"],
                       verdict(goals["memory_mib"]["ok"])))
    out.append("load average at start %s, at end %s" % (figures["load_average"]["start"], figures["load_average"]["end"]))
    print("\n".join(out))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["rclone", "moto"], default="rclone")
    parser.add_argument("--files", type=int, default=10000, help="small files in the tree (default 10000)")
    parser.add_argument("--big-files", type=int, default=3, help="20 MB files in the tree (default 3)")
    parser.add_argument("--first-reps", type=int, default=3, help="first uploads per tool (default 3)")
    parser.add_argument("--nochange-reps", type=int, default=5, help="no-change re-syncs per tool (default 5)")
    parser.add_argument("--change-reps", type=int, default=3, help="100-file changes per tool (default 3)")
    parser.add_argument("--memory-files", type=int, default=100000,
                        help="files of the peak-memory tree (default 100000; 0 skips it)")
    parser.add_argument("--concurrency", type=int, default=None, help="s3_sync concurrency (default: the module's)")
    parser.add_argument("--workdir", default=None, help="scratch directory (default: a new one under /tmp)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    return parser.parse_args()


def main():
    # A SIGTERM unwinds like an error, so that the server is stopped and the scratch removed.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit("s3_bench: stopped by SIGTERM"))
    args = parse_args()
    workdir = tempfile.mkdtemp(prefix="treazrisland-s3-bench-", dir=args.workdir)
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "server": args.server, "cpus": os.cpu_count(), "versions": versions(),
               "load_average": {"start": load_average()}}
    concurrency = args.concurrency or 16
    try:
        tree = os.path.join(workdir, "tree")
        count, total = make_tree(tree, args.files, args.big_files, 200, 200 * 1024)
        figures["tree"] = {"files": count, "bytes": total}
        log("tree: %d files, %.1f MB" % (count, total / 1e6))
        with S3Server(args.server, name="bench") as server:
            server.make_bucket(BUCKET)
            runner = Runner(server, workdir, concurrency)
            figures["s3_sync_concurrency"] = concurrency
            runner.cold = True
            figures["first_upload"] = run_phase(runner, "first", args.first_reps, tree,
                                                lambda tool, rep: "%s-%d" % (tool, rep))
            runner.cold = False
            last = args.first_reps - 1
            # Both s3_sync variants re-sync s3_sync's upload.
            prefix = lambda tool, _rep: "%s-%d" % ("s3_sync" if tool == UNCACHED else tool, last)  # noqa: E731
            figures["no_change"] = run_phase(runner, "no-change", args.nochange_reps, tree, prefix,
                                             tools=TOOLS + (UNCACHED,))

            small = sorted(os.path.relpath(os.path.join(d, f), tree) for d, _s, fs in os.walk(tree) for f in fs
                           if not f.startswith("big"))
            client = server.client()

            def before(rep):
                chosen = random.Random(rep).sample(small, 100)
                change_files(tree, chosen, seed=1000 + rep)
                return chosen

            def after(rep, chosen):
                correct = {}
                for tool in TOOLS:
                    good = 0
                    for rel in chosen:
                        with open(os.path.join(tree, rel), "rb") as handle:
                            local = handle.read()
                        body = client.get_object(Bucket=BUCKET, Key="%s-%d/%s" % (tool, last, rel))["Body"].read()
                        good += body == local
                    correct[tool] = good
                log("change rep %d: stored correctly %s" % (rep + 1, correct))
                return {"rep": rep + 1, "correct": correct}

            figures["change_100"] = run_phase(runner, "change", args.change_reps, tree, prefix, before, after)
            for phase in ("first_upload", "no_change", "change_100"):
                figures[phase]["ratios"] = ratios(figures[phase])
            if args.memory_files:
                figures["memory"] = bench_memory(server, workdir, args.memory_files, concurrency)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures["load_average"]["end"] = load_average()
    first, nochange = figures["first_upload"]["ratios"], figures["no_change"]["ratios"]
    figures["goals"] = {
        "first_over_rclone": {"value": first["s3_sync_over_rclone"],
                              "ok": first["s3_sync_over_rclone"] <= GOALS["first_over_rclone"]},
        "nochange_over_rclone": {"value": nochange["s3_sync_over_rclone"],
                                 "ok": nochange["s3_sync_over_rclone"] <= GOALS["nochange_over_rclone"]},
        "aws_over_nochange": {"value": nochange["aws_over_s3_sync"],
                              "ok": nochange["aws_over_s3_sync"] >= GOALS["aws_over_nochange"]},
    }
    if "memory" in figures:
        peak = max(figures["memory"][label]["ru_maxrss_mib"] for label in ("first_upload", "no_change",
                                                                            "no_change_cached"))
        figures["goals"]["memory_mib"] = {"value": peak, "ok": peak < GOALS["memory_mib"]}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(figures, handle, indent=2, sort_keys=True)
        handle.write("\n")
    print_report(figures)
    log("figures written to %s" % args.output)


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        sys.exit("s3_bench: %s" % error)
