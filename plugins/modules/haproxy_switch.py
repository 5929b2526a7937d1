#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_switch
short_description: Switch the traffic between blue and green backends in one HAProxy runtime API call
version_added: 0.3.0
description:
  - Sets one entry of a map file over HAProxy's runtime API (C(set map), or C(add map) when the entry is missing),
    the switch of a blue/green deployment. The frontend's C(use_backend) rules look the entry up and send every
    request to that color's backend, so every app host's traffic moves at once, without a reload.
  - With O(backend), the switch waits (bounded by O(up_timeout)) until that backend's servers are UP in HAProxy's
    own health checks (O(require_up)) and fails, switching nothing, when they are not.
  - Without O(value), only reads the entry.
  - Idempotent; C(changed) only when the entry (or, with O(persist), the file) changes.
  - "Needs a socket with admin level, for example C(stats socket /run/haproxy/admin.sock mode 600 level admin)."
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.haproxy
attributes:
  check_mode:
    support: full
    details: Reads the map and the backend's servers and says whether it would switch; does not wait.
  diff_mode:
    support: full
    details: The entry's value before and after, for example V(blue) to V(green).
  platform:
    platforms: posix
    details: Runs on the host that has the HAProxy socket (delegate to it).
options:
  map:
    description:
      - The map file as HAProxy's configuration names it in its C(map()) converter (an absolute path).
      - The file must exist (it may be empty) when HAProxy starts.
    type: path
    required: true
  key:
    description: The entry's key, the C(str()) the C(use_backend) rules look up (one word).
    type: str
    default: active
  value:
    description:
      - The entry's new value, the color the traffic goes to, for example V(green) (one word).
      - Omitted, the module only reads the entry.
    type: str
  backend:
    description:
      - The backend O(value) sends the traffic to, for example V(app_green); its servers are checked before the switch.
      - Omitted, nothing is checked.
    type: str
  require_up:
    description:
      - Which servers of O(backend) must be UP for the switch. V(all), every server not in maintenance; V(any), at
        least one (a rollback, where a lost host must not keep the others from their previous release); V(none),
        no check.
    type: str
    choices: [all, any, none]
    default: all
  up_timeout:
    description: Seconds to wait for O(backend)'s servers to come UP before failing without switching.
    type: int
    default: 30
  persist:
    description:
      - Also write the entry into the map file, so that an HAProxy reload or restart keeps the traffic on the color
        (without it, a reload reads the file again and may send the traffic to a color that was stopped).
      - Needs write access to the file; other lines are kept.
    type: bool
    default: false
seealso:
  - module: treazrisland.ops.haproxy_server
  - module: treazrisland.ops.haproxy_maintenance
  - name: HAProxy runtime API
    description: The C(set map), C(add map) and C(show map) commands.
    link: https://docs.haproxy.org/2.6/management.html#9.3
"""

EXAMPLES = r"""
- name: Send every request to the green release, once all its servers are up
  treazrisland.ops.haproxy_switch:
    socket: /run/haproxy/admin.sock
    map: /etc/haproxy/treazrisland-color.map
    value: green
    backend: app_green
    persist: true
  delegate_to: lb1

- name: Read which color takes the traffic
  treazrisland.ops.haproxy_switch:
    map: /etc/haproxy/treazrisland-color.map
  register: live_color
  delegate_to: lb1
"""

RETURN = r"""
map:
  description: The map file.
  returned: always
  type: str
  sample: /etc/haproxy/treazrisland-color.map
key:
  description: The entry's key.
  returned: always
  type: str
  sample: active
value:
  description: The entry's value afterwards (in check mode, the one it would have); null when there is no entry.
  returned: success
  type: str
  sample: green
previous_value:
  description: The entry's value before the module ran; null when there was none (the frontend's default applies).
  returned: success
  type: str
  sample: blue
backend:
  description: The backend that was checked, if any.
  returned: success
  type: str
  sample: app_green
servers:
  description: Status of each server of O(backend) in HAProxy's statistics when it was checked; null when not checked.
  returned: success
  type: dict
  sample: {"app1": "UP", "app2": "UP"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.haproxy import RUNTIME_API_ARGUMENT_SPEC
from ansible_collections.treazrisland.ops.plugins.module_utils.haproxy_switch import switch
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            RUNTIME_API_ARGUMENT_SPEC,
            map=dict(type="path", required=True),
            key=dict(type="str", default="active", no_log=False),
            value=dict(type="str"),
            backend=dict(type="str"),
            require_up=dict(type="str", default="all", choices=["all", "any", "none"]),
            up_timeout=dict(type="int", default=30),
            persist=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_module(module, switch)


if __name__ == "__main__":
    main()
