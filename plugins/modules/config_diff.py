#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: config_diff
short_description: Compare a release's sample configuration with the live one, secrets redacted
version_added: 0.1.0
description:
  - The guide's Configuration Changes, Diff configs step. Compares the new release's C(.env.example) (or Helm
    values file) with the live configuration (an env file, a Kubernetes Secret or ConfigMap, or a Secrets
    Manager secret) and reports the keys the release adds, the keys it no longer has (deprecated), and the keys
    whose default changed.
  - A sample may list only some of the keys the application needs (Treazrisland's C(backend/.env.example)
    holds only C(NODE_ENV) and C(PORT)). With O(release_path), a live key the sample lacks that the release's
    code still mentions is reported in RV(required_unlisted), not as deprecated in RV(removed).
  - Never changes anything and never returns a value. Like C(ansible.utils.fact_diff) it reports C(changed=true)
    when it finds a difference, so that C(--diff) shows the live and the sample configuration as sorted
    C(KEY=value) lines, secrets as V(<secret>) or V(<secret, changed>); use C(changed_when) to change that.
  - C(.env) files are read with python-dotenv's parser (quotes, escapes, C(export) prefixes, multi-line
    values, comments); values are compared as written, C(${VAR}) references unexpanded.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.config
  - treazrisland.ops.config.sample
attributes:
  check_mode:
    support: full
    details: Runs the same as without check mode; it never changes anything.
  diff_mode:
    support: full
    details: Live configuration before, sample after, as sorted C(KEY=value) lines with secrets redacted.
  platform:
    platforms: posix
options:
  sample:
    description:
      - The new release's sample configuration, a C(.env.example) or a Helm values file (see O(sample_format)).
      - In a C(.env) sample every key's value is its documented default; in a values file, nested keys are
        flattened to dotted paths (V(config.logLevel)) and lists are compared as compact JSON.
    type: path
    required: true
  source:
    description: The live configuration.
    type: dict
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
        description: The env file (V(env_file)); one file, not a pattern.
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
  previous_sample:
    description:
      - The sample of the release currently deployed. With it, RV(changed_defaults) lists only the keys whose
        default moved between the two samples; without it, every non-secret key whose live value differs from
        the new sample's default (deployment-specific values included).
    type: path
  release_path:
    description:
      - The new release's code. Each live key the sample lacks is looked for in its files (whole-word match;
        C(.git), C(node_modules), build caches and binary files are skipped, as M(treazrisland.ops.config_apply)
        does before it removes a key). A key found is required, not deprecated; it is returned in
        RV(required_unlisted) and left out of RV(removed), and C(--diff) shows it kept.
      - Unset, every live key the sample lacks is in RV(removed).
    type: path
notes:
  - A secret's value in a sample is a placeholder, not a default, so secrets are never listed in
    RV(changed_defaults).
seealso:
  - module: treazrisland.ops.config_apply
  - module: treazrisland.ops.config_capture
"""

EXAMPLES = r"""
- name: What does release 1.5.0 change in the configuration?
  treazrisland.ops.config_diff:
    sample: /opt/treazrisland/releases/1.5.0/.env.example
    previous_sample: /opt/treazrisland/releases/1.4.0/.env.example
    source:
      type: env_file
      path: /etc/treazrisland/app.env
  register: config_changes

- name: Compare with the backend's sparse sample; keys its code uses are required, not deprecated
  treazrisland.ops.config_diff:
    sample: /opt/treazrisland/releases/1.5.0/backend/.env.example
    release_path: /opt/treazrisland/releases/1.5.0
    source:
      type: env_file
      path: /opt/treazrisland/shared/backend/.env

- name: Compare the Helm chart's values with the Kubernetes Secret
  treazrisland.ops.config_diff:
    sample: charts/treazrisland/values.yaml
    sample_root: env
    source:
      type: kubernetes_secret
      namespace: treazrisland
      name: treazrisland-config
"""

RETURN = r"""
added:
  description: Keys of the sample the live configuration lacks (new in the release), in sample order.
  returned: always
  type: list
  elements: str
  sample: ["OBJECT_STORAGE_REGION", "SESSION_COOKIE_NAME"]
removed:
  description:
    - Keys of the live configuration the sample no longer has (deprecated), in live order.
    - With O(release_path), only those the release's code no longer mentions; the others are in
      RV(required_unlisted).
  returned: always
  type: list
  elements: str
  sample: ["LEGACY_ASSET_PATH"]
required_unlisted:
  description:
    - Keys of the live configuration that the sample does not list but files of O(release_path) mention
      (required, not in the sample), in live order, each with those files (at most 20, relative to
      O(release_path)).
    - They do not make the configuration out of sync. Empty without O(release_path).
  returned: always
  type: dict
  sample: {"JWT_SECRET": ["backend/src/config/env.ts"], "DATABASE_URL": ["backend/prisma/schema.prisma"]}
changed_defaults:
  description: Non-secret keys whose default changed (see O(previous_sample)).
  returned: always
  type: list
  elements: str
  sample: ["RATE_LIMIT_DEFAULT_POINTS"]
secrets:
  description: Keys of the sample or the live configuration treated as secrets (see O(secret_keys)).
  returned: always
  type: list
  elements: str
  sample: ["DATABASE_URL", "JWT_SECRET"]
in_sync:
  description:
    - Whether nothing was added, removed or changed (the opposite of C(changed)); RV(required_unlisted) keys
      do not count.
  returned: always
  type: bool
  sample: false
source:
  description: The live source compared.
  returned: always
  type: str
  sample: env_file /etc/treazrisland/app.env
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.config import (
    CONNECTION_ARGUMENT_SPEC, SAMPLE_ARGUMENT_SPEC, SOURCE_OPTIONS, diff,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    argument_spec = dict(
        CONNECTION_ARGUMENT_SPEC,
        **SAMPLE_ARGUMENT_SPEC,
        previous_sample=dict(type="path"),
        release_path=dict(type="path"),
        source=dict(type="dict", required=True, options=SOURCE_OPTIONS),
    )
    argument_spec["sample"] = dict(type="path", required=True)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, diff)


if __name__ == "__main__":
    main()
