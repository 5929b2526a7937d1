"""Bad input for the configuration modules: each fails with its exact message, and nothing is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

from helpers import INVENTORY, PlayRun, ansible_env, read_results, run_tasks

PASSWORD = "right-pass-3d9c"
JWT = "jwt-bm90IGZvciB5b3VyIGV5ZXM"
APP_ENV = "PORT=3001\nJWT_SECRET=%s\nLOG_LEVEL=info\n" % JWT


def listing(directory):
    """{name: bytes} of a directory: to show that nothing was written, not even a temporary file."""
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def run_without_root_override(tasks):
    """ansible-playbook as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so file modes apply to root too.

    Tests run as root, for whom a mode-000 file is readable; dropping these two capabilities from the
    bounding set (setpriv, util-linux) makes "unreadable" real without another user.
    """
    workdir = tempfile.mkdtemp(prefix="treazrisland-play-")
    playbook, record = os.path.join(workdir, "play.yml"), os.path.join(workdir, "results.jsonl")
    with open(playbook, "w") as handle:
        json.dump([{"name": "under test", "hosts": "localhost", "gather_facts": False, "tasks": tasks}], handle)
    argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "ansible-playbook", "-i", INVENTORY, playbook]
    try:
        completed = subprocess.run(argv, env=ansible_env(record), capture_output=True, text=True, timeout=600,
                                   check=False)
        return PlayRun(completed.returncode, completed.stdout + completed.stderr, read_results(record))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_unreadable_env_file_fails_capture_diff_and_apply_and_writes_nothing(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "app.env").write_text(APP_ENV)
    (etc / "secret.env").write_text("JWT_SECRET=x\n")
    os.chmod(etc / "secret.env", 0)
    sample = tmp_path / "sample.env"
    sample.write_text("PORT=3001\nNEW_SETTING=1\n")
    before = listing(etc)
    unreadable = {"type": "env_file", "path": str(etc / "secret.env")}
    tasks = [
        {"name": "capture", "ignore_errors": True, "treazrisland.ops.config_capture":
            {"sources": [{"type": "env_file", "path": str(etc / "*.env")}], "dest": str(tmp_path / "b.vault"),
             "bundle_password": PASSWORD}},
        {"name": "diff", "ignore_errors": True, "treazrisland.ops.config_diff":
            {"sample": str(sample), "source": unreadable}},
        {"name": "apply", "ignore_errors": True, "treazrisland.ops.config_apply":
            {"sample": str(sample), "source": unreadable}},
    ]
    run = run_without_root_override(tasks)
    assert [entry["status"] for entry in run.results] == ["failed"] * 3, run.output[-3000:]
    for entry in run.results:
        assert entry["result"]["msg"] == "cannot read env file %s: Permission denied" % (etc / "secret.env")
    assert listing(etc) == before and not (tmp_path / "b.vault").exists()


def test_malformed_line_is_reported_with_file_and_line_and_nothing_is_written(tmp_path):
    live = tmp_path / "app.env"
    text = "# production\nPORT=3001\n\nJWT_SECRET=%s\nthis line is not an assignment\nLOG_LEVEL=info\n" % JWT
    live.write_text(text)
    sample = tmp_path / "sample.env"
    sample.write_text("PORT=3001\nNEW_SETTING=1\n")
    bad_sample = tmp_path / "bad-sample.env"
    bad_sample.write_text("PORT=3001\nNEW_SETTING='never closed\n")
    good = tmp_path / "good.env"
    good.write_text("PORT=3001\n")
    before = listing(tmp_path)
    tasks = [
        {"name": "capture", "ignore_errors": True, "treazrisland.ops.config_capture":
            {"sources": [{"type": "env_file", "path": str(live)}], "dest": str(tmp_path / "b.vault"),
             "bundle_password": PASSWORD}},
        {"name": "apply", "ignore_errors": True, "treazrisland.ops.config_apply":
            {"sample": str(sample), "source": {"type": "env_file", "path": str(live)}}},
        {"name": "bad sample", "ignore_errors": True, "treazrisland.ops.config_apply":
            {"sample": str(bad_sample), "source": {"type": "env_file", "path": str(good)}}},
        {"name": "bad key", "ignore_errors": True, "treazrisland.ops.config_apply":
            {"values": {"NEW SETTING": "1"}, "source": {"type": "env_file", "path": str(good)}}},
    ]
    run = run_tasks(tasks, verbosity=3)
    capture, apply, bad, bad_key = (entry["result"] for entry in run.results)
    assert bad_key["msg"] == "NEW SETTING cannot be written to an env file: not a valid key name"
    assert capture["msg"] == "%s, line 5: not a KEY=value line python-dotenv can read" % live
    assert apply["msg"] == capture["msg"]
    assert bad["msg"] == "%s, line 2: not a KEY=value line python-dotenv can read" % bad_sample
    assert listing(tmp_path) == before
    assert JWT not in run.output and "never closed" not in run.output


def make_bundle(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "app.env").write_text(APP_ENV)
    os.chmod(etc / "app.env", 0o640)
    bundle = tmp_path / "config.vault"
    run = run_tasks([{"name": "capture", "treazrisland.ops.config_capture": {
        "sources": [{"type": "env_file", "path": str(etc / "app.env")}], "dest": str(bundle),
        "bundle_password": PASSWORD}}])
    assert run.result["changed"] is True, run.output[-3000:]
    return etc, bundle


def reencrypt(bundle, target, edit, password_file):
    """Decrypt with ansible-vault, edit the JSON, encrypt again with the right password: only our checksums can tell."""
    plain = subprocess.run(["ansible-vault", "decrypt", "--vault-password-file", str(password_file), "--output", "-",
                            str(bundle)], capture_output=True, env=ansible_env(), check=True).stdout
    document = json.loads(plain)
    edit(document)
    encrypted = subprocess.run(["ansible-vault", "encrypt", "--vault-password-file", str(password_file), "--output",
                                "-", "-"], input=json.dumps(document).encode(), capture_output=True,
                               env=ansible_env(), check=True).stdout
    target.write_bytes(encrypted)


def test_wrong_password_and_checksum_mismatches_restore_nothing(tmp_path):
    etc, bundle = make_bundle(tmp_path)
    password_file = tmp_path / "pass"
    password_file.write_text(PASSWORD)

    def edit_content(document):
        document["sections"][0]["content"] = document["sections"][0]["content"].replace("3001", "9999")

    def edit_mode(document):
        document["sections"][0]["mode"] = "0666"

    content_tampered, mode_tampered = tmp_path / "content.vault", tmp_path / "mode.vault"
    reencrypt(bundle, content_tampered, edit_content, password_file)
    reencrypt(bundle, mode_tampered, edit_mode, password_file)
    not_a_vault = tmp_path / "plain.json"
    not_a_vault.write_text("{}")

    (etc / "app.env").write_text(APP_ENV.replace("info", "debug"))  # something a restore would undo
    before = listing(etc)
    tasks = [{"name": name, "ignore_errors": True, "treazrisland.ops.config_apply":
              {"state": "restored", "bundle": str(path), "bundle_password": password}}
             for name, path, password in (("wrong password", bundle, "wrong-pass"),
                                          ("content altered", content_tampered, PASSWORD),
                                          ("metadata altered", mode_tampered, PASSWORD),
                                          ("not a bundle", not_a_vault, PASSWORD),
                                          ("missing", tmp_path / "missing.vault", PASSWORD))]
    run = run_tasks(tasks, verbosity=3)
    assert [entry["status"] for entry in run.results] == ["failed"] * 5, run.output[-3000:]
    messages = [entry["result"]["msg"] for entry in run.results]
    assert messages == [
        "cannot decrypt bundle %s: wrong password (or the file was altered); nothing was restored" % bundle,
        "bundle %s: the checksum of section 1 (env_file %s) does not match its content; nothing was restored"
        % (content_tampered, etc / "app.env"),
        "bundle %s: its checksum does not match its sections; nothing was restored" % mode_tampered,
        "bundle %s is not an ansible-vault file; nothing was restored" % not_a_vault,
        "bundle %s does not exist; nothing was restored" % (tmp_path / "missing.vault"),
    ]
    assert listing(etc) == before
    assert JWT not in run.output and PASSWORD not in run.output and "wrong-pass" not in run.output


def test_keep_backups_must_be_a_whole_number_of_0_or_more_and_nothing_is_written(tmp_path):
    live = tmp_path / "app.env"
    live.write_text(APP_ENV)
    (tmp_path / "app.env.20260101T000000Z.bak").write_text(APP_ENV)
    before = listing(tmp_path)
    tasks = [{"name": repr(keep), "ignore_errors": True, "treazrisland.ops.config_apply":
              {"source": {"type": "env_file", "path": str(live)}, "values": {"LOG_LEVEL": "debug"},
               "keep_backups": keep}} for keep in (-1, "two", True, 1.5)]
    run = run_tasks(tasks)
    assert [entry["status"] for entry in run.results] == ["failed"] * 4, run.output[-3000:]
    assert [entry["result"]["msg"] for entry in run.results] == [
        "keep_backups must be a whole number of 0 or more, or null to keep every backup, not %s; nothing was "
        "changed" % shown for shown in ("-1", "'two'", "True", "1.5")]
    assert listing(tmp_path) == before
