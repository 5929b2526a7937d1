# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host-side cache of the sha256 of local files, so that re-syncing an unchanged tree reads no file.

An entry holds a file's sha256 with its size, mtime, ctime, inode and device, and is used
only while all five are unchanged. ctime is the key to "never misses a change": every write
and every metadata change sets it to the current time, and no system call sets it to
anything else (``touch -r`` and ``os.utime`` put back the mtime only), so a file rewritten
with its old size and its old mtime still misses the cache and is hashed again.

Two gaps are closed explicitly:

- Timestamps have a granularity (a few milliseconds on ext4): a file written twice within
  one tick keeps equal stamps. A file changed less than ``RECENT_SECONDS`` before the scan
  began is hashed but not recorded; git's index handles "racily clean" files the same way.
- A file written while it is hashed: its stat is taken before and after reading, on the
  open descriptor, and the entry is recorded only if the two are equal.

The cache is a plain text file, one line a file, written atomically with mode 0600 under
``~/.cache/treazrisland.ops/`` (or ``$XDG_CACHE_HOME``); one file per local tree and scope.
A missing, unreadable or foreign cache file only costs time: every file is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic
from ansible_collections.treazrisland.ops.plugins.module_utils.checksum import sha256_handle
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

FORMAT = "treazrisland.ops.hashcache/1"
RECENT_SECONDS = 2
SHA_LENGTH = 64


def default_directory():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "treazrisland.ops")


def fingerprint(info):
    """What must stay equal for a recorded sha256 to hold: size, mtime, ctime, inode, device."""
    return "%d %d %d %d %d" % (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)


class HashCache:
    """The sha256 of the files of one local tree, as far as they are known to be unchanged.

    ``lookup`` during the scan, ``hash`` for every miss, ``finish`` once: the cache written holds
    exactly the files seen this time (a deleted file's entry goes with it).
    """

    def __init__(self, directory, root, scope=None, enabled=True):
        self.enabled = enabled
        identity = json.dumps([os.path.realpath(root), scope or []])
        name = "s3_sync-%s.txt" % hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        self.directory = os.path.expanduser(directory or default_directory())
        self.path = os.path.join(self.directory, name)
        self._root = os.path.realpath(root)
        # Anything whose ctime is later than this may still be in its timestamp tick.
        self._recent_ns = time.time_ns() - RECENT_SECONDS * 10 ** 9
        self._old = None  # rel -> "sha fingerprint", read on the first lookup
        self._new = {}
        self._changed = False
        self.hits = 0
        self.hashed_files = 0
        self.hashed_bytes = 0
        self.problem = None

    def _load(self):
        self._old = {}
        if not self.enabled:
            return
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
                header = json.loads(handle.readline() or "null")
                if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("root") != self._root:
                    raise ValueError("not a %s file for %s" % (FORMAT, self._root))
                for line in handle:
                    # "<sha> <size> <mtime> <ctime> <inode> <device> <rel>\n"
                    line = line[:-1] if line.endswith("\n") else line
                    parts = line.split(" ", 6)
                    if len(parts) != 7 or len(parts[0]) != SHA_LENGTH:
                        raise ValueError("malformed line")
                    self._old[parts[6]] = line[:len(line) - len(parts[6]) - 1]
        except FileNotFoundError:
            return
        except (OSError, ValueError, UnicodeError) as error:
            self._old = {}
            self._changed = True
            self.problem = "the checksum cache %s was ignored (%s); every file is hashed again" % (self.path, error)

    def lookup(self, rel, info):
        """The recorded sha256 of rel when its stat (an os.stat_result) is as recorded, else None."""
        if self._old is None:
            self._load()
        entry = self._old.get(rel)
        if entry is None or entry[SHA_LENGTH + 1:] != fingerprint(info):
            return None
        self._new[rel] = entry
        self.hits += 1
        return entry[:SHA_LENGTH]

    def hash(self, rel, path):
        """sha256 of the file at path, read now; recorded when it was stable and not recent."""
        try:
            with open(path, "rb") as handle:
                before = os.fstat(handle.fileno())
                sha, size = sha256_handle(handle)
                after = os.fstat(handle.fileno())
        except OSError as error:
            raise OpsError("cannot read %s: %s" % (path, error.strerror or error))
        self.hashed_files += 1
        self.hashed_bytes += size
        stamp = fingerprint(before)
        if (self.enabled and stamp == fingerprint(after) and before.st_ctime_ns < self._recent_ns
                and "\n" not in rel):
            self._new[rel] = sha + " " + stamp
            self._changed = True
        return sha

    def finish(self, write=True):
        """Let go of the entries, after writing them (when ``write``) if they differ from what was read.

        Returns None, or a warning when the cache could not be written (that only costs time).
        """
        changed = self._changed or len(self._new) != len(self._old or {})
        entries, self._old, self._new = self._new, {}, {}
        if not (self.enabled and write and changed):
            return None
        header = json.dumps({"format": FORMAT, "root": self._root}) + "\n"
        try:
            os.makedirs(self.directory, mode=atomic.PRIVATE_DIR, exist_ok=True)
            with atomic.atomic_file(self.path) as target:
                target.write(header.encode("utf-8", "surrogateescape"))
                for rel in sorted(entries):
                    target.write(("%s %s\n" % (entries[rel], rel)).encode("utf-8", "surrogateescape"))
        except OSError as error:
            return "the checksum cache %s could not be written (%s); the next run hashes every file again" % (
                self.path, error.strerror or error)
        return None

    def summary(self):
        return {"hashed_files": self.hashed_files, "hashed_bytes": self.hashed_bytes, "cache_hits": self.hits,
                "cache": self.path if self.enabled else None}
