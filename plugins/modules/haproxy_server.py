#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_server
short_description: Drain, enable, disable or weigh one server of an HAProxy backend through its runtime API
version_added: 0.3.0
description:
  - Sets the administrative state of one server with the runtime API (C(set server <backend>/<server> state ...))
    over HAProxy's unix socket, the load-balancer step of a rolling deployment (guide 6.2).
  - V(drained) sends no new sessions to the server and, with O(wait), waits until its current sessions and queued
    requests (C(scur) and C(qcur) of C(show stat)) are gone, bounded by O(wait_timeout); V(enabled) puts it back
    (HAProxy's health checks still decide whether it is up); V(disabled) is maintenance.
  - O(weight) sets the server's weight (C(set server <backend>/<server> weight ...)), as a number or as a
    percentage of the weight in HAProxy's configuration, the step of a canary; it is set before O(state), so a
    server enabled with a weight never takes a request at its former one. With neither O(state) nor O(weight),
    the module only reads the server.
  - Idempotent; C(changed) only when the administrative state or the weight changes. The change is not
    persistent across an HAProxy reload (use C(load-server-state-from-file) for that).
  - "Needs a socket with admin level, for example C(stats socket /run/haproxy/admin.sock mode 600 level admin)."
  - Talks to the socket with the Python standard library only; community.general's C(haproxy) module does the same
    where that collection is installed.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.haproxy
attributes:
  check_mode:
    support: full
    details: Reads the state and says whether it would change it; does not wait.
  diff_mode:
    support: full
    details: The server's administrative state and weight before and after.
  platform:
    platforms: posix
    details: Runs on the host that has the HAProxy socket (delegate to it).
options:
  backend:
    description: Name of the backend.
    type: str
    required: true
  server:
    description: Name of the server in O(backend).
    type: str
    required: true
  state:
    description:
      - V(drained) (no new sessions), V(enabled) (ready), V(disabled) (maintenance).
      - Omitted, the administrative state is left as it is.
    type: str
    choices: [drained, enabled, disabled]
  weight:
    description:
      - The server's weight, V(0) to V(256), or a percentage of its weight in HAProxy's configuration (C(srv_iweight)),
        for example V(10%); V(100%) is its full weight again.
      - A non-zero percentage never rounds down to 0, so give the servers a configured weight of 100 or more (HAProxy's
        default is 1) for steps such as V(10%) to mean what they say.
      - Compared with the server's current weight (C(srv_uweight)); omitted, the weight is left as it is.
    type: str
  wait:
    description: For V(drained) and V(disabled), wait until the server has no current session nor queued request.
    type: bool
    default: true
  wait_timeout:
    description: Seconds O(wait) may last; the module fails when sessions remain after it, leaving the state set.
    type: int
    default: 60
seealso:
  - name: HAProxy runtime API
    description: The C(set server) and C(show servers state) commands.
    link: https://docs.haproxy.org/2.6/management.html#9.3
"""

EXAMPLES = r"""
- name: Take app1 out of the pool before its restart
  treazrisland.ops.haproxy_server:
    socket: /run/haproxy/admin.sock
    backend: app
    server: app1
    state: drained
    wait_timeout: 30
  delegate_to: lb1

- name: Put it back once its health gate passed, at a tenth of its configured weight (a canary)
  treazrisland.ops.haproxy_server:
    socket: /run/haproxy/admin.sock
    backend: app
    server: app1
    state: enabled
    weight: 10%
  delegate_to: lb1

- name: Give it its full weight
  treazrisland.ops.haproxy_server:
    backend: app
    server: app1
    weight: 100%
  delegate_to: lb1

- name: Read the server's state and weight
  treazrisland.ops.haproxy_server:
    backend: app
    server: app1
  register: app1_in_lb
  delegate_to: lb1
"""

RETURN = r"""
backend:
  description: The backend.
  returned: always
  type: str
  sample: app
server:
  description: The server.
  returned: always
  type: str
  sample: app1
previous_state:
  description: Administrative state before the module ran (V(enabled), V(drained) or V(disabled)).
  returned: success
  type: str
  sample: enabled
state:
  description: Administrative state afterwards (in check mode, the one it would have).
  returned: success
  type: str
  sample: drained
previous_weight:
  description: The server's weight before the module ran.
  returned: success
  type: int
  sample: 100
weight:
  description: The server's weight afterwards (in check mode, the one it would have).
  returned: success
  type: int
  sample: 10
initial_weight:
  description: The server's weight in HAProxy's configuration, what V(100%) means.
  returned: success
  type: int
  sample: 100
sessions:
  description: Current sessions plus queued requests of the server at the end; null in check mode.
  returned: always
  type: int
  sample: 0
waited:
  description: Seconds spent waiting for the sessions to end.
  returned: always
  type: float
  sample: 0.4
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.haproxy import RUNTIME_API_ARGUMENT_SPEC, set_server
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            RUNTIME_API_ARGUMENT_SPEC,
            backend=dict(type="str", required=True),
            server=dict(type="str", required=True),
            state=dict(type="str", choices=["drained", "enabled", "disabled"]),
            weight=dict(type="str"),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    run_module(module, set_server)


if __name__ == "__main__":
    main()
