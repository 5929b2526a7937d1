# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic writes: a temporary name in the same directory, fsync, then rename.

Temporary names start with a dot and end in ``.partial`` so that an interrupted
write never looks like a finished artifact. Files are created 0600, since
everything this collection writes (dumps, manifests, config bundles) is private.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def fsync_directory(path):
    """Make a rename inside path durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicFile:
    """The open temporary file of atomic_file, and where it lives."""

    def __init__(self, handle, temp_path):
        self.handle = handle
        self.temp_path = temp_path

    def write(self, data):
        return self.handle.write(data)


@contextlib.contextmanager
def atomic_file(path, mode=PRIVATE_FILE, replace=True):
    """Yield an AtomicFile; on a clean exit it becomes ``path``, else it vanishes.

    The caller may check the temporary file (``temp_path``) before the block
    ends: the final name appears only after that check passed. With
    ``replace=False`` an existing ``path`` is never overwritten.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".partial", dir=directory)
    handle = os.fdopen(fd, "wb")
    try:
        os.fchmod(fd, mode)
        yield AtomicFile(handle, temp_path)
        handle.flush()
        os.fsync(fd)
        handle.close()
        if replace:
            os.replace(temp_path, path)
        else:
            # link() fails if path exists: never clobbers a backup written meanwhile.
            os.link(temp_path, path)
            os.unlink(temp_path)
        fsync_directory(directory)
    except BaseException:
        # close() may fail again (disk still full); the first error is the one to report.
        with contextlib.suppress(OSError):
            handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise


def write_bytes(path, data, mode=PRIVATE_FILE):
    with atomic_file(path, mode) as target:
        target.write(data)


def write_text(path, text, mode=PRIVATE_FILE):
    write_bytes(path, text.encode("utf-8"), mode)


def write_json(path, document, mode=PRIVATE_FILE):
    write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n", mode)


@contextlib.contextmanager
def atomic_directory(path, mode=PRIVATE_DIR):
    """Yield an empty temporary directory that becomes ``path`` on a clean exit.

    ``path`` must not exist. On any failure the temporary tree is removed.
    """
    parent = os.path.dirname(os.path.abspath(path))
    temp_path = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", suffix=".partial", dir=parent)
    try:
        os.chmod(temp_path, mode)
        yield temp_path
        os.rename(temp_path, path)
        fsync_directory(parent)
    except BaseException:
        shutil.rmtree(temp_path, ignore_errors=True)
        raise
