"""A database shaped like Treazrisland's: enums, arrays, jsonb, a second schema, _prisma_migrations."""

from __future__ import annotations

import hashlib

MIGRATIONS = ["20250101000000_init", "20250301120000_add_rom_assets", "20250601080000_favorites"]

SCHEMA = """
CREATE TYPE "Role" AS ENUM ('ADMIN', 'USER');
CREATE TYPE "Platform" AS ENUM ('NES', 'SNES', 'GB', 'GBA', 'MD');
CREATE TABLE "User" (
  id serial PRIMARY KEY,
  email text NOT NULL UNIQUE,
  role "Role" NOT NULL DEFAULT 'USER',
  preferences jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE "Rom" (
  id bigserial PRIMARY KEY,
  title text NOT NULL,
  platform "Platform" NOT NULL,
  tags text[] NOT NULL DEFAULT '{}',
  asset_uri text NOT NULL,
  metadata jsonb,
  size_bytes bigint NOT NULL
);
CREATE INDEX rom_platform_idx ON "Rom" (platform);
CREATE SCHEMA analytics;
CREATE TABLE analytics.play_event (
  id bigserial PRIMARY KEY,
  user_id int REFERENCES "User"(id),
  rom_id bigint REFERENCES "Rom"(id),
  played_at timestamptz NOT NULL,
  scores int[]
);
CREATE TABLE _prisma_migrations (
  id varchar(36) PRIMARY KEY,
  checksum varchar(64) NOT NULL,
  finished_at timestamptz,
  migration_name varchar(255) NOT NULL,
  logs text,
  rolled_back_at timestamptz,
  started_at timestamptz NOT NULL DEFAULT now(),
  applied_steps_count integer NOT NULL DEFAULT 0
);
"""


def populate(conn, rom_rows=200_000, users=500, events=20_000):
    """Create the schema and rows; deterministic content so two loads compare equal."""
    conn.execute(SCHEMA)
    conn.execute(
        """INSERT INTO "User" (email, role, preferences, created_at)
           SELECT 'player' || g || '@treazris.land', (CASE WHEN g %% 50 = 0 THEN 'ADMIN' ELSE 'USER' END)::"Role",
                  jsonb_build_object('theme', CASE WHEN g %% 2 = 0 THEN 'dark' ELSE 'light' END, 'volume', g %% 11),
                  timestamptz '2025-01-01' + g * interval '1 hour'
           FROM generate_series(1, %d) g""" % users)
    conn.execute(
        """INSERT INTO "Rom" (title, platform, tags, asset_uri, metadata, size_bytes)
           SELECT 'Game ' || g, (ARRAY['NES','SNES','GB','GBA','MD'])[1 + g %% 5]::"Platform",
                  ARRAY['tag' || (g %% 7), 'tag' || (g %% 13)],
                  's3://treazrisland-assets/roms/' || g || '.zip',
                  CASE WHEN g %% 3 = 0 THEN NULL ELSE jsonb_build_object('year', 1985 + g %% 30, 'players', 1 + g %% 4) END,
                  1024 * (1 + g %% 4096)
           FROM generate_series(1, %d) g"""% rom_rows)
    conn.execute(
        """INSERT INTO analytics.play_event (user_id, rom_id, played_at, scores)
           SELECT 1 + g %% %d, 1 + g %% %d, timestamptz '2025-06-01' + g * interval '1 minute',
                  ARRAY[g %% 100, g %% 1000]
           FROM generate_series(1, %d) g"""% (users, rom_rows, events))
    for number, name in enumerate(MIGRATIONS):
        conn.execute(
            """INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at,
                                               applied_steps_count)
               VALUES (%s, %s, timestamptz '2025-07-01' + %s * interval '1 second', %s,
                       timestamptz '2025-07-01', 1)""",
            ("00000000-0000-0000-0000-00000000000%d" % number, hashlib.sha256(name.encode()).hexdigest(),
             number, name))


def table_fingerprints(conn):
    """{schema.table: (row count, md5 of all rows ordered by primary key)} of every user table."""
    tables = conn.execute(
        """SELECT n.nspname, c.relname,
                  (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY array_position(i.indkey, a.attnum))
                   FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                   WHERE i.indrelid = c.oid AND i.indisprimary)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           ORDER BY 1, 2""").fetchall()
    result = {}
    for schema, table, key in tables:
        qualified = '"%s"."%s"' % (schema, table)
        count, digest = conn.execute(
            "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY %s), '')) FROM %s t"
            % (key or "t::text", qualified)).fetchone()
        result["%s.%s" % (schema, table)] = (count, digest)
    return result
