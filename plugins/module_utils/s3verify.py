# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""asset_verify: the guide's spot check. Download a sample of the assets from the CDN, the bucket's
HTTP endpoint or S3 itself, and compare each sha256 with the local build (or its manifest)."""

from __future__ import annotations

import os
import random
import urllib.error

from ansible.module_utils.urls import open_url

from ansible_collections.treazrisland.ops.plugins.module_utils import checksum, s3
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.s3sync import MANIFEST_NAME, Rules, scan_local


class Missing(Exception):
    """The remote side has no such file (HTTP 404, S3 NoSuchKey)."""


def expected_sums(params):
    """({rel: sha256 or None}, where from); None means "hash the local file when sampled"."""
    if params.get("manifest"):
        try:
            with open(params["manifest"], encoding="utf-8") as handle:
                return dict(checksum.parse_sums(handle.read())), params["manifest"]
        except FileNotFoundError:
            raise OpsError("manifest %s does not exist" % params["manifest"])
    root = params["path"]
    if not os.path.isdir(root):
        raise OpsError("path %s is not a directory" % root)
    tree = scan_local(root, Rules({"exclude": params.get("exclude")}))
    if tree.links:
        raise OpsError("%s holds symlinks or special files, which are never followed: %s" % (
            root, ", ".join(tree.links[:5])))
    return {rel: None for rel in tree.files}, root


def choose(rels, params):
    """The sample: every file with O(sample=0), else that many, at random (or by O(seed))."""
    rels = sorted(rels)
    count = params["sample"]
    if count == 0 or count >= len(rels):
        return rels
    return sorted(random.Random(params.get("seed")).sample(rels, count))


class HttpSource:
    def __init__(self, base_url, params):
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = params["timeout"]
        self.headers = dict(params.get("headers") or {})
        self.validate_certs = params["validate_certs"]

    def describe(self, rel):
        return self.base_url + s3.quote_key(rel)

    def sha256(self, rel):
        try:
            with open_url(self.describe(rel), headers=self.headers, timeout=self.timeout,
                          validate_certs=self.validate_certs) as response:
                return checksum.digest_chunks(checksum.read_chunks(response))[0]
        except urllib.error.HTTPError as error:
            if error.code in (403, 404):  # a private bucket answers 403 for a missing key
                raise Missing("HTTP %d" % error.code)
            raise OpsError("HTTP %d %s" % (error.code, error.reason))
        except urllib.error.URLError as error:
            raise OpsError(str(error.reason))


class S3Source:
    def __init__(self, location, params):
        self.location = location
        self.conn = s3.S3Connection(params, concurrency=params["concurrency"])
        self.store = self.conn.store(location.bucket)

    def describe(self, rel):
        return s3.SCHEME + self.location.bucket + "/" + self.location.key(rel)

    def sha256(self, rel):
        try:
            return s3.sha256_of_object(self.store, self.location.key(rel))
        except Exception as error:  # pylint: disable=broad-except
            if s3.is_not_found(error):
                raise Missing("no such key")
            raise OpsError(s3.describe_error(error, self.conn.secrets))


def asset_verify(params, check_mode):
    """The asset_verify module's service (reads only: the same in check mode)."""
    remote = params["remote"]
    location = s3.parse_location(remote)
    if location is None and not remote.startswith(("http://", "https://")):
        raise OpsError("remote must be an http(s):// base URL or an s3:// location, not %r" % remote)
    expected, source = expected_sums(params)
    if not expected:
        raise OpsError("%s lists no file to verify" % source)
    sample = choose([rel for rel in expected if rel != MANIFEST_NAME], params)
    if location is not None:
        s3.require_libraries(boto=False, data_plane=True)
        fetcher = S3Source(location, params)
    else:
        fetcher = HttpSource(remote, params)

    def check_one(rel):
        wanted = expected[rel] or checksum.sha256_file(os.path.join(source, rel))[0]
        return wanted, fetcher.sha256(rel)

    mismatched, missing, errors = [], [], []
    for rel, outcome, error in s3.bounded_map(check_one, sample, params["concurrency"]):
        if isinstance(error, Missing):
            missing.append(rel)
        elif error is not None:
            errors.append("%s: %s" % (rel, error))
        elif outcome[0] != outcome[1]:
            mismatched.append({"path": rel, "expected": outcome[0], "actual": outcome[1], "url": fetcher.describe(rel)})
    mismatched.sort(key=lambda item: item["path"])
    result = {
        "changed": False, "remote": remote, "source": source, "files": len(expected), "checked": sample,
        "mismatched": mismatched, "missing": sorted(missing), "errors": sorted(errors),
    }
    bad = len(mismatched) + len(missing) + len(errors)
    if bad:
        parts = []
        if mismatched:
            parts.append("differ: " + _names([item["path"] for item in mismatched]))
        if missing:
            parts.append("missing: " + _names(sorted(missing)))
        if errors:
            parts.append("unreadable: " + _names(sorted(errors)))
        result.pop("changed")
        raise OpsError("%d of %d checked file(s) do not match %s at %s; %s" % (
            bad, len(sample), source, remote, "; ".join(parts)), **result)
    result["msg"] = "%d of %d file(s) checked at %s: all match %s" % (len(sample), len(expected), remote, source)
    return result


def _names(items, limit=5):
    more = " and %d more" % (len(items) - limit) if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
