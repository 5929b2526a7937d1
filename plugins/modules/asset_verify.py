#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: asset_verify
short_description: Spot-check published assets against the local build by sha256
version_added: 0.1.0
description:
  - The guide's Verify integrity step after an asset upload. Downloads a random sample of the files (or all of
    them) from a CDN or a bucket's HTTP endpoint (O(remote=https://...)), or straight from S3
    (O(remote=s3://bucket/prefix)), hashes each while it streams, and compares it with the local build
    (O(path)) or its C(sha256sum) manifest (O(manifest), as M(treazrisland.ops.checksum_manifest) writes).
  - Reports every mismatched, missing and unreadable file, and fails when there is any.
  - Never changes anything.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.s3
attributes:
  check_mode:
    support: full
    details: Reads only, so it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  path:
    description: The local build directory. Only the sampled files are hashed.
    type: path
  manifest:
    description: A C(sha256sum) manifest of the build, instead of O(path).
    type: path
  remote:
    description:
      - Where the assets are published. A base URL (the CDN, or the bucket's website or path-style endpoint such as
        V(http://127.0.0.1:9000/treazrisland-assets/)) to which each relative path is appended, URL-encoded; or
        V(s3://bucket/prefix), read with the connection options.
    type: str
    required: true
  sample:
    description: How many files to check, chosen at random; V(0) checks every file.
    type: int
    default: 20
  seed:
    description: Seed of the random choice, to check the same sample again.
    type: int
  exclude:
    description: With O(path), shell patterns of relative paths never checked (C(*) matches C(/) too).
    type: list
    elements: str
  headers:
    description: Extra HTTP headers of every download (for example a C(Host) for a CDN node addressed by IP).
    type: dict
  concurrency:
    description: Downloads in flight at once.
    type: int
    default: 8
seealso:
  - module: treazrisland.ops.s3_sync
  - module: treazrisland.ops.checksum_manifest
"""

EXAMPLES = r"""
- name: Spot-check 50 assets through the CDN
  treazrisland.ops.asset_verify:
    path: /srv/build/frontend/dist
    remote: https://assets.treazrisland.example/
    sample: 50

- name: Check every file of an asset archive against the bucket
  treazrisland.ops.asset_verify:
    manifest: /var/backups/treazrisland/assets_20261125T214500Z.sha256
    remote: s3://treazrisland-assets
    sample: 0
"""

RETURN = r"""
remote:
  description: O(remote) as given.
  returned: always
  type: str
  sample: https://assets.treazrisland.example/
source:
  description: The build directory or manifest compared with.
  returned: always
  type: str
  sample: /srv/build/frontend/dist
files:
  description: Number of files in the build (or manifest).
  returned: always
  type: int
  sample: 10003
checked:
  description: The relative paths checked.
  returned: always
  type: list
  elements: str
  sample: ["img/logo.svg", "index.html"]
mismatched:
  description: Files whose published content differs, with both sha256 and the address read.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "index.html", "expected": "9f86d0...", "actual": "60303a...",
            "url": "https://assets.treazrisland.example/index.html"}]
missing:
  description: Files not published (HTTP 404 or 403, or no such key).
  returned: always
  type: list
  elements: str
  sample: []
errors:
  description: Files that could not be read, with the reason.
  returned: always
  type: list
  elements: str
  sample: []
msg:
  description: One line saying what was checked, or what does not match.
  returned: always
  type: str
  sample: "20 of 10003 file(s) checked at https://assets.treazrisland.example/: all match /srv/build/frontend/dist"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.s3 import connection_argument_spec, isolated
from ansible_collections.treazrisland.ops.plugins.module_utils.s3verify import asset_verify


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            path=dict(type="path"),
            manifest=dict(type="path"),
            remote=dict(type="str", required=True),
            sample=dict(type="int", default=20),
            seed=dict(type="int"),
            exclude=dict(type="list", elements="str"),
            headers=dict(type="dict"),
            concurrency=dict(type="int", default=8),
        ),
        required_one_of=[["path", "manifest"]],
        mutually_exclusive=[["path", "manifest"]],
        supports_check_mode=True,
    )
    run_module(module, isolated(asset_verify))


if __name__ == "__main__":
    main()
