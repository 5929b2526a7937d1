#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deployment_notify
short_description: Announce a deployment's start, success, failure or rollback to a webhook
version_added: 0.3.0
description:
  - The guide's "announce completion" (6.3), and the announcement that an upgrade starts.
  - "POSTs a JSON summary to O(url) (C(event), C(application), C(from_version), C(to_version), C(result),
    C(duration_seconds), C(restore_point_id), C(run_id), C(operator), and O(fields) under C(fields); options
    left unset are left out), or with O(format=slack) Slack's C({\"text\": ...}) with the same summary as lines
    of text, which Slack, Mattermost and Rocket.Chat incoming webhooks accept."
  - Retries O(retries) times, O(delay) seconds apart, after a connection error, a timeout, an HTTP 5xx, 408 or
    429; another 4xx (a revoked token, a removed hook) fails at once. Redirects are not followed.
  - A failed announcement fails the task with a message naming the event, the webhook's scheme, host and port
    and the last error; the rest of the URL (where the token is) and header values are never shown.
  - An announcement must never break an upgrade; call it with C(ignore_errors) (see the examples). The worst
    case it can take is (O(retries) + 1) x O(timeout) + O(retries) x O(delay) seconds.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Sends nothing; returns the payload it would send.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Runs wherever the webhook is reachable, usually the control host (C(delegate_to) localhost, C(run_once)).
options:
  url:
    description: The webhook URL. It usually carries a token, so it is never logged nor shown.
    type: str
    required: true
  event:
    description: What happened.
    type: str
    choices: [started, succeeded, failed, rolled_back]
    required: true
  application:
    description: The application's name, the first word of the Slack text.
    type: str
    default: Treazrisland
  from_version:
    description: The release running before the upgrade.
    type: str
  to_version:
    description: The release the upgrade goes to.
    type: str
  result:
    description: One line saying how it went, for example the failure message of the run.
    type: str
  duration:
    description: Seconds the run took so far (sent as C(duration_seconds)).
    type: float
  restore_point_id:
    description: The restore point taken before the upgrade.
    type: str
  run_id:
    description: The run's id (its record in C(<backup_dir>/runs/)).
    type: str
  operator:
    description: Who started the run.
    type: str
  fields:
    description: More keys to send, under C(fields) in the JSON, one line each in the Slack text.
    type: dict
    default: {}
  headers:
    description: Extra HTTP headers, for example an C(Authorization) header; their values are never logged.
    type: dict
    default: {}
  format:
    description: 'V(json) sends the summary itself; V(slack) sends C({"text": ...}).'
    type: str
    choices: [json, slack]
    default: json
  timeout:
    description: Seconds one attempt may take.
    type: float
    default: 10
  retries:
    description: Further attempts after a first one that failed for a reason that may pass.
    type: int
    default: 2
  delay:
    description: Seconds between two attempts.
    type: float
    default: 2
  validate_certs:
    description: Verify the certificate of an C(https) webhook.
    type: bool
    default: true
  use_proxy:
    description: Use the proxy of the C(https_proxy)/C(http_proxy) environment variables, if any.
    type: bool
    default: true
seealso:
  - module: treazrisland.ops.schedule_freeze
  - name: Slack incoming webhooks
    description: 'The C({"text": ...}) payload O(format=slack) sends.'
    link: https://api.slack.com/messaging/webhooks
"""

EXAMPLES = r"""
- name: Announce the upgrade (guide 6.3); an announcement never breaks the upgrade
  treazrisland.ops.deployment_notify:
    url: "{{ treazrisland_notify_url }}"
    format: slack
    event: succeeded
    from_version: 1.4.0
    to_version: 1.5.0
    duration: 754
    run_id: 20261203T145300Z-1a2b
    restore_point_id: 20261203T145512Z
    operator: alice
    fields:
      hosts: app1, app2, app3
  delegate_to: localhost
  run_once: true
  ignore_errors: true
"""

RETURN = r"""
sent:
  description: Whether the webhook accepted the announcement (false in check mode).
  returned: always
  type: bool
  sample: true
destination:
  description: The webhook's scheme, host and port (the rest of the URL, where its token is, elided).
  returned: always
  type: str
  sample: https://hooks.slack.com/…
payload:
  description: The JSON document sent (or that would be sent).
  returned: always
  type: dict
  sample: {"event": "succeeded", "application": "Treazrisland", "from_version": "1.4.0", "to_version": "1.5.0",
           "duration_seconds": 754.0, "run_id": "20261203T145300Z-1a2b"}
attempts:
  description: POSTs made.
  returned: always
  type: int
  sample: 1
http_status:
  description: HTTP status of the last answer; null when none came (or in check mode).
  returned: always
  type: int
  sample: 200
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.notify import EVENTS, announce


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True, no_log=True),
            event=dict(type="str", required=True, choices=list(EVENTS)),
            application=dict(type="str", default="Treazrisland"),
            from_version=dict(type="str"),
            to_version=dict(type="str"),
            result=dict(type="str"),
            duration=dict(type="float"),
            restore_point_id=dict(type="str"),
            run_id=dict(type="str"),
            operator=dict(type="str"),
            fields=dict(type="dict", default={}),
            headers=dict(type="dict", default={}, no_log=True),
            format=dict(type="str", choices=["json", "slack"], default="json"),
            timeout=dict(type="float", default=10),
            retries=dict(type="int", default=2),
            delay=dict(type="float", default=2),
            validate_certs=dict(type="bool", default=True),
            use_proxy=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    run_module(module, announce)


if __name__ == "__main__":
    main()
