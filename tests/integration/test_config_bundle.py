"""config_capture and config_apply state=restored on env files: the rollback round trip, through ansible-playbook."""

from __future__ import annotations

import json
import os
import stat
import subprocess

from helpers import ansible_env, run_module, run_tasks

PASSWORD = "bundle-pass-7c1e0a"
SECRETS = ("jwt-Q2hhbmdlZCBpbiBwcm9k", "pg-pass-91d3f0", "s3-secret-ZmFrZSBrZXk", "turn-pass-55aa")

APP_ENV = (
    "# Treazrisland backend, written by hand on 2026-03-02\n"
    "export NODE_ENV=production\n"
    "PORT=3001\n"
    "DATABASE_URL=\"postgresql://treazrisland:%s@db.internal:5432/treazrisland?schema=public\"\n"
    "JWT_SECRET='%s'\n"
    "OBJECT_STORAGE_SECRET_KEY=%s   # rotated 2026-02\n"
) % (SECRETS[1], SECRETS[0], SECRETS[2])
# CRLF lines, a multi-line value, no final newline: bytes a rewrite would change.
WORKER_ENV = "REDIS_URL=redis://cache.internal:6379/0\r\nMOTD=\"line one\nline two\"\r\nNETPLAY_TURN_PASSWORD=%s" % SECRETS[3]
EDGE_ENV = "\ufeffLOG_LEVEL=info\n\n\n# trailing blank lines\n\n"


def make_etc(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    files = {"app.env": (APP_ENV, 0o640), "worker.env": (WORKER_ENV, 0o600), "edge.env": (EDGE_ENV, 0o644)}
    for name, (text, mode) in files.items():
        path = etc / name
        path.write_bytes(text.encode("utf-8"))
        os.chmod(path, mode)
    os.chown(etc / "worker.env", 65534, 65534)  # nobody: the owner is part of what is restored
    return etc


def state_of(directory):
    """{name: (bytes, mode, uid, gid)} of every file in a directory."""
    found = {}
    for name in sorted(os.listdir(directory)):
        info = os.stat(directory / name)
        found[name] = ((directory / name).read_bytes(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return found


def capture_args(etc, bundle):
    return {"sources": [{"type": "env_file", "path": str(etc / "*.env")}], "dest": str(bundle),
            "bundle_password": PASSWORD}


def test_capture_change_restore_gives_byte_identical_files_with_their_modes(tmp_path):
    etc = make_etc(tmp_path)
    bundle = tmp_path / "config.vault"
    original = state_of(etc)

    tasks = [{"name": "capture", "treazrisland.ops.config_capture": capture_args(etc, bundle)},
             {"name": "capture again", "treazrisland.ops.config_capture": capture_args(etc, bundle)}]
    run = run_tasks(tasks, diff=True, verbosity=3)
    first, second = (entry["result"] for entry in run.results)
    assert [entry["status"] for entry in run.results] == ["ok", "ok"], run.output[-3000:]
    assert first["changed"] is True and second["changed"] is False
    names = ("app.env", "edge.env", "worker.env")
    assert [source["path"] for source in first["sources"]] == [str(etc / name) for name in names]
    assert first["sources"][0]["keys"] == ["NODE_ENV", "PORT", "DATABASE_URL", "JWT_SECRET",
                                           "OBJECT_STORAGE_SECRET_KEY"]
    assert first["sources"][2]["mode"] == "0600" and first["sources"][2]["owner"] == "nobody"
    assert first["key_count"] == 9
    assert stat.S_IMODE(os.stat(bundle).st_mode) == 0o600
    assert bundle.read_bytes().startswith(b"$ANSIBLE_VAULT;1.1;AES256\n")
    assert "JWT_SECRET=<secret>" in run.output and "PORT=3001" in run.output  # the --diff of the first capture
    for secret in SECRETS + (PASSWORD,):
        assert secret not in run.output
        assert secret.encode() not in bundle.read_bytes()

    # The standard tool opens the bundle with the same password (from a file, as operators keep it).
    password_file = tmp_path / "bundle.pass"
    password_file.write_text(PASSWORD + "\n")
    view = subprocess.run(["ansible-vault", "view", "--vault-password-file", str(password_file), str(bundle)],
                          capture_output=True, text=True, env=ansible_env(), check=True)
    document = json.loads(view.stdout)
    assert [section["source"]["path"] for section in document["sections"]] == [str(etc / name) for name in names]
    assert document["sections"][0]["content"] == APP_ENV

    # Change the live files every way a botched upgrade could.
    (etc / "app.env").write_text(APP_ENV.replace("PORT=3001", "PORT=8080") + "NEW_KEY_FROM_UPGRADE=1\n")
    os.chmod(etc / "app.env", 0o666)
    os.chown(etc / "worker.env", 0, 0)
    (etc / "edge.env").unlink()
    (etc / "later.env").write_text("NOT_IN_BUNDLE=1\n")
    changed = state_of(etc)

    restore = {"state": "restored", "bundle": str(bundle), "bundle_password_file": str(password_file)}
    check = run_module("config_apply", restore, check=True, diff=True)
    assert not check.failed, check.msg
    assert check.result["changed"] is True and state_of(etc) == changed
    assert check.result["restored"] == ["env_file %s" % (etc / n) for n in ("app.env", "edge.env", "worker.env")]
    assert "-PORT=8080" in check.output and "+PORT=3001" in check.output

    tasks = [{"name": "restore", "treazrisland.ops.config_apply": restore},
             {"name": "restore again", "treazrisland.ops.config_apply": restore}]
    run = run_tasks(tasks)
    first, second = (entry["result"] for entry in run.results)
    assert first["changed"] is True and second["changed"] is False, run.output[-3000:]
    assert second["unchanged"] == first["restored"]
    restored = state_of(etc)
    backups = [name for name in restored if name.endswith(".bak")]
    # Only app.env's content was replaced: worker.env got its owner back in place, edge.env did not exist.
    assert len(backups) == 1
    assert restored[backups[0]][0] == changed["app.env"][0] and restored[backups[0]][1] == 0o600
    for name in ("app.env", "edge.env", "worker.env"):
        assert restored[name] == original[name], name
    assert restored["later.env"] == changed["later.env"]  # not in the bundle: left alone
    assert first["backup_files"] == [str(etc / backups[0])]


def test_capture_without_a_matching_file_or_with_another_password(tmp_path):
    etc = make_etc(tmp_path)
    bundle = tmp_path / "config.vault"
    tasks = [
        {"name": "nothing matches", "ignore_errors": True, "treazrisland.ops.config_capture":
            {"sources": [{"type": "env_file", "path": str(etc / "*.conf")}], "dest": str(bundle),
             "bundle_password": PASSWORD}},
        {"name": "capture", "treazrisland.ops.config_capture": capture_args(etc, bundle)},
        {"name": "other password", "ignore_errors": True, "treazrisland.ops.config_capture":
            dict(capture_args(etc, bundle), bundle_password="another one")},
    ]
    run = run_tasks(tasks)
    missing, written, refused = (entry["result"] for entry in run.results)
    assert missing["msg"] == "no file matches %s" % (etc / "*.conf")
    assert written["changed"] is True
    assert refused["msg"] == ("bundle %s exists and cannot be opened with this password; refusing to overwrite it"
                              % bundle)
    assert run.results[2]["status"] == "failed"
    assert written["sha256"] == subprocess.run(["sha256sum", str(bundle)], capture_output=True, text=True,
                                               check=True).stdout.split()[0]  # untouched by the refused run
