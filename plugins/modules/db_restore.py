#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_restore
short_description: Restore a PostgreSQL backup after checking its sha256, without losing the live database
version_added: 0.1.0
description:
  - Restores an archive written by M(treazrisland.ops.db_backup) (or by C(pg_dump -Fc)/C(-Fd) with an
    explicit O(sha256)) with C(pg_restore), as in the guide's Database Backup Restoration.
  - Refuses an archive whose sha256 does not match its manifest; then C(pg_restore) never runs and the
    target is untouched.
  - O(method=swap) (default) restores into a new database, checks it against the manifest (every table
    of the backup present, same schema version), then swaps names with the live database in one
    transaction, keeping the old one renamed aside (RV(previous_database)). The live database is never
    dropped before its replacement is verified.
  - O(method=clean) runs the guide's C(pg_restore --clean --if-exists) into the existing database, in a
    single transaction by default so that a failure leaves it as it was.
  - Fails, restoring nothing, while other sessions use the target database unless O(terminate_sessions=true).
  - Runs C(ANALYZE) on the restored database and returns its table count and row estimates.
  - Holds the database's lock (see O(lock_timeout)) for the whole run, so it never overlaps a
    M(treazrisland.ops.db_migrate) of the same database, nor another restore.
  - Before restoring anything, compares the live database with the backup's manifest, by its schema version,
    the failed or unfinished migration rows the backup did not have, and its schema fingerprint (tables,
    columns, indexes, constraints, enum types). RV(database_moved) and RV(moved_because) say whether and why it moved
    since the backup; with O(only_if_moved=true) a database that did not move is not restored, so no write
    made since the backup is lost. A version-1 manifest (without a fingerprint) is compared by schema
    version only.
  - After a swap that keeps the previous database, compares that database with the manifest's table stats
    and returns the tables that got writes after the backup (RV(writes_after_backup)), whose new rows are
    only in RV(previous_database).
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.postgres
  - treazrisland.ops.database_lock
attributes:
  check_mode:
    support: full
    details:
      - Verifies the checksum, connects read-only, picks C(pg_restore) and computes RV(database_moved) and
        RV(moved_because); restores nothing and reports C(changed=false).
      - Takes no lock and does not fail because of other sessions (RV(other_sessions) counts them), so a
        playbook can ask whether the database moved while the application still runs.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  src:
    description: The archive file (custom format) or directory (directory format).
    type: path
    required: true
  manifest:
    description: The manifest to check O(src) against; defaults to V(<src>.manifest.json).
    type: path
  sha256:
    description: Expected sha256 of O(src), for an archive without a manifest; overrides the manifest's.
    type: str
  method:
    description: V(swap) restores beside the live database and swaps names; V(clean) restores in place.
    type: str
    choices: [swap, clean]
    default: swap
  maintenance_db:
    description:
      - Database to connect to for creating, renaming and dropping databases, and in which the database's
        lock is taken (the same as M(treazrisland.ops.db_migrate)'s, for the two to exclude each other).
    type: str
    default: postgres
  jobs:
    description: Parallel C(pg_restore) workers.
    type: int
    default: 1
  no_owner:
    description: Pass C(--no-owner), for a cluster that lacks the roles owning the objects.
    type: bool
    default: false
  single_transaction:
    description: With O(method=clean), restore in one transaction (not with O(jobs) > 1).
    type: bool
    default: true
  terminate_sessions:
    description: Terminate other sessions on the target database instead of failing because of them.
    type: bool
    default: false
  drop_previous:
    description: With O(method=swap), drop the previous database once the restored one has taken its place.
    type: bool
    default: false
  timeout:
    description: Seconds after which C(pg_restore) is stopped and the restore fails. Unset waits.
    type: int
  only_if_moved:
    description:
      - Restore only when the live database moved since the backup (RV(database_moved)), that is with a
        different schema version, a failed or unfinished migration row the backup did not have, a different
        schema (with a version-2 manifest), or no such database. Otherwise restore nothing and report
        C(changed=false).
      - Needs the backup's manifest.
    type: bool
    default: false
  keep_previous:
    description:
      - With O(method=swap), after a successful swap, drop this database's previous databases
        (V(<db>__before_restore_<time>)) beyond the newest O(keep_previous); the one just set aside is
        never dropped. One still in use is kept, with a warning. Unset keeps them all.
    type: int
seealso:
  - module: treazrisland.ops.db_backup
"""

EXAMPLES = r"""
- name: Restore the pre-upgrade snapshot, keeping the current database aside
  treazrisland.ops.db_restore:
    dsn: "{{ treazrisland_database_url }}"
    src: "{{ db_snapshot.path }}"
    terminate_sessions: true
  register: restored

- name: Ask whether the database moved since the snapshot (restores nothing)
  treazrisland.ops.db_restore:
    dsn: "{{ treazrisland_database_url }}"
    src: "{{ db_snapshot.path }}"
    only_if_moved: true
  check_mode: true
  register: rollback_plan

- name: Roll the database back only if it moved, keeping the two newest previous databases
  treazrisland.ops.db_restore:
    dsn: "{{ treazrisland_database_url }}"
    src: "{{ db_snapshot.path }}"
    only_if_moved: true
    terminate_sessions: true
    keep_previous: 2
  when: rollback_plan.database_moved

- name: The guide's in-place restore
  treazrisland.ops.db_restore:
    dsn: "{{ treazrisland_database_url }}"
    src: /var/backups/treazrisland/backup_20261125T214500Z.dump
    method: clean
"""

RETURN = r"""
database:
  description: The database restored.
  returned: always
  type: str
  sample: treazrisland
method:
  description: How it was restored.
  returned: always
  type: str
  sample: swap
sha256:
  description: The verified sha256 of the archive.
  returned: always
  type: str
  sample: 9f2c0c7d0f3b6d1e4d0a8c1f5b7e2a3c4d5e6f708192a3b4c5d6e7f8091a2b3c
format:
  description: Archive format.
  returned: always
  type: str
  sample: custom
pg_restore:
  description: The C(pg_restore) used.
  returned: always
  type: dict
  sample: {"path": "/usr/lib/postgresql/16/bin/pg_restore", "version": "16.4"}
server_version:
  description: Version the server reports.
  returned: always
  type: str
  sample: "16.4"
database_existed:
  description: Whether the target database existed before.
  returned: always
  type: bool
  sample: true
schema_version:
  description: Schema version recorded in the manifest.
  returned: always
  type: dict
  sample: {"dialect": "prisma", "table": "_prisma_migrations", "version": "20250101000000_init", "applied_count": 12}
database_moved:
  description:
    - Whether the live database moved since the backup (see RV(moved_because)); true when it does not exist
      or there is no manifest to compare with.
  returned: success
  type: bool
  sample: true
moved_because:
  description:
    - Why it moved, one short reason each; empty when it did not. With a version-1 manifest, also a note that
      only the schema version was compared.
  returned: success
  type: list
  elements: str
  sample:
    - "schema version 20250301000000_save_state -> 20250701000000_rom_platform"
    - "1 failed migration row: 20250701000000_rom_platform"
    - "schema differs from the backup's (tables, columns, indexes or constraints)"
other_sessions:
  description: Other sessions on the target database before anything was done.
  returned: success
  type: int
  sample: 0
previous_database:
  description: Name the previous database was kept under (O(method=swap)), or null.
  returned: changed
  type: str
  sample: treazrisland__before_restore_20261125214500
writes_after_backup:
  description:
    - The tables of the backup whose rows in RV(previous_database) differ from the backup, i.e. writes made
      after the backup that are only in that database. Only tables that differ are listed; the migrations
      table is left out (its new rows are the migrations).
    - C(how) is V(dropped) (the table is gone), V(changed (row count)), V(changed (digest)) (same count,
      other content, also when a column of the backup was dropped or retyped) or
      V(changed (write counters, table above digest_max_bytes)) (a table too big for a digest at backup
      time whose insert, update and delete counters moved).
    - Null when no previous database was kept, with O(method=clean), or with a version-1 manifest.
  returned: changed
  type: list
  elements: dict
  contains:
    table:
      description: Schema-qualified table name.
      type: str
    rows_at_backup:
      description: Rows at backup time.
      type: int
    rows_now:
      description: Rows in RV(previous_database), null when the table is gone.
      type: int
    how:
      description: How it differs.
      type: str
  sample: [{"table": "public.User", "rows_at_backup": 500, "rows_now": 501, "how": "changed (row count)"}]
dropped_previous:
  description: Older previous databases dropped because of O(keep_previous).
  returned: changed
  type: list
  elements: str
  sample: ["treazrisland__before_restore_20261118214500"]
lock_holder:
  description: The session holding the database's lock, when the run failed waiting for it.
  returned: failure
  type: dict
  sample: {"pid": 1234, "application_name": "treazrisland.ops db_migrate", "client_addr": "10.0.0.1",
           "client_port": 51514, "backend_start": "2026-12-03T08:10:00Z", "state": "idle"}
table_count:
  description: Tables in the restored database.
  returned: changed
  type: int
  sample: 24
rows:
  description: Estimated rows per table of the restored database, after ANALYZE.
  returned: changed
  type: dict
  sample: {"public.users": 1200, "public.roms": 35000}
restored_schema_version:
  description: Schema version read from the restored database.
  returned: changed
  type: dict
  sample: {"dialect": "prisma", "table": "_prisma_migrations", "version": "20250101000000_init", "applied_count": 12}
duration_seconds:
  description: Seconds the restore took.
  returned: changed
  type: float
  sample: 12.5
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.pg_archive import restore
from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import (
    CONNECTION_ARGUMENT_SPEC, LOCK_ARGUMENT_SPEC,
)


def main():
    argument_spec = dict(
        CONNECTION_ARGUMENT_SPEC,
        **LOCK_ARGUMENT_SPEC,
        src=dict(type="path", required=True),
        manifest=dict(type="path"),
        sha256=dict(type="str"),
        method=dict(type="str", choices=["swap", "clean"], default="swap"),
        maintenance_db=dict(type="str", default="postgres"),
        jobs=dict(type="int", default=1),
        no_owner=dict(type="bool", default=False),
        single_transaction=dict(type="bool", default=True),
        terminate_sessions=dict(type="bool", default=False),
        drop_previous=dict(type="bool", default=False),
        timeout=dict(type="int"),
        only_if_moved=dict(type="bool", default=False),
        keep_previous=dict(type="int"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, restore)


if __name__ == "__main__":
    main()
