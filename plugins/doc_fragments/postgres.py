# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by every module that talks to PostgreSQL."""

    DOCUMENTATION = r"""
options:
  dsn:
    description:
      - Connection string, in the URI form of C(DATABASE_URL) (V(postgresql://user:password@host:5432/db))
        or the libpq C(key=value) form.
      - Explicit O(host), O(port), O(user), O(password), O(dbname) and O(sslmode) override its parts.
      - Its password is never put on a command line nor printed; client programs get it through a
        temporary passfile readable only by the module's user.
    type: str
    aliases: [database_url]
  host:
    description: Server host name, address or socket directory.
    type: str
  port:
    description: Server port.
    type: int
  user:
    description: Role to connect as.
    type: str
  password:
    description: Password of O(user). Never logged.
    type: str
  dbname:
    description: Database name.
    type: str
    aliases: [database]
  sslmode:
    description: libpq SSL mode.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  connect_timeout:
    description: Seconds to wait for a connection.
    type: int
    default: 10
  pg_bin_dir:
    description:
      - Directories to search for the PostgreSQL client programs, instead of the default places
        (C(/usr/lib/postgresql/*/bin), C(/usr/pgsql-*/bin), C(/usr/local/pgsql*/bin) and E(PATH)).
      - The program of the server's major version is used if installed, else the nearest newer one;
        an older one is refused.
    type: list
    elements: path
requirements:
  - psycopg (version 3) on the managed host
  - PostgreSQL client programs of the server's major version or newer
"""
