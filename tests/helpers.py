"""Running the collection's modules the way operators do: through ansible-playbook."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
INVENTORY = os.path.join(REPO, "sandbox", "inventory.ini")
CALLBACKS = os.path.join(REPO, "tests", "plugins", "callback")


class PlayRun:
    """An ansible-playbook run: its exit code, its output and the recorded task results."""

    def __init__(self, returncode, output, results):
        self.returncode = returncode
        self.output = output
        self.results = results

    @property
    def result(self):
        """The result of the last task."""
        assert self.results, "no task result recorded; output:\n" + self.output
        return self.results[-1]["result"]

    @property
    def failed(self):
        return self.results[-1]["status"] == "failed"

    @property
    def msg(self):
        return self.result.get("msg", "")


def ansible_env(record_path=None):
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
        ANSIBLE_CALLBACK_PLUGINS=CALLBACKS,
        ANSIBLE_CALLBACKS_ENABLED="record_results",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    if record_path:
        env["RECORD_RESULTS"] = record_path
    return env


def run_tasks(tasks, check=False, diff=False, verbosity=0, background=False, hosts="localhost", inventory=INVENTORY,
              extra_vars=None):
    """Run tasks in one play (on localhost by default); return a PlayRun (or the Popen with background=True)."""
    workdir = tempfile.mkdtemp(prefix="treazrisland-play-")
    playbook = os.path.join(workdir, "play.yml")
    with open(playbook, "w") as handle:
        json.dump([{"name": "under test", "hosts": hosts, "gather_facts": False, "tasks": tasks}], handle)
    run = run_playbook(playbook, check=check, diff=diff, verbosity=verbosity, background=background,
                       inventory=inventory, extra_vars=extra_vars)
    if background:
        run.cleanup.append(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return run


def run_playbook(playbook, check=False, diff=False, verbosity=0, background=False, inventory=INVENTORY,
                 extra_vars=None, limit=None):
    """Run a playbook file; extra_vars go through a 0600 JSON file, never the command line."""
    workdir = tempfile.mkdtemp(prefix="treazrisland-run-")
    record = os.path.join(workdir, "results.jsonl")
    argv = ["ansible-playbook", "-i", inventory, playbook]
    if extra_vars:
        vars_path = os.path.join(workdir, "vars.json")
        with open(os.open(vars_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
            json.dump(extra_vars, handle)
        argv += ["-e", "@" + vars_path]
    if limit:
        argv += ["--limit", limit]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if verbosity:
        argv.append("-" + "v" * verbosity)
    env = ansible_env(record)
    if background:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        process.record_path = record
        process.cleanup = [workdir]  # removed by finish_background
        return process
    try:
        completed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
        return PlayRun(completed.returncode, completed.stdout + completed.stderr, read_results(record))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def finish_background(process):
    """Wait for a background run (or reap a killed one), read its results, remove its files."""
    try:
        output, _unused = process.communicate(timeout=600)
        return PlayRun(process.returncode, output, read_results(process.record_path))
    finally:
        for path in process.cleanup:
            shutil.rmtree(path, ignore_errors=True)


def read_results(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def run_module(module, args, **kwargs):
    """Run one module of the collection as one task; the task may fail (the PlayRun says)."""
    task = {"name": module, "treazrisland.ops." + module: args, "ignore_errors": True}
    return run_tasks([task], **kwargs)


def results_by_host(run):
    """{host: result} of the last task of each host."""
    return {record["host"]: record["result"] for record in run.results}


@contextlib.contextmanager
def deployed_site(hosts, work_dir, base):
    """The sandbox deployment (sandbox/site.py) on shared SSH hosts, release 1.4.0 deployed; stopped afterwards."""
    from sandbox.site import Site  # pylint: disable=import-outside-toplevel
    deployment = Site(work_dir, hosts=hosts, base=base).start()
    try:
        run = run_playbook(deployment.first_deploy_playbook(), inventory=deployment.inventory(),
                           extra_vars=deployment.release_vars("1.4.0"))
        assert run.returncode == 0, run.output
        yield deployment
    finally:
        deployment.stop()
