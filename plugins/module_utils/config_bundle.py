# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Configuration bundles (guide: Backups, Configuration bundle; Rollback, Configuration).

One file, encrypted in the ansible-vault format, holding a JSON document::

    {"format": "treazrisland.ops/config-bundle", "version": 1, "created_at": "...",
     "sections": [{"source": {"type": "env_file", "path": ...}, "content": ..., "mode": "0640",
                   "uid": 0, "gid": 0, "owner": "root", "group": "root", "sha256": ...},
                  {"source": {"type": "kubernetes_secret", ...}, "data": {...}, "sha256": ...},
                  {"source": {"type": "secretsmanager", ...}, "secret_string": "...", "sha256": ...}],
     "sha256": "..."}

Each section's sha256 is that of what it restores (an env file's bytes, so
``sha256sum`` of a restored file equals it); the document's sha256 covers all
sections with their metadata. Both are checked before anything is restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic, config_vault
from ansible_collections.treazrisland.ops.plugins.module_utils.config_sources import label
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

FORMAT = "treazrisland.ops/config-bundle"
VERSION = 1


def _canonical(document):
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def section_digest(section):
    kind = section["source"]["type"]
    if kind == "env_file":
        payload = section["content"].encode("utf-8")
    elif kind == "secretsmanager":
        payload = section["secret_string"].encode("utf-8")
    else:
        payload = _canonical(section["data"] or {})
    return hashlib.sha256(payload).hexdigest()


def document_digest(sections):
    return hashlib.sha256(_canonical(sections)).hexdigest()


def seal(sections):
    """A bundle document of sections, each with its sha256, and the document's sha256."""
    sealed = [dict(section, sha256=section_digest(section)) for section in sections]
    return {"format": FORMAT, "version": VERSION, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sections": sealed, "sha256": document_digest(sealed)}


def write(path, document, password):
    """Encrypt and write atomically, mode 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OpsError("cannot write bundle %s: directory %s does not exist" % (path, directory))
    try:
        atomic.write_bytes(path, config_vault.encrypt(_canonical_pretty(document), password))
    except OSError as error:
        raise OpsError("cannot write bundle %s: %s" % (path, error.strerror or error)) from None


def _canonical_pretty(document):
    # Readable in `ansible-vault view`; key order fixed so equal bundles have equal plaintexts.
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def read(path, password, missing_ok=False):
    """The verified document of the bundle at path (None if absent and missing_ok).

    Fails with one sentence when the file cannot be read or decrypted, is not a bundle, or when any
    sha256 does not match.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise OpsError("bundle %s does not exist" % path) from None
    except OSError as error:
        raise OpsError("cannot read bundle %s: %s" % (path, error.strerror or error)) from None
    plaintext = config_vault.decrypt(data, password, "bundle %s" % path)
    try:
        document = json.loads(plaintext.decode("utf-8"))
    except ValueError:
        raise OpsError("bundle %s decrypts, but does not hold a JSON document" % path) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise OpsError("%s is not a configuration bundle of treazrisland.ops" % path)
    if document.get("version") != VERSION:
        raise OpsError("bundle %s has version %s; this collection reads version %d"
                       % (path, document.get("version"), VERSION))
    verify(document, path)
    return document


def verify(document, path):
    sections = document.get("sections") or []
    for number, section in enumerate(sections, 1):
        try:
            digest = section_digest(section)
            name = label(section["source"])
        except (KeyError, TypeError, AttributeError):
            raise OpsError("bundle %s: section %d is malformed" % (path, number)) from None
        if section.get("sha256") != digest:
            raise OpsError("bundle %s: the checksum of section %d (%s) does not match its content"
                           % (path, number, name))
    if document.get("sha256") != document_digest(sections):
        raise OpsError("bundle %s: its checksum does not match its sections" % path)


def without_times(document):
    """What two captures are compared by: the sections, not when they were taken."""
    return document["sections"] if document else None
