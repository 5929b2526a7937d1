# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options that say where a database keeps its migration history."""

    DOCUMENTATION = r"""
options:
  dialect:
    description:
      - The migration tool whose table to read. Unset detects it from which table exists, in the order
        prisma, flyway, knex, django, alembic, typeorm, golang-migrate, rails (C(schema_migrations) with a
        C(dirty) column is golang-migrate's, without it Rails').
    type: str
    choices: [prisma, knex, typeorm, flyway, golang-migrate, alembic, django, rails]
  migrations_table:
    description: The table's name when it is not the tool's default.
    type: str
  migrations_schema:
    description: The schema of the table; unset follows the connection's C(search_path).
    type: str
  migrations_dir:
    description:
      - The migrations directory of the release to compare with, e.g. C(backend/prisma/migrations).
      - Pending migrations are computed for prisma, knex, flyway, golang-migrate and rails from their file
        names; checksums are compared for prisma (sha256 of C(migration.sql)).
    type: path
"""
