"""asset_verify: the spot check, against S3 (both servers) and over plain HTTP (moto's public bucket)."""

from __future__ import annotations

import os

from helpers import run_module, run_tasks


def build(root):
    (root / "img").mkdir(parents=True)
    (root / "index.html").write_text("<h1>treazrisland</h1>")
    (root / "img" / "logo one.svg").write_text("<svg/>")
    for number in range(10):
        (root / "img" / ("tile-%d.png" % number)).write_bytes(os.urandom(3000 + number))
    return sorted(["index.html", "img/logo one.svg"] + ["img/tile-%d.png" % n for n in range(10)])


def test_every_file_matches_then_each_difference_is_named(s3server, s3_bucket, tmp_path):
    site = tmp_path / "site"
    rels = build(site)
    remote = "s3://%s/live" % s3_bucket
    connection = s3server.module_params()
    manifest = str(tmp_path / "site.sha256")
    results = [entry["result"] for entry in run_tasks([
        {"treazrisland.ops.s3_sync": dict(connection, src=str(site), dest=remote)},
        {"treazrisland.ops.asset_verify": dict(connection, path=str(site), remote=remote, sample=0)},
        {"treazrisland.ops.checksum_manifest": {"path": str(site), "manifest": manifest}},
        {"treazrisland.ops.asset_verify": dict(connection, manifest=manifest, remote=remote, sample=0)},
    ]).results]
    assert len(results) == 4, results[-1].get("msg")
    first, by_path, by_manifest = results[0], results[1], results[3]
    assert first["changed"] is True
    assert by_path["changed"] is False and by_path["checked"] == rels
    assert by_path["msg"] == "12 of 12 file(s) checked at %s: all match %s" % (remote, site)
    assert by_manifest["checked"] == rels and by_manifest["mismatched"] == []

    client = s3server.client()
    client.put_object(Bucket=s3_bucket, Key="live/index.html", Body=b"<h1>defaced</h1>")
    client.delete_object(Bucket=s3_bucket, Key="live/img/tile-3.png")
    run = run_module("asset_verify", dict(connection, path=str(site), remote=remote, sample=0), check=True)
    assert run.failed
    assert run.msg == ("2 of 12 checked file(s) do not match %s at %s; differ: index.html; missing: img/tile-3.png"
                       % (site, remote))
    assert [item["path"] for item in run.result["mismatched"]] == ["index.html"]
    assert run.result["mismatched"][0]["url"] == "s3://%s/live/index.html" % s3_bucket
    assert run.result["missing"] == ["img/tile-3.png"]


def test_random_sample_over_http_is_repeatable_with_a_seed(s3_servers, tmp_path):
    server = s3_servers("moto")
    bucket = server.make_bucket("verify-http-%d" % os.getpid(), public=True)
    site = tmp_path / "site"
    build(site)
    base = server.public_url(bucket, "live/")
    runs = run_tasks([
        {"treazrisland.ops.s3_sync": dict(server.module_params(), src=str(site), dest="s3://%s/live" % bucket)},
        {"treazrisland.ops.asset_verify": {"path": str(site), "remote": base, "sample": 4, "seed": 11}},
        {"treazrisland.ops.asset_verify": {"path": str(site), "remote": base, "sample": 4, "seed": 11}},
    ])
    first, second = runs.results[1]["result"], runs.results[2]["result"]
    assert not first.get("failed"), first.get("msg")
    assert len(first["checked"]) == 4 and first["checked"] == second["checked"]

    (site / "img" / "logo one.svg").write_text("<svg>rebuilt, not uploaded</svg>")
    run = run_module("asset_verify", {"path": str(site), "remote": base, "sample": 0})
    assert run.failed and run.result["mismatched"][0]["url"] == base + "img/logo%20one.svg"
    assert run.msg == "1 of 12 checked file(s) do not match %s at %s; differ: img/logo one.svg" % (site, base)


def test_bad_remote_and_missing_build_fail_clearly(tmp_path):
    run = run_module("asset_verify", {"path": str(tmp_path), "remote": "ftp://example/"})
    assert run.failed and run.msg == "remote must be an http(s):// base URL or an s3:// location, not 'ftp://example/'"
    run = run_module("asset_verify", {"path": str(tmp_path / "nope"), "remote": "http://127.0.0.1:9/"})
    assert run.failed and run.msg == "path %s is not a directory" % (tmp_path / "nope")
