"""Release directories on three SSH hosts (network namespaces with their own /opt)."""

from __future__ import annotations

import io
import os
import tarfile

from helpers import results_by_host, run_tasks

BASE = "/opt/treazrisland"


def copy_task(artifacts, version):
    return {"name": "copy %s" % version, "ansible.builtin.copy": {
        "src": artifacts[version], "dest": "/srv/treazrisland-%s.tar.gz" % version, "mode": "0600"}}


def release_task(name, version, state="present", **more):
    if state == "present":
        more.setdefault("src", "/srv/treazrisland-%s.tar.gz" % version)
    return {"name": name, "ignore_errors": True,
            "treazrisland.ops.app_release": dict(base_dir=BASE, version=version, state=state, **more)}


def run_on_hosts(ssh_hosts, tasks, **kwargs):
    return run_tasks(tasks, hosts="app", inventory=ssh_hosts.inventory(), **kwargs)


def by_task(run, name):
    """{host: result} of the task called name."""
    return {record["host"]: record["result"] for record in run.results if record["task"] == name}


def test_install_switch_mark_and_prune_on_every_host(ssh_hosts, release_artifacts):
    for host in ssh_hosts.hosts:
        os.makedirs(os.path.join(host.opt, "treazrisland", "shared"), exist_ok=True)
        with open(os.path.join(host.opt, "treazrisland", "shared", ".env"), "w") as handle:
            handle.write("APP_PORT=8080\n")
    shared = {".env": ".env"}
    run = run_on_hosts(ssh_hosts, [
        copy_task(release_artifacts, "1.4.0"), copy_task(release_artifacts, "1.5.0"),
        copy_task(release_artifacts, "1.6.0"),
        release_task("install 1.4.0", "1.4.0", shared=shared),
        release_task("install 1.4.0 again", "1.4.0", shared=shared),
        release_task("switch to 1.4.0", "1.4.0", "current"),
        release_task("1.4.0 is good", "1.4.0", "good"),
        release_task("install 1.5.0", "1.5.0", shared=shared),
        release_task("switch to 1.5.0", "1.5.0", "current"),
        release_task("1.5.0 is good", "1.5.0", "good"),
        release_task("back to 1.4.0", "1.4.0", "current"),
        release_task("install 1.6.0", "1.6.0", shared=shared),
        release_task("switch to 1.6.0", "1.6.0", "current"),
        release_task("back to 1.4.0 again", "1.4.0", "current"),
        release_task("prune to one", None, "pruned", keep_releases=1),
    ], diff=True)
    assert not [r for r in run.results if r["status"] == "failed"], run.output

    installed = by_task(run, "install 1.4.0")
    assert sorted(installed) == ["app1", "app2", "app3"]
    assert all(r["changed"] and r["releases"] == ["1.4.0"] and r["current"] is None for r in installed.values())
    assert not any(r["changed"] for r in by_task(run, "install 1.4.0 again").values())
    assert all(r["current"] == "1.5.0" for r in by_task(run, "switch to 1.5.0").values())
    # Going back is the rollback of application code: previous comes from the switch history, not mtimes.
    back = by_task(run, "back to 1.4.0")
    assert all(r["changed"] and r["current"] == "1.4.0" and r["previous"] == "1.5.0" for r in back.values())
    assert all(r["last_good"] == "1.5.0" for r in back.values())
    # Newest first: 1.4.0 (current), 1.6.0, 1.5.0 (last good, the oldest): only 1.6.0 may go.
    pruned = by_task(run, "prune to one")
    assert all(r["removed"] == ["1.6.0"] and r["releases"] == ["1.4.0", "1.5.0"] for r in pruned.values())

    for host in ssh_hosts.hosts:
        root = os.path.join(host.opt, "treazrisland")
        assert os.readlink(os.path.join(root, "current")) == "releases/1.4.0"
        assert os.readlink(os.path.join(root, "releases", "1.5.0", ".env")) == "%s/shared/.env" % BASE
        with open(os.path.join(root, "releases", "1.5.0", "VERSION")) as handle:
            assert handle.read() == "1.5.0\n"
        assert sorted(os.listdir(os.path.join(root, "releases"))) == ["1.4.0", "1.5.0"]


def test_check_mode_switch_changes_nothing(ssh_hosts, release_artifacts):
    before = {h.name: os.readlink(os.path.join(h.opt, "treazrisland", "current")) for h in ssh_hosts.hosts}
    target = "1.5.0" if before["app1"] != "releases/1.5.0" else "1.4.0"
    run = run_on_hosts(ssh_hosts, [release_task("switch", target, "current")], check=True)
    assert all(r["changed"] and r["current"] == target for r in results_by_host(run).values())
    after = {h.name: os.readlink(os.path.join(h.opt, "treazrisland", "current")) for h in ssh_hosts.hosts}
    assert after == before


def test_artifact_escaping_the_release_directory_is_refused(ssh_hosts, tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../etc/treazrisland-pwned")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    run = run_tasks([
        {"name": "copy", "ansible.builtin.copy": {"src": str(evil), "dest": "/srv/evil.tar.gz", "mode": "0600"}},  # the host's own /srv
        {"name": "release", "ignore_errors": True, "treazrisland.ops.app_release": {
            "base_dir": BASE, "version": "6.6.6", "src": "/srv/evil.tar.gz"}},
    ], hosts="app1", inventory=ssh_hosts.inventory())
    assert run.failed
    assert run.msg == "the artifact holds '../../etc/treazrisland-pwned', outside the release directory; refusing it"
    host = ssh_hosts.hosts[0]
    assert not os.path.exists(os.path.join(host.opt, "treazrisland", "releases", "6.6.6"))
    assert not [n for n in os.listdir(os.path.join(host.opt, "treazrisland", "releases")) if n.endswith(".partial")]
