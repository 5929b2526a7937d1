"""Env file backups: the names config_apply gives them, their order, and which ones pruning may remove."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils import config_sources
from ansible_collections.treazrisland.ops.plugins.module_utils.config_sources import EnvFileSource

STAMP = "20261125T214500Z"


def env_source(directory, name=".env"):
    path = directory / name
    if not path.exists():
        path.write_text("PORT=3001\n")
    return EnvFileSource({"type": "env_file", "path": str(path)}, connection=None)


def touch(directory, *names):
    for name in names:
        (directory / name).write_text(name)


@pytest.fixture
def frozen_clock(monkeypatch):
    """Every backup taken within the same second, STAMP."""
    monkeypatch.setattr(config_sources.time, "gmtime", lambda: config_sources.time.strptime(STAMP, "%Y%m%dT%H%M%SZ"))


def test_only_exact_backup_names_of_this_file_count_as_its_backups(tmp_path):
    source = env_source(tmp_path)
    touch(tmp_path, ".env.20261101T000000Z.bak", ".env.20261101T000000Z-2.bak", ".env.20261101T000000Z-10.bak",
          # not the names _backup gives: another file's backups, other suffixes, near misses
          ".env.other.bak", ".env.local", ".env.local.20261101T000000Z.bak", ".env.20261101T000000Z.bak.gpg",
          ".env.20261101T000000.bak", ".env.20261101T000000Z-0.bak", ".env.20261101T000000Z-.bak",
          ".env.2026110T000000Z.bak", "x.env.20261101T000000Z.bak", ".env.20261101T000000Z.BAK",
          "..env.20261101T000000Z.bak", ".env.20261101T000000Z-1.bak.partial")
    (tmp_path / ".env.20261001T000000Z.bak").mkdir()  # a directory of that name was not made by _backup
    os.symlink(tmp_path / ".env", tmp_path / ".env.20261002T000000Z.bak")
    # In the order taken: -10 after -2, although it sorts before it as text.
    assert [name for _t, _n, name in source._backup_names()] == [
        ".env.20261101T000000Z.bak", ".env.20261101T000000Z-2.bak", ".env.20261101T000000Z-10.bak"]


def test_backups_within_one_second_are_numbered_after_the_highest_never_into_a_gap(tmp_path, frozen_clock):
    source = env_source(tmp_path)
    first, second, third = source._backup(), source._backup(), source._backup()
    assert [os.path.basename(path) for path in (first, second, third)] == [
        ".env.%s.bak" % STAMP, ".env.%s-1.bak" % STAMP, ".env.%s-2.bak" % STAMP]
    os.unlink(first)  # pruned: its name is free again, but a new backup must still sort as the newest
    assert os.path.basename(source._backup()) == ".env.%s-3.bak" % STAMP
    for path in tmp_path.iterdir():
        if path.name != ".env":
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
            assert path.read_text() == "PORT=3001\n"


def test_a_name_held_by_something_else_is_skipped(tmp_path, frozen_clock):
    source = env_source(tmp_path)
    (tmp_path / (".env.%s.bak" % STAMP)).mkdir()
    os.symlink("/nonexistent", tmp_path / (".env.%s-1.bak" % STAMP))
    assert os.path.basename(source._backup()) == ".env.%s-2.bak" % STAMP


def test_old_backups_keep_the_newest_and_never_the_new_one(tmp_path):
    source = env_source(tmp_path)
    older = [".env.20261101T000000Z.bak", ".env.20261102T000000Z.bak", ".env.20261102T000000Z-1.bak"]
    touch(tmp_path, *older, ".env.other.bak")
    paths = [str(tmp_path / name) for name in older]
    new = str(tmp_path / ".env.20261103T000000Z.bak")
    touch(tmp_path, os.path.basename(new))

    assert source.old_backups(2, new_backup=new, counts_new=True) == paths[:2]
    assert source.old_backups(3, new_backup=new, counts_new=True) == paths[:1]
    assert source.old_backups(10, new_backup=new, counts_new=True) == []
    # 0: every earlier backup goes, the new one stays.
    assert source.old_backups(0, new_backup=new, counts_new=True) == paths
    # No new backup (backup=false): keep counts the existing ones only.
    os.unlink(new)
    assert source.old_backups(2) == paths[:1]
    assert source.old_backups(0) == paths


def test_the_new_backup_counts_as_newest_even_when_the_clock_went_back(tmp_path):
    source = env_source(tmp_path)
    touch(tmp_path, ".env.20261101T000000Z.bak", ".env.20261102T000000Z.bak")
    new = str(tmp_path / ".env.20261020T000000Z.bak")  # taken after a clock step back
    touch(tmp_path, os.path.basename(new))
    assert source.old_backups(2, new_backup=new, counts_new=True) == [str(tmp_path / ".env.20261101T000000Z.bak")]


def test_check_mode_counts_the_backup_a_real_run_would_make(tmp_path):
    source = env_source(tmp_path)
    touch(tmp_path, ".env.20261101T000000Z.bak", ".env.20261102T000000Z.bak")
    assert source.old_backups(2, counts_new=True) == [str(tmp_path / ".env.20261101T000000Z.bak")]
    assert sorted(os.listdir(tmp_path)) == [".env", ".env.20261101T000000Z.bak", ".env.20261102T000000Z.bak"]


def test_remove_backups_skips_one_already_gone_and_warns_about_one_it_cannot_remove(tmp_path, monkeypatch):
    source = env_source(tmp_path)
    touch(tmp_path, ".env.20261101T000000Z.bak", ".env.20261102T000000Z.bak")
    gone = str(tmp_path / ".env.20261031T000000Z.bak")
    stuck, removable = (str(tmp_path / name) for name in (".env.20261101T000000Z.bak", ".env.20261102T000000Z.bak"))
    warnings = []
    monkeypatch.setattr(config_sources, "warn", warnings.append)
    real_unlink = os.unlink

    def unlink(path):
        if path == stuck:
            raise PermissionError(13, "Permission denied")
        real_unlink(path)

    monkeypatch.setattr(config_sources.os, "unlink", unlink)
    assert source.remove_backups([gone, stuck, removable]) == [removable]
    assert warnings == ["%s was written, but its old backup %s could not be removed: Permission denied; "
                        "remove it with: rm -- %s" % (tmp_path / ".env", stuck, stuck)]
    assert sorted(os.listdir(tmp_path)) == [".env", ".env.20261101T000000Z.bak"]


def test_a_relative_path_lists_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path, "app.env", "app.env.20261101T000000Z.bak", "app.env.20261102T000000Z.bak")
    source = EnvFileSource({"type": "env_file", "path": "app.env"}, connection=None)
    assert source.old_backups(1) == ["app.env.20261101T000000Z.bak"]
