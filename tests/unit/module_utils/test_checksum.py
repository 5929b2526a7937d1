"""Streaming checksums equal hashlib's over the whole content; manifests round-trip."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils import checksum
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError


def test_hashing_writer_hashes_and_counts_what_it_writes():
    target = io.BytesIO()
    writer = checksum.HashingWriter(target)
    parts = [os.urandom(n) for n in (0, 1, 65536, 3 * 1024 * 1024 + 5)]
    for part in parts:
        writer.write(part)
    data = b"".join(parts)
    assert target.getvalue() == data
    assert writer.size == len(data)
    assert writer.hexdigest() == hashlib.sha256(data).hexdigest()


def test_tree_entries_sorted_and_sums_round_trip(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.bin").write_bytes(b"zz")
    (tmp_path / "a.txt").write_bytes(b"a")
    entries = checksum.checksum_entries(str(tmp_path))
    assert [rel for rel, _sha, _size in entries] == ["a.txt", "b/z.bin"]
    assert entries[0][1] == hashlib.sha256(b"a").hexdigest() and entries[1][2] == 2
    text = checksum.format_sums(entries)
    assert checksum.parse_sums(text) == {rel: sha for rel, sha, _size in entries}
    assert checksum.compare_sums(checksum.parse_sums(text), entries) == {"missing": [], "unexpected": [],
                                                                         "changed": []}


def test_symlinks_are_refused_not_followed(tmp_path):
    (tmp_path / "real").write_text("x")
    os.symlink("/etc/passwd", tmp_path / "link")
    with pytest.raises(OpsError) as raised:
        checksum.checksum_entries(str(tmp_path))
    assert "is not a regular file" in raised.value.msg


def test_bad_manifest_line_is_reported_by_number():
    with pytest.raises(OpsError) as raised:
        checksum.parse_sums("%s  ok\nnot a line\n" % ("0" * 64))
    assert raised.value.msg == "line 2 of the manifest is not in sha256sum format"
