#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: config_capture
short_description: Capture Treazrisland's configuration into one encrypted bundle
version_added: 0.1.0
description:
  - The guide's Capture current state (export C(/etc/treazrisland/*.env)) and Configuration bundle steps
    (C(kubectl get secret treazrisland-config -o yaml), stored securely), for env files, Kubernetes Secrets
    and ConfigMaps and AWS Secrets Manager secrets alike.
  - Writes one bundle file with one section per source (an env file's exact bytes with its mode and owner, a
    Secret's or ConfigMap's C(data), a secret's C(SecretString)), a sha256 per section and one for the whole,
    encrypted in the ansible-vault format (C(ansible-vault view) opens it) and written atomically, mode 0600.
  - M(treazrisland.ops.config_apply) with O(treazrisland.ops.config_apply#module:state=restored) puts a bundle back.
  - Returns key names and sources, never a value.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.config
  - treazrisland.ops.config.bundle
attributes:
  check_mode:
    support: full
    details: Reads every source and reports whether the bundle would change, writing nothing.
  diff_mode:
    support: full
    details: Shows the keys of each source as C(KEY=value) lines, secrets redacted.
  platform:
    platforms: posix
options:
  sources:
    description: What to capture, in order; each becomes one section of the bundle.
    type: list
    elements: dict
    required: true
    suboptions:
      type:
        description:
          - V(env_file) is a C(.env) file on the host, V(kubernetes_secret) and V(kubernetes_configmap) an object
            in a namespace, V(secretsmanager) an AWS Secrets Manager secret whose value is a JSON object.
        type: str
        required: true
        choices: [env_file, kubernetes_secret, kubernetes_configmap, secretsmanager]
      path:
        description:
          - The env file (V(env_file)), or a glob pattern such as V(/etc/treazrisland/*.env); a pattern matching
            nothing is an error.
        type: path
      name:
        description: Name of the Secret or ConfigMap.
        type: str
      namespace:
        description: Namespace of the Secret or ConfigMap.
        type: str
        default: default
      secret_id:
        description: Name or ARN of the Secrets Manager secret.
        type: str
  dest:
    description:
      - The bundle file. Rewritten only when what it holds differs from the sources (C(changed=false)
        otherwise; the time of capture alone is no change).
      - An existing file that the password does not open is never overwritten.
    type: path
    required: true
notes:
  - Every env file is parsed (python-dotenv syntax) so that its keys can be listed; a line that cannot be parsed
    fails the capture, naming the file and line, and nothing is written.
seealso:
  - module: treazrisland.ops.config_apply
  - module: treazrisland.ops.config_diff
  - module: treazrisland.ops.checksum_manifest
"""

EXAMPLES = r"""
- name: Capture the env files and the Kubernetes Secret before the upgrade
  treazrisland.ops.config_capture:
    sources:
      - type: env_file
        path: /etc/treazrisland/*.env
      - type: kubernetes_secret
        namespace: treazrisland
        name: treazrisland-config
    dest: /var/backups/treazrisland/config_{{ upgrade_id }}.vault
    bundle_password_file: /etc/treazrisland/bundle.pass
  register: config_bundle

- name: Capture a Secrets Manager secret
  treazrisland.ops.config_capture:
    sources:
      - type: secretsmanager
        secret_id: prod/treazrisland
    aws_region: eu-west-1
    dest: /var/backups/treazrisland/config_{{ upgrade_id }}.vault
    bundle_password: "{{ vault_bundle_password }}"
"""

RETURN = r"""
path:
  description: The bundle file.
  returned: always
  type: str
  sample: /var/backups/treazrisland/config_20261125T214500Z.vault
sha256:
  description: sha256 of the (encrypted) bundle file, for a checksum manifest.
  returned: when the bundle exists
  type: str
  sample: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
sources:
  description: Each source captured, with its key names (never values); env files also with mode and owner.
  returned: always
  type: list
  elements: dict
  sample:
    - {"type": "env_file", "path": "/etc/treazrisland/app.env", "source": "env_file /etc/treazrisland/app.env",
       "keys": ["DATABASE_URL", "JWT_SECRET", "PORT"], "mode": "0640", "owner": "root", "group": "treazrisland"}
    - {"type": "kubernetes_secret", "namespace": "treazrisland", "name": "treazrisland-config",
       "source": "kubernetes_secret treazrisland/treazrisland-config", "keys": ["JWT_SECRET"]}
key_count:
  description: Keys captured over all sources.
  returned: always
  type: int
  sample: 42
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.config import (
    BUNDLE_PASSWORD_ARGUMENT_SPEC, CONNECTION_ARGUMENT_SPEC, SOURCE_OPTIONS, capture,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    argument_spec = dict(
        CONNECTION_ARGUMENT_SPEC,
        **BUNDLE_PASSWORD_ARGUMENT_SPEC,
        sources=dict(type="list", elements="dict", required=True, options=SOURCE_OPTIONS),
        dest=dict(type="path", required=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("bundle_password", "bundle_password_file")],
                           required_one_of=[("bundle_password", "bundle_password_file")])
    run_module(module, capture)


if __name__ == "__main__":
    main()
