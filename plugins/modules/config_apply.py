#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: config_apply
short_description: Bring Treazrisland's live configuration in line with a release, rotate secrets, or restore a bundle
version_added: 0.1.0
description:
  - The guide's Configuration Changes (apply updates, secret rotation) and Rollback, Configuration steps, for env
    files, Kubernetes Secrets and ConfigMaps and AWS Secrets Manager secrets.
  - With O(state=present), adds the keys of O(sample) that the live source lacks, with the sample's documented
    default (an env file gets the sample's own line, with the comment lines right above it), or with the value
    given in O(values). A new secret key (see O(secret_keys)) must be given in O(values), since a sample's
    placeholder is never written for a secret.
  - Keys of the live source that the sample does not list are looked for in the new release's code
    (O(release_path)). Those it mentions are required, not deprecated (a sample may list only a few keys;
    Treazrisland's C(backend/.env.example) has C(NODE_ENV) and C(PORT)); they are never removed and are returned
    in RV(required_unlisted) with the files that mention them. The others are deprecated, and kept unless
    O(remove_deprecated=true). Without O(release_path) every unlisted key counts as deprecated.
  - O(values) also sets existing keys; for a secret that is the rotation step, done before the code deploy. Its
    previous value is kept in O(bundle) (required then) for the rollback.
  - Env files are read with python-dotenv's parser and edited line by line, so comments, order, quoting and
    C(export) prefixes of untouched lines stay byte for byte. Each value written is written for the parser
    the application reads the file with (O(env_syntax)), and the edited text is read back with that parser
    before anything is written. The file is replaced atomically with its mode and owner, after a copy of the
    previous file (O(backup)); then the file's older copies beyond the newest O(keep_backups) are removed.
  - With O(state=restored), puts every section of a bundle written by M(treazrisland.ops.config_capture) back
    into its source (env files byte for byte with their mode and owner). The bundle is decrypted and all its
    checksums verified first; a wrong password or a checksum mismatch fails before anything is restored.
  - Keys whose default changed are not touched, since a deployment's value is its own choice (see
    M(treazrisland.ops.config_diff)).
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.config
  - treazrisland.ops.config.bundle
  - treazrisland.ops.config.sample
attributes:
  check_mode:
    support: full
    details: Reads everything, scans the release and reports what would change (C(changed=true) when something
      would), writing nothing.
  diff_mode:
    support: full
    details:
      - Env files as their text, other sources as sorted C(KEY=value) lines; secrets only as V(<secret>) or
        V(<secret, changed>).
  platform:
    platforms: posix
options:
  state:
    description:
      - V(present) brings O(source) in line with O(sample) and O(values).
      - V(restored) writes the sources of O(bundle) back to what it holds.
    type: str
    choices: [present, restored]
    default: present
  source:
    description: The live configuration to change; required with O(state=present).
    type: dict
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
  values:
    description:
      - Keys to set, whatever the sample says; values of new keys, and new values of existing ones (rotation).
      - The values of secret keys (see O(secret_keys)) are never logged nor returned, and show in C(--diff) only
        as V(<secret>) or V(<secret, changed>). The values of other keys show in C(--diff) and in the task's
        invocation at C(-vvv), like any option's (the module's syslog entry leaves O(values) out).
    type: dict
  env_syntax:
    description:
      - The parser of the application that reads the env file; each value written (a new key's, a changed
        key's, a rotated secret's) is written so that this parser reads exactly the value given. Env files
        only; other sources take values as they are.
      - V(node_dotenv) is Treazrisland's (dotenv-flow 3.3 over Node's dotenv 8.6; newer releases dotenv 16).
        Node's dotenv keeps backslashes as written, so python-dotenv's escapes (V(K="a\\"b")) would reach the
        application altered. A value is written in a form that dotenv 8, dotenv 16 and python-dotenv all read
        as exactly that string; the first that fits of
      - bare (V(K=value)), when it does not start with a quote (C('), C("), C(`)) or whitespace, does not end
        with whitespace, and has no C(#), newline or C(${);
      - single quotes, when it has no C('), no newline, no two backslashes in a row and no backslash at the end;
      - double quotes, a newline written as C(\n), when it has no C("), no C(${), and no backslash before
        C(\), C('), C("), C(a), C(b), C(f), C(n), C(r), C(t), C(v), before a newline or at the end.
      - A value with a carriage return, U+2028 or U+2029, or that fits none of the forms, fails the task naming
        its key (never the value), and nothing is written.
      - A line changed in place keeps its quoting when the value fits it. As dotenv 8 has neither inline
        comments nor C(export), such a line loses C(export), and its inline comment moves to a line of its
        own right above it.
      - Keys given in O(values) that Node's dotenv reads otherwise than python-dotenv on the live file (say
        an C(export) line, or an inline comment that dotenv 8 takes as part of the value) are rewritten even
        when python-dotenv already reads the value given.
      - V(python_dotenv) writes with python-dotenv's escapes, for applications that read the file with
        python-dotenv or a parser with the same escapes.
    type: str
    choices: [node_dotenv, python_dotenv]
    default: node_dotenv
  remove_deprecated:
    description:
      - Remove the keys the sample no longer has, each only when no file under O(release_path) mentions it
        (whole-word match; C(.git) and C(node_modules) are skipped, and binary files).
    type: bool
    default: false
  release_path:
    description:
      - The new release's code. Each live key the sample does not list is looked for in its files; a key
        mentioned is required (RV(required_unlisted)) and never removed, the others are deprecated.
      - Required with O(remove_deprecated=true). Recommended whenever O(sample) is given, so that a sparse
        sample does not report the keys the application needs as deprecated.
    type: path
  backup:
    description:
      - Before an env file is replaced, copy it to V(<path>.<UTC time>.bak) (mode 0600, owned by the user the
        module runs as), for example V(/etc/treazrisland/app.env.20261125T214500Z.bak); a second copy within
        the same second is V(<path>.<UTC time>-1.bak), then V(-2)...
      - O(keep_backups) says how many of these copies are kept.
    type: bool
    default: true
  keep_backups:
    description:
      - After an env file was written (O(state=present) or O(state=restored)), how many of its backups to keep,
        newest first; older ones are removed and listed in RV(removed_backups). The copy just made counts as the
        newest and is never removed, so V(0) removes every earlier copy and keeps only that one (with
        O(backup=false), V(0) leaves none).
      - A whole number of 0 or more, or V(null) to keep every backup.
      - Only regular files beside the env file named exactly as O(backup) names them are counted or removed,
        that is the file's name, a dot, the UTC time as V(YYYYMMDDTHHMMSSZ), an optional V(-<number>), and
        V(.bak) (for V(app.env), V(app.env.20261125T214500Z.bak) or V(app.env.20261125T214500Z-1.bak)). Other
        files, such as V(app.env.old.bak) or the backups of another env file, are never touched.
      - Nothing is removed when the run does not write the file (no change, or only its mode or owner restored),
        nor in check mode, which returns what would be removed.
    type: raw
    default: 2
  bundle:
    description:
      - With O(state=restored), the bundle to restore.
      - With O(state=present), where the source's current state is kept before anything changes, unless the
        bundle already holds a section for this source (the state captured before the upgrade is the one to go
        back to). Required when O(values) changes an existing secret.
    type: path
notes:
  - Values are compared and written as the file holds them; C(${VAR}) references are never expanded.
  - A deprecated key's comment lines are kept when the key is removed.
seealso:
  - module: treazrisland.ops.config_capture
  - module: treazrisland.ops.config_diff
"""

EXAMPLES = r"""
- name: Add the keys release 1.5.0 introduces; its new secret comes from the vault
  treazrisland.ops.config_apply:
    source:
      type: env_file
      path: /etc/treazrisland/app.env
    sample: /opt/treazrisland/releases/1.5.0/.env.example
    values:
      SESSION_SIGNING_SECRET: "{{ vault_session_signing_secret }}"

- name: Real Treazrisland, sparse backend sample; keys the code uses are kept as required
  treazrisland.ops.config_apply:
    source:
      type: env_file
      path: /opt/treazrisland/shared/backend/.env
    sample: /opt/treazrisland/releases/1.5.0/backend/.env.example
    release_path: /opt/treazrisland/releases/1.5.0
    values:
      OBJECT_STORAGE_PORT: "9000"          # shown in --diff
      JWT_SECRET: "{{ vault_jwt_secret }}"  # shown as <secret, changed> only
    bundle: /var/backups/treazrisland/config_{{ upgrade_id }}.vault
    bundle_password_file: /etc/treazrisland/bundle.pass

- name: An application that reads its .env with python-dotenv
  treazrisland.ops.config_apply:
    source:
      type: env_file
      path: /etc/worker/.env
    values:
      WORKER_GREETING: 'say "hi"'
    env_syntax: python_dotenv

- name: Remove deprecated keys that 1.5.0 no longer references
  treazrisland.ops.config_apply:
    source:
      type: env_file
      path: /etc/treazrisland/app.env
    sample: /opt/treazrisland/releases/1.5.0/.env.example
    remove_deprecated: true
    release_path: /opt/treazrisland/releases/1.5.0

- name: Rotate the JWT secret in the Kubernetes Secret before deploying, keeping the old one for rollback
  treazrisland.ops.config_apply:
    source:
      type: kubernetes_secret
      namespace: treazrisland
      name: treazrisland-config
    values:
      JWT_SECRET: "{{ new_jwt_secret }}"
    bundle: /var/backups/treazrisland/config_{{ upgrade_id }}.vault
    bundle_password_file: /etc/treazrisland/bundle.pass

- name: Roll the configuration back, keeping the 5 newest backups of each env file instead of 2
  treazrisland.ops.config_apply:
    state: restored
    bundle: /var/backups/treazrisland/config_{{ upgrade_id }}.vault
    bundle_password_file: /etc/treazrisland/bundle.pass
    keep_backups: 5
"""

RETURN = r"""
source:
  description: The source changed.
  returned: when state is present
  type: str
  sample: env_file /etc/treazrisland/app.env
added:
  description: Keys added.
  returned: when state is present
  type: list
  elements: str
  sample: ["OBJECT_STORAGE_REGION", "SESSION_SIGNING_SECRET"]
updated:
  description: Existing keys given a new value from O(values) (secret rotation).
  returned: when state is present
  type: list
  elements: str
  sample: ["JWT_SECRET"]
removed:
  description: Deprecated keys removed.
  returned: when state is present
  type: list
  elements: str
  sample: ["LEGACY_ASSET_PATH"]
deprecated:
  description:
    - Keys of the live source the sample no longer has (removed or kept), in live order.
    - With O(release_path), only those the release's code no longer mentions; the others are in
      RV(required_unlisted).
  returned: when state is present
  type: list
  elements: str
  sample: ["LEGACY_ASSET_PATH", "OLD_CDN_URL"]
required_unlisted:
  description:
    - Keys of the live source that the sample does not list but files of O(release_path) mention (required,
      not in the sample), in live order, each with those files (at most 20, relative to O(release_path)).
      They are never removed. Empty without O(release_path).
  returned: when state is present
  type: dict
  sample: {"JWT_SECRET": ["backend/src/config/env.ts"], "OLD_CDN_URL": ["backend/src/assets/cdn.ts"]}
bundle_saved:
  description: Whether the source's previous state was written into O(bundle).
  returned: when state is present
  type: bool
  sample: true
backup_file:
  description: Copy of the env file before the change.
  returned: when an env file was changed with O(backup=true)
  type: str
  sample: /etc/treazrisland/app.env.20261125T214500Z.bak
removed_backups:
  description:
    - Older backups of the env file removed after it was written (O(keep_backups)), oldest first; in check
      mode, those a run would remove.
    - A backup that cannot be removed is left with a warning (the write itself succeeded) and is not listed.
  returned: success
  type: list
  elements: str
  sample: ["/etc/treazrisland/app.env.20261118T093000Z.bak", "/etc/treazrisland/app.env.20261120T101500Z.bak"]
restored:
  description: Sources written back from the bundle.
  returned: when state is restored
  type: list
  elements: str
  sample: ["env_file /etc/treazrisland/app.env", "kubernetes_secret treazrisland/treazrisland-config"]
unchanged:
  description: Sources of the bundle that already matched it.
  returned: when state is restored
  type: list
  elements: str
  sample: ["env_file /etc/treazrisland/worker.env"]
backup_files:
  description: Copies of env files taken before they were restored.
  returned: when state is restored
  type: list
  elements: str
  sample: ["/etc/treazrisland/app.env.20261125T221500Z.bak"]
created_at:
  description: When the restored bundle was captured (UTC).
  returned: when state is restored
  type: str
  sample: "2026-11-25T21:45:00Z"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.config import (
    BUNDLE_PASSWORD_ARGUMENT_SPEC, CONNECTION_ARGUMENT_SPEC, ENV_SYNTAX_OPTION, SAMPLE_ARGUMENT_SPEC, SOURCE_OPTIONS,
    apply, show_non_secret_values,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    argument_spec = dict(
        CONNECTION_ARGUMENT_SPEC,
        **BUNDLE_PASSWORD_ARGUMENT_SPEC,
        **SAMPLE_ARGUMENT_SPEC,
        state=dict(type="str", choices=["present", "restored"], default="present"),
        source=dict(type="dict", options=SOURCE_OPTIONS),
        values=dict(type="dict", no_log=True),
        env_syntax=ENV_SYNTAX_OPTION,
        remove_deprecated=dict(type="bool", default=False),
        release_path=dict(type="path"),
        backup=dict(type="bool", default=True),
        keep_backups=dict(type="raw", default=2),
        bundle=dict(type="path"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("bundle_password", "bundle_password_file")],
        required_if=[("state", "present", ("source",)), ("state", "restored", ("bundle",)),
                     ("remove_deprecated", True, ("release_path",))],
    )
    show_non_secret_values(module)
    run_module(module, apply)


if __name__ == "__main__":
    main()
