"""Samples (env and Helm values), secret classification, comparison, reference scan, bundle checksums."""

from __future__ import annotations

import hashlib

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils import config_bundle
from ansible_collections.treazrisland.ops.plugins.module_utils.config_compare import (
    SecretPolicy, compare, find_references, flatten_values, load_sample, redacted_lines,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError


def test_default_secret_patterns_and_user_additions():
    policy = SecretPolicy(["SMTP_USERNAME", "*_DSN"])
    for key in ("JWT_SECRET", "POSTGRES_PASSWORD", "STORAGE_ACCESS_KEY", "METRICS_TOKEN", "DATABASE_URL",
                "database_url", "env.DATABASE_URL", "secrets.jwtSecret", "SMTP_USERNAME", "SENTRY_DSN"):
        assert policy(key), key
    for key in ("PORT", "REDIS_URL", "NODE_ENV", "DATABASE_URL_POOL_SIZE", "SMTP_HOST"):
        assert not policy(key), key


def test_helm_values_are_flattened_to_dotted_paths(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text("replicaCount: 2\nenv:\n  NODE_ENV: production\n  PORT: 3001\n  DEBUG: false\n"
                      "  EMPTY:\n  ORIGINS: [a, b]\n  nested:\n    deep: {x: 1}\nimage: {tag: '1.5.0'}\n")
    flat, envfile = load_sample(str(values))
    assert envfile is None
    assert flat == {"replicaCount": "2", "env.NODE_ENV": "production", "env.PORT": "3001", "env.DEBUG": "false",
                    "env.EMPTY": "", "env.ORIGINS": '["a","b"]', "env.nested.deep.x": "1", "image.tag": "1.5.0"}
    rooted = load_sample(str(values), root="env")[0]
    assert rooted["PORT"] == "3001" and "image.tag" not in rooted
    with pytest.raises(OpsError) as caught:
        flatten_values({"a": 1}, "values.yaml", root="env.config")
    assert caught.value.msg == "values.yaml has no env.config (sample_root)"


def test_compare_added_removed_and_changed_defaults():
    policy = SecretPolicy()
    old = {"PORT": "3001", "LOG_LEVEL": "info", "RATE": "60", "JWT_SECRET": "change-me", "OLD": "x"}
    new = {"PORT": "3001", "LOG_LEVEL": "info", "RATE": "120", "JWT_SECRET": "change-me-too", "NEW_A": "1",
           "NEW_B": "2"}
    live = {"PORT": "8080", "LOG_LEVEL": "info", "RATE": "60", "JWT_SECRET": "real", "OLD": "x"}
    with_previous = compare(new, live, policy, previous_sample=old)
    assert with_previous == {"added": ["NEW_A", "NEW_B"], "removed": ["OLD"], "changed_defaults": ["RATE"]}
    # Without the previous sample, a deployment's own value (PORT) shows up too; secrets never do.
    assert compare(new, live, policy)["changed_defaults"] == ["PORT", "RATE"]


def test_redacted_lines_show_changed_or_not_never_the_value():
    policy = SecretPolicy()
    before = {"JWT_SECRET": "old-value", "DATABASE_URL": "postgresql://u:pw@db/x", "REDIS_URL": "redis://:pw2@c"}
    after = dict(before, JWT_SECRET="new-value")
    text = redacted_lines(after, policy, before=before)
    assert text == ("DATABASE_URL=<secret>\nJWT_SECRET=<secret, changed>\nREDIS_URL=redis://:********@c\n")


def test_references_are_whole_words_and_skip_git_node_modules_and_binaries(tmp_path):
    (tmp_path / "backend" / "src").mkdir(parents=True)
    (tmp_path / "backend" / "src" / "env.ts").write_text("const u = process.env.LEGACY_CDN_URL;\n")
    (tmp_path / "backend" / "src" / "other.ts").write_text("process.env.LEGACY_CDN_URL_V2\n")  # another key
    (tmp_path / "node_modules" / "x").mkdir(parents=True)
    (tmp_path / "node_modules" / "x" / "i.js").write_text("OLD_FLAG\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("OLD_FLAG\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\0\0OLD_FLAG")
    found = find_references(str(tmp_path), ["LEGACY_CDN_URL", "OLD_FLAG"])
    assert found == {"LEGACY_CDN_URL": ["backend/src/env.ts"]}


def test_bundle_checksums_cover_content_and_metadata():
    sections = [{"source": {"type": "env_file", "path": "/etc/t/app.env"}, "content": "A=1\n", "mode": "0640",
                 "uid": 0, "gid": 0, "owner": "root", "group": "root"},
                {"source": {"type": "secretsmanager", "secret_id": "prod/t"}, "secret_string": '{"A": "1"}'}]
    document = config_bundle.seal(sections)
    config_bundle.verify(document, "b")
    # An env file's section sha256 is the file's own: sha256sum of the restored file shows it.
    assert document["sections"][0]["sha256"] == hashlib.sha256(b"A=1\n").hexdigest()
    tampered = dict(document, sections=[dict(document["sections"][0], content="A=2\n"), document["sections"][1]])
    with pytest.raises(OpsError) as caught:
        config_bundle.verify(tampered, "b")
    assert caught.value.msg == "bundle b: the checksum of section 1 (env_file /etc/t/app.env) does not match its content"
    chmodded = dict(document, sections=[dict(document["sections"][0], mode="0777"), document["sections"][1]])
    with pytest.raises(OpsError) as caught:
        config_bundle.verify(chmodded, "b")
    assert caught.value.msg == "bundle b: its checksum does not match its sections"
