#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: s3_sync
short_description: Sync a directory and an S3 prefix (either way), or two S3 prefixes, by content
version_added: 0.1.0
description:
  - The guide's Asset archive (S3 to local), Upload assets with C(--delete) (local to S3) and Rollback of
    assets (the archive back to S3). S3 to S3 copies server-side, so an asset snapshot downloads nothing.
  - Changes are found by content, never by modification time or size alone. Every object written gets the
    sha256 of its content in its metadata (C(x-amz-meta-sha256)) and in a manifest object under the
    destination prefix (C(.treazrisland-sync.jsonl.gz)), with the size and ETag the object had after the
    upload. One listing and one manifest read then give the content of every object; an object whose listed
    size or ETag no longer matches the manifest (changed by another tool) counts as changed.
  - A file rebuilt with the same size and an old modification time is uploaded; a fresh checkout whose every
    modification time is new uploads nothing that did not change.
  - Transfers run concurrently (O(concurrency)); files larger than O(multipart_chunk_size_mb) go in
    parts. Deletes (O(delete)) happen only after every transfer succeeded, never touch paths outside
    O(include) or matched by O(exclude), and the task fails before changing anything when more than
    O(max_delete) would go.
  - Downloads refuse keys that would land outside O(dest) (C(..), empty or absolute path segments), never
    follow or replace a symlink, write each file under a temporary name and rename it once its content is
    complete (and matches the manifest's sha256 when there is one).
  - The transfers run in a child process that reports its result over a pipe and ends without interpreter
    shutdown, so that an abort of the transfer library at exit cannot turn a finished sync into a failure.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.s3
attributes:
  check_mode:
    support: full
    details:
      - Lists, reads the manifest and hashes local files; transfers, deletes and writes nothing (not even the
        checksum cache).
      - Reports C(changed=true) when the sync would change something, with the same lists as a real run.
  diff_mode:
    support: full
    details: One line per file that would be (or was) uploaded, downloaded, copied or deleted, with the reason.
  platform:
    platforms: posix
options:
  src:
    description:
      - A local directory or V(s3://bucket/prefix). At least one of O(src) and O(dest) is an S3 location.
    type: str
    required: true
  dest:
    description:
      - A local directory (created if missing) or V(s3://bucket/prefix).
      - The manifest object lives at C(<prefix>/.treazrisland-sync.jsonl.gz); it is never synced itself.
    type: str
    required: true
  delete:
    description: Remove from O(dest) what is not in O(src), once every transfer succeeded.
    type: bool
    default: false
  max_delete:
    description:
      - With O(delete=true), the most files that may be deleted, as a count (V(100)) or a percentage of what
        O(dest) holds in scope (V(10%)). When more would go, the task fails and nothing is changed.
      - Without it there is no limit.
    type: str
  include:
    description:
      - Only relative paths matching one of these shell patterns are synced (and deleted).
      - Patterns match the whole relative path, and C(*) matches C(/) too (V(img/*) is everything under C(img/)).
    type: list
    elements: str
  exclude:
    description:
      - Relative paths matching one of these patterns are neither synced nor deleted, on either side.
    type: list
    elements: str
  concurrency:
    description:
      - Transfers in flight at once. The default suits a 2-core host and a nearby endpoint; a distant
        endpoint (tens of milliseconds away) gains from V(32) or more.
    type: int
    default: 16
  multipart_chunk_size_mb:
    description: Files larger than this many MiB are uploaded in parts of this size (at least 5).
    type: int
    default: 8
  cache_control:
    description: Cache-Control header per pattern of the relative path; the first match wins, none means no header.
    type: list
    elements: dict
    suboptions:
      pattern:
        description: Shell pattern of the relative path, as in O(include).
        type: str
        required: true
      value:
        description: The header value, for example V(public, max-age=31536000, immutable).
        type: str
        required: true
  encryption:
    description:
      - Server-side encryption of the objects written (backup buckets).
      - The first object written is read back (HEAD); when the server reports another encryption or none, the
        sync stops there, deletes nothing and fails, rather than write a whole backup in the clear.
    type: str
    choices: [AES256, aws:kms]
  kms_key_id:
    description: KMS key id or ARN, with O(encryption=aws:kms); without it the account's default key.
    type: str
  checksum_cache:
    description:
      - Keep the sha256 of the local files in a cache on the host that runs the module, so that a re-sync
        reads only the files that changed since the last run.
      - A cached sha256 is used only while the file's size, modification time, change time (ctime), inode and
        device are all as recorded. Every write sets the ctime, and nothing can set it back (C(touch -r) puts
        back the modification time only), so a rewritten file is always hashed again. Files changed less than
        two seconds before the scan are hashed every time until they are older (timestamp granularity).
      - Turn it off for a tree on a file system whose ctime does not change on write (FAT's is the creation
        time) or whose server clock is far from this host's.
    type: bool
    default: true
  checksum_cache_dir:
    description:
      - Directory of the cache files (mode 0600, one per local tree and O(include)/O(exclude) scope).
      - Defaults to C(treazrisland.ops) under C($XDG_CACHE_HOME), else under C(~/.cache).
    type: path
notes:
  - Content-Type comes from the file name (Python's built-in table plus the common web types), the same on
    every host; unknown extensions get V(application/octet-stream).
  - Objects written by other tools have no manifest record. In an upload they are sent again once; in a
    download a single-part ETag (the MD5 of the content) is compared with the local file, anything else is
    downloaded again.
  - Folder placeholder objects (keys ending in C(/)) are ignored.
seealso:
  - module: treazrisland.ops.asset_verify
  - module: treazrisland.ops.cdn_purge
  - module: treazrisland.ops.checksum_manifest
"""

EXAMPLES = r"""
- name: Archive the live assets before the upgrade (guide 2.2)
  treazrisland.ops.s3_sync:
    src: s3://treazrisland-assets
    dest: /var/backups/treazrisland/assets_{{ ansible_date_time.iso8601_basic_short }}

- name: Snapshot them server-side into the backup bucket, encrypted
  treazrisland.ops.s3_sync:
    src: s3://treazrisland-assets
    dest: s3://treazrisland-backups/assets/{{ release_version }}
    encryption: AES256

- name: Upload the new build and remove what it no longer has (guide 4.2)
  treazrisland.ops.s3_sync:
    src: /srv/build/frontend/dist
    dest: s3://treazrisland-assets
    delete: true
    max_delete: 10%
    exclude:
      - "roms/*"
    cache_control:
      - pattern: "assets/*"
        value: public, max-age=31536000, immutable
      - pattern: "*.html"
        value: no-cache
  register: assets

- name: Purge what changed from the CDN
  treazrisland.ops.cdn_purge:
    distribution_id: E2QWRUHAPOMQZL
    keys: "{{ assets.changed_keys }}"
  when: assets is changed
"""

RETURN = r"""
src:
  description: O(src) as given.
  returned: always
  type: str
  sample: /srv/build/frontend/dist
dest:
  description: O(dest) as given.
  returned: always
  type: str
  sample: s3://treazrisland-assets
direction:
  description: V(upload), V(download) or V(copy) (S3 to S3).
  returned: always
  type: str
  sample: upload
uploaded:
  description: Relative paths uploaded (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: ["index.html", "assets/app.3f9a.js"]
downloaded:
  description: Relative paths downloaded (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: []
copied:
  description: Relative paths copied server-side (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: []
deleted:
  description: Relative paths deleted from O(dest) (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: ["assets/app.1c2d.js"]
changed_keys:
  description:
    - Object keys of O(dest) written or deleted (relative paths for a local O(dest)), the input of
      M(treazrisland.ops.cdn_purge).
  returned: always
  type: list
  elements: str
  sample: ["assets/app.1c2d.js", "assets/app.3f9a.js", "index.html"]
counts:
  description: Number of files per action; C(unchanged) counts those left alone.
  returned: always
  type: dict
  sample: {"uploaded": 2, "downloaded": 0, "copied": 0, "deleted": 1, "unchanged": 9997}
bytes:
  description: Bytes per action (for V(deleted), the size the files had).
  returned: always
  type: dict
  sample: {"uploaded": 48213, "downloaded": 0, "copied": 0, "deleted": 47120, "unchanged": 301920448}
checksums:
  description:
    - How the sha256 of the local files was found (null for an S3 to S3 copy).
    - C(hashed_files) and C(hashed_bytes) were read from disk, C(cache_hits) came from the checksum cache at
      C(cache) (null with O(checksum_cache=false)).
  returned: always
  type: dict
  sample: {"hashed_files": 2, "hashed_bytes": 48213, "cache_hits": 10001, "cache": "/root/.cache/treazrisland.ops/s3_sync-3d1f0c.txt"}
duration_seconds:
  description: Wall time of the sync.
  returned: always
  type: float
  sample: 1.42
msg:
  description: One line saying what happened.
  returned: always
  type: str
  sample: uploaded 2 file(s) (48213 bytes) and deleted 1; 9997 unchanged
failed:
  description: When transfers failed, their relative paths (nothing was deleted).
  returned: failure
  type: list
  elements: str
  sample: ["roms/big.zip"]
would_delete:
  description: When O(max_delete) stopped the task, what would have been deleted.
  returned: failure
  type: list
  elements: str
  sample: ["index.html"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.s3 import connection_argument_spec, isolated
from ansible_collections.treazrisland.ops.plugins.module_utils.s3sync import s3_sync


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            src=dict(type="str", required=True),
            dest=dict(type="str", required=True),
            delete=dict(type="bool", default=False),
            max_delete=dict(type="str"),
            include=dict(type="list", elements="str"),
            exclude=dict(type="list", elements="str"),
            concurrency=dict(type="int", default=16),
            multipart_chunk_size_mb=dict(type="int", default=8),
            cache_control=dict(type="list", elements="dict", options=dict(
                pattern=dict(type="str", required=True),
                value=dict(type="str", required=True),
            )),
            encryption=dict(type="str", choices=["AES256", "aws:kms"]),
            kms_key_id=dict(type="str"),
            checksum_cache=dict(type="bool", default=True),
            checksum_cache_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    run_module(module, isolated(s3_sync))


if __name__ == "__main__":
    main()
