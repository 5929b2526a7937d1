# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the schema version from a migrations table (Prisma for now)."""

from __future__ import annotations


def read_schema_version(conn):
    """{dialect, table, version, applied_count} of Prisma's _prisma_migrations, or None.

    The version is the newest finished, not rolled back migration; Prisma names
    migrations with a timestamp prefix, so name order is apply order.
    """
    if conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone()[0] is None:
        return None
    count, latest = conn.execute(
        """
        SELECT count(*),
               max(migration_name)
        FROM _prisma_migrations
        WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL
        """
    ).fetchone()
    return {"dialect": "prisma", "table": "_prisma_migrations", "version": latest, "applied_count": count}
