"""Atomic writes: all or nothing, 0600, never clobbering when asked not to."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic


def test_file_appears_whole_with_mode_0600(tmp_path):
    path = str(tmp_path / "manifest.json")
    atomic.write_json(path, {"b": 1, "a": [1, 2]})
    assert open(path).read() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_failure_inside_the_block_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "config.env")
    atomic.write_text(path, "OLD=1\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_file(path) as target:
            target.write(b"NEW=half")
            assert os.path.basename(target.temp_path).endswith(".partial")
            raise RuntimeError("verification failed")
    assert open(path).read() == "OLD=1\n"
    assert os.listdir(tmp_path) == ["config.env"]


def test_replace_false_never_overwrites(tmp_path):
    path = str(tmp_path / "backup.dump")
    atomic.write_text(path, "first")
    with pytest.raises(FileExistsError):
        with atomic.atomic_file(path, replace=False) as target:
            target.write(b"second")
    assert open(path).read() == "first"
    assert os.listdir(tmp_path) == ["backup.dump"]


def test_directory_appears_only_on_success(tmp_path):
    done = str(tmp_path / "done.dir")
    with atomic.atomic_directory(done) as temp:
        open(os.path.join(temp, "toc.dat"), "w").close()
    assert os.listdir(done) == ["toc.dat"] and stat.S_IMODE(os.stat(done).st_mode) == 0o700
    with pytest.raises(ValueError):
        with atomic.atomic_directory(str(tmp_path / "failed.dir")) as temp:
            open(os.path.join(temp, "toc.dat"), "w").close()
            raise ValueError("pg_dump failed")
    assert sorted(os.listdir(tmp_path)) == ["done.dir"]
