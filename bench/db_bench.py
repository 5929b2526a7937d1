#!/usr/bin/env python3
"""Benchmark: db_backup / db_restore against bare pg_dump / pg_restore.

Run by ``make bench``. One throwaway PostgreSQL cluster holds two pgbench
databases (scale 50 and a small one); the script times, in the same run and
alternating, bare ``pg_dump -Fc`` against the db_backup module and bare
``pg_restore`` against the db_restore module (method swap), records the peak
memory of each process, and splits the modules' extra time into its parts
(startup, pg_restore --list, sha256, CREATE DATABASE, ANALYZE). Figures are
printed as a table and written as JSON to bench/results/db_bench.json.

The modules run as their own Python process (``python -m ...modules.db_backup
ARGS.json``), as Ansible itself would run them on the managed host, so the
figures are the module's work without the controller's startup.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandbox.pgcluster import PgCluster  # noqa: E402  (needs REPO on sys.path)

COLLECTIONS = os.path.join(REPO, ".build", "collections")
MODULES = "ansible_collections.treazrisland.ops.plugins.modules."
DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "db_bench.json")
SAMPLE_INTERVAL = 0.02  # seconds between /proc samples; VmHWM is a high-water mark, so little is missed
HASH_CHUNK = 1024 * 1024  # the chunk size the module's checksum code reads with
BACKUP_RATIO_GOAL = 1.05
MEMORY_GOAL_MIB = 100.0
FLAT_TOLERANCE_MIB = 5.0

STARTED = time.monotonic()


class BenchError(Exception):
    pass


def log(message):
    print("[%6.1fs] %s" % (time.monotonic() - STARTED, message), file=sys.stderr, flush=True)


# ------------------------------------------------------------------ measuring


class Measured:
    """One finished process: wall time, exit code, output and peak memory."""

    def __init__(self, argv, wall, cpu, returncode, stdout, stderr, maxrss_mib, hwm_mib):
        self.argv = argv
        self.wall = wall
        self.cpu = cpu  # user+system seconds of the process and its children (not the server's)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.maxrss_mib = maxrss_mib  # wait4 ru_maxrss: the process, its waited-for children, the launcher floor
        self.hwm_mib = hwm_mib  # sampled /proc VmHWM: this process alone, after its exec


# Runs one command and reports on it, as a small separate Python (-I -S: no site,
# about 9 MiB). Why not from this process: Linux keeps the peak RSS of the memory
# a process had before exec() in its ru_maxrss, and a child forked from this
# benchmark (psycopg loaded, ~40 MiB) would report at least that much even for a
# 12 MiB pg_dump. The launcher is small, so its floor stays below what we measure.
# A close-on-exec pipe tells it when exec() happened: VmHWM is sampled only from
# then on, never the pre-exec copy of the launcher.
LAUNCHER = r"""
import json, os, sys, threading, time
out_path, err_path, interval, argv = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
exec_read, exec_write = os.pipe()
os.set_inheritable(exec_write, False)
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.close(exec_read)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
        os.dup2(os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
        os.execv(argv[0], argv)
    except BaseException as error:
        os.write(exec_write, str(error).encode())
    os._exit(127)
os.close(exec_write)
exec_error = os.read(exec_read, 4096).decode()  # EOF once exec() closed the pipe
peak = [0]
done = threading.Event()

def sample():
    while not done.is_set():
        try:
            with open("/proc/%d/status" % pid) as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
        except (OSError, ValueError):
            pass
        done.wait(interval)

sampler = threading.Thread(target=sample, daemon=True)
if not exec_error:
    sampler.start()
_pid, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
done.set()
if sampler.is_alive():
    sampler.join()
print(json.dumps({"wall": wall, "exit": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss,
                  "cpu": usage.ru_utime + usage.ru_stime,
                  "hwm_kib": peak[0], "exec_error": exec_error}))
"""


def run_measured(argv, env=None):
    """Run argv through the launcher; time it and record its peak memory. The caller checks the exit code."""
    with tempfile.TemporaryDirectory(prefix="treazrisland-bench-run-") as scratch:
        out_path, err_path = os.path.join(scratch, "stdout"), os.path.join(scratch, "stderr")
        launcher = subprocess.run(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, out_path, err_path, str(SAMPLE_INTERVAL)] + list(argv),
            env=env, capture_output=True, text=True)
        try:
            report = json.loads(launcher.stdout)
        except ValueError:
            raise BenchError("the launcher failed for %s: %s%s" % (argv[0], launcher.stdout, launcher.stderr))
        if report["exec_error"]:
            raise BenchError("cannot run %s: %s" % (argv[0], report["exec_error"]))
        with open(out_path, encoding="utf-8", errors="replace") as handle:
            stdout = handle.read()
        with open(err_path, encoding="utf-8", errors="replace") as handle:
            stderr = handle.read()
    return Measured(argv, report["wall"], report["cpu"], report["exit"], stdout, stderr, report["maxrss_kib"] / 1024.0,
                    report["hwm_kib"] / 1024.0)


def check_ok(measured, what):
    if measured.returncode != 0:
        raise BenchError("%s failed (exit %d): %s%s" % (what, measured.returncode, measured.stdout[-2000:],
                                                         measured.stderr[-2000:]))
    return measured


class Bench:
    """The cluster, the scratch directory and the ways to run things against them."""

    def __init__(self, cluster, workdir):
        self.cluster = cluster
        self.workdir = workdir
        self.args_counter = 0

    # libpq clients get the password from the environment: fine for a benchmark
    def client_env(self):
        return dict(os.environ, PGPASSWORD=self.cluster.password)

    def client_conn(self):
        return ["-h", "127.0.0.1", "-p", str(self.cluster.port), "-U", "postgres"]

    def run_module(self, name, args, check_mode=False):
        """Run one module process directly; return (Measured, its JSON result)."""
        self.args_counter += 1
        args_path = os.path.join(self.workdir, "args-%d.json" % self.args_counter)
        fd = os.open(args_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds the password
        with os.fdopen(fd, "w") as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check_mode)}, handle)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (COLLECTIONS, os.environ.get("PYTHONPATH")) if p)
        try:
            measured = run_measured([sys.executable, "-m", MODULES + name, args_path], env=env)
        finally:
            os.unlink(args_path)
        try:
            result = json.loads(measured.stdout)
        except ValueError:
            raise BenchError("module %s printed no JSON result (exit %d): %s%s" % (
                name, measured.returncode, measured.stdout[-2000:], measured.stderr[-2000:]))
        if measured.returncode != 0 or result.get("failed"):
            raise BenchError("module %s failed: %s" % (name, result.get("msg", measured.stdout[-2000:])))
        return measured, result

    def create_pgbench_db(self, dbname, scale):
        self.cluster.create_database(dbname)
        argv = [os.path.join(self.cluster.bin_dir, "pgbench"), "-i", "-s", str(scale), "-q"]
        measured = check_ok(run_measured(argv + self.client_conn() + [dbname], env=self.client_env()),
                            "pgbench -i -s %d" % scale)
        size = self.cluster.query("SELECT pg_database_size(%s)", params=(dbname,))[0][0]
        return {"scale": scale, "init_seconds": round(measured.wall, 2), "database_bytes": size}

    def drop_database(self, dbname):
        self.cluster.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % dbname)


# --------------------------------------------------------------------- figures


def median(values):
    return statistics.median(values)


def summary(values, digits=3):
    """Median, minimum and the raw samples, rounded, for the JSON file.

    The median is the headline figure; the minimum is shown beside it because
    on a shared machine other load only ever adds time.
    """
    return {"median": round(median(values), digits), "min": round(min(values), digits),
            "samples": [round(v, digits) for v in values]}


class Samples:
    """Measurements of one side (bare tool or module) over the repetitions."""

    def __init__(self):
        self.wall, self.cpu, self.hwm, self.maxrss = [], [], [], []

    def add(self, measured):
        self.wall.append(measured.wall)
        self.cpu.append(measured.cpu)
        self.hwm.append(measured.hwm_mib)
        self.maxrss.append(measured.maxrss_mib)

    def as_dict(self):
        return {"wall_seconds": summary(self.wall), "cpu_seconds": summary(self.cpu),
                "vmhwm_mib": summary(self.hwm, 1), "ru_maxrss_mib": summary(self.maxrss, 1)}


def ratios(module, bare):
    return {"median": round(median(module.wall) / median(bare.wall), 3),
            "min": round(min(module.wall) / min(bare.wall), 3)}


def remove_archive(path):
    for victim in (path, path + ".manifest.json"):
        if os.path.lexists(victim):
            os.unlink(victim)


def load_average():
    with open("/proc/loadavg") as handle:
        return [float(value) for value in handle.read().split()[:3]]


# ---------------------------------------------------------------------- backup


def bench_backup(bench, dbname, reps, label, keep_last=False):
    """Alternate bare pg_dump -Fc and db_backup on dbname; return figures (and the last module archive)."""
    dest = os.path.join(bench.workdir, label)
    os.mkdir(dest)
    params = bench.cluster.params(dbname)

    # Warm-up, untimed: fills the caches and tells which pg_dump the module picks,
    # so that the bare runs use that very binary.
    _measured, warm = bench.run_module("db_backup", dict(params, dest=dest, name="warmup.dump"))
    pg_dump = warm["pg_dump"]["path"]
    remove_archive(warm["path"])

    bare, module = Samples(), Samples()
    bare_bytes, module_bytes, reported = [], [], []
    last_archive = None
    for rep in range(reps):
        # Swap the order every repetition so that drift (caches, other load) hits both sides alike.
        for kind in (("bare", "module") if rep % 2 == 0 else ("module", "bare")):
            if kind == "bare":
                path = os.path.join(dest, "bare-%d.dump" % rep)
                argv = [pg_dump, "-Fc", "-f", path] + bench.client_conn() + [dbname]
                measured = check_ok(run_measured(argv, env=bench.client_env()), "pg_dump")
                bare_bytes.append(os.path.getsize(path))
                os.unlink(path)
                bare.add(measured)
            else:
                measured, result = bench.run_module("db_backup", dict(params, dest=dest, name="module-%d.dump" % rep))
                module_bytes.append(result["size"])
                reported.append(result["duration_seconds"])
                if last_archive:
                    remove_archive(last_archive)
                last_archive = result["path"]
                module.add(measured)
            log("backup %s rep %d: %-6s %6.2f s wall, %5.2f s cpu, VmHWM %.1f MiB" % (
                label, rep + 1, kind, measured.wall, measured.cpu, measured.hwm_mib))
    if not keep_last:
        remove_archive(last_archive)
        last_archive = None

    figures = {
        "database": dbname, "pg_dump": pg_dump, "repetitions": reps,
        "bare_pg_dump": dict(bare.as_dict(), archive_bytes=int(median(bare_bytes))),
        # reported_duration_seconds: the module's own clock, pg_dump start to verified archive
        "module_db_backup": dict(module.as_dict(), archive_bytes=int(median(module_bytes)),
                                 reported_duration_seconds=summary(reported)),
        "ratio_module_over_bare": ratios(module, bare),
        "extra_wall_seconds": round(median(module.wall) - median(bare.wall), 3),
        "extra_cpu_seconds": round(median(module.cpu) - median(bare.cpu), 3),
    }
    return figures, last_archive


def bench_fixed_overhead(bench, dbname, reps):
    """db_backup in check mode: Python start, imports, connecting and picking pg_dump; no dump."""
    dest = os.path.join(bench.workdir, "check")
    os.mkdir(dest)
    runs = Samples()
    for _rep in range(reps):
        measured, _result = bench.run_module("db_backup", dict(bench.cluster.params(dbname), dest=dest),
                                             check_mode=True)
        runs.add(measured)
    return runs.as_dict()


def bench_startup_parts(reps):
    """What a module's startup is made of: the interpreter, then the two big imports."""
    parts = {"python_alone": "pass", "import_ansible_basic": "import ansible.module_utils.basic",
             "import_psycopg": "import psycopg"}
    return {name: summary([check_ok(run_measured([sys.executable, "-c", code]), code).wall for _ in range(reps)])
            for name, code in parts.items()}


def bench_list(pg_restore, archive, reps):
    """pg_restore --list of the archive: the module's verification step after the dump."""
    walls = [check_ok(run_measured([pg_restore, "--list", archive]), "pg_restore --list").wall for _ in range(reps)]
    return summary(walls)


def time_sha256(path, reps):
    """sha256 of the archive the way the module computes it (1 MiB reads), warm page cache."""
    walls = []
    for _rep in range(reps):
        started = time.perf_counter()
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
                digest.update(chunk)
        walls.append(time.perf_counter() - started)
    return summary(walls)


# --------------------------------------------------------------------- restore


def bench_restore(bench, archive, pg_restore, reps):
    """Alternate bare pg_restore into a fresh empty database and db_restore (swap) into a new name."""
    bare, module = Samples(), Samples()
    create_walls, analyze_walls, reported = [], [], []
    for rep in range(reps):
        for kind in (("bare", "module") if rep % 2 == 0 else ("module", "bare")):
            if kind == "bare":
                target = "bare_restore_%d" % rep
                # Outside the timed run (the bare side gets its empty database for free),
                # timed apart because the module does create its own.
                started = time.perf_counter()
                bench.cluster.execute('CREATE DATABASE "%s" TEMPLATE template0' % target)
                create_walls.append(time.perf_counter() - started)
                argv = [pg_restore, "-d", target] + bench.client_conn() + [archive]
                measured = check_ok(run_measured(argv, env=bench.client_env()), "pg_restore")
                bare.add(measured)
                # The ANALYZE the module adds, timed alone on the same freshly restored data.
                started = time.perf_counter()
                with bench.cluster.connect(target) as conn:
                    conn.execute("ANALYZE")
                analyze_walls.append(time.perf_counter() - started)
            else:
                target = "module_restore_%d" % rep
                measured, result = bench.run_module("db_restore", dict(bench.cluster.params(target), src=archive))
                module.add(measured)
                reported.append(result["duration_seconds"])
            bench.drop_database(target)
            log("restore rep %d: %-6s %6.2f s wall, VmHWM %.1f MiB" % (rep + 1, kind, measured.wall,
                                                                      measured.hwm_mib))
    return {
        "archive": os.path.basename(archive), "archive_bytes": os.path.getsize(archive), "pg_restore": pg_restore,
        "repetitions": reps,
        "bare_pg_restore": bare.as_dict(),
        # reported_duration_seconds: the module's own clock, after the sha256 check, to the swap
        "module_db_restore": dict(module.as_dict(), reported_duration_seconds=summary(reported)),
        "ratio_module_over_bare": ratios(module, bare),
        "extra_wall_seconds": round(median(module.wall) - median(bare.wall), 3),
        "create_database_seconds": summary(create_walls),
        "analyze_seconds": summary(analyze_walls),
        "sha256_seconds": time_sha256(archive, 3),
    }


def explain_restore(restore, startup_seconds):
    """Split the module's extra time into the jobs it does on purpose and what is left."""
    parts = {
        "module_startup": startup_seconds,
        "sha256": restore["sha256_seconds"]["median"],
        "create_database": restore["create_database_seconds"]["median"],
        "analyze": restore["analyze_seconds"]["median"],
    }
    explained = sum(parts.values())
    bare = restore["bare_pg_restore"]["wall_seconds"]["median"]
    module = restore["module_db_restore"]["wall_seconds"]["median"]
    return {"parts_seconds": {k: round(v, 3) for k, v in parts.items()},
            "explained_seconds": round(explained, 3),
            "unexplained_seconds": round(module - bare - explained, 3),
            "ratio_without_explained": round((module - explained) / bare, 3)}


# ---------------------------------------------------------------------- report


def environment(cluster):
    def version(argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()

    import ansible  # pylint: disable=import-outside-toplevel

    cpu = ""
    with open("/proc/cpuinfo") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
        "python": platform.python_version(), "ansible_core": ansible.__version__,
        "server_version": cluster.query("SHOW server_version")[0][0],
        "pgbench": version([os.path.join(cluster.bin_dir, "pgbench"), "--version"]),
        "autovacuum": "off during the measurements (see README)",
        "load_average_start": load_average(),
    }


def verdict(ok):
    return "ok" if ok else "OVER GOAL"


def print_report(figures):
    backup, restore = figures["backup"], figures["restore"]
    large, small, startup = backup["large"], backup["small"], backup["fixed_overhead_check_mode"]
    scale = {"large": figures["databases"]["large"]["scale"], "small": figures["databases"]["small"]["scale"]}
    rows = []

    def row(what, value="", note=""):
        rows.append((what, value, note))

    def secs(stats):
        return "%.2f s" % stats["median"]

    def mib(value):
        return "%.1f MiB" % value

    def min_note(stats):
        return "min %.2f s" % stats["min"]

    for key, part in (("large", large), ("small", small)):
        bare, module = part["bare_pg_dump"], part["module_db_backup"]
        title = "backup, pgbench scale %d (%.0f MB db, %.1f MB archive), median of %d" % (
            scale[key], figures["databases"][key]["database_bytes"] / 1e6, bare["archive_bytes"] / 1e6,
            part["repetitions"])
        row(title)
        row("  bare pg_dump -Fc -f", secs(bare["wall_seconds"]), "%s; cpu %.2f s" % (
            min_note(bare["wall_seconds"]), bare["cpu_seconds"]["median"]))
        row("  db_backup module", secs(module["wall_seconds"]), "%s; cpu %.2f s; own clock %.2f s" % (
            min_note(module["wall_seconds"]), module["cpu_seconds"]["median"],
            module["reported_duration_seconds"]["median"]))
        ratio = part["ratio_module_over_bare"]
        goal = ("goal <= %.2f: %s" % (BACKUP_RATIO_GOAL, verdict(ratio["median"] <= BACKUP_RATIO_GOAL))
                if key == "large" else "a fixed overhead on a small dump")
        row("  ratio module/bare", "%.3f" % ratio["median"], "of minima %.3f; %s" % (ratio["min"], goal))
        row("  extra module time", "%+.2f s" % part["extra_wall_seconds"], "cpu %+.2f s" % part["extra_cpu_seconds"])
        row("  module peak memory", mib(module["vmhwm_mib"]["median"]),
            "python VmHWM; wait4 ru_maxrss %s" % mib(module["ru_maxrss_mib"]["median"]))
        row("  bare pg_dump peak memory", mib(bare["vmhwm_mib"]["median"]),
            "VmHWM; wait4 ru_maxrss %s" % mib(bare["ru_maxrss_mib"]["median"]))
    row("backup overhead sources")
    row("  module startup (check mode)", secs(startup["wall_seconds"]),
        "python, imports, connect, pick pg_dump; cpu %.2f s" % startup["cpu_seconds"]["median"])
    parts = backup["startup_parts_seconds"]
    row("    of which python alone", secs(parts["python_alone"]), "")
    row("    of which python + import ansible basic", secs(parts["import_ansible_basic"]), "AnsibleModule")
    row("    of which python + import psycopg", secs(parts["import_psycopg"]), "")
    row("  pg_restore --list (verify step)", secs(backup["pg_restore_list_seconds"]), "")
    row("  sha256 while streaming", secs(restore["sha256_seconds"]), "same bytes as the restore's check")
    flat = figures["memory_flat"]
    row("memory")
    row("  flat: scale %d minus scale %d" % (scale["large"], scale["small"]), "%+.1f MiB" % flat["difference_mib"],
        "db_backup VmHWM, tolerance %.0f MiB: %s" % (FLAT_TOLERANCE_MIB, verdict(flat["flat"])))
    worst = figures["memory_goal"]["worst_module_peak_mib"]
    row("  module peak, worst sample", mib(worst),
        "goal < %d MiB: %s" % (MEMORY_GOAL_MIB, verdict(worst < MEMORY_GOAL_MIB)))
    row("  ru_maxrss floor of the launcher", mib(figures["ru_maxrss_floor_mib"]), "/bin/true measured the same way")

    bare, module, why = restore["bare_pg_restore"], restore["module_db_restore"], restore["explained"]
    row("restore of that archive, median of %d" % restore["repetitions"])
    row("  bare pg_restore -d (db made untimed)", secs(bare["wall_seconds"]), min_note(bare["wall_seconds"]))
    row("  db_restore module, method swap", secs(module["wall_seconds"]), "%s; own clock %.2f s" % (
        min_note(module["wall_seconds"]), module["reported_duration_seconds"]["median"]))
    row("  ratio module/bare", "%.3f" % restore["ratio_module_over_bare"]["median"],
        "of minima %.3f" % restore["ratio_module_over_bare"]["min"])
    row("  extra module time", "%+.2f s" % restore["extra_wall_seconds"], "explained by:")
    for name, label in (("module_startup", "module startup (check mode above)"), ("sha256", "sha256 of archive"),
                        ("create_database", "CREATE DATABASE"), ("analyze", "ANALYZE")):
        row("    " + label, "%.2f s" % why["parts_seconds"][name], "")
    row("    left unexplained", "%+.2f s" % why["unexplained_seconds"], "noise, verify queries, rename")
    row("  ratio without those", "%.3f" % why["ratio_without_explained"], "")
    row("  module peak memory", mib(module["vmhwm_mib"]["median"]),
        "python VmHWM; wait4 ru_maxrss %s" % mib(module["ru_maxrss_mib"]["median"]))
    row("  bare pg_restore peak memory", mib(bare["vmhwm_mib"]["median"]),
        "VmHWM; wait4 ru_maxrss %s" % mib(bare["ru_maxrss_mib"]["median"]))

    width = max(len(r[0]) for r in rows if r[1])
    value_width = max(len(r[1]) for r in rows)
    print()
    for what, value, note in rows:
        print("%-*s  %*s  %s" % (width, what, value_width, value, note) if value else what)
    print()
    print("load average at start %s, at end %s on %d cpus" % (
        figures["environment"]["load_average_start"], figures["load_average_end"], figures["environment"]["cpus"]))


# ------------------------------------------------------------------------ main


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=50, help="pgbench scale of the main database (default 50)")
    parser.add_argument("--small-scale", type=int, default=5, help="pgbench scale of the small database (default 5)")
    parser.add_argument("--backup-reps", type=int, default=5, help="repetitions of each backup (default 5)")
    parser.add_argument("--restore-reps", type=int, default=3, help="repetitions of each restore (default 3)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help="JSON file to write (default bench/results/db_bench.json)")
    args = parser.parse_args()
    if min(args.backup_reps, args.restore_reps) < 3:
        parser.error("at least 3 repetitions each: a median of fewer says little")
    return args


def measure(bench, args):
    figures = {"environment": environment(bench.cluster), "databases": {},
               "ru_maxrss_floor_mib": round(check_ok(run_measured(["/bin/true"]), "true").maxrss_mib, 1)}
    log("pgbench -i -s %d" % args.scale)
    figures["databases"]["large"] = bench.create_pgbench_db("bench_large", args.scale)
    log("pgbench -i -s %d" % args.small_scale)
    figures["databases"]["small"] = bench.create_pgbench_db("bench_small", args.small_scale)
    # pgbench -i has vacuumed; an autovacuum waking up in the middle of one run and not
    # the other would only add noise (a VACUUM of 5M fresh rows after each restore).
    bench.cluster.execute("ALTER SYSTEM SET autovacuum = off")
    bench.cluster.execute("SELECT pg_reload_conf()")

    large, archive = bench_backup(bench, "bench_large", args.backup_reps, "large", keep_last=True)
    small, _none = bench_backup(bench, "bench_small", args.backup_reps, "small")
    pg_restore = os.path.join(os.path.dirname(large["pg_dump"]), "pg_restore")
    figures["backup"] = {
        "large": large, "small": small,
        "fixed_overhead_check_mode": bench_fixed_overhead(bench, "bench_large", 3),
        "startup_parts_seconds": bench_startup_parts(3),
        "pg_restore_list_seconds": bench_list(pg_restore, archive, 3),
    }
    # "Flat": the module's own peak must not grow with the database.
    hwm_large = large["module_db_backup"]["vmhwm_mib"]["median"]
    hwm_small = small["module_db_backup"]["vmhwm_mib"]["median"]
    figures["memory_flat"] = {"large_mib": hwm_large, "small_mib": hwm_small,
                              "difference_mib": round(hwm_large - hwm_small, 1),
                              "flat": abs(hwm_large - hwm_small) <= FLAT_TOLERANCE_MIB}

    log("restores of %s" % os.path.basename(archive))
    restore = bench_restore(bench, archive, pg_restore, args.restore_reps)
    restore["explained"] = explain_restore(
        restore, figures["backup"]["fixed_overhead_check_mode"]["wall_seconds"]["median"])
    figures["restore"] = restore

    # Judged on both measures: the worst single sample of any module run.
    module_runs = [large["module_db_backup"], small["module_db_backup"], restore["module_db_restore"]]
    worst = max(max(run[key]["samples"]) for run in module_runs for key in ("vmhwm_mib", "ru_maxrss_mib"))
    figures["memory_goal"] = {"goal_mib": MEMORY_GOAL_MIB, "worst_module_peak_mib": worst,
                              "ok": worst < MEMORY_GOAL_MIB}
    figures["goals"] = {"backup_ratio": BACKUP_RATIO_GOAL, "memory_mib": MEMORY_GOAL_MIB,
                        "flat_tolerance_mib": FLAT_TOLERANCE_MIB}
    figures["load_average_end"] = load_average()
    return figures


def main():
    args = parse_args()
    # SIGTERM must unwind through the finally block too, so that the cluster is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not os.path.isdir(os.path.join(COLLECTIONS, "ansible_collections", "treazrisland", "ops")):
        raise BenchError("%s lacks the collection link: run make setup first" % COLLECTIONS)

    workdir = tempfile.mkdtemp(prefix="treazrisland-bench-")
    cluster = PgCluster(name="bench")
    try:
        log("starting PostgreSQL")
        cluster.start()
        figures = measure(Bench(cluster, workdir), args)
    finally:
        log("stopping PostgreSQL")
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    figures["total_seconds"] = round(time.monotonic() - STARTED, 1)

    print_report(figures)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(figures, handle, indent=2, sort_keys=True)
        handle.write("\n")
    print("figures written to %s (%.0f s in all)" % (os.path.relpath(args.output), figures["total_seconds"]))


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        print("db_bench: %s" % error, file=sys.stderr)
        sys.exit(1)
