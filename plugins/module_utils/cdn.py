# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cdn_purge: CloudFront invalidations (waited for by polling) and HTTP PURGE/BAN to cache nodes."""

from __future__ import annotations

import secrets
import time
import urllib.error

from ansible.module_utils.urls import open_url

from ansible_collections.treazrisland.ops.plugins.module_utils import s3
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

CLOUDFRONT_MAX_PATHS = 3000  # CloudFront's limit of paths in one invalidation
REFERENCE_LOOKUP = 100  # most recent invalidations searched for an earlier use of caller_reference
POLL_SECONDS = 2.0


def purge_paths(params):
    """The URL paths to purge: O(paths) as given, then O(keys) mapped through the prefixes."""
    paths = list(params.get("paths") or [])
    key_prefix = params.get("key_prefix") or ""
    path_prefix = params.get("path_prefix") or "/"
    if not path_prefix.startswith("/"):
        raise OpsError("path_prefix must start with /, not %r" % path_prefix)
    for key in params.get("keys") or []:
        if key_prefix and not key.startswith(key_prefix):
            continue  # not served through this CDN
        paths.append(path_prefix.rstrip("/") + "/" + s3.quote_key(key[len(key_prefix):]))
    for path in paths:
        if not path.startswith("/"):
            raise OpsError("every path must start with /, not %r" % path)
    # Same order every time, no duplicates: the caller reference and the diff stay stable.
    return sorted(set(paths))


# ------------------------------------------------------------------ CloudFront


def _cloudfront(params):
    s3.require_libraries(boto=True, data_plane=False)
    return s3.S3Connection(params).boto3("cloudfront")


def find_distribution(client, alias):
    """The id of the distribution that serves alias."""
    for page in client.get_paginator("list_distributions").paginate():
        for item in page.get("DistributionList", {}).get("Items", []) or []:
            if alias in (item.get("Aliases", {}).get("Items") or []):
                return item["Id"]
    raise OpsError("no CloudFront distribution has the alias %s" % alias)


def find_invalidation(client, distribution_id, reference):
    """An earlier invalidation of this distribution with this caller reference, or None.

    CloudFront itself answers a repeated reference with the earlier invalidation, but not
    every implementation does (moto creates a new one), and check mode must know beforehand.
    """
    listed = client.list_invalidations(DistributionId=distribution_id, MaxItems=str(REFERENCE_LOOKUP))
    for summary in listed.get("InvalidationList", {}).get("Items", []) or []:
        invalidation = client.get_invalidation(DistributionId=distribution_id, Id=summary["Id"])["Invalidation"]
        if invalidation["InvalidationBatch"]["CallerReference"] == reference:
            return invalidation
    return None


def wait_completed(client, distribution_id, invalidation_id, timeout):
    """Poll until the invalidation is complete. CloudFront says "Completed", moto "COMPLETED"
    (so boto3's waiter, which expects the former, never sees moto's finish)."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_invalidation(DistributionId=distribution_id, Id=invalidation_id)["Invalidation"]["Status"]
        if status.lower() == "completed":
            return "Completed"
        if time.monotonic() >= deadline:
            raise OpsError("invalidation %s of distribution %s is still %s after %d s" % (
                invalidation_id, distribution_id, status, timeout), invalidation_id=invalidation_id)
        time.sleep(POLL_SECONDS)


def cloudfront_purge(params, check_mode, paths):
    client = _cloudfront(params)
    distribution_id = params.get("distribution_id") or find_distribution(client, params["distribution_alias"])
    result = {"provider": "cloudfront", "distribution_id": distribution_id, "paths": paths, "collapsed": False}
    if not paths:
        return dict(result, changed=False, msg="nothing to purge")
    if len(paths) > CLOUDFRONT_MAX_PATHS:
        # One wildcard costs less than several invalidations and cannot miss a path.
        result.update(paths=["/*"], collapsed=True)
    reference = params.get("caller_reference")
    if reference:
        earlier = find_invalidation(client, distribution_id, reference)
        if earlier is not None:
            if sorted(earlier["InvalidationBatch"]["Paths"].get("Items") or []) != result["paths"]:
                raise OpsError("caller_reference %s was already used on distribution %s for other paths; "
                               "use a new reference for a new purge" % (reference, distribution_id))
            status = earlier["Status"]
            if params["wait"] and not check_mode:
                status = wait_completed(client, distribution_id, earlier["Id"], params["wait_timeout"])
            return dict(result, changed=False, invalidation_id=earlier["Id"], status=_status(status),
                        caller_reference=reference,
                        msg="invalidation %s with this caller reference exists already" % earlier["Id"])
    else:
        reference = "treazrisland-%d-%s" % (time.time(), secrets.token_hex(4))
    result["caller_reference"] = reference
    result["diff"] = {"before": "", "after": "".join(path + "\n" for path in result["paths"]),
                      "after_header": "invalidation of %s" % distribution_id}
    if check_mode:
        return dict(result, changed=True, msg="would invalidate %d path(s)" % len(result["paths"]))
    created = client.create_invalidation(DistributionId=distribution_id, InvalidationBatch={
        "Paths": {"Quantity": len(result["paths"]), "Items": result["paths"]}, "CallerReference": reference})
    invalidation = created["Invalidation"]
    status = invalidation["Status"]
    if params["wait"]:
        status = wait_completed(client, distribution_id, invalidation["Id"], params["wait_timeout"])
    return dict(result, changed=True, invalidation_id=invalidation["Id"], status=_status(status),
                msg="invalidated %d path(s) on %s (%s)" % (len(result["paths"]), distribution_id, invalidation["Id"]))


def _status(status):
    return "Completed" if status.lower() == "completed" else status


# ------------------------------------------------------------------ HTTP PURGE / BAN


def http_purge(params, check_mode, paths):
    nodes = [node.rstrip("/") for node in params["cache_nodes"]]
    method = params["method"]
    result = {"provider": "http", "method": method, "cache_nodes": nodes, "paths": paths}
    if not paths:
        return dict(result, changed=False, msg="nothing to purge")
    requests = [(node, path) for node in nodes for path in paths]
    result["diff"] = {"before": "", "after": "".join("%s %s%s\n" % (method, node, path) for node, path in requests),
                      "after_header": "purge requests"}
    if check_mode:
        return dict(result, changed=True, msg="would send %d %s request(s)" % (len(requests), method))
    headers = dict(params.get("headers") or {})
    failures = []
    statuses = {}

    def send(request):
        node, path = request
        return _send(node + path, method, headers, params["timeout"], params["validate_certs"])

    for (node, path), status, error in s3.bounded_map(send, requests, params["concurrency"]):
        if error:
            failures.append("%s %s%s: %s" % (method, node, path, error))
        else:
            statuses[status] = statuses.get(status, 0) + 1
    if failures:
        raise OpsError("%d of %d %s request(s) failed: %s" % (len(failures), len(requests), method,
                                                              "; ".join(sorted(failures)[:5])),
                       failed=sorted(failures))
    return dict(result, changed=True, responses={str(k): v for k, v in sorted(statuses.items())},
                msg="sent %d %s request(s) to %d cache node(s)" % (len(requests), method, len(nodes)))


def _send(url, method, headers, timeout, validate_certs):
    """The status of one purge; 404 (nothing cached there) counts as done."""
    try:
        with open_url(url, method=method, headers=headers, timeout=timeout, validate_certs=validate_certs,
                      follow_redirects="none") as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return 404
        raise OpsError("HTTP %d %s" % (error.code, error.reason))
    except urllib.error.URLError as error:
        raise OpsError(str(error.reason))


def cdn_purge(params, check_mode):
    """The cdn_purge module's service."""
    paths = purge_paths(params)
    if params.get("cache_nodes"):
        return http_purge(params, check_mode, paths)
    try:
        return cloudfront_purge(params, check_mode, paths)
    except OpsError:
        raise
    except Exception as error:  # boto3 and network errors, worded once
        raise OpsError("CloudFront purge failed: %s" % s3.describe_error(error))
