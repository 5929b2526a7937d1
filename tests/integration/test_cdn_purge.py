"""cdn_purge: HTTP PURGE/BAN against a real Varnish (Debian's 7.1) in front of moto's public bucket
endpoint, and CloudFront invalidations against moto."""

from __future__ import annotations

import os
import socket

import pytest

from helpers import run_module, run_tasks

from sandbox import varnish as varnish_sandbox


@pytest.fixture(scope="module")
def cache(s3_servers):
    """Varnish on a free port in front of the moto server; stopped at the end of the module."""
    if not varnish_sandbox.available():
        pytest.fail("varnishd is missing: bash sandbox/setup.sh installs Debian's varnish package")
    with varnish_sandbox.Varnish(backend_port=s3_servers("moto").port) as running:
        yield running


@pytest.fixture(scope="module")
def public_bucket(s3_servers):
    return s3_servers("moto").make_bucket("cdn-origin-%d" % os.getpid(), public=True)


def test_stale_object_is_served_until_the_purge_of_what_the_sync_changed(s3_servers, cache, public_bucket, tmp_path):
    server = s3_servers("moto")
    site = tmp_path / "site"
    (site / "img").mkdir(parents=True)
    (site / "index.html").write_text("<h1>release 1</h1>")
    (site / "img" / "logo.svg").write_text("<svg>1</svg>")
    dest = "s3://%s/live" % public_bucket
    connection = server.module_params()
    assert not run_module("s3_sync", dict(connection, src=str(site), dest=dest)).failed
    path = "/%s/live/index.html" % public_bucket
    assert cache.get(path) == (b"<h1>release 1</h1>", "MISS")
    assert cache.get(path) == (b"<h1>release 1</h1>", "HIT")

    (site / "index.html").write_text("<h1>release 2</h1>")
    synced = run_module("s3_sync", dict(connection, src=str(site), dest=dest))
    assert synced.result["changed_keys"] == ["live/index.html"]
    assert cache.get(path) == (b"<h1>release 1</h1>", "HIT")  # stale: the cache has not heard of the upload

    purge = {"cache_nodes": [cache.url], "keys": synced.result["changed_keys"], "path_prefix": "/%s/" % public_bucket}
    check = run_module("cdn_purge", purge, check=True, diff=True)
    assert not check.failed and check.result["changed"] is True
    assert "PURGE %s%s" % (cache.url, path) in check.output
    assert cache.get(path) == (b"<h1>release 1</h1>", "HIT")  # check mode sent nothing

    purged = run_module("cdn_purge", purge)
    assert not purged.failed, purged.msg
    assert purged.result["paths"] == [path] and purged.result["responses"] == {"200": 1}
    assert purged.result["msg"] == "sent 1 PURGE request(s) to 1 cache node(s)"
    assert cache.get(path) == (b"<h1>release 2</h1>", "MISS")
    logo = "/%s/live/img/logo.svg" % public_bucket
    assert cache.get(logo)[0] == b"<svg>1</svg>"

    # BAN by prefix: everything under /bucket/live/img/ goes.
    (site / "img" / "logo.svg").write_text("<svg>2</svg>")
    assert not run_module("s3_sync", dict(connection, src=str(site), dest=dest)).failed
    assert cache.get(logo) == (b"<svg>1</svg>", "HIT")
    banned = run_module("cdn_purge", {"cache_nodes": [cache.url], "method": "BAN",
                                      "paths": ["/%s/live/img/" % public_bucket]})
    assert not banned.failed and banned.result["changed"] is True
    assert cache.get(logo) == (b"<svg>2</svg>", "MISS")


def test_a_cache_node_that_does_not_answer_fails_clearly(cache):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = "http://127.0.0.1:%d" % sock.getsockname()[1]  # bound, never listening: refused
        run = run_module("cdn_purge", {"cache_nodes": [cache.url, closed], "paths": ["/index.html"]})
    assert run.failed
    assert run.msg == "1 of 2 PURGE request(s) failed: PURGE %s/index.html: [Errno 111] Connection refused" % closed


def test_nothing_to_purge_changes_nothing(cache):
    run = run_module("cdn_purge", {"cache_nodes": [cache.url], "keys": []})
    assert not run.failed and run.result["changed"] is False and run.result["msg"] == "nothing to purge"


@pytest.fixture(scope="module")
def distribution(s3_servers):
    client = s3_servers("moto").client("cloudfront")
    created = client.create_distribution(DistributionConfig={
        "CallerReference": "treazrisland-test", "Comment": "assets", "Enabled": True,
        "Aliases": {"Quantity": 1, "Items": ["assets.treazrisland.test"]},
        "Origins": {"Quantity": 1, "Items": [{"Id": "assets", "DomainName": "assets.s3.amazonaws.com",
                                              "OriginPath": "/live", "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "assets", "ViewerProtocolPolicy": "allow-all",
                                 "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                 "MinTTL": 0, "TrustedSigners": {"Enabled": False, "Quantity": 0}}})
    return created["Distribution"]["Id"]


def invalidations(server, distribution_id):
    listed = server.client("cloudfront").list_invalidations(DistributionId=distribution_id)["InvalidationList"]
    return [item["Id"] for item in listed.get("Items", []) or []]


def test_cloudfront_invalidation_waits_for_completion_and_is_idempotent_by_reference(s3_servers, distribution):
    server = s3_servers("moto")
    options = dict(server.module_params(), distribution_id=distribution,
                   keys=["live/index.html", "live/img/a b.png", "other/not-served.css"], key_prefix="live/",
                   caller_reference="assets-1.5.0")

    check = run_module("cdn_purge", options, check=True)
    assert not check.failed and check.result["changed"] is True
    assert check.result["paths"] == ["/img/a%20b.png", "/index.html"]
    assert invalidations(server, distribution) == []

    first, again = [entry["result"] for entry in run_tasks([
        {"treazrisland.ops.cdn_purge": options}, {"treazrisland.ops.cdn_purge": options}]).results]
    assert first["changed"] is True and first["status"] == "Completed"  # moto says COMPLETED
    assert first["msg"] == "invalidated 2 path(s) on %s (%s)" % (distribution, first["invalidation_id"])
    assert again["changed"] is False and again["invalidation_id"] == first["invalidation_id"]
    assert invalidations(server, distribution) == [first["invalidation_id"]]
    batch = server.client("cloudfront").get_invalidation(DistributionId=distribution, Id=first["invalidation_id"])
    assert batch["Invalidation"]["InvalidationBatch"]["Paths"]["Items"] == ["/img/a%20b.png", "/index.html"]

    reused = run_module("cdn_purge", dict(options, keys=["live/other.html"]))
    assert reused.failed and reused.msg == (
        "caller_reference assets-1.5.0 was already used on distribution %s for other paths; "
        "use a new reference for a new purge" % distribution)


def test_cloudfront_by_alias_and_many_paths_collapse_to_a_wildcard(s3_servers, distribution):
    server = s3_servers("moto")
    keys = ["live/f%05d.js" % number for number in range(3500)]
    run = run_module("cdn_purge", dict(server.module_params(), distribution_alias="assets.treazrisland.test",
                                       keys=keys, key_prefix="live/"))
    assert not run.failed, run.msg
    assert run.result["distribution_id"] == distribution
    assert run.result["collapsed"] is True and run.result["paths"] == ["/*"]

    unknown = run_module("cdn_purge", dict(server.module_params(), distribution_alias="nope.example",
                                           paths=["/x"]))
    assert unknown.failed and unknown.msg == "no CloudFront distribution has the alias nope.example"
