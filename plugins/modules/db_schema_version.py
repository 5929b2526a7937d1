#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_schema_version
short_description: Read the schema version from a database's migrations table
version_added: 0.1.0
description:
  - The guide's "Capture current state" step for the database; the current schema version (latest applied
    migration), the ordered list of applied migrations and any failed or dirty one.
  - Given the migrations directory of a release (O(migrations_dir)), also the pending migrations and any
    applied migration whose file changed since it was applied (checksum mismatch).
  - Knows the tables of Prisma Migrate (Treazrisland's, the default), knex, TypeORM, Flyway, golang-migrate,
    Alembic, Django and Rails, and detects which one a database has when O(dialect) is not given.
  - Read-only; it never changes anything.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.postgres
  - treazrisland.ops.migrations
attributes:
  check_mode:
    support: full
    details: Read-only, so check mode reads the same.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: treazrisland.ops.db_migrate
"""

EXAMPLES = r"""
- name: Note the current schema version (guide 1.4)
  treazrisland.ops.db_schema_version:
    dsn: "{{ treazrisland_database_url }}"
  register: schema

- name: What the new release would apply
  treazrisland.ops.db_schema_version:
    dsn: "{{ treazrisland_database_url }}"
    migrations_dir: /srv/treazrisland/releases/1.5.0/backend/prisma/migrations
  register: release_schema
"""

RETURN = r"""
dialect:
  description: The migration tool whose table was read.
  returned: always
  type: str
  sample: prisma
table:
  description: The migrations table.
  returned: always
  type: str
  sample: _prisma_migrations
version:
  description: The latest applied migration, null when none is applied.
  returned: always
  type: str
  sample: 20250601080000_favorites
applied_count:
  description: Number of applied migrations.
  returned: always
  type: int
  sample: 3
applied:
  description: Applied migrations in the order they were applied.
  returned: always
  type: list
  elements: str
  sample: ["20250101000000_init", "20250601080000_favorites"]
failed_migrations:
  description: Failed (Prisma, Flyway) or dirty (golang-migrate) migrations, with their logs.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "20250701000000_add_index", "logs": "Database error: ..."}]
pending:
  description: Migrations of O(migrations_dir) not yet applied, in order.
  returned: when O(migrations_dir) is set
  type: list
  elements: str
  sample: ["20250701000000_add_index"]
checksum_mismatches:
  description: Applied migrations whose file in O(migrations_dir) differs from what was applied.
  returned: when O(migrations_dir) is set
  type: list
  elements: dict
  sample: [{"name": "20250101000000_init", "applied_checksum": "ab12...", "file_checksum": "cd34..."}]
missing_from_release:
  description: Applied migrations that O(migrations_dir) does not have.
  returned: when O(migrations_dir) is set
  type: list
  elements: str
  sample: []
release_version:
  description: The last migration of O(migrations_dir), the version the release expects.
  returned: when O(migrations_dir) is set
  type: str
  sample: 20250701000000_add_index
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.migrate import VERSION_ARGUMENT_SPEC, schema_version
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import CONNECTION_ARGUMENT_SPEC


def main():
    module = AnsibleModule(argument_spec=dict(CONNECTION_ARGUMENT_SPEC, **VERSION_ARGUMENT_SPEC),
                           supports_check_mode=True)
    run_module(module, schema_version)


if __name__ == "__main__":
    main()
