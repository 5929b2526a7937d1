#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_release
short_description: Install, switch, mark and prune release directories of an application host
version_added: 0.1.0
description:
  - The guide's Deployment and Rollback (application code) steps on one host, in the layout
    C(<base_dir>/releases/<version>), C(<base_dir>/shared), C(<base_dir>/current) (a symlink).
  - O(state=present) unpacks a release artifact (C(.tar.gz) on the host) into C(releases/<version>) in one
    streamed pass that also computes its sha256, refusing members that would land outside the release
    directory, then links the O(shared) paths into it. The directory appears only when complete.
  - O(state=current) switches the C(current) symlink atomically (a new link renamed over the old one).
    The current release is always read from that symlink, never guessed from directory times.
  - O(state=good) records the current release as the last known good one (after the health gate passed).
  - O(state=pruned) keeps the O(keep_releases) newest releases by switch history, and never removes the
    current release nor the last known good one.
  - Every state returns RV(current), RV(previous), RV(last_good) and RV(releases).
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change, changes nothing.
  diff_mode:
    support: full
    details: Shows the C(current) symlink before and after a switch.
  platform:
    platforms: posix
options:
  base_dir:
    description: The application's base directory, e.g. V(/opt/treazrisland).
    type: path
    required: true
  version:
    description: The release id, the same on every host. Required except with O(state=pruned).
    type: str
  state:
    description: What to do; see the description.
    type: str
    choices: [present, current, good, pruned]
    default: present
  src:
    description: The release artifact (C(.tar.gz)) on the host, for O(state=present).
    type: path
  sha256:
    description: Expected sha256 of O(src); a mismatch installs nothing.
    type: str
  shared:
    description:
      - Paths inside the release to link to paths under C(<base_dir>/shared).
      - 'For example V({".env": ".env"}) makes the release read the shared C(.env).'
    type: dict
  keep_releases:
    description: With O(state=pruned), how many releases to keep.
    type: int
    default: 5
seealso:
  - module: treazrisland.ops.app_release_info
"""

EXAMPLES = r"""
- name: Install release 1.5.0
  treazrisland.ops.app_release:
    base_dir: /opt/treazrisland
    version: 1.5.0
    src: /tmp/treazrisland-1.5.0.tar.gz
    shared:
      .env: .env

- name: Switch to it
  treazrisland.ops.app_release:
    base_dir: /opt/treazrisland
    version: 1.5.0
    state: current
"""

RETURN = r"""
current:
  description: The release the C(current) symlink points at (after the change).
  returned: always
  type: str
  sample: 1.5.0
previous:
  description: The release that was current before the latest switch, per the switch history.
  returned: always
  type: str
  sample: 1.4.0
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
  sample: ["1.4.0", "1.5.0"]
sha256:
  description: sha256 of the artifact unpacked.
  returned: when O(state=present) installed a release
  type: str
  sample: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
removed:
  description: Releases removed by O(state=pruned).
  returned: when O(state=pruned)
  type: list
  elements: str
  sample: ["1.2.0"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.release import release


def main():
    module = AnsibleModule(
        argument_spec=dict(
            base_dir=dict(type="path", required=True),
            version=dict(type="str"),
            state=dict(type="str", choices=["present", "current", "good", "pruned"], default="present"),
            src=dict(type="path"),
            sha256=dict(type="str"),
            shared=dict(type="dict"),
            keep_releases=dict(type="int", default=5),
        ),
        required_if=[("state", "present", ("version",)), ("state", "current", ("version",)),
                     ("state", "good", ("version",))],
        supports_check_mode=True,
    )
    run_module(module, release)


if __name__ == "__main__":
    main()
