"""The checksum cache: a hit only while size, mtime, ctime, inode and device are as recorded.

Entries for files changed less than RECENT_SECONDS ago are never written; the tests that need
recorded entries either wait that long once or set RECENT_SECONDS to 0 where they say so.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils import hashcache
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError


def sha(data):
    return hashlib.sha256(data).hexdigest()


def make_files(root, count=5):
    files = {}
    for number in range(count):
        rel = "d%d/f%d.bin" % (number % 2, number)
        files[rel] = os.urandom(100 + number)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel])
    return files


class Tree:
    """A small tree under tmp_path and the cache directory of its runs."""

    def __init__(self, tmp_path, count=5):
        self.root, self.cache_dir = tmp_path / "tree", tmp_path / "cache"
        self.files = make_files(self.root, count)

    def run(self, scope=None, write=True):
        """What the sync does: lookup each file, hash the misses, finish. ({rel: sha}, the cache)."""
        cache = hashcache.HashCache(str(self.cache_dir), str(self.root), scope=scope)
        found = {}
        for rel in self.files:
            found[rel] = cache.lookup(rel, os.lstat(self.root / rel)) or cache.hash(rel, str(self.root / rel))
        assert cache.finish(write=write) is None
        return found, cache

    def expected(self):
        return {rel: sha(data) for rel, data in self.files.items()}

    def rewrite_keeping_mtime(self, rel, via=None):
        """New content of the same size, its old mtime put back (touch -r); written through ``via`` and renamed."""
        path = self.root / rel
        before = os.stat(path)
        self.files[rel] = os.urandom(len(self.files[rel]))
        target = self.root / via if via else path
        target.write_bytes(self.files[rel])
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        if via:
            os.rename(target, path)
        return before


@pytest.fixture
def no_recent_window(monkeypatch):
    """Record entries of files written a moment ago (the window is tested on its own below)."""
    monkeypatch.setattr(hashcache, "RECENT_SECONDS", 0)
    time.sleep(0.01)  # past the timestamp tick of the files just written


def test_second_run_reads_no_file_and_the_cache_is_private(tmp_path, no_recent_window):
    tree = Tree(tmp_path)
    found, first = tree.run()
    assert found == tree.expected()
    assert first.summary()["hashed_files"] == 5 and first.summary()["cache_hits"] == 0
    found, second = tree.run()
    assert found == tree.expected()
    assert second.summary() == {"hashed_files": 0, "hashed_bytes": 0, "cache_hits": 5, "cache": first.path}
    assert stat.S_IMODE(os.stat(first.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tree.cache_dir).st_mode) == 0o700


def test_same_size_rewrite_with_old_mtime_is_hashed_again(tmp_path, no_recent_window):
    tree = Tree(tmp_path)
    tree.run()
    rel = sorted(tree.files)[1]
    before = tree.rewrite_keeping_mtime(rel)
    after = os.stat(tree.root / rel)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    found, cache = tree.run()
    assert found == tree.expected()
    assert cache.summary()["hashed_files"] == 1 and cache.summary()["cache_hits"] == 4


def test_a_file_replaced_by_rename_is_hashed_again(tmp_path, no_recent_window):
    tree = Tree(tmp_path)
    tree.run()
    tree.rewrite_keeping_mtime(sorted(tree.files)[0], via="new")
    found, cache = tree.run()
    assert found == tree.expected() and cache.summary()["hashed_files"] == 1


def test_recently_changed_files_are_hashed_every_time_until_they_are_older(tmp_path):
    tree = Tree(tmp_path, 3)
    _found, first = tree.run()
    assert first.summary()["hashed_files"] == 3
    _found, second = tree.run()
    assert second.summary()["cache_hits"] == 0, "an entry of a file changed within the window was trusted"
    time.sleep(hashcache.RECENT_SECONDS + 0.1)
    tree.run()
    _found, fourth = tree.run()
    assert fourth.summary()["cache_hits"] == 3


def test_a_file_written_while_it_is_hashed_is_not_recorded(tmp_path, no_recent_window, monkeypatch):
    tree = Tree(tmp_path, 2)
    victim = sorted(tree.files)[0]
    real = hashcache.sha256_handle

    def hash_then_write(handle):
        result = real(handle)
        if handle.name.endswith(victim):
            with open(handle.name, "ab") as writer:
                writer.write(b"late")
        return result

    monkeypatch.setattr(hashcache, "sha256_handle", hash_then_write)
    tree.run()
    monkeypatch.setattr(hashcache, "sha256_handle", real)
    tree.files[victim] += b"late"
    found, cache = tree.run()
    assert found == tree.expected()
    assert cache.summary()["hashed_files"] == 1 and cache.summary()["cache_hits"] == 1


def test_deleted_files_leave_the_cache_and_check_mode_writes_nothing(tmp_path, no_recent_window):
    tree = Tree(tmp_path)
    _found, first = tree.run(write=False)
    assert not os.path.exists(first.path) and not os.path.exists(tree.cache_dir)
    tree.run()
    gone = sorted(tree.files)[0]
    os.unlink(tree.root / gone)
    del tree.files[gone]
    tree.run()
    with open(first.path) as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 1 + 4 and not any(line.endswith(" " + gone) for line in lines)


def test_a_damaged_cache_is_ignored_with_a_warning_and_rewritten(tmp_path, no_recent_window):
    tree = Tree(tmp_path)
    _found, first = tree.run()
    with open(first.path, "a") as handle:
        handle.write("not a cache line\n")
    found, damaged = tree.run()
    assert found == tree.expected()
    assert damaged.hits == 0 and damaged.problem == (
        "the checksum cache %s was ignored (malformed line); every file is hashed again" % first.path)
    _found, again = tree.run()
    assert again.summary()["cache_hits"] == 5 and again.problem is None


def test_each_tree_and_scope_has_its_own_cache_and_disabled_writes_none(tmp_path, no_recent_window):
    tree = Tree(tmp_path)
    _found, plain = tree.run()
    _found, scoped = tree.run(scope=[["d0/*"], []])
    assert plain.path != scoped.path
    disabled = hashcache.HashCache(str(tmp_path / "other"), str(tree.root), enabled=False)
    rel = sorted(tree.files)[0]
    assert disabled.lookup(rel, os.lstat(tree.root / rel)) is None
    assert disabled.hash(rel, str(tree.root / rel)) == sha(tree.files[rel])
    assert disabled.finish() is None and not os.path.exists(tmp_path / "other")
    assert disabled.summary()["cache"] is None


def test_unreadable_file_fails_clearly(tmp_path):
    cache = hashcache.HashCache(str(tmp_path / "cache"), str(tmp_path))
    with pytest.raises(OpsError) as caught:
        cache.hash("missing.bin", str(tmp_path / "missing.bin"))
    assert caught.value.msg == "cannot read %s: No such file or directory" % (tmp_path / "missing.bin")


def test_an_unwritable_cache_directory_is_a_warning_not_a_failure(tmp_path, no_recent_window):
    tree = Tree(tmp_path, 1)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache directory should be")
    cache = hashcache.HashCache(str(blocker / "cache"), str(tree.root))
    rel = sorted(tree.files)[0]
    cache.hash(rel, str(tree.root / rel))
    warning = cache.finish()
    assert warning == ("the checksum cache %s could not be written (Not a directory); the next run hashes every "
                       "file again" % cache.path)
