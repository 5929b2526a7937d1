# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""sha256sum manifests of any artifact: create them, verify them (guide: Integrity checks)."""

from __future__ import annotations

import os

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic, checksum
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError


def default_manifest_path(path):
    return path.rstrip("/") + ".sha256"


def checksum_manifest(params, check_mode):
    path = params["path"]
    if not os.path.exists(path):
        raise OpsError("%s does not exist" % path)
    manifest_path = params["manifest"] or default_manifest_path(path)
    if os.path.isdir(path) and os.path.abspath(manifest_path).startswith(os.path.abspath(path) + os.sep):
        raise OpsError("the manifest %s cannot live inside the tree it describes" % manifest_path)
    entries = checksum.checksum_entries(path)
    text = checksum.format_sums(entries)
    result = {
        "path": path, "manifest": manifest_path, "files": len(entries),
        "size": sum(size for _rel, _sha, size in entries), "digest": checksum.digest_text(text),
    }
    previous = _read(manifest_path)

    if params["state"] == "verified":
        if previous is None:
            raise OpsError("manifest %s does not exist; nothing to verify against" % manifest_path, **result)
        differences = checksum.compare_sums(checksum.parse_sums(previous), entries)
        result.update(changed=False, differences=differences)
        if any(differences.values()):
            raise OpsError("%s does not match %s: %s" % (path, manifest_path, _summary(differences)), **result)
        result["msg"] = "%d file(s) match %s" % (len(entries), manifest_path)
        return result

    changed = previous != text
    if changed and not check_mode:
        atomic.write_text(manifest_path, text)
    result["changed"] = changed and not check_mode
    if changed:
        result["diff"] = {"before": previous or "", "after": text,
                          "before_header": manifest_path, "after_header": manifest_path}
    return result


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _summary(differences):
    parts = []
    for kind in ("changed", "missing", "unexpected"):
        names = differences[kind]
        if names:
            more = " and %d more" % (len(names) - 5) if len(names) > 5 else ""
            parts.append("%s: %s%s" % (kind, ", ".join(names[:5]), more))
    return "; ".join(parts)
