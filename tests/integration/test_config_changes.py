"""config_diff and config_apply (state=present) on a Treazrisland-shaped upgrade, 1.4.0 -> 1.5.0.

Release 1.5.0's sample adds 2 keys (one of them a secret), drops 1 (LEGACY_ASSET_DIR) and changes 1
default (RATE_LIMIT_DEFAULT_POINTS); the live file is 1.4.0's sample filled in by an operator.
"""

from __future__ import annotations

import os
import stat

from helpers import run_module, run_tasks

SAMPLE_1_4 = """\
# Treazrisland configuration sample (release 1.4.0)
# Copy to /etc/treazrisland/app.env and replace every change-me.

# Runtime
NODE_ENV=production
PORT=3001
LOG_LEVEL=info

# Database
POSTGRES_USER=treazrisland
POSTGRES_PASSWORD=change-me
DATABASE_URL="postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@localhost:5432/treazrisland?schema=public"

# Authentication
JWT_SECRET=change-me-at-least-32-characters
JWT_ACCESS_TTL=15m

# Cache
REDIS_URL=redis://localhost:6379/0

# Object storage (S3 compatible)
OBJECT_STORAGE_ENDPOINT=http://localhost:9000
OBJECT_STORAGE_ACCESS_KEY=
OBJECT_STORAGE_SECRET_KEY=
OBJECT_STORAGE_BUCKET=treaz-assets
# Assets served from the local disk before object storage existed
LEGACY_ASSET_DIR=./var/assets

# Rate limiting
RATE_LIMIT_DEFAULT_POINTS=60
"""

SAMPLE_1_5 = """\
# Treazrisland configuration sample (release 1.5.0)
# Copy to /etc/treazrisland/app.env and replace every change-me.

# Runtime
NODE_ENV=production
PORT=3001
LOG_LEVEL=info

# Database
POSTGRES_USER=treazrisland
POSTGRES_PASSWORD=change-me
DATABASE_URL="postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@localhost:5432/treazrisland?schema=public"

# Authentication
JWT_SECRET=change-me-at-least-32-characters
JWT_ACCESS_TTL=15m
# Signs session cookies (new in 1.5.0); 32 random bytes
SESSION_SIGNING_SECRET=change-me

# Cache
REDIS_URL=redis://localhost:6379/0

# Object storage (S3 compatible)
OBJECT_STORAGE_ENDPOINT=http://localhost:9000
# Region of the bucket, for providers that need one
OBJECT_STORAGE_REGION="us-east-1"
OBJECT_STORAGE_ACCESS_KEY=
OBJECT_STORAGE_SECRET_KEY=
OBJECT_STORAGE_BUCKET=treaz-assets

# Rate limiting
RATE_LIMIT_DEFAULT_POINTS=120
"""

# Values that must never show, in any output.
SECRETS = {
    "POSTGRES_PASSWORD": "pg-Zm9yIHRoZSB0ZXN0",
    "JWT_SECRET": "jwt-c2VjcmV0IG9mIDEuNC4w",
    "OBJECT_STORAGE_ACCESS_KEY": "AKIAEXAMPLE7Q3P2",
    "OBJECT_STORAGE_SECRET_KEY": "s3sk-dGhpcyBpcyBub3QgcmVhbA",
}
REDIS_PASSWORD = "redis-pw-4b1d"
NEW_SESSION_SECRET = "sess-bmV3IGluIDEuNS4w"
ROTATED_JWT = "jwt-cm90YXRlZCBiZWZvcmUgZGVwbG95"
BUNDLE_PASSWORD = "rollback-pass-0e7d"

LIVE = """\
# /etc/treazrisland/app.env: production (from the 1.4.0 sample)
export NODE_ENV=production
PORT=3001
LOG_LEVEL=warn

POSTGRES_USER=treazrisland
POSTGRES_PASSWORD='{POSTGRES_PASSWORD}'
DATABASE_URL="postgresql://treazrisland:{POSTGRES_PASSWORD}@db.internal:5432/treazrisland?schema=public"

JWT_SECRET={JWT_SECRET}  # rotated 2026-01-10
JWT_ACCESS_TTL=15m

REDIS_URL=redis://:{redis}@cache.internal:6379/0

OBJECT_STORAGE_ENDPOINT=https://s3.eu-west-1.amazonaws.com
OBJECT_STORAGE_ACCESS_KEY={OBJECT_STORAGE_ACCESS_KEY}
OBJECT_STORAGE_SECRET_KEY="{OBJECT_STORAGE_SECRET_KEY}"
OBJECT_STORAGE_BUCKET=treaz-assets-prod
LEGACY_ASSET_DIR=/srv/treazrisland/assets

RATE_LIMIT_DEFAULT_POINTS=60
""".format(redis=REDIS_PASSWORD, **SECRETS)

ADDED_BLOCK = (
    "# Signs session cookies (new in 1.5.0); 32 random bytes\n"
    "SESSION_SIGNING_SECRET=%s\n"
    "# Region of the bucket, for providers that need one\n"
    "OBJECT_STORAGE_REGION=\"us-east-1\"\n" % NEW_SESSION_SECRET
)


def make_upgrade(tmp_path):
    """The live file, both samples and the 1.5.0 release tree (which still reads LEGACY_ASSET_DIR)."""
    live = tmp_path / "app.env"
    live.write_text(LIVE)
    os.chmod(live, 0o640)
    (tmp_path / "sample-1.4.0.env").write_text(SAMPLE_1_4)
    release = tmp_path / "release-1.5.0"
    (release / "backend" / "src" / "config").mkdir(parents=True)
    (release / ".env.example").write_text(SAMPLE_1_5)
    (release / "backend" / "src" / "config" / "env.ts").write_text(
        "export const assetDir = process.env.LEGACY_ASSET_DIR ?? 's3';\nexport const port = process.env.PORT;\n")
    (release / "backend" / "src" / "server.ts").write_text("import { port } from './config/env';\n")
    return live, release


def assert_never_shown(output, results):
    for value in list(SECRETS.values()) + [REDIS_PASSWORD, NEW_SESSION_SECRET, ROTATED_JWT, BUNDLE_PASSWORD]:
        assert value not in output, value
        assert value not in str(results), value


def test_diff_reports_new_deprecated_and_changed_keys_without_showing_a_secret(tmp_path):
    live, release = make_upgrade(tmp_path)
    before = live.read_bytes()
    source = {"type": "env_file", "path": str(live)}
    sample = str(release / ".env.example")
    tasks = [
        {"name": "against the previous sample", "treazrisland.ops.config_diff":
            {"sample": sample, "previous_sample": str(tmp_path / "sample-1.4.0.env"), "source": source}},
        {"name": "new sample only", "treazrisland.ops.config_diff": {"sample": sample, "source": source}},
    ]
    run = run_tasks(tasks, diff=True, verbosity=3)
    exact, loose = (entry["result"] for entry in run.results)
    assert [entry["status"] for entry in run.results] == ["ok", "ok"], run.output[-3000:]
    assert exact["added"] == ["SESSION_SIGNING_SECRET", "OBJECT_STORAGE_REGION"]
    assert exact["removed"] == ["LEGACY_ASSET_DIR"]
    assert exact["changed_defaults"] == ["RATE_LIMIT_DEFAULT_POINTS"]
    assert exact["changed"] is True and exact["in_sync"] is False  # changed: a difference to show
    assert exact["msg"] == ("env_file %s against %s: 2 added, 1 removed, 1 changed defaults" % (live, sample))
    assert exact["secrets"] == ["DATABASE_URL", "JWT_SECRET", "OBJECT_STORAGE_ACCESS_KEY", "OBJECT_STORAGE_SECRET_KEY",
                                "POSTGRES_PASSWORD", "SESSION_SIGNING_SECRET"]
    # Without the previous sample, the deployment's own values count as changed too.
    assert loose["changed_defaults"] == ["LOG_LEVEL", "REDIS_URL", "OBJECT_STORAGE_ENDPOINT", "OBJECT_STORAGE_BUCKET",
                                         "RATE_LIMIT_DEFAULT_POINTS"]
    # --diff shows which secrets differ, never their values; URL passwords are masked.
    for line in ("-JWT_SECRET=<secret>", "+JWT_SECRET=<secret, changed>", "+SESSION_SIGNING_SECRET=<secret>",
                 "-LEGACY_ASSET_DIR=/srv/treazrisland/assets", "-RATE_LIMIT_DEFAULT_POINTS=60",
                 "+RATE_LIMIT_DEFAULT_POINTS=120", "-REDIS_URL=redis://:********@cache.internal:6379/0"):
        assert "\n%s\n" % line in run.output, line
    assert_never_shown(run.output, run.results)
    assert live.read_bytes() == before


def test_diff_of_helm_values(tmp_path):
    live, _release = make_upgrade(tmp_path)
    values = tmp_path / "values.yaml"
    values.write_text("image:\n  tag: 1.5.0\nenv:\n  PORT: 3001\n  LOG_LEVEL: warn\n  JWT_SECRET: ''\n"
                      "  SESSION_SIGNING_SECRET: ''\n")
    in_line = tmp_path / "in-line.env"
    in_line.write_text("PORT=3001\nLOG_LEVEL=warn\nJWT_SECRET=x\nSESSION_SIGNING_SECRET=y\n")
    tasks = [
        {"name": "against the live file", "treazrisland.ops.config_diff":
            {"sample": str(values), "sample_root": "env", "source": {"type": "env_file", "path": str(live)}}},
        {"name": "against a file in line", "treazrisland.ops.config_diff":
            {"sample": str(values), "sample_root": "env", "source": {"type": "env_file", "path": str(in_line)}}},
    ]
    run = run_tasks(tasks)
    differs, same = (entry["result"] for entry in run.results)
    assert differs["added"] == ["SESSION_SIGNING_SECRET"]
    assert "LEGACY_ASSET_DIR" in differs["removed"] and "PORT" not in differs["removed"]
    assert differs["changed_defaults"] == [] and differs["changed"] is True
    assert same["changed"] is False and same["in_sync"] is True
    assert same["msg"] == "env_file %s matches %s" % (in_line, values)


def test_apply_adds_keys_keeps_referenced_deprecated_key_then_removes_it_and_is_idempotent(tmp_path):
    live, release = make_upgrade(tmp_path)
    args = {"source": {"type": "env_file", "path": str(live)}, "sample": str(release / ".env.example"),
            "remove_deprecated": True, "release_path": str(release)}

    # The new secret has no value: refused, nothing written. Check mode shows the plan and writes nothing.
    tasks = [
        {"name": "no value for the new secret", "ignore_errors": True, "treazrisland.ops.config_apply": args},
        {"name": "plan", "check_mode": True, "treazrisland.ops.config_apply":
            dict(args, values={"SESSION_SIGNING_SECRET": NEW_SESSION_SECRET})},
    ]
    run = run_tasks(tasks, diff=True)
    refused, plan = (entry["result"] for entry in run.results)
    assert refused["msg"] == ("no value given for the new secret key(s) SESSION_SIGNING_SECRET: a sample's "
                              "placeholder is never written for a secret; set them in values")
    assert plan["changed"] is True and plan["added"] == ["SESSION_SIGNING_SECRET", "OBJECT_STORAGE_REGION"]
    assert "+SESSION_SIGNING_SECRET=<secret>\n+# Region of the bucket" in run.output
    assert live.read_text() == LIVE
    assert sorted(os.listdir(tmp_path)) == ["app.env", "release-1.5.0", "sample-1.4.0.env"]  # no backup, no temp

    # Apply while the release still reads LEGACY_ASSET_DIR, twice.
    apply_args = dict(args, values={"SESSION_SIGNING_SECRET": NEW_SESSION_SECRET})
    tasks = [{"name": "apply", "treazrisland.ops.config_apply": apply_args},
             {"name": "apply again", "treazrisland.ops.config_apply": apply_args}]
    run = run_tasks(tasks, diff=True, verbosity=3)
    first, second = (entry["result"] for entry in run.results)
    assert first["changed"] is True and second["changed"] is False, run.output[-3000:]
    assert first["added"] == ["SESSION_SIGNING_SECRET", "OBJECT_STORAGE_REGION"]
    # Still read by the release: required, though the sample no longer lists it; never removed.
    assert first["removed"] == [] and first["deprecated"] == []
    assert first["required_unlisted"] == {"LEGACY_ASSET_DIR": ["backend/src/config/env.ts"]}
    assert second["required_unlisted"] == first["required_unlisted"]
    assert second["msg"] == ("env_file %s: kept LEGACY_ASSET_DIR (required: the release's code uses them, the sample "
                             "does not list them)" % live)
    # Every existing byte stays; the new keys come with the sample's comment lines, in sample order.
    assert live.read_text() == LIVE + ADDED_BLOCK
    assert stat.S_IMODE(os.stat(live).st_mode) == 0o640
    backup = first["backup_file"]
    assert open(backup).read() == LIVE and stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    assert_never_shown(run.output, run.results)

    # 1.5.0's code stops reading it: now it goes, and only its line goes.
    (release / "backend" / "src" / "config" / "env.ts").write_text("export const port = process.env.PORT;\n")
    tasks = [{"name": "remove", "treazrisland.ops.config_apply": apply_args},
             {"name": "remove again", "treazrisland.ops.config_apply": apply_args}]
    run = run_tasks(tasks)
    first, second = (entry["result"] for entry in run.results)
    assert first["changed"] is True and first["removed"] == ["LEGACY_ASSET_DIR"] and first["required_unlisted"] == {}
    assert first["deprecated"] == ["LEGACY_ASSET_DIR"]
    assert second["changed"] is False and second["deprecated"] == []
    assert live.read_text() == (LIVE + ADDED_BLOCK).replace("LEGACY_ASSET_DIR=/srv/treazrisland/assets\n", "")


def test_rotation_keeps_the_previous_secret_in_the_bundle_for_rollback(tmp_path):
    live, _release = make_upgrade(tmp_path)
    bundle = tmp_path / "rollback.vault"
    rotate = {"source": {"type": "env_file", "path": str(live)}, "values": {"JWT_SECRET": ROTATED_JWT},
              "bundle": str(bundle), "bundle_password": BUNDLE_PASSWORD}
    without_bundle = {key: value for key, value in rotate.items() if not key.startswith("bundle")}
    tasks = [
        {"name": "no bundle", "ignore_errors": True, "treazrisland.ops.config_apply": without_bundle},
        {"name": "rotate", "treazrisland.ops.config_apply": rotate},
        {"name": "rotate again", "treazrisland.ops.config_apply": rotate},
    ]
    run = run_tasks(tasks, diff=True, verbosity=3)
    refused, rotated, again = (entry["result"] for entry in run.results)
    assert refused["msg"] == "changing the secret(s) JWT_SECRET needs bundle: the previous values are kept there for rollback"
    assert rotated["changed"] is True and rotated["updated"] == ["JWT_SECRET"] and rotated["bundle_saved"] is True
    assert again["changed"] is False and again["bundle_saved"] is False
    assert "-JWT_SECRET=<secret>\n+# rotated 2026-01-10\n+JWT_SECRET=<secret, changed>" in run.output
    # Only that line changed. Node's dotenv 8 would read its inline comment as part of the secret, so the
    # comment moved to a line of its own above it.
    assert live.read_text() == LIVE.replace("JWT_SECRET=%s  # rotated 2026-01-10" % SECRETS["JWT_SECRET"],
                                            "# rotated 2026-01-10\nJWT_SECRET=%s" % ROTATED_JWT)
    assert_never_shown(run.output, run.results)

    run = run_module("config_apply", {"state": "restored", "bundle": str(bundle), "bundle_password": BUNDLE_PASSWORD})
    assert run.result["changed"] is True, run.msg
    assert live.read_text() == LIVE


def test_apply_and_restore_keep_only_the_newest_backups_of_their_own_file(tmp_path):
    """4 changes leave the 2 newest backups; other files beside it, even named like backups, stay untouched."""
    etc = tmp_path / "etc"
    etc.mkdir()
    live = etc / ".env"
    versions = [LIVE.replace("LOG_LEVEL=warn", "LOG_LEVEL=level-%d" % number) for number in range(5)]
    live.write_text(versions[0])
    os.chmod(live, 0o640)
    unrelated = {".env.other.bak": "not a backup of .env\n", ".env.local": "PORT=3002\n",
                 ".env.local.20260101T000000Z.bak": "PORT=3000\n", ".env.local.20260102T000000Z.bak": "PORT=3001\n",
                 ".env.20260101T000000Z.bak.gpg": "an encrypted copy someone made\n"}
    for name, text in unrelated.items():
        (etc / name).write_text(text)
    bundle = tmp_path / "rollback.vault"
    source = {"type": "env_file", "path": str(live)}

    def apply(number, **extra):
        return {"name": "change %d" % number,
                "treazrisland.ops.config_apply": dict(source=source, values={"LOG_LEVEL": "level-%d" % number}, **extra)}

    def backups():
        return sorted(name for name in os.listdir(etc) if name not in unrelated and name != ".env")

    tasks = [{"name": "capture", "treazrisland.ops.config_capture":
              {"sources": [source], "dest": str(bundle), "bundle_password": BUNDLE_PASSWORD}}]
    tasks += [apply(number) for number in range(1, 5)]
    run = run_tasks(tasks, verbosity=3)
    assert [entry["result"].get("changed") for entry in run.results] == [True] * 5, run.output[-3000:]
    applied = [entry["result"] for entry in run.results[1:]]
    made = [result["backup_file"] for result in applied]
    assert [result["removed_backups"] for result in applied] == [[], [], made[:1], made[1:2]]
    assert applied[2]["msg"].endswith("; removed 1 old backup(s)")
    # Exactly the two newest stay: the versions before the last two changes, byte for byte, 0600.
    assert backups() == sorted(os.path.basename(path) for path in made[2:])
    for path, version in zip(made[2:], versions[2:4]):
        assert open(path).read() == version
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert live.read_text() == versions[4] and stat.S_IMODE(os.stat(live).st_mode) == 0o640
    for name, text in unrelated.items():
        assert (etc / name).read_text() == text
    assert_never_shown(run.output, run.results)

    # Check mode removes nothing and says what a real run would remove (the new backup counts as the newest).
    tasks = [apply(5), apply(5, keep_backups=0),
             {"name": "restore", "treazrisland.ops.config_apply":
                 {"state": "restored", "bundle": str(bundle), "bundle_password": BUNDLE_PASSWORD}}]
    run = run_tasks(tasks, check=True)
    would, would_all, would_restore = (entry["result"] for entry in run.results)
    assert would["changed"] is True and would["removed_backups"] == made[2:3], run.output[-3000:]
    assert would["msg"].endswith("; would remove 1 old backup(s)")
    assert would_all["removed_backups"] == made[2:] and would_restore["removed_backups"] == made[2:3]
    assert backups() == sorted(os.path.basename(path) for path in made[2:])
    assert live.read_text() == versions[4]

    # A restore prunes too; null keeps every backup.
    tasks = [{"name": "restore", "treazrisland.ops.config_apply":
              {"state": "restored", "bundle": str(bundle), "bundle_password": BUNDLE_PASSWORD, "keep_backups": 1}},
             apply(6, keep_backups=None)]
    run = run_tasks(tasks)
    restored, kept_all = (entry["result"] for entry in run.results)
    assert restored["changed"] is True and restored["removed_backups"] == made[2:], run.output[-3000:]
    assert kept_all["removed_backups"] == []
    assert backups() == sorted([os.path.basename(restored["backup_files"][0]),
                                os.path.basename(kept_all["backup_file"])])
    assert open(restored["backup_files"][0]).read() == versions[4]
    assert open(kept_all["backup_file"]).read() == versions[0]
    for name, text in unrelated.items():
        assert (etc / name).read_text() == text


SPARSE_SAMPLE = "# Treazrisland backend sample: only these two\nNODE_ENV=production\nPORT=4000\n"
SPARSE_LIVE = """\
NODE_ENV=production
PORT=4000
JWT_SECRET={JWT_SECRET}
DATABASE_URL=postgresql://treazrisland:{POSTGRES_PASSWORD}@db.internal:5432/treazrisland
OBJECT_STORAGE_ENDPOINT=http://minio.internal
LEGACY_CDN_URL=https://cdn.example.net
OBJECT_STORAGE_PORT=9000
OLD_FEATURE_FLAG=on
""".format(**SECRETS)
REQUIRED = {"JWT_SECRET": ["backend/src/config/env.ts"],
            "DATABASE_URL": ["backend/prisma/schema.prisma", "backend/src/config/env.ts"],
            "OBJECT_STORAGE_ENDPOINT": ["backend/src/config/env.ts"],
            "OBJECT_STORAGE_PORT": ["backend/src/config/env.ts"]}


def test_sparse_sample_reports_the_keys_the_code_uses_as_required_and_never_removes_them(tmp_path):
    live = tmp_path / "backend.env"
    live.write_text(SPARSE_LIVE)
    release = tmp_path / "release"
    (release / "backend" / "src" / "config").mkdir(parents=True)
    (release / "backend" / "prisma").mkdir()
    (release / "backend" / ".env.example").write_text(SPARSE_SAMPLE)
    (release / "backend" / "src" / "config" / "env.ts").write_text(
        "export const env = z.object({ JWT_SECRET: z.string().min(32), DATABASE_URL: z.string().url(),\n"
        "  OBJECT_STORAGE_ENDPOINT: z.string(), OBJECT_STORAGE_PORT: z.coerce.number() }).parse(process.env);\n")
    (release / "backend" / "prisma" / "schema.prisma").write_text('datasource db {\n  url = env("DATABASE_URL")\n}\n')
    source = {"type": "env_file", "path": str(live)}
    sample = str(release / "backend" / ".env.example")
    apply_args = {"source": source, "sample": sample, "remove_deprecated": True, "release_path": str(release)}
    tasks = [
        {"name": "diff with the release", "treazrisland.ops.config_diff":
            {"sample": sample, "source": source, "release_path": str(release)}},
        {"name": "diff without it", "treazrisland.ops.config_diff": {"sample": sample, "source": source}},
        {"name": "apply", "treazrisland.ops.config_apply": apply_args},
        {"name": "apply again", "treazrisland.ops.config_apply": apply_args},
    ]
    run = run_tasks(tasks, diff=True)
    diff, blind, applied, again = (entry["result"] for entry in run.results)
    assert [entry["status"] for entry in run.results] == ["ok"] * 4, run.output[-3000:]

    assert diff["removed"] == ["LEGACY_CDN_URL", "OLD_FEATURE_FLAG"] and diff["added"] == []
    assert diff["required_unlisted"] == REQUIRED and list(diff["required_unlisted"]) == list(REQUIRED)
    assert diff["msg"] == ("env_file %s against %s: 2 removed; 4 required, not in the sample (the release's code "
                           "uses them)" % (live, sample))
    # Without the release nothing tells them apart: every unlisted key is deprecated.
    assert blind["removed"] == ["JWT_SECRET", "DATABASE_URL", "OBJECT_STORAGE_ENDPOINT", "LEGACY_CDN_URL",
                                "OBJECT_STORAGE_PORT", "OLD_FEATURE_FLAG"]
    assert blind["required_unlisted"] == {}

    assert applied["changed"] is True and applied["removed"] == ["LEGACY_CDN_URL", "OLD_FEATURE_FLAG"]
    assert applied["deprecated"] == ["LEGACY_CDN_URL", "OLD_FEATURE_FLAG"] and applied["required_unlisted"] == REQUIRED
    kept = ("kept JWT_SECRET, DATABASE_URL, OBJECT_STORAGE_ENDPOINT, OBJECT_STORAGE_PORT (required: the release's "
            "code uses them, the sample does not list them)")
    assert applied["msg"] == "env_file %s: removed LEGACY_CDN_URL, OLD_FEATURE_FLAG; %s" % (live, kept)
    assert again["changed"] is False and again["deprecated"] == [] and again["removed"] == []
    assert again["required_unlisted"] == REQUIRED and again["msg"] == "env_file %s: %s" % (live, kept)
    assert live.read_text() == SPARSE_LIVE.replace("LEGACY_CDN_URL=https://cdn.example.net\n", "").replace(
        "OLD_FEATURE_FLAG=on\n", "")
    # config_diff's --diff shows the required keys kept, only the deprecated ones going.
    first_diff = run.output[:run.output.index("TASK [diff without it]")]
    assert "\n-LEGACY_CDN_URL=https://cdn.example.net\n" in first_diff
    assert "-JWT_SECRET" not in first_diff and "-OBJECT_STORAGE_PORT" not in first_diff
    assert_never_shown(run.output, run.results)


def test_values_shows_non_secret_values_in_diff_and_never_a_secret_even_at_vvv(tmp_path):
    live = tmp_path / "app.env"
    live.write_text("OBJECT_STORAGE_ENDPOINT=http://minio.internal\nJWT_SECRET=%s\n" % SECRETS["JWT_SECRET"])
    shared = "shared-7c1e9a"  # given to a secret and to a plain key: hidden wherever it shows
    values = {"OBJECT_STORAGE_PORT": "9000", "JWT_SECRET": ROTATED_JWT, "SESSION_SIGNING_SECRET": shared,
              "PUBLIC_HINT": shared}
    args = {"source": {"type": "env_file", "path": str(live)}, "values": values,
            "bundle": str(tmp_path / "rollback.vault"), "bundle_password": BUNDLE_PASSWORD}
    tasks = [
        {"name": "apply", "treazrisland.ops.config_apply": args},
        # Fails in the argument check, before the secret keys are known: every value stays hidden.
        {"name": "bad argument", "ignore_errors": True, "treazrisland.ops.config_apply": dict(args, state="bogus")},
    ]
    run = run_tasks(tasks, diff=True, verbosity=3)
    applied, bad = (entry["result"] for entry in run.results)
    assert [entry["status"] for entry in run.results] == ["ok", "failed"]
    assert applied["changed"] is True and applied["added"] == ["OBJECT_STORAGE_PORT", "SESSION_SIGNING_SECRET",
                                                               "PUBLIC_HINT"], run.output[-3000:]
    assert bad["msg"].startswith("value of state must be one of: present, restored, got: bogus"), bad["msg"]
    assert "\n+OBJECT_STORAGE_PORT=9000\n" in run.output
    assert "\n+JWT_SECRET=<secret, changed>\n" in run.output and "\n+SESSION_SIGNING_SECRET=<secret>\n" in run.output
    assert "\n+PUBLIC_HINT=********\n" in run.output
    assert applied["invocation"]["module_args"]["values"] == {
        "OBJECT_STORAGE_PORT": "9000", "JWT_SECRET": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER",
        "SESSION_SIGNING_SECRET": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER", "PUBLIC_HINT": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}
    assert '"OBJECT_STORAGE_PORT": "9000"' in run.output  # the invocation printed at -vvv
    for secret in (shared, ROTATED_JWT, SECRETS["JWT_SECRET"], BUNDLE_PASSWORD):
        assert secret not in run.output, secret
        assert secret not in str(run.results), secret
    assert live.read_text().endswith("OBJECT_STORAGE_PORT=9000\nSESSION_SIGNING_SECRET=%s\nPUBLIC_HINT=%s\n"
                                     % (shared, shared))
