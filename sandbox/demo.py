"""The demo (`make demo`): a local Treazrisland deployment, upgraded, then rescued by the automatic rollback.

1. builds the sandbox: three app hosts (network namespaces with their own sshd), PostgreSQL, a local S3
   server (rclone serve s3) with an asset bucket and a backup bucket, the stand-in app's releases 1.4.0,
   1.5.0 and a broken 1.6.0, and deploys 1.4.0;
2. upgrades 1.4.0 -> 1.5.0 with playbooks/upgrade.yml (3 migrations, a new env key, new assets);
3. attempts 1.6.0, whose health turns degraded: the first batch fails its health gate and the playbook
   rolls everything back to 1.5.0;
4. shows what every host serves and where the deployment log and the backups are, and stops every server.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandbox.site import Site, run_playbook  # noqa: E402

PLAYBOOK = os.path.join(REPO, "playbooks", "upgrade.yml")


def say(text):
    print("\n=== demo: %s" % text, flush=True)


def main():
    started = time.monotonic()
    output = os.path.join(REPO, "demo-output")
    shutil.rmtree(output, ignore_errors=True)
    os.makedirs(output)
    site = Site(output)
    try:
        say("building the sandbox: 3 app hosts, PostgreSQL, an S3 server, releases 1.4.0, 1.5.0 and a broken 1.6.0")
        site.start()
        first = run_playbook(site.first_deploy_playbook(), site.inventory(), site.release_vars("1.4.0"))
        if first.returncode:
            sys.exit("demo: the first deployment of 1.4.0 failed")
        say("1.4.0 serves on %s" % site.served())

        say("upgrading 1.4.0 -> 1.5.0 with playbooks/upgrade.yml")
        if run_playbook(PLAYBOOK, site.inventory(), site.release_vars("1.5.0")).returncode:
            sys.exit("demo: the upgrade to 1.5.0 failed")
        say("1.5.0 serves on %s; the asset bucket holds %d files" % (site.served(), len(site.assets())))

        say("attempting 1.6.0, which is broken on purpose: expect a failed health gate and a rollback")
        attempt = run_playbook(PLAYBOOK, site.inventory(), site.release_vars("1.6.0"))
        versions = site.served()
        if attempt.returncode == 0 or set(versions.values()) != {"1.5.0"}:
            sys.exit("demo: 1.6.0 should have failed and been rolled back to 1.5.0; hosts serve %s" % versions)
        say("the upgrade to 1.6.0 failed as expected and was rolled back: %s" % versions)

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
