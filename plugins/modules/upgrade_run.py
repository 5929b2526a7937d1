#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: upgrade_run
short_description: The run record and the deployment lock of an upgrade, rollback or restore
version_added: 0.2.0
description:
  - Keeps one JSON record per run (0600) in O(dir) on the control host, inside the backup directory so that a
    database restore can never erase it - run id, operator, controller, versions before and after, the restore
    point, and every phase with its start, end and result - and one deployment lock.
  - O(state=validated) checks an upgrade's inputs before anything changes, reading only - O(to_version) is a
    semantic version (and so a safe path component), O(artifact) exists, is a readable tar archive, has
    O(artifact_sha256) when given, and holds O(to_version) in its O(version_file); O(app_hosts) is not empty.
  - O(state=started) checks the same inputs, then takes the lock - one upgrade, rollback or restore at a time.
    A lock whose ansible-playbook process has died on this controller, or whose O(lock_ttl) has passed, is stale
    and taken over (the record says so); any other holder makes it fail, naming the holder and the command that
    releases the lock. An upgrade that finds an unfinished run with a restore point refuses to start over, and
    says how to resume it (O(resume=true)) or roll it back; an unfinished run without a restore point changed
    nothing and is marked abandoned. A rollback works on the unfinished run (its restore point), else on the
    last complete upgrade.
  - O(state=phase) notes a phase (preflight, backup, migrate, assets, config, deploy batches, rollback...) as
    started or finished, with details and, for the backup, the restore point; it prolongs the lock and fails if
    another run holds it now.
  - O(state=finished) closes the run with its outcome, sets the restore point's status (complete, rolled back)
    in the record and in the restore point file, and releases the lock.
  - O(state=unlocked) releases the lock of the run named in O(run_id), only when that run looks gone or with
    O(force=true).
  - O(state=inspected) reads the lock, the unfinished run and the last complete upgrade.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Validates and reads; writes no record and takes no lock.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  dir:
    description: Directory of the run records and the lock, on the control host (for example V(<backup_dir>/runs)).
    type: path
    required: true
  state:
    description: What to do; see the description.
    type: str
    choices: [validated, started, phase, finished, unlocked, inspected]
    default: inspected
  action:
    description: The kind of run O(state=started) opens.
    type: str
    choices: [upgrade, rollback, restore]
    default: upgrade
  run_id:
    description: The run to note a phase of, finish, or release the lock of.
    type: str
  resume:
    description: With O(action=upgrade), continue the unfinished upgrade (same O(to_version)) instead of refusing.
    type: bool
    default: false
  operator:
    description: Who runs it; defaults to the user running the module.
    type: str
  from_version:
    description: The release running before the run.
    type: str
  to_version:
    description: The release the run goes to (for an upgrade, its target version).
    type: str
  artifact:
    description: The release artifact (C(.tar.gz)) on the control host, checked by O(state=validated) and O(state=started).
    type: path
  artifact_sha256:
    description: Expected sha256 of O(artifact); empty skips the comparison.
    type: str
  version_file:
    description: File inside O(artifact) that holds its version; empty skips the comparison with O(to_version).
    type: str
    default: VERSION
  app_hosts:
    description: The app hosts the upgrade deploys to; an empty list is refused.
    type: list
    elements: str
  app_group:
    description: Name of the inventory group of O(app_hosts), for messages.
    type: str
  phase:
    description: Name of the phase O(state=phase) notes.
    type: str
  phase_result:
    description: The phase's result; V(started) opens it, the others close it.
    type: str
    choices: [started, ok, changed, failed, skipped]
    default: ok
  details:
    description: What the phase did or why it failed (no secrets); with O(state=finished), the run's result.
    type: dict
  restore_point:
    description: The restore point the run can go back to (id, path, app_version, schema_version...).
    type: dict
  status:
    description: New status of an unfinished run (for example V(rolling_back) when its rollback starts).
    type: str
    choices: [in_progress, rolling_back, rollback_incomplete]
  outcome:
    description: How the run ended; V(rollback_incomplete) keeps it unfinished (a lost host is still to roll back).
    type: str
    choices: [complete, rolled_back, failed, rollback_incomplete, refused]
  summary:
    description: The run's final message, kept in the record.
    type: str
  lock_ttl:
    description: Seconds after which a lock that was not prolonged is stale (for holders on another controller).
    type: int
    default: 21600
  force:
    description: With O(state=unlocked), release the lock even though its holder still looks alive.
    type: bool
    default: false
  inventory_hint:
    description: Inventory path shown in the commands that messages suggest.
    type: str
seealso:
  - module: treazrisland.ops.db_backup
  - module: treazrisland.ops.db_restore
"""

EXAMPLES = r"""
- name: Take the deployment lock and open the run record
  treazrisland.ops.upgrade_run:
    dir: "{{ treazrisland_backup_dir }}/runs"
    state: started
    action: upgrade
    from_version: 1.4.0
    to_version: 1.5.0
    artifact: /srv/releases/treazrisland-1.5.0.tar.gz
    app_hosts: "{{ groups['app'] }}"
  register: upgrade_run

- name: Note that the migrations are done
  treazrisland.ops.upgrade_run:
    dir: "{{ treazrisland_backup_dir }}/runs"
    state: phase
    run_id: "{{ upgrade_run.run_id }}"
    phase: migrate
    phase_result: changed

- name: Close the run and release the lock
  treazrisland.ops.upgrade_run:
    dir: "{{ treazrisland_backup_dir }}/runs"
    state: finished
    run_id: "{{ upgrade_run.run_id }}"
    outcome: complete
"""

RETURN = r"""
run_id:
  description: Id of the run (also the record's file name without C(.json)).
  returned: when a run is opened, noted or finished
  type: str
  sample: 20261203T081500Z-upgrade-3fa2c1
run:
  description: The run record.
  returned: when a run is opened, noted or finished
  type: dict
  sample: {"id": "20261203T081500Z-upgrade-3fa2c1", "action": "upgrade", "status": "in_progress",
           "from_version": "1.4.0", "to_version": "1.5.0", "restore_point": null, "phases": []}
resumed:
  description: Whether O(state=started) continued an unfinished run instead of opening a new one.
  returned: when a run is opened
  type: bool
  sample: false
restore_point:
  description: The restore point of the run opened (a resumed upgrade's, or the one a rollback uses), or null.
  returned: when a run is opened
  type: dict
  sample: {"id": "20261203T081502Z", "path": "/var/backups/treazrisland/restore-points/20261203T081502Z.json"}
lock:
  description: The lock's holder (run id, action, operator, controller, pid, since, expires).
  returned: always, except for O(state=validated)
  type: dict
  sample: {"run_id": "20261203T081500Z-upgrade-3fa2c1", "controller": "ops1", "pid": 4242}
took_over_stale_lock:
  description: The stale holder whose lock O(state=started) took over, or null.
  returned: when a run is opened
  type: dict
  sample: null
unfinished:
  description: The unfinished run (O(state=inspected)), or null.
  returned: with O(state=inspected)
  type: dict
  sample: null
to_version:
  description: The validated target version.
  returned: with O(state=validated), and O(state=started) of an upgrade
  type: str
  sample: 1.5.0
artifact_sha256:
  description: sha256 of the artifact.
  returned: when O(artifact) was given
  type: str
  sample: 4f1c7d0c2b3a49e1a9d2c0e5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f
artifact_version:
  description: The version read from O(version_file) inside the artifact.
  returned: when O(artifact) was given
  type: str
  sample: 1.5.0
lock_released:
  description: Whether O(state=finished) released the lock.
  returned: with O(state=finished)
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.run_record import RUN_ARGUMENT_SPEC, run_record


def main():
    module = AnsibleModule(argument_spec=RUN_ARGUMENT_SPEC, supports_check_mode=True)
    run_module(module, run_record)


if __name__ == "__main__":
    main()
