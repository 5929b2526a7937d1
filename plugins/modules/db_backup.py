#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_backup
short_description: Back up a PostgreSQL database with pg_dump, checksummed and verified
version_added: 0.1.0
description:
  - Runs C(pg_dump) (guide section 2, Database snapshot) and writes the archive into O(dest) under a
    new name (V(backup_<UTC timestamp>.dump) by default), atomically; the final name appears only after
    C(pg_dump) succeeded and C(pg_restore --list) read the archive back and listed data for every table.
  - The sha256 of a custom-format archive is computed while it streams to disk, in one pass.
  - Writes a JSON manifest next to the archive (V(<archive>.manifest.json), mode 0600) recording the
    database, server and C(pg_dump) versions, format, size, sha256, start and end time, the tables and,
    when a Prisma C(_prisma_migrations) table exists, the schema version. The manifest is read in the
    same snapshot that C(pg_dump) dumps, so it describes exactly what the archive holds.
  - The manifest (version 2) also records what M(treazrisland.ops.db_restore) compares later, from the same
    snapshot; C(schema_fingerprint), the sha256 of a canonical listing of the user schema (tables, columns
    with type, nullability and default, indexes, constraints, enum types and labels); C(failed_migrations);
    and C(table_stats), per table its exact row count, its column names and a digest of its rows (md5 over
    the md5 of each row projected on those columns), or for a table above O(digest_max_bytes) its write
    counters instead of a digest. Computing them reads every table once more, on the server.
  - Chooses a C(pg_dump) of the server's major version, else the nearest newer one, from the installed
    ones; fails with what to install when only older ones exist.
  - Every real run writes a new backup, so it always reports C(changed=true).
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.postgres
attributes:
  check_mode:
    support: full
    details: Connects read-only, picks C(pg_dump) and reports the path it would write, writing nothing; reports C(changed=false).
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  dest:
    description: Existing directory to write the archive and its manifest into.
    type: path
    required: true
  name:
    description:
      - File (or directory) name of the archive instead of V(backup_<UTC timestamp>.dump).
      - An existing name is an error; a backup is never overwritten.
    type: str
  format:
    description: V(custom) is one file (C(pg_dump -Fc)); V(directory) is one file per table and allows O(jobs).
    type: str
    choices: [custom, directory]
    default: custom
  jobs:
    description: Parallel C(pg_dump) workers; more than 1 needs O(format=directory).
    type: int
    default: 1
  compress:
    description: Passed to C(pg_dump --compress), e.g. V(6) or V(zstd:3) (PostgreSQL 16 clients).
    type: str
  keep:
    description:
      - Keep only the newest O(keep) backups of this database in O(dest) (those with a manifest of this
        module); the one just written is never removed. Unset keeps everything.
    type: int
  timeout:
    description: Seconds after which C(pg_dump) is stopped and the backup fails. Unset waits.
    type: int
  digest_max_bytes:
    description:
      - Tables larger than this (C(pg_total_relation_size), indexes and TOAST included) get no content digest
        in the manifest's table stats, only their exact row count and their insert, update and delete
        counters (C(pg_stat_user_tables)), to keep the backup cheap. V(0) digests no table.
    type: int
    default: 268435456
seealso:
  - module: treazrisland.ops.db_restore
  - module: treazrisland.ops.checksum_manifest
"""

EXAMPLES = r"""
- name: Snapshot the Treazrisland database before an upgrade
  treazrisland.ops.db_backup:
    dsn: "{{ treazrisland_database_url }}"
    dest: /var/backups/treazrisland
    keep: 7
  register: db_snapshot

- name: Parallel dump into a directory, by explicit connection options
  treazrisland.ops.db_backup:
    host: db.internal
    port: 5432
    user: treazrisland
    password: "{{ vault_db_password }}"
    dbname: treazrisland
    dest: /var/backups/treazrisland
    format: directory
    jobs: 4
"""

RETURN = r"""
path:
  description: The archive written (a file, or a directory for O(format=directory)).
  returned: always
  type: str
  sample: /var/backups/treazrisland/backup_20261125T214500Z.dump
manifest_path:
  description: The JSON manifest beside the archive.
  returned: always
  type: str
  sample: /var/backups/treazrisland/backup_20261125T214500Z.dump.manifest.json
sha256:
  description: sha256 of the archive file; for a directory, of its sha256sum listing.
  returned: changed
  type: str
  sample: 9f2c0c7d0f3b6d1e4d0a8c1f5b7e2a3c4d5e6f708192a3b4c5d6e7f8091a2b3c
size:
  description: Bytes written.
  returned: changed
  type: int
  sample: 10485760
format:
  description: Archive format.
  returned: always
  type: str
  sample: custom
database:
  description: The database dumped.
  returned: always
  type: str
  sample: treazrisland
server_version:
  description: Version the server reports.
  returned: always
  type: str
  sample: "16.4"
pg_dump:
  description: The C(pg_dump) used.
  returned: always
  type: dict
  sample: {"path": "/usr/lib/postgresql/16/bin/pg_dump", "version": "16.4"}
database_size:
  description: Size of the database on the server in bytes (an archive is usually much smaller).
  returned: always
  type: int
  sample: 830472192
dest_free_bytes:
  description: Free bytes in O(dest) before the backup, for a preflight check.
  returned: always
  type: int
  sample: 53687091200
schema_version:
  description: Latest applied migration found in the dump's snapshot, or null without a migrations table.
  returned: changed
  type: dict
  sample: {"dialect": "prisma", "table": "_prisma_migrations", "version": "20250101000000_init", "applied_count": 12}
schema_fingerprint:
  description: sha256 of the canonical listing of the user schema, as recorded in the manifest.
  returned: changed
  type: str
  sample: 50f18fcfc2024ccc13e7fba0a798964b172c0eda001d7a3243cd25e6ec0322ce
table_count:
  description: Tables whose data the archive holds.
  returned: changed
  type: int
  sample: 24
toc_entries:
  description: Entries C(pg_restore --list) read from the archive.
  returned: changed
  type: int
  sample: 130
started_at:
  description: UTC time C(pg_dump) started.
  returned: changed
  type: str
  sample: "2026-11-25T21:45:00.123456Z"
finished_at:
  description: UTC time the archive was verified.
  returned: changed
  type: str
  sample: "2026-11-25T21:45:09.654321Z"
duration_seconds:
  description: Seconds from start to verified archive.
  returned: changed
  type: float
  sample: 9.53
removed:
  description: Older archives removed by O(keep).
  returned: changed
  type: list
  elements: str
  sample: ["/var/backups/treazrisland/backup_20261118T214500Z.dump"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.pg_archive import backup
from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import CONNECTION_ARGUMENT_SPEC


def main():
    argument_spec = dict(
        CONNECTION_ARGUMENT_SPEC,
        dest=dict(type="path", required=True),
        name=dict(type="str"),
        format=dict(type="str", choices=["custom", "directory"], default="custom"),
        jobs=dict(type="int", default=1),
        compress=dict(type="str"),
        keep=dict(type="int"),
        timeout=dict(type="int"),
        digest_max_bytes=dict(type="int", default=268435456),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, backup)


if __name__ == "__main__":
    main()
