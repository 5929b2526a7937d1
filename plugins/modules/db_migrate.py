#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_migrate
short_description: Run a release's database migrations behind a schema-version gate
version_added: 0.1.0
description:
  - The guide's Database Migrations step. Runs the release's migration command (for Treazrisland
    C(pnpm --filter @treazrisland/backend prisma:migrate:deploy)) with the database URL in its environment,
    never on its command line, and reads the schema version before and after.
  - Refuses to run, changing nothing, while a failed migration blocks the table or an applied migration's
    file was edited since it was applied (with O(migrations_dir)).
  - Fails when the command fails, when a failed migration row appears (with that migration's own error
    text), or when the version did not reach O(expect_version), or, with O(migrations_dir), when any
    migration of the release is still pending.
  - C(changed) is true only when the schema version moved. With O(migrations_dir) and nothing pending,
    the command is not run at all.
  - O(rehearse=true) first restores the newest backup (from O(backup_dir), or O(rehearsal_backup)) into a
    scratch database, migrates and validates it there, then drops it; production is migrated only when the
    rehearsal passed (the guide's dry run, on real data).
  - O(direction=down) runs the team's O(down_command) to reach O(to). Prisma has no down migrations; without
    a O(down_command) it fails with the advice to restore the pre-upgrade backup, which the rollback does.
  - Both directions hold the database's lock (see O(lock_timeout)) from before the version is first read
    until the end, so a migration never overlaps M(treazrisland.ops.db_restore) or another migration of the
    same database; a second run waits for the first and then finds nothing pending. The rehearsal's scratch
    database is locked by the restore that creates it.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.postgres
  - treazrisland.ops.migrations
  - treazrisland.ops.database_lock
attributes:
  check_mode:
    support: full
    details: Runs nothing and takes no lock; reports the current version and the pending migrations, C(changed=false).
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  command:
    description: The migration command, as a list of arguments or a string split like a shell would (no shell runs).
    type: raw
    default: [pnpm, --filter, "@treazrisland/backend", "prisma:migrate:deploy"]
  chdir:
    description: Working directory of the command, e.g. the release directory.
    type: path
  environment:
    description: More environment variables for the command. Their values are treated as secrets.
    type: dict
  database_url_env:
    description: Name of the environment variable that carries the database URL.
    type: str
    default: DATABASE_URL
  timeout:
    description: Seconds after which the command is stopped and the task fails.
    type: int
    default: 1800
  expect_version:
    description:
      - The schema version the command must reach; C({to}) in O(command) is replaced by it, for tools that
        can stop at a version. When the database is already there, nothing runs.
      - Unset, with O(migrations_dir), every migration of the release must be applied.
    type: str
  direction:
    description: V(up) applies the release's migrations; V(down) goes back to O(to) with O(down_command).
    type: str
    choices: [up, down]
    default: up
  to:
    description: With O(direction=down), the version to go back to. C({to}) in O(down_command) is replaced by it.
    type: str
  down_command:
    description: The team's down command, if it has one (list or string).
    type: raw
  log_path:
    description: Deployment log to append the command and its (masked) output to; created 0600.
    type: path
  rehearse:
    description: Rehearse on a scratch copy of the newest backup first.
    type: bool
    default: false
  rehearsal_backup:
    description: The archive (from M(treazrisland.ops.db_backup)) to rehearse on.
    type: path
  backup_dir:
    description: Where to find the newest backup of this database to rehearse on, when O(rehearsal_backup) is unset.
    type: path
  maintenance_db:
    description:
      - Database to connect to for creating and dropping the rehearsal database, and in which the database's
        lock is taken (the same as M(treazrisland.ops.db_restore)'s, for the two to exclude each other).
    type: str
    default: postgres
  validate:
    description:
      - Checks that must pass after the migration (on the rehearsal copy too), with the options of
        M(treazrisland.ops.db_validate) (O(validate.tables), O(validate.columns), O(validate.indexes),
        O(validate.constraints), O(validate.queries), O(validate.wait_for)).
    type: dict
    suboptions:
      tables:
        description: Tables that must exist.
        type: list
        elements: str
        default: []
      columns:
        description: Columns that must exist, by table.
        type: dict
        default: {}
      indexes:
        description: Indexes that must exist.
        type: list
        elements: str
        default: []
      constraints:
        description: Constraints that must exist.
        type: list
        elements: str
        default: []
      queries:
        description: Read-only queries and the rows they must return.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: Label of the query in messages.
            type: str
          sql:
            description: The query.
            type: str
            required: true
          expect:
            description: The rows expected (a list of lists), or one value for a one-row one-column result.
            type: raw
            required: true
      wait_for:
        description: A query that must become true within a timeout, e.g. a backfill finished.
        type: dict
        suboptions:
          sql:
            description: A query returning one boolean.
            type: str
            required: true
          timeout:
            description: Seconds to wait.
            type: int
            default: 300
          interval:
            description: Seconds between polls.
            type: float
            default: 5
seealso:
  - module: treazrisland.ops.db_schema_version
  - module: treazrisland.ops.db_validate
  - module: treazrisland.ops.db_restore
"""

EXAMPLES = r"""
- name: Apply the release's migrations, rehearsed on last night's backup first
  treazrisland.ops.db_migrate:
    dsn: "{{ treazrisland_database_url }}"
    chdir: /srv/treazrisland/releases/1.5.0
    migrations_dir: /srv/treazrisland/releases/1.5.0/backend/prisma/migrations
    rehearse: true
    backup_dir: /var/backups/treazrisland
    log_path: /var/log/treazrisland/deploy.log
    validate:
      tables: [public.User, public.Rom]

- name: Go back down with a team's own down tool
  treazrisland.ops.db_migrate:
    dsn: "{{ database_url }}"
    direction: down
    to: "{{ schema_before.version }}"
    down_command: [npx, knex, migrate:down, --to, "{to}"]
    dialect: knex
"""

RETURN = r"""
version_before:
  description: Schema version before the command.
  returned: always
  type: str
  sample: 20250601080000_favorites
version:
  description: Schema version after the command.
  returned: always
  type: str
  sample: 20250901000000_achievements
pending:
  description: Migrations of O(migrations_dir) pending before the command.
  returned: when O(migrations_dir) is set and O(direction=up)
  type: list
  elements: str
  sample: ["20250901000000_achievements"]
applied:
  description: Applied migrations after the command, in order.
  returned: changed
  type: list
  elements: str
  sample: ["20250101000000_init", "20250901000000_achievements"]
output:
  description: The command's output (stdout then stderr), secrets masked, last 20000 characters.
  returned: when the command ran
  type: str
  sample: "All migrations have been successfully applied."
rehearsal:
  description: The backup rehearsed on and the versions the rehearsal went from and to.
  returned: when O(rehearse=true) and the command ran
  type: dict
  sample: {"backup": "/var/backups/treazrisland/backup_20261125T020000Z.dump", "version_before": "a", "version": "b"}
failed_migrations:
  description: Failed migrations found after the command, with their error text.
  returned: failure
  type: list
  elements: dict
  sample: [{"name": "20250901000000_achievements", "logs": "Database error: ..."}]
lock_holder:
  description: The session holding the database's lock, when the run failed waiting for it.
  returned: failure
  type: dict
  sample: {"pid": 1234, "application_name": "treazrisland.ops db_restore", "client_addr": "10.0.0.1",
           "client_port": 51514, "backend_start": "2026-12-03T08:10:00Z", "state": "idle"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.migrate import MIGRATE_ARGUMENT_SPEC, migrate
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import CONNECTION_ARGUMENT_SPEC


def main():
    module = AnsibleModule(
        argument_spec=dict(CONNECTION_ARGUMENT_SPEC, **MIGRATE_ARGUMENT_SPEC),
        required_if=[("direction", "down", ("to",)), ("rehearse", True, ("rehearsal_backup", "backup_dir"), True)],
        supports_check_mode=True,
    )
    run_module(module, migrate)


if __name__ == "__main__":
    main()
