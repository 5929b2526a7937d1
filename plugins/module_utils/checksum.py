# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming sha256: while writing (HashingWriter), of a file, of a directory tree.

Tree manifests use the text format of ``sha256sum`` so that the standard tool
can check them too: ``<hex>  <relative path>`` one line a file, sorted by path.
"""

from __future__ import annotations

import hashlib
import os
import stat

from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

CHUNK_SIZE = 1024 * 1024


class HashingWriter:
    """File-like sink that hashes and counts what it writes, in the same pass."""

    def __init__(self, fileobj):
        self._file = fileobj
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def hexdigest(self):
        return self._hash.hexdigest()


def digest_chunks(chunks, algorithm="sha256"):
    """Return (hex digest, size) of an iterable of bytes: a file, a download, an HTTP body."""
    # usedforsecurity=False: these digests check integrity, and FIPS builds refuse md5 otherwise.
    digest = hashlib.new(algorithm, usedforsecurity=False)
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def read_chunks(handle):
    """The rest of an open binary file (or response), CHUNK_SIZE bytes at a time."""
    return iter(lambda: handle.read(CHUNK_SIZE), b"")


def sha256_file(path):
    """Return (sha256 hex, size) of one file, reading it in chunks."""
    with open(path, "rb") as handle:
        return sha256_handle(handle)


def sha256_handle(handle):
    """Return (sha256 hex, size) of what is left to read from an open binary file."""
    return digest_chunks(read_chunks(handle))


def tree_files(root):
    """Sorted relative paths of the regular files below root.

    Symlinks are never followed; any entry that is neither a regular file nor a
    directory (a symlink, a socket...) is an error, since a backup holds none.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            mode = os.lstat(full).st_mode
            if stat.S_ISDIR(mode):
                continue
            rel = os.path.relpath(full, root)
            if not stat.S_ISREG(mode):
                raise OpsError("%s is not a regular file; only files and directories can be checksummed" % full)
            if "\n" in rel or "\\" in rel:
                raise OpsError("file name %r cannot be written to a sha256sum manifest" % rel)
            found.append(rel)
    found.sort()
    return found


def checksum_entries(path):
    """Entries [(relative path, sha256, size)] for a file or a directory tree.

    A single file is listed under its base name.
    """
    if os.path.isdir(path):
        return [(rel,) + sha256_file(os.path.join(path, rel)) for rel in tree_files(path)]
    return [(os.path.basename(path),) + sha256_file(path)]


def format_sums(entries):
    """The sha256sum text for entries."""
    return "".join("%s  %s\n" % (sha, rel) for rel, sha, _size in entries)


def parse_sums(text):
    """{relative path: sha256} from sha256sum text; raises OpsError on a bad line."""
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        sha, sep, rel = line.partition("  ")
        if not sep or len(sha) != 64 or rel.startswith("*"):
            raise OpsError("line %d of the manifest is not in sha256sum format" % number)
        sums[rel] = sha.lower()
    return sums


def digest_text(text):
    """sha256 of a text, used as the one digest of a whole tree manifest."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compare_sums(expected, entries):
    """Differences between a manifest and the entries found on disk."""
    actual = {rel: sha for rel, sha, _size in entries}
    return {
        "missing": sorted(set(expected) - set(actual)),
        "unexpected": sorted(set(actual) - set(expected)),
        "changed": sorted(rel for rel in set(expected) & set(actual) if expected[rel] != actual[rel]),
    }
