"""s3_sync against real S3 servers: moto (AWS-like) and rclone serve s3 (MinIO-like), every test on both."""

from __future__ import annotations

import hashlib
import os
import random
import time

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils import hashcache, s3, s3sync
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from helpers import finish_background, run_module, run_tasks


def make_tree(root, count, seed=1, min_size=200, max_size=4000):
    """count files of random content and size under a few directories; {rel: bytes}."""
    rng = random.Random(seed)
    files = {}
    for number in range(count):
        rel = "d%02d/file-%04d.bin" % (number % 7, number)
        files[rel] = rng.randbytes(rng.randint(min_size, max_size))
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    return files


def tree_digest(root):
    """{rel: sha256} of every regular file under root."""
    found = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def sync(server, src, dest, **options):
    return dict(server.module_params(), src=src, dest=dest, **options)


def assert_ok(run):
    assert not run.failed, run.msg + run.result.get("exception", "")
    return run.result


def test_same_size_changes_with_old_mtime_are_all_uploaded_and_a_resync_transfers_nothing(
        s3server, s3_bucket, tmp_path):
    local = tmp_path / "dist"
    files = make_tree(local, 120)
    dest = "s3://%s/site" % s3_bucket
    # Files changed within the last 2 s are never trusted to the checksum cache: let the
    # build age, so that the runs below go through the cache.
    time.sleep(hashcache.RECENT_SECONDS + 0.1)
    first, primed = run_tasks([
        {"treazrisland.ops.s3_sync": sync(s3server, str(local), dest)},
        {"treazrisland.ops.s3_sync": sync(s3server, str(local), dest)},
    ]).results
    first, primed = first["result"], primed["result"]
    assert first["changed"] is True and first["counts"]["uploaded"] == 120
    assert primed["changed"] is False and primed["checksums"]["hashed_files"] + primed["checksums"]["cache_hits"] == 120
    cached = assert_ok(run_module("s3_sync", sync(s3server, str(local), dest)))
    assert cached["changed"] is False
    assert cached["checksums"]["cache_hits"] == 120 and cached["checksums"]["hashed_files"] == 0

    # 100 files rebuilt: same size, new content, and their old mtime put back (touch -r).
    rebuilt = sorted(files)[:100]
    rng = random.Random(7)
    for rel in rebuilt:
        path = local / rel
        before = os.stat(path)
        files[rel] = rng.randbytes(len(files[rel]))
        path.write_bytes(files[rel])
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert os.stat(path).st_mtime_ns == before.st_mtime_ns and os.stat(path).st_size == before.st_size

    second, third = run_tasks([
        {"treazrisland.ops.s3_sync": sync(s3server, str(local), dest)},
        {"treazrisland.ops.s3_sync": sync(s3server, str(local), dest)},
    ]).results
    second, third = second["result"], third["result"]
    assert second["changed"] is True
    assert second["uploaded"] == rebuilt and second["counts"]["unchanged"] == 20
    # Their ctime gave them away: exactly the 100 were read again, the 20 others came from the cache.
    assert second["checksums"]["hashed_files"] == 100 and second["checksums"]["cache_hits"] == 20
    assert third["changed"] is False and third["counts"]["uploaded"] == 0 and third["counts"]["unchanged"] == 120
    assert third["msg"] == "uploaded 0 file(s) (0 bytes) and deleted 0; 120 unchanged"
    stored = s3server.objects(s3_bucket, "site/")
    assert {k[len("site/"):]: v for k, v in stored.items() if not k.endswith(".jsonl.gz")} == files

    # A fresh checkout: every mtime is new, no content changed, nothing goes.
    future = time.time() + 3600
    for rel in files:
        os.utime(local / rel, (future, future))
    fresh = assert_ok(run_module("s3_sync", sync(s3server, str(local), dest)))
    assert fresh["changed"] is False and fresh["counts"]["uploaded"] == 0
    assert fresh["checksums"]["hashed_files"] == 120

    # Without the cache every file is read, and no cache file is written.
    uncached = assert_ok(run_module("s3_sync", sync(s3server, str(local), dest, checksum_cache=False)))
    assert uncached["changed"] is False and uncached["checksums"] == {
        "hashed_files": 120, "hashed_bytes": sum(len(data) for data in files.values()), "cache_hits": 0,
        "cache": None}


def test_object_changed_behind_our_back_is_uploaded_again(s3server, s3_bucket, tmp_path):
    local = tmp_path / "dist"
    files = make_tree(local, 5)
    dest = "s3://%s/site" % s3_bucket
    assert_ok(run_module("s3_sync", sync(s3server, str(local), dest)))
    victim = sorted(files)[2]
    # Same size, other content, written by another tool: the listed ETag no longer matches the manifest.
    s3server.client().put_object(Bucket=s3_bucket, Key="site/" + victim, Body=b"x" * len(files[victim]))
    again = assert_ok(run_module("s3_sync", sync(s3server, str(local), dest)))
    assert again["uploaded"] == [victim] and again["counts"]["unchanged"] == 4
    assert s3server.objects(s3_bucket, "site/" + victim)["site/" + victim] == files[victim]


def test_ranged_listing_sees_every_key_whatever_the_manifest_says(s3server, s3_bucket, monkeypatch):
    """The listing split at the manifest's paths (pages of 10 keys here instead of 1000) equals a plain one.

    The manifest is stale on purpose: keys added before its first path, between its paths and
    after its last one, and paths it holds that are gone, must change nothing.
    """
    client = s3server.client()
    present = ["a/%03d.txt" % number for number in range(0, 95)] + ["0-before.txt", "zz-after.txt", "m/new.txt"]
    for rel in present:
        client.put_object(Bucket=s3_bucket, Key="site/" + rel, Body=rel.encode())
    client.put_object(Bucket=s3_bucket, Key="other/a/001.txt", Body=b"outside the prefix")
    stale = sorted(["a/%03d.txt" % number for number in range(0, 120, 2)] + ["gone/1.txt", "gone/2.txt"])
    monkeypatch.setattr(s3sync, "LIST_PAGE", 10)
    location = s3.parse_location("s3://%s/site" % s3_bucket)
    assert len(s3sync._list_bounds(location, stale)) == s3sync.MAX_LIST_RANGES + 1  # capped
    monkeypatch.setattr(s3sync, "MAX_LIST_RANGES", 16)
    assert len(s3sync._list_bounds(location, stale)) == 8  # 7 ranges of at least a page

    def both_listings():
        conn = s3.S3Connection(s3server.module_params())
        rules = s3sync.Rules({})
        return {"ranged": s3sync.list_objects(conn, location, rules, known=stale).objects,
                "plain": s3sync.list_objects(conn, location, rules).objects}

    # In a forked child, as the module does: a process that ever ran obstore's runtime
    # threads must not fork afterwards (later tests fork this one).
    listings = s3.run_in_child(both_listings)
    assert sorted(listings["ranged"]) == sorted(listings["plain"]) == sorted(present)
    assert listings["ranged"] == listings["plain"]


def test_a_damaged_manifest_costs_one_full_upload_and_a_warning(s3server, s3_bucket, tmp_path):
    local = tmp_path / "dist"
    files = make_tree(local, 6)
    dest = "s3://%s/site" % s3_bucket
    assert_ok(run_module("s3_sync", sync(s3server, str(local), dest)))
    s3server.client().put_object(Bucket=s3_bucket, Key="site/.treazrisland-sync.jsonl.gz", Body=b"not gzip")
    again, clean = run_tasks([
        {"treazrisland.ops.s3_sync": sync(s3server, str(local), dest)},
        {"treazrisland.ops.s3_sync": sync(s3server, str(local), dest)},
    ]).results
    again, clean = again["result"], clean["result"]
    assert again["warnings"] == ["the manifest s3://%s/site/.treazrisland-sync.jsonl.gz is unreadable (Error -3 while "
                                 "decompressing data: incorrect header check); every object is compared as unknown"
                                 % s3_bucket]
    assert again["uploaded"] == sorted(files) and again["counts"]["unchanged"] == 0
    assert clean["changed"] is False and "warnings" not in clean
    assert {k[len("site/"):]: v for k, v in s3server.objects(s3_bucket, "site/").items()
            if not k.endswith(".jsonl.gz")} == files


def test_check_mode_and_diff_list_exactly_and_change_nothing(s3server, s3_bucket, tmp_path):
    local = tmp_path / "dist"
    files = make_tree(local, 3)
    client = s3server.client()
    client.put_object(Bucket=s3_bucket, Key="site/stale.js", Body=b"old")
    dest = "s3://%s/site" % s3_bucket

    run = run_module("s3_sync", sync(s3server, str(local), dest, delete=True), check=True, diff=True)
    result = assert_ok(run)
    assert result["changed"] is True
    assert result["uploaded"] == sorted(files) and result["deleted"] == ["stale.js"]
    assert result["changed_keys"] == sorted(["site/" + rel for rel in files] + ["site/stale.js"])
    assert result["msg"].startswith("would have uploaded 3 file(s)")
    for rel in files:
        assert "upload   %s (%d bytes, new)" % (rel, len(files[rel])) in run.output
    assert "delete   stale.js" in run.output
    assert s3server.keys(s3_bucket) == ["site/stale.js"]  # nothing uploaded, nothing deleted, no manifest


def test_deletes_honour_excludes_and_max_delete(s3server, s3_bucket, tmp_path):
    local = tmp_path / "dist"
    make_tree(local, 4)
    dest = "s3://%s/site" % s3_bucket
    assert_ok(run_module("s3_sync", sync(s3server, str(local), dest)))
    client = s3server.client()
    for key in ("site/old-1.js", "site/old-2.js", "site/old-3.js", "site/roms/game.zip", "site/roms/sub/x.zip",
                "outside/prefix.txt"):
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"kept?")
    (local / "new.css").write_text("body{}")
    before = s3server.objects(s3_bucket)

    # 3 stale objects, max 2: fails before anything changes (the new file is not uploaded either).
    options = dict(delete=True, exclude=["roms/*"], max_delete="2")
    run = run_module("s3_sync", sync(s3server, str(local), dest, **options))
    assert run.failed
    assert run.msg == ("refusing to delete 3 file(s) from %s: more than max_delete=2; nothing was changed" % dest)
    assert run.result["would_delete"] == ["old-1.js", "old-2.js", "old-3.js"]
    assert s3server.objects(s3_bucket) == before

    # As a percentage of the 9 objects in scope: 30% is 2 (rounded down), 40% is 3.
    run = run_module("s3_sync", sync(s3server, str(local), dest, delete=True, exclude=["roms/*"], max_delete="30%"))
    assert run.failed and run.msg == (
        "refusing to delete 3 file(s) from %s: more than max_delete=30%% (2 of the 7 in scope); nothing was changed"
        % dest)
    assert s3server.objects(s3_bucket) == before

    done = assert_ok(run_module("s3_sync", sync(s3server, str(local), dest, delete=True, exclude=["roms/*"],
                                                max_delete="50%")))
    assert done["uploaded"] == ["new.css"] and done["deleted"] == ["old-1.js", "old-2.js", "old-3.js"]
    keys = s3server.keys(s3_bucket)
    # Excluded keys and keys outside the prefix are untouched.
    assert "site/roms/game.zip" in keys and "site/roms/sub/x.zip" in keys and "outside/prefix.txt" in keys
    assert not [key for key in keys if key.startswith("site/old-")]


def test_round_trip_local_s3_local_and_s3_s3_is_byte_identical(s3server, s3_bucket, tmp_path):
    local = tmp_path / "dist"
    make_tree(local, 40, max_size=60000)
    (local / "empty.txt").write_bytes(b"")
    (local / "name with spaces & ünïcode.html").write_text("<p>ok</p>")
    (local / "roms").mkdir()
    (local / "roms" / "big.bin").write_bytes(random.Random(3).randbytes(12 * 1024 * 1024 + 17))  # multipart
    dest = "s3://%s/live" % s3_bucket
    snapshot = "s3://%s/snapshots/r1" % s3_bucket
    restored = tmp_path / "restored"
    from_snapshot = tmp_path / "from-snapshot"
    small_parts = {"multipart_chunk_size_mb": 5}

    runs = run_tasks([
        {"treazrisland.ops.s3_sync": sync(s3server, str(local), dest, **small_parts)},
        {"treazrisland.ops.s3_sync": sync(s3server, dest, str(restored))},
        {"treazrisland.ops.s3_sync": sync(s3server, dest, snapshot)},
        {"treazrisland.ops.s3_sync": sync(s3server, snapshot, str(from_snapshot))},
        # and each again: nothing to do
        {"treazrisland.ops.s3_sync": sync(s3server, str(local), dest, **small_parts)},
        {"treazrisland.ops.s3_sync": sync(s3server, dest, str(restored))},
        {"treazrisland.ops.s3_sync": sync(s3server, dest, snapshot)},
        {"treazrisland.ops.s3_sync": sync(s3server, snapshot, str(from_snapshot))},
    ])
    results = [entry["result"] for entry in runs.results]
    assert all(not r.get("failed") for r in results) and len(results) == 8, [(e["status"], e["result"].get("msg")) for e in runs.results]
    assert [r["direction"] for r in results[:4]] == ["upload", "download", "copy", "download"]
    assert [r["changed"] for r in results] == [True] * 4 + [False] * 4
    assert results[2]["counts"]["copied"] == 43 and results[2]["bytes"]["copied"] == results[0]["bytes"]["uploaded"]
    assert tree_digest(restored) == tree_digest(local)
    assert tree_digest(from_snapshot) == tree_digest(local)
    head = s3server.client().head_object(Bucket=s3_bucket, Key="snapshots/r1/roms/big.bin")
    assert {k.lower(): v for k, v in head["Metadata"].items()}["sha256"] == tree_digest(local)["roms/big.bin"]


def test_download_finds_a_same_size_local_change_behind_a_warm_checksum_cache(s3server, s3_bucket, tmp_path):
    local = tmp_path / "dist"
    files = make_tree(local, 10)
    source = "s3://%s/dl" % s3_bucket
    archive = tmp_path / "archive"
    download = {"treazrisland.ops.s3_sync": sync(s3server, source, str(archive))}
    run_tasks([{"treazrisland.ops.s3_sync": sync(s3server, str(local), source)}, download])
    time.sleep(hashcache.RECENT_SECONDS + 0.1)  # downloaded files are too fresh to be cached before
    _primed, cached = run_tasks([download, download]).results
    cached = cached["result"]
    assert cached["changed"] is False
    assert cached["checksums"]["cache_hits"] == 10 and cached["checksums"]["hashed_files"] == 0

    # Someone edits the archive: same size, old mtime put back.
    victim = sorted(files)[4]
    before = os.stat(archive / victim)
    (archive / victim).write_bytes(b"?" * before.st_size)
    os.utime(archive / victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    again = assert_ok(run_module("s3_sync", sync(s3server, source, str(archive))))
    assert again["downloaded"] == [victim] and again["counts"]["unchanged"] == 9
    assert again["checksums"]["hashed_files"] == 1 and again["checksums"]["cache_hits"] == 9
    assert tree_digest(archive) == tree_digest(local)


def test_download_with_delete_removes_local_files_not_in_the_bucket(s3server, s3_bucket, tmp_path):
    local = tmp_path / "dist"
    make_tree(local, 3)
    dest = "s3://%s/a" % s3_bucket
    archive = tmp_path / "archive"
    (archive / "gone" / "deep").mkdir(parents=True)
    (archive / "gone" / "deep" / "old.txt").write_text("old")
    (archive / "keep.log").write_text("excluded")
    runs = run_tasks([
        {"treazrisland.ops.s3_sync": sync(s3server, str(local), dest)},
        {"treazrisland.ops.s3_sync": sync(s3server, dest, str(archive), delete=True, exclude=["*.log"])},
    ])
    result = runs.result
    assert not result.get("failed"), result.get("msg")
    assert result["deleted"] == ["gone/deep/old.txt"]
    assert not (archive / "gone").exists()  # directories left empty go too
    assert (archive / "keep.log").read_text() == "excluded"
    assert tree_digest(archive) == dict(tree_digest(local), **{"keep.log": tree_digest(archive)["keep.log"]})


def test_download_never_follows_a_symlink_out_of_dest(s3server, s3_bucket, tmp_path):
    client = s3server.client()
    client.put_object(Bucket=s3_bucket, Key="a/img/logo.png", Body=b"png")
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "archive"
    archive.mkdir()
    os.symlink(outside, archive / "img")
    run = run_module("s3_sync", sync(s3server, "s3://%s/a" % s3_bucket, str(archive)))
    assert run.failed
    assert run.msg == ("refusing to download img/logo.png: %s/img is not a directory (symlinks are never followed); "
                       "nothing was changed" % archive)
    assert os.listdir(outside) == []
    os.unlink(archive / "img")
    os.symlink(outside / "logo.png", archive / "img")  # the file itself a symlink
    client.delete_object(Bucket=s3_bucket, Key="a/img/logo.png")
    client.put_object(Bucket=s3_bucket, Key="a/img", Body=b"png")
    run = run_module("s3_sync", sync(s3server, "s3://%s/a" % s3_bucket, str(archive)))
    assert run.failed
    assert run.msg == ("refusing to replace %s/img: it is not a regular file (symlinks are never followed); "
                       "nothing was changed" % archive)
    assert os.listdir(outside) == [] and os.path.islink(archive / "img")


def test_download_refuses_keys_that_escape_dest(s3_servers, tmp_path):
    """moto only: rclone serve s3 itself refuses to store keys with '..' segments."""
    server = s3_servers("moto")
    bucket = server.make_bucket("escape-%d" % os.getpid())
    client = server.client()
    for key in ("a/ok.txt", "a/../../../escaped.txt", "a//etc/passwd"):
        client.put_object(Bucket=bucket, Key=key, Body=b"payload")
    archive = tmp_path / "deep" / "archive"
    run = run_module("s3_sync", sync(server, "s3://%s/a" % bucket, str(archive)))
    assert run.failed
    assert run.msg == ("refusing to download keys that would land outside %s: a/../../../escaped.txt, "
                       "a//etc/passwd; exclude them" % archive)
    assert not archive.exists() and not (tmp_path / "escaped.txt").exists()

    ok = assert_ok(run_module("s3_sync", sync(server, "s3://%s/a" % bucket, str(archive),
                                              exclude=["../*", "/etc/passwd"])))
    assert ok["downloaded"] == ["ok.txt"] and os.listdir(archive) == ["ok.txt"]


def test_headers_and_server_side_encryption(s3_servers, tmp_path):
    """moto: Content-Type, Cache-Control per pattern, AES256; a changed rule re-sends only what it covers."""
    server = s3_servers("moto")
    bucket = server.make_bucket("headers-%d" % os.getpid())
    local = tmp_path / "dist"
    (local / "assets").mkdir(parents=True)
    (local / "index.html").write_text("<html></html>")
    (local / "assets" / "app.js").write_text("let a = 1;")
    (local / "assets" / "font.woff2").write_bytes(b"wOF2")
    rules = [{"pattern": "assets/*", "value": "public, max-age=31536000, immutable"},
             {"pattern": "*.html", "value": "no-cache"}]
    dest = "s3://%s" % bucket
    assert_ok(run_module("s3_sync", sync(server, str(local), dest, cache_control=rules, encryption="AES256")))
    client = server.client()
    heads = {key: client.head_object(Bucket=bucket, Key=key) for key in ("index.html", "assets/app.js",
                                                                         "assets/font.woff2")}
    assert heads["index.html"]["ContentType"] == "text/html" and heads["index.html"]["CacheControl"] == "no-cache"
    assert heads["assets/app.js"]["ContentType"] == "text/javascript"
    assert heads["assets/font.woff2"]["ContentType"] == "font/woff2"
    assert heads["assets/app.js"]["CacheControl"] == "public, max-age=31536000, immutable"
    assert all(head["ServerSideEncryption"] == "AES256" for head in heads.values())

    rules[1]["value"] = "max-age=60"
    again = assert_ok(run_module("s3_sync", sync(server, str(local), dest, cache_control=rules, encryption="AES256")))
    assert again["uploaded"] == ["index.html"] and again["counts"]["unchanged"] == 2
    assert "headers changed" in again["diff"]["prepared"]


def test_encryption_a_server_does_not_apply_stops_the_sync(s3_servers, tmp_path, monkeypatch):
    """Run in-process with HEAD answers stripped of their encryption header: neither local server
    ignores the header visibly (moto encrypts; rclone echoes AES256 back, storing the file in the clear)."""
    from ansible_collections.treazrisland.ops.plugins.module_utils import s3, s3sync  # pylint: disable=import-outside-toplevel
    server = s3_servers("rclone")
    bucket = server.make_bucket("clear-%d" % os.getpid())
    local = tmp_path / "backup"
    make_tree(local, 40)
    server.client().put_object(Bucket=bucket, Key="b/stale.txt", Body=b"x")
    real_boto3 = s3.S3Connection.boto3

    def boto3_without_sse(self, service="s3"):
        client = real_boto3(self, service)
        head = client.head_object
        monkeypatch.setattr(client, "head_object", lambda **kwargs: {
            k: v for k, v in head(**kwargs).items() if k != "ServerSideEncryption"})
        return client

    monkeypatch.setattr(s3.S3Connection, "boto3", boto3_without_sse)
    params = dict(server.module_params(), src=str(local), dest="s3://%s/b" % bucket, encryption="AES256",
                  delete=True, max_delete=None, include=None, exclude=None, concurrency=1, multipart_chunk_size_mb=8,
                  cache_control=None, kms_key_id=None, session_token=None, validate_certs=True, timeout=10, retries=0)
    with pytest.raises(OpsError) as caught:
        # In a child, as the module runs it: obstore must not run in the pytest process itself.
        s3.run_in_child(s3sync.s3_sync, params, False)
    assert caught.value.msg.startswith("s3://%s/b stored b/d" % bucket)
    assert caught.value.msg.endswith(" without the requested encryption AES256 (it reports none); stopped after "
                                     "1 of 40 transfer(s), nothing was deleted")
    keys = server.keys(bucket)
    assert "b/stale.txt" in keys and "b/.treazrisland-sync.jsonl.gz" not in keys and len(keys) <= 4


@pytest.mark.parametrize("options, message", [
    ({"src": "/tmp", "dest": "/var/tmp"}, "one of src and dest must be an s3:// location (both are local paths)"),
    ({"src": "/tmp", "dest": "s3://Bad_Bucket/x"}, "s3://Bad_Bucket/x: 'Bad_Bucket' is not a valid bucket name"),
    ({"src": "/nonexistent/dist", "dest": "s3://assets/x"}, "src /nonexistent/dist is not a directory"),
    ({"src": "/tmp", "dest": "s3://assets/x", "delete": True, "max_delete": "ten"},
     "max_delete must be a count (100) or a percentage (10%), not 'ten'"),
    ({"src": "s3://assets/a", "dest": "s3://assets/a/b"}, "src s3://assets/a and dest s3://assets/a/b overlap"),
])
def test_bad_input_fails_with_one_clear_message(s3_servers, options, message):
    server = s3_servers("rclone")
    run = run_module("s3_sync", dict(server.module_params(), **options))
    assert run.failed and run.msg == message


def test_wrong_secret_fails_clearly_and_never_shows_it(s3_servers, tmp_path):
    """rclone only: moto accepts any signature."""
    s3server = s3_servers("rclone")
    s3_bucket = s3server.make_bucket("wrong-secret-%d" % os.getpid())
    local = tmp_path / "dist"
    make_tree(local, 2)
    params = sync(s3server, str(local), "s3://%s/x" % s3_bucket, secret_key="wrong-secret-0123456789", retries=0)
    run = run_module("s3_sync", params, verbosity=3)
    assert run.failed
    assert run.msg.startswith("s3_sync %s -> s3://%s/x failed: " % (local, s3_bucket))
    assert "wrong-secret-0123456789" not in run.output
    assert s3server.keys(s3_bucket) == []


def test_interrupted_upload_deletes_nothing_and_the_next_run_completes_it(s3server, s3_bucket, tmp_path):
    """The server stops mid-sync: rclone is killed (and restarted on its port, its files kept);
    moto, which keeps everything in memory, is frozen with SIGSTOP (and continued)."""
    local = tmp_path / "dist"
    files = make_tree(local, 400, min_size=40000, max_size=60000)
    client = s3server.client()
    for key in ("site/stale-1.css", "site/stale-2.css"):
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"stale")
    dest = "s3://%s/site" % s3_bucket
    options = dict(delete=True, concurrency=2, timeout=2, retries=0)

    process = run_tasks([{"name": "s3_sync", "treazrisland.ops.s3_sync": sync(s3server, str(local), dest, **options),
                          "ignore_errors": True}], background=True)
    deadline = time.monotonic() + 60
    while len(s3server.keys(s3_bucket, "site/d")) < 30:
        assert time.monotonic() < deadline and process.poll() is None, "the upload never got going"
        time.sleep(0.05)
    if s3server.kind == "rclone":
        s3server.kill()
    else:
        s3server.pause()
    try:
        interrupted = finish_background(process)
    finally:
        if s3server.kind == "rclone":
            s3server.restart()
        else:
            s3server.resume()
    assert interrupted.failed
    assert interrupted.msg.startswith("sync from %s to %s stopped after " % (local, dest))
    assert interrupted.msg.endswith("nothing was deleted, run again to finish")
    keys = s3server.keys(s3_bucket)
    assert "site/stale-1.css" in keys and "site/stale-2.css" in keys
    assert 30 <= len([key for key in keys if key.startswith("site/d")]) < 400

    done = assert_ok(run_module("s3_sync", sync(s3server, str(local), dest, delete=True)))
    assert done["deleted"] == ["stale-1.css", "stale-2.css"]
    # The manifest could not be written while the server was down: what it cannot prove is sent again.
    assert done["counts"]["uploaded"] + done["counts"]["unchanged"] == 400
    stored = s3server.objects(s3_bucket, "site/")
    assert {k[len("site/"):]: v for k, v in stored.items() if not k.endswith(".jsonl.gz")} == files
