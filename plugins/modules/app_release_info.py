#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_release_info
short_description: Read which release an application host runs, from its current symlink
version_added: 0.1.0
description:
  - The guide's "Record running application version" step, on one host.
  - Reads the C(current) symlink of O(base_dir) (never directory times), the switch history and the last
    known good release written by M(treazrisland.ops.app_release). Changes nothing.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  base_dir:
    description: The application's base directory, e.g. V(/opt/treazrisland).
    type: path
    required: true
  restart_command:
    description:
      - The command (argument list) that will restart the application; when given, checked without running
        it, see RV(restart_command_problem).
    type: list
    elements: str
seealso:
  - module: treazrisland.ops.app_release
"""

EXAMPLES = r"""
- name: Record the running release
  treazrisland.ops.app_release_info:
    base_dir: /opt/treazrisland
  register: running
"""

RETURN = r"""
current:
  description: The release the C(current) symlink points at, null when there is none.
  returned: always
  type: str
  sample: 1.4.0
previous:
  description: The release that was current before the latest switch.
  returned: always
  type: str
  sample: 1.3.2
last_good:
  description: The last release marked good.
  returned: always
  type: str
  sample: 1.4.0
releases:
  description: Installed releases.
  returned: always
  type: list
  elements: str
  sample: ["1.3.2", "1.4.0"]
restart_command_problem:
  description:
    - Why O(restart_command) cannot work on this host, null when it can. Its program must exist; for
      C(systemctl restart <unit>) the unit must be installed (Treazrisland ships none).
  returned: when O(restart_command) is given
  type: str
  sample: "restart command systemctl restart treazrisland-backend: no systemd unit treazrisland-backend on this host: ..."
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.release import release_info


def main():
    module = AnsibleModule(
        argument_spec=dict(base_dir=dict(type="path", required=True), restart_command=dict(type="list", elements="str")),
        supports_check_mode=True)
    run_module(module, release_info)


if __name__ == "__main__":
    main()
