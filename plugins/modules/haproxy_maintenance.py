#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_maintenance
short_description: Open or close the maintenance window that HAProxy answers itself, through its runtime API
version_added: 0.3.0
description:
  - Puts the application into maintenance mode in front of it (guide 3.2) and takes it out again (guide 6.3)
    without a reload, by setting one entry of a map file over HAProxy's runtime API
    (C(add map), C(set map), C(del map)).
  - The frontend's C(http-request return status 503) rules look the entry up (see docs/maintenance.md for
    the exact configuration lines). V(writes) refuses every method but GET and HEAD with 503 and
    C(Retry-After); V(all) refuses every request but C(/health); no entry refuses nothing.
  - Reads the map first; C(changed) only when the entry (or, with O(persist), the file) changes. V(off) when
    the window is not open changes nothing.
  - "Needs a socket with admin level, for example C(stats socket /run/haproxy/admin.sock mode 600 level admin)."
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.haproxy
attributes:
  check_mode:
    support: full
    details: Reads the map and says whether it would change it.
  diff_mode:
    support: full
    details: "The window before and after, for example V(maintenance: off) to V(maintenance: writes)."
  platform:
    platforms: posix
    details: Runs on the host that has the HAProxy socket (delegate to it).
options:
  map:
    description:
      - The map file as HAProxy's configuration names it in its C(map()) converter (an absolute path).
      - The file must exist (it may be empty) when HAProxy starts.
    type: path
    default: /etc/haproxy/maintenance.map
  key:
    description: The entry's key, the C(str()) the maintenance rules look up (one word).
    type: str
    default: treazrisland
  state:
    description: V(on) opens the window, V(off) closes it.
    type: str
    choices: ['on', 'off']
    required: true
  scope:
    description:
      - What the window refuses while V(on). V(writes), every method but GET and HEAD; V(all), every
        request but C(/health) (its load balancer and monitoring keep seeing the app).
      - Ignored with O(state=off).
    type: str
    choices: [writes, all]
    default: writes
  persist:
    description:
      - Also write the entry into the map file, so that an HAProxy reload or restart during the window keeps
        it. Needs write access to the file; other lines are kept.
      - Without it, a reload reads the file again and ends the window.
    type: bool
    default: false
seealso:
  - module: treazrisland.ops.haproxy_server
  - name: HAProxy runtime API
    description: The C(add map), C(set map), C(del map) and C(show map) commands.
    link: https://docs.haproxy.org/2.6/management.html#9.3
  - name: HAProxy http-request return
    description: The action that answers the request from HAProxy itself.
    link: https://docs.haproxy.org/2.6/configuration.html#4.2-http-request%20return
"""

EXAMPLES = r"""
- name: Refuse writes while the migrations run (guide 3.2)
  treazrisland.ops.haproxy_maintenance:
    socket: /run/haproxy/admin.sock
    map: /etc/haproxy/maintenance.map
    state: 'on'
    scope: writes
  delegate_to: lb1

- name: Refuse everything but /health
  treazrisland.ops.haproxy_maintenance:
    state: 'on'
    scope: all
    persist: true
  delegate_to: lb1

- name: Remove maintenance mode (guide 6.3)
  treazrisland.ops.haproxy_maintenance:
    state: 'off'
  delegate_to: lb1
"""

RETURN = r"""
map:
  description: The map file.
  returned: always
  type: str
  sample: /etc/haproxy/maintenance.map
key:
  description: The entry's key.
  returned: always
  type: str
  sample: treazrisland
state:
  description: The state asked for.
  returned: success
  type: str
  sample: 'on'
scope:
  description: What the window refuses afterwards (in check mode, would refuse), V(writes) or V(all); null when off.
  returned: success
  type: str
  sample: writes
previous_scope:
  description: The entry's value before the module ran; null when the window was not open.
  returned: success
  type: str
  sample: null
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.haproxy import RUNTIME_API_ARGUMENT_SPEC
from ansible_collections.treazrisland.ops.plugins.module_utils.haproxy_maintenance import maintenance
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            RUNTIME_API_ARGUMENT_SPEC,
            map=dict(type="path", default="/etc/haproxy/maintenance.map"),
            key=dict(type="str", default="treazrisland", no_log=False),
            state=dict(type="str", required=True, choices=["on", "off"]),
            scope=dict(type="str", default="writes", choices=["writes", "all"]),
            persist=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run_module(module, maintenance)


if __name__ == "__main__":
    main()
