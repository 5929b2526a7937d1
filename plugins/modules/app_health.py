#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_health
short_description: Wait until Treazrisland's health endpoint reports healthy, and say why when it does not
version_added: 0.2.0
description:
  - The guide's health gate (6.1, 7.5), asked on the application host itself.
  - Treazrisland answers C(GET /health) with HTTP 200 even when degraded, so the JSON C(status) decides; only
    the statuses in O(ok_status) count as healthy.
  - "When the endpoint is not healthy after O(tries) requests, the failure names every dependency that is not
    up, with its error, in whichever form the release reports them (C(dependencies) as the current backend
    does, C(components) as older releases do, or a C(problems) list), for example
    V(objectStorage down: connect ECONNREFUSED 10.0.0.5:9000)."
  - Its database check is C(SELECT 1), so a healthy answer does not prove the schema is migrated; the upgrade
    compares the schema version for that (M(treazrisland.ops.db_schema_version)).
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only; it asks the endpoint in check mode too.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  url:
    description:
      - The health endpoint. The backend listens on C(PORT) of its C(backend/.env), 4000 in its own sample and
        in its Compose file.
    type: str
    default: http://127.0.0.1:4000/health
  ok_status:
    description: JSON C(status) values that count as healthy.
    type: list
    elements: str
    default: [ok]
  tries:
    description: How many times the endpoint is asked before the host counts as unhealthy.
    type: int
    default: 20
  delay:
    description: Seconds between two requests.
    type: float
    default: 1
  timeout:
    description: Seconds one request may take.
    type: float
    default: 5
  validate_certs:
    description: Verify the certificate of an C(https) URL.
    type: bool
    default: true
seealso:
  - module: treazrisland.ops.app_release_info
"""

EXAMPLES = r"""
- name: Gate on health after the restart
  treazrisland.ops.app_health:
    url: http://127.0.0.1:4000/health
    tries: 30
"""

RETURN = r"""
healthy:
  description: Whether the endpoint answered HTTP 200 with a status of O(ok_status).
  returned: always
  type: bool
  sample: true
status:
  description: The JSON C(status) of the last answer, null when there was none.
  returned: always
  type: str
  sample: degraded
http_status:
  description: The HTTP status of the last answer, null when nothing answered.
  returned: always
  type: int
  sample: 200
reasons:
  description: Each dependency that is not up, with its error (credentials in URLs masked).
  returned: always
  type: list
  elements: str
  sample: ["objectStorage down: connect ECONNREFUSED 10.0.0.5:9000"]
dependencies:
  description: The C(dependencies) of the last answer as the application reported them (credentials masked).
  returned: always
  type: dict
  sample: {"redis": {"status": "up"}, "prisma": {"status": "up"}, "objectStorage": {"status": "up"}}
attempts:
  description: Requests made.
  returned: always
  type: int
  sample: 3
elapsed:
  description: Seconds spent, rounded to a tenth.
  returned: always
  type: float
  sample: 2.1
url:
  description: The endpoint asked.
  returned: always
  type: str
  sample: http://127.0.0.1:4000/health
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.health import wait_until_healthy
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", default="http://127.0.0.1:4000/health"),
            ok_status=dict(type="list", elements="str", default=["ok"]),
            tries=dict(type="int", default=20),
            delay=dict(type="float", default=1),
            timeout=dict(type="float", default=5),
            validate_certs=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    run_module(module, wait_until_healthy)


if __name__ == "__main__":
    main()
