#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checksum_manifest
short_description: Create or verify sha256 manifests of a file or a directory tree
version_added: 0.1.0
description:
  - The guide's Integrity checks step for any backup artifact (database dump, asset archive, config bundle).
  - Writes a manifest in the format of C(sha256sum), one line per file sorted by path, so the standard
    tool verifies it too (C(cd <path> && sha256sum -c <manifest>) for a tree).
  - Files are read in chunks, never whole into memory; symlinks are never followed, and a tree holding
    anything but files and directories is refused.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Hashes and reports, writes nothing.
  diff_mode:
    support: full
    details: Shows the manifest lines before and after.
  platform:
    platforms: posix
options:
  path:
    description: The file or directory to describe.
    type: path
    required: true
  manifest:
    description: The manifest file; defaults to V(<path>.sha256). It cannot lie inside a directory O(path).
    type: path
  state:
    description:
      - V(present) writes the manifest (C(changed=true) only when its content changes).
      - V(verified) compares O(path) with an existing manifest and fails on any difference; never changes anything.
    type: str
    choices: [present, verified]
    default: present
seealso:
  - module: treazrisland.ops.db_backup
"""

EXAMPLES = r"""
- name: Record the checksums of an asset archive
  treazrisland.ops.checksum_manifest:
    path: /var/backups/treazrisland/assets_20261125T214500Z

- name: Verify them before restoring
  treazrisland.ops.checksum_manifest:
    path: /var/backups/treazrisland/assets_20261125T214500Z
    state: verified
"""

RETURN = r"""
path:
  description: The file or directory described.
  returned: always
  type: str
  sample: /var/backups/treazrisland/assets_20261125T214500Z
manifest:
  description: The manifest file.
  returned: always
  type: str
  sample: /var/backups/treazrisland/assets_20261125T214500Z.sha256
files:
  description: Number of files described.
  returned: always
  type: int
  sample: 1520
size:
  description: Their total size in bytes.
  returned: always
  type: int
  sample: 302000000
digest:
  description: sha256 of the manifest text, one value for the whole artifact.
  returned: always
  type: str
  sample: 5d41402abc4b2a76b9719d911017c592ae2f1f0b6c1d7e9f3a5b6c7d8e9f0a1b
differences:
  description: With O(state=verified), files changed, missing or unexpected.
  returned: when state is verified
  type: dict
  sample: {"changed": ["img/logo.png"], "missing": [], "unexpected": []}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.integrity import checksum_manifest
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            manifest=dict(type="path"),
            state=dict(type="str", choices=["present", "verified"], default="present"),
        ),
        supports_check_mode=True,
    )
    run_module(module, checksum_manifest)


if __name__ == "__main__":
    main()
