#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: schedule_freeze
short_description: Freeze the host's cron jobs and systemd timers for an upgrade, and thaw exactly those afterwards
version_added: 0.3.0
description:
  - The guide's "Freeze deployments / scheduled jobs" step (1.2), and its undoing once the upgrade ended.
  - V(frozen) comments out every cron job line matching O(marker) in O(crontab), the files of O(cron_d) and the
    users' crontabs in O(crontab_spool), putting C(#treazrisland-frozen <freeze id>#) and a space in front of
    it; it stops and disables every systemd timer matching O(marker) that is active or enabled.
  - Cron files are replaced atomically (temporary file and rename, which also tells cron to reread them) and
    keep their mode and owner. Comments, blank lines and C(NAME=value) environment lines are never touched.
  - What it disables is written to the O(record) file before anything changes, so an interrupted run can be
    finished by running V(frozen) again, or undone with V(thawed).
  - V(thawed) restores only what the record names (lines carrying the record's prefix, timers back to enabled
    and/or started as they were), then removes the record. A job the operator had commented out or a timer the
    operator had stopped before the freeze is not in the record and stays off.
  - A second V(frozen) with a record present changes nothing unless a new matching job appeared (it is frozen
    and added to the same record). V(thawed) without a record changes nothing.
  - If the record is lost, the frozen lines still carry the prefix; C(grep -rn '#treazrisland-frozen'
    /etc/crontab /etc/cron.d /var/spool/cron) finds them.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the cron files, the timers and the record; says what it would disable or restore; writes nothing.
  diff_mode:
    support: full
    details: Each changed cron file before and after, and the timers' enabled and active states before and after.
  platform:
    platforms: posix
    details: Runs on each app host, as root (the cron files and C(systemctl) need it).
options:
  state:
    description:
      - V(frozen) disables the matching jobs and timers; V(thawed) restores those the record names.
    type: str
    choices: [frozen, thawed]
    required: true
  marker:
    description:
      - Python regular expression searched in each cron job line, and in each timer's name, description and
        triggered unit. Plain text such as V(treazrisland) matches as a substring.
      - Required with O(state=frozen); V(thawed) uses the record only.
    type: str
  run_id:
    description:
      - Names the freeze in the prefix of frozen lines and in the record, for example the upgrade's run id.
      - "Letters, digits and C(. _ : -). Default is the UTC time. When a record is present its id is kept."
    type: str
  record:
    description: JSON file (0600) naming exactly what the freeze disabled.
    type: path
    default: /var/lib/treazrisland/freeze.json
  crontab:
    description: The system crontab.
    type: path
    default: /etc/crontab
  cron_d:
    description: Directory of system crontab files; hidden files and names ending in C(~) are skipped, as cron does.
    type: path
    default: /etc/cron.d
  crontab_spool:
    description:
      - Directory of the users' crontabs, one file per user (Debian's C(/var/spool/cron/crontabs); V(/var/spool/cron)
        on Red Hat's cronie). The files are edited in place (what C(crontab -u <user>) would install), so cron
        rereads them.
    type: path
    default: /var/spool/cron/crontabs
  timers:
    description:
      - Whether to freeze systemd timers. Default is to do so only where systemd runs (C(/run/systemd/system) exists).
    type: bool
  systemctl:
    description: The C(systemctl) command.
    type: path
    default: systemctl
  command_timeout:
    description: Seconds one C(systemctl) call may take.
    type: float
    default: 60
seealso:
  - module: treazrisland.ops.deployment_notify
"""

EXAMPLES = r"""
- name: Freeze scheduled jobs (guide 1.2)
  treazrisland.ops.schedule_freeze:
    state: frozen
    marker: treazrisland
    run_id: "{{ treazrisland_run_id }}"

- name: Thaw them once the upgrade (or its rollback) ended
  treazrisland.ops.schedule_freeze:
    state: thawed
"""

RETURN = r"""
state:
  description: The state asked for.
  returned: always
  type: str
  sample: frozen
run_id:
  description: The freeze's id (the prefix's); null when thawing found no record.
  returned: always
  type: str
  sample: 20261203T145300Z-upgrade
record:
  description: The record file.
  returned: always
  type: str
  sample: /var/lib/treazrisland/freeze.json
disabled:
  description: What this run disabled (in check mode, would disable); C(cron) lists C(file) and C(line), the line as it was.
  returned: when O(state=frozen)
  type: dict
  sample: {"cron": [{"file": "/etc/cron.d/treazrisland", "line": "*/5 * * * * app /opt/treazrisland/bin/sync"}],
           "timers": ["treazrisland-cleanup.timer"]}
frozen:
  description: Everything the record names as frozen, this run's and earlier runs'.
  returned: when O(state=frozen)
  type: dict
  sample: {"cron": [{"file": "/etc/cron.d/treazrisland", "line": "*/5 * * * * app /opt/treazrisland/bin/sync"}],
           "timers": ["treazrisland-cleanup.timer"]}
restored:
  description: What this run restored (in check mode, would restore).
  returned: when O(state=thawed)
  type: dict
  sample: {"cron": [{"file": "/etc/cron.d/treazrisland", "line": "*/5 * * * * app /opt/treazrisland/bin/sync"}],
           "timers": ["treazrisland-cleanup.timer"]}
missing:
  description: Record entries found neither frozen nor running (their line, file or unit is gone), left as they are.
  returned: when O(state=thawed)
  type: list
  elements: dict
  sample: [{"file": "/etc/cron.d/old", "line": "0 1 * * * root treazrisland-report", "why": "file gone"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.schedule_freeze import freeze


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", required=True, choices=["frozen", "thawed"]),
            marker=dict(type="str"),
            run_id=dict(type="str"),
            record=dict(type="path", default="/var/lib/treazrisland/freeze.json"),
            crontab=dict(type="path", default="/etc/crontab"),
            cron_d=dict(type="path", default="/etc/cron.d"),
            crontab_spool=dict(type="path", default="/var/spool/cron/crontabs"),
            timers=dict(type="bool"),
            systemctl=dict(type="path", default="systemctl"),
            command_timeout=dict(type="float", default=60),
        ),
        required_if=[("state", "frozen", ["marker"])],
        supports_check_mode=True,
    )
    run_module(module, freeze)


if __name__ == "__main__":
    main()
