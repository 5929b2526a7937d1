#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_validate
short_description: Read-only smoke checks of a database after a migration
version_added: 0.1.0
description:
  - The guide's Post-migration validation. Checks that tables, columns, indexes and constraints exist, that
    read-only queries return the expected rows, and can wait until a query becomes true (a data backfill
    finished), polling it.
  - Every check runs in a read-only transaction; all failures are reported together.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - treazrisland.ops.postgres
attributes:
  check_mode:
    support: full
    details: Read-only, so check mode runs the same checks.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  tables:
    description: Tables (or views) that must exist, as V(schema.table) or V(table) on the C(search_path).
    type: list
    elements: str
    default: []
  columns:
    description: Columns that must exist, as a mapping of table to list of column names.
    type: dict
    default: {}
  indexes:
    description: Indexes that must exist.
    type: list
    elements: str
    default: []
  constraints:
    description: Constraints that must exist, as V(name) or V(schema.name).
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
    description: A query that must become true within O(wait_for.timeout) seconds, polled every O(wait_for.interval).
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
  - module: treazrisland.ops.db_migrate
"""

EXAMPLES = r"""
- name: Validate the schema after the migration
  treazrisland.ops.db_validate:
    dsn: "{{ treazrisland_database_url }}"
    tables: [public.User, public.Rom]
    columns:
      public.Rom: [id, title, asset_uri]
    indexes: [rom_platform_idx]
    queries:
      - name: no ROM without an asset
        sql: SELECT count(*) FROM "Rom" WHERE asset_uri IS NULL
        expect: 0
    wait_for:
      sql: SELECT NOT EXISTS (SELECT 1 FROM "Rom" WHERE checksum IS NULL)
      timeout: 600
"""

RETURN = r"""
checks:
  description: Number of checks run (tables, columns by table, indexes, constraints, queries).
  returned: success
  type: int
  sample: 6
polls:
  description: How many times O(wait_for.sql) was polled.
  returned: success
  type: int
  sample: 3
failures:
  description: Every check that failed.
  returned: failure
  type: list
  elements: str
  sample: ["index rom_platform_idx does not exist"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.postgres import CONNECTION_ARGUMENT_SPEC
from ansible_collections.treazrisland.ops.plugins.module_utils.validate import CHECKS_ARGUMENT_SPEC, validate


def main():
    module = AnsibleModule(argument_spec=dict(CONNECTION_ARGUMENT_SPEC, **CHECKS_ARGUMENT_SPEC),
                           supports_check_mode=True)
    run_module(module, validate)


if __name__ == "__main__":
    main()
