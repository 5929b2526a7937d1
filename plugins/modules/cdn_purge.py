#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cdn_purge
short_description: Purge CDN caches, by CloudFront invalidation or by HTTP PURGE/BAN to cache nodes
version_added: 0.1.0
description:
  - The guide's Purge CDN caches step, after an asset upload.
  - With O(distribution_id) or O(distribution_alias), creates a CloudFront invalidation and waits until
    it is complete by polling its status (boto3's waiter expects C(Completed) and never sees the
    C(COMPLETED) some implementations report).
  - With O(cache_nodes), sends one PURGE (or BAN) request per path to every node, as Varnish, nginx
    (proxy_cache_purge) and Fastly accept. A V(404) answer (nothing cached there) counts as purged.
  - The paths are O(paths) as given plus O(keys) (for example RV(treazrisland.ops.s3_sync#module:changed_keys)),
    each key turned into a URL path with O(key_prefix) removed and O(path_prefix) put before it.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Says what would be invalidated or purged and sends nothing; with O(caller_reference), looks up whether
      that invalidation exists already.
  diff_mode:
    support: full
    details: The paths of the invalidation, or one line per purge request.
  platform:
    platforms: posix
options:
  paths:
    description: URL paths to purge, each starting with C(/); CloudFront accepts a trailing C(*) as a wildcard.
    type: list
    elements: str
  keys:
    description: Object keys to purge, turned into paths with O(key_prefix) and O(path_prefix).
    type: list
    elements: str
  key_prefix:
    description:
      - The part of the keys the CDN does not show, such as the origin path of a CloudFront origin
        (V(live/) when the origin serves C(s3://bucket/live)). Keys outside it are left out.
    type: str
    default: ""
  path_prefix:
    description:
      - What comes before the key in the URL path, such as V(/bucket/) for a cache in front of a path-style
        bucket endpoint.
    type: str
    default: /
  distribution_id:
    description: CloudFront distribution id.
    type: str
  distribution_alias:
    description: A CNAME (alias) of the CloudFront distribution, instead of its id.
    type: str
  caller_reference:
    description:
      - CloudFront caller reference. When an invalidation with this reference exists already among the
        distribution's 100 most recent, nothing new is created (C(changed=false)); so a rerun of the same
        deployment does not purge twice. Use one reference per deployment, for example V(assets-1.5.0).
      - Without it every run creates a new invalidation.
    type: str
  wait:
    description: Wait until the CloudFront invalidation is complete.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for completion before failing.
    type: int
    default: 900
  cache_nodes:
    description: Base URLs of the cache nodes for an HTTP purge, such as V(http://10.0.0.5:6081).
    type: list
    elements: str
  method:
    description:
      - HTTP method of the purge requests. V(BAN) invalidates by pattern where the cache's configuration
        says so (Varnish).
    type: str
    choices: [PURGE, BAN]
    default: PURGE
  headers:
    description: Extra HTTP headers of every purge request, such as the site's C(Host).
    type: dict
  concurrency:
    description: Purge requests in flight at once.
    type: int
    default: 8
  endpoint_url:
    description: CloudFront API endpoint, for an emulator such as moto; omit it for AWS.
    type: str
    aliases: [s3_url]
  region:
    description: Signing region.
    type: str
    default: us-east-1
    aliases: [aws_region]
  access_key:
    description: Access key id; without O(access_key) and O(secret_key), boto3's usual credential chain.
    type: str
    aliases: [aws_access_key_id]
  secret_key:
    description: Secret access key. Never logged.
    type: str
    aliases: [aws_secret_access_key]
  session_token:
    description: Session token of temporary credentials. Never logged.
    type: str
    aliases: [aws_session_token]
  validate_certs:
    description: Verify TLS certificates (CloudFront API and cache nodes).
    type: bool
    default: true
  timeout:
    description: Seconds one request may take.
    type: int
    default: 60
  retries:
    description: Retries of a failed CloudFront API call.
    type: int
    default: 3
requirements:
  - boto3, for CloudFront
seealso:
  - module: treazrisland.ops.s3_sync
"""

EXAMPLES = r"""
- name: Upload the build
  treazrisland.ops.s3_sync:
    src: /srv/build/frontend/dist
    dest: s3://treazrisland-assets/live
    delete: true
  register: assets

- name: Invalidate what changed on CloudFront, once per release
  treazrisland.ops.cdn_purge:
    distribution_alias: assets.treazrisland.example
    keys: "{{ assets.changed_keys }}"
    key_prefix: live/
    caller_reference: "assets-{{ release_version }}"
  when: assets is changed

- name: Or purge the Varnish nodes in front of the bucket
  treazrisland.ops.cdn_purge:
    cache_nodes:
      - http://10.0.0.5:6081
      - http://10.0.0.6:6081
    keys: "{{ assets.changed_keys }}"
    key_prefix: live/
    headers:
      Host: assets.treazrisland.example
  when: assets is changed
"""

RETURN = r"""
provider:
  description: V(cloudfront) or V(http).
  returned: always
  type: str
  sample: cloudfront
paths:
  description: The URL paths purged (or that would be), sorted; V(/*) alone when RV(collapsed).
  returned: always
  type: list
  elements: str
  sample: ["/assets/app.3f9a.js", "/index.html"]
collapsed:
  description: More paths than one CloudFront invalidation takes (3000) were replaced by V(/*).
  returned: with CloudFront
  type: bool
  sample: false
distribution_id:
  description: The CloudFront distribution.
  returned: with CloudFront
  type: str
  sample: E2QWRUHAPOMQZL
invalidation_id:
  description: The invalidation created, or found by its caller reference.
  returned: with CloudFront, unless there was nothing to purge or in check mode
  type: str
  sample: I2J0I21PCUYOIK
caller_reference:
  description: The caller reference of the invalidation.
  returned: with CloudFront, when there was something to purge
  type: str
  sample: assets-1.5.0
status:
  description: Status of the invalidation, V(Completed) once done (whatever the service's spelling).
  returned: with CloudFront, unless there was nothing to purge or in check mode
  type: str
  sample: Completed
cache_nodes:
  description: The cache nodes purged.
  returned: with cache_nodes
  type: list
  elements: str
  sample: ["http://10.0.0.5:6081"]
method:
  description: The HTTP method used.
  returned: with cache_nodes
  type: str
  sample: PURGE
responses:
  description: Count of purge responses per HTTP status.
  returned: with cache_nodes, when requests were sent
  type: dict
  sample: {"200": 4}
msg:
  description: One line saying what happened.
  returned: always
  type: str
  sample: invalidated 2 path(s) on E2QWRUHAPOMQZL (I2J0I21PCUYOIK)
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.cdn import cdn_purge
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.s3 import connection_argument_spec


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            paths=dict(type="list", elements="str"),
            keys=dict(type="list", elements="str", no_log=False),
            key_prefix=dict(type="str", default="", no_log=False),
            path_prefix=dict(type="str", default="/"),
            distribution_id=dict(type="str"),
            distribution_alias=dict(type="str"),
            caller_reference=dict(type="str"),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=900),
            cache_nodes=dict(type="list", elements="str"),
            method=dict(type="str", choices=["PURGE", "BAN"], default="PURGE"),
            headers=dict(type="dict"),
            concurrency=dict(type="int", default=8),
        ),
        required_one_of=[["distribution_id", "distribution_alias", "cache_nodes"], ["paths", "keys"]],
        mutually_exclusive=[["distribution_id", "distribution_alias", "cache_nodes"]],
        supports_check_mode=True,
    )
    run_module(module, cdn_purge)


if __name__ == "__main__":
    main()
