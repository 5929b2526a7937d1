"""checksum_manifest against real files, and against the standard sha256sum tool."""

from __future__ import annotations

import os
import stat
import subprocess

from helpers import run_module


def make_tree(root):
    (root / "img").mkdir(parents=True)
    (root / "img" / "logo.png").write_bytes(b"\x89PNG" + bytes(range(256)) * 100)
    (root / "roms").mkdir()
    (root / "roms" / "game one.zip").write_bytes(os.urandom(300_000))
    (root / "index.html").write_text("<html>treazrisland</html>\n")


def test_tree_manifest_create_is_idempotent_and_sha256sum_accepts_it(tmp_path):
    tree = tmp_path / "assets"
    make_tree(tree)
    manifest = str(tree) + ".sha256"

    run = run_module("checksum_manifest", {"path": str(tree)}, diff=True)
    assert not run.failed, run.msg
    assert run.result["changed"] is True and run.result["files"] == 3 and run.result["manifest"] == manifest
    assert stat.S_IMODE(os.stat(manifest).st_mode) == 0o600
    assert "+" in run.output and "img/logo.png" in run.output  # the diff was shown
    check = subprocess.run(["sha256sum", "--check", "--strict", manifest], cwd=tree, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr

    again = run_module("checksum_manifest", {"path": str(tree)})
    assert again.result["changed"] is False and again.result["digest"] == run.result["digest"]

    verified = run_module("checksum_manifest", {"path": str(tree), "state": "verified"})
    assert not verified.failed and verified.result["changed"] is False
    assert verified.result["differences"] == {"changed": [], "missing": [], "unexpected": []}


def test_verify_names_every_difference_and_changes_nothing(tmp_path):
    tree = tmp_path / "assets"
    make_tree(tree)
    assert not run_module("checksum_manifest", {"path": str(tree)}).failed
    manifest = str(tree) + ".sha256"
    with open(manifest) as handle:
        before = handle.read()
    (tree / "img" / "logo.png").write_bytes(b"rebuilt, same name")
    (tree / "index.html").unlink()
    (tree / "new.css").write_text("body{}")

    run = run_module("checksum_manifest", {"path": str(tree), "state": "verified"})
    assert run.failed
    assert run.msg == ("%s does not match %s: changed: img/logo.png; missing: index.html; unexpected: new.css"
                       % (tree, manifest))
    with open(manifest) as handle:
        assert handle.read() == before


def test_single_file_and_check_mode(tmp_path):
    artifact = tmp_path / "backup.dump"
    artifact.write_bytes(os.urandom(1_000_000))

    run = run_module("checksum_manifest", {"path": str(artifact)}, check=True)
    assert not run.failed and run.result["changed"] is False
    assert not os.path.exists(str(artifact) + ".sha256")

    run = run_module("checksum_manifest", {"path": str(artifact)})
    assert run.result["changed"] is True
    check = subprocess.run(["sha256sum", "--check", "backup.dump.sha256"], cwd=tmp_path, capture_output=True, check=False)
    assert check.returncode == 0

    run = run_module("checksum_manifest", {"path": str(artifact), "state": "verified"}, check=True)
    assert not run.failed and run.result["changed"] is False


def test_verify_without_manifest_and_manifest_inside_tree_are_errors(tmp_path):
    tree = tmp_path / "assets"
    make_tree(tree)
    run = run_module("checksum_manifest", {"path": str(tree), "state": "verified"})
    assert run.failed and run.msg == "manifest %s.sha256 does not exist; nothing to verify against" % tree
    inside = str(tree / "SHA256SUMS")
    run = run_module("checksum_manifest", {"path": str(tree), "manifest": inside})
    assert run.failed and run.msg == "the manifest %s cannot live inside the tree it describes" % inside
    assert not os.path.exists(inside)
