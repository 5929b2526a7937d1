# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The lock that keeps modules changing one database from overlapping (db_migrate, db_restore)."""

    DOCUMENTATION = r"""
options:
  lock_timeout:
    description:
      - Seconds to wait for the database's lock, held by another M(treazrisland.ops.db_migrate) or
        M(treazrisland.ops.db_restore) run on the same database, before failing with the holder's
        process id, application, address and start time. V(0) tries once.
      - The lock is a PostgreSQL session-level advisory lock taken in O(maintenance_db) on a connection of
        its own, keyed by the target database's name, and held for the whole run, also by a migration left
        running after the controller died. Check mode neither takes nor waits for it.
    type: int
    default: 300
"""
