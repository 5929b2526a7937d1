#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_server
short_description: Drain, enable or disable one server of an HAProxy backend through its runtime API
version_added: 0.3.0
description:
  - Sets the administrative state of one server with the runtime API (C(set server <backend>/<server> state ...))
    over HAProxy's unix socket, the load-balancer step of a rolling deployment (guide 6.2).
  - V(drained) sends no new sessions to the server and, with O(wait), waits until its current sessions and queued
    requests (C(scur) and C(qcur) of C(show stat)) are gone, bounded by O(wait_timeout); V(enabled) puts it back
    (HAProxy's health checks still decide whether it is up); V(disabled) is maintenance.
  - Idempotent; C(changed) only when the administrative state changes. The change is not persistent across an
    HAProxy reload (use C(load-server-state-from-file) for that).
  - "Needs a socket with admin level, for example C(stats socket /run/haproxy/admin.sock mode 600 level admin)."
  - Talks to the socket with the Python standard library only; community.general's C(haproxy) module does the same
    where that collection is installed.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the state and says whether it would change it; does not wait.
  diff_mode:
    support: full
    details: "The server's administrative state before and after, for example V(state: enabled) to V(state: drained)."
  platform:
    platforms: posix
    details: Runs on the host that has the HAProxy socket (delegate to it).
options:
  socket:
    description: Path of HAProxy's runtime API socket (admin level).
    type: path
    default: /run/haproxy/admin.sock
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
    type: str
    choices: [drained, enabled, disabled]
    required: true
  wait:
    description: For V(drained) and V(disabled), wait until the server has no current session nor queued request.
    type: bool
    default: true
  wait_timeout:
    description: Seconds O(wait) may last; the module fails when sessions remain after it, leaving the state set.
    type: int
    default: 60
  timeout:
    description: Seconds one runtime API command may take.
    type: float
    default: 5
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

- name: Put it back once its health gate passed
  treazrisland.ops.haproxy_server:
    socket: /run/haproxy/admin.sock
    backend: app
    server: app1
    state: enabled
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

from ansible_collections.treazrisland.ops.plugins.module_utils.haproxy import set_server
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", default="/run/haproxy/admin.sock"),
            backend=dict(type="str", required=True),
            server=dict(type="str", required=True),
            state=dict(type="str", required=True, choices=["drained", "enabled", "disabled"]),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=60),
            timeout=dict(type="float", default=5),
        ),
        supports_check_mode=True,
    )
    run_module(module, set_server)


if __name__ == "__main__":
    main()
