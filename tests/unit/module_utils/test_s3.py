"""s3.py: locations, the child-process isolation, bounded concurrency; s3sync's pure parts."""

from __future__ import annotations

import faulthandler
import json
import os
import random
import threading
import time

import pytest


from ansible_collections.treazrisland.ops.plugins.module_utils import s3, s3sync
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError


def test_locations_parse_and_map_relative_paths():
    location = s3.parse_location("s3://treazrisland-assets/live/v2/")
    assert (location.bucket, location.prefix) == ("treazrisland-assets", "live/v2")
    assert location.key("img/a.png") == "live/v2/img/a.png"
    assert location.rel("live/v2/img/a.png") == "img/a.png" and location.rel("live/v20/x") is None
    root = s3.parse_location("s3://treazrisland-assets")
    assert root.key("a") == "a" and root.rel("a") == "a" and str(root) == "s3://treazrisland-assets"
    assert s3.parse_location("/srv/dist") is None
    with pytest.raises(OpsError, match="'A_b' is not a valid bucket name"):
        s3.parse_location("s3://A_b/x")


def abort_quietly(*_args):
    """SIGABRT without pytest's faulthandler dump (the abort is the point of these tests)."""
    faulthandler.disable()
    os.abort()


def test_a_result_delivered_before_an_abort_stands(monkeypatch):
    # The child ends through os._exit; make that an abort, as the Rust runtime's would be.
    monkeypatch.setattr(s3.os, "_exit", abort_quietly)
    # Record warnings here: where they go otherwise depends on which parts of ansible were imported before.
    recorded = []
    monkeypatch.setattr(s3, "warn", recorded.append)
    result = s3.run_in_child(lambda: {"changed": True, "msg": "done", "warnings": ["from the child"]})
    assert result == {"changed": True, "msg": "done"}
    assert "from the child" in recorded
    assert any("killed by signal 6 (SIGABRT) after it reported its complete result" in w for w in recorded)


def test_a_child_that_dies_before_its_result_is_a_clear_failure():
    with pytest.raises(OpsError) as caught:
        s3.run_in_child(abort_quietly)
    assert caught.value.msg == ("the S3 transfer process ended before reporting its result (killed by signal 6 "
                                "(SIGABRT)); run the task again: it resumes where it stopped")


def test_errors_and_crashes_of_the_child_reach_the_parent():
    def fails():
        raise OpsError("bucket gone", bucket="b")

    with pytest.raises(OpsError) as caught:
        s3.run_in_child(fails)
    assert caught.value.msg == "bucket gone" and caught.value.details == {"bucket": "b"}

    with pytest.raises(OpsError) as caught:
        s3.run_in_child(lambda: 1 / 0)
    assert caught.value.msg == "unexpected error: ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in caught.value.details["exception"]


def test_bounded_map_keeps_at_most_workers_running_and_cancels_the_rest():
    running, peak, lock = [0], [0], threading.Lock()

    def work(number):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        if number == 5:
            raise ValueError("five")
        return number * 2

    seen = {}
    outcomes = s3.bounded_map(work, range(1000), 4)
    for item, result, error in outcomes:
        seen[item] = error or result
        if error:
            outcomes.close()
            break
    assert peak[0] <= 4
    assert isinstance(seen[5], ValueError) and len(seen) < 20  # stopped early: nothing like 1000 ran


def test_rules_scope_and_headers():
    rules = s3sync.Rules({"include": None, "exclude": ["roms/*", "*.map"],
                          "cache_control": [{"pattern": "assets/*", "value": "immutable"},
                                            {"pattern": "*", "value": "no-cache"}]})
    assert rules.in_scope("index.html") and rules.in_scope("assets/app.js")
    assert not rules.in_scope("roms/a/b.zip") and not rules.in_scope("assets/app.js.map")
    assert not rules.in_scope(s3sync.MANIFEST_NAME)
    assert rules.headers("assets/app.js") == ("text/javascript", "immutable", "")
    assert rules.headers("index.html") == ("text/html", "no-cache", "")
    assert rules.headers("roms/game.sfc")[0] == "application/octet-stream"


def test_manifest_lines_are_read_in_batches_whatever_the_chunking(monkeypatch):
    monkeypatch.setattr(s3sync, "MANIFEST_BATCH", 3)
    header = json.dumps({"format": s3sync.MANIFEST_FORMAT, "files": 8}).encode()
    records = [json.dumps(["f%d.js" % n, "%064x" % n, n, "etag%d" % n, "text/javascript", "", ""]).encode()
               for n in range(8)]
    reader = s3sync._ManifestReader()
    reader.add([header, records[0], b""])
    reader.add(records[1:7] + [b"  "])
    reader.add([records[7]])
    assert reader.header["files"] == 8
    assert reader.records == {"f%d.js" % n: ("%064x" % n, n, "etag%d" % n, "text/javascript", "", "")
                              for n in range(8)}
    with pytest.raises(ValueError, match="not a treazrisland.ops.s3_sync/1 manifest"):
        s3sync._ManifestReader().add([b'{"format": "other"}'])
    with pytest.raises(ValueError):
        s3sync._ManifestReader().add([header, b'["f.js", "abc", 1, "e", "t", ""]'])  # a field short


def test_content_type_memo_answers_as_guess_type_for_any_name():
    # The memo keys on the extensions alone; a file's Content-Type must not move from what the
    # manifest recorded, or every such file would be sent again as "headers changed".
    rng = random.Random(5)
    pieces = [".", "a", "b/", "..", ".js", ".JS", ".gz", ".tar", ".tgz", ".css", ".map", ".svg", ".br", ".Z",
              ".html", ".bz2", ".webp", ".woff2", "."]
    for _attempt in range(5000):
        rel = "".join(rng.choice(pieces) for _piece in range(rng.randint(1, 6)))
        expected = s3sync._MIME.guess_type(rel, strict=False)[0] or s3sync.DEFAULT_CONTENT_TYPE
        assert s3sync.content_type_of(rel) == expected, rel


@pytest.mark.parametrize("rel, unsafe", [
    ("a/b.txt", False), ("a b/ü.txt", False), ("../x", True), ("a/../../x", True), ("/etc/passwd", True),
    ("a//b", True), ("./a", True), ("", True), ("a/", True),
])
def test_unsafe_relative_paths(rel, unsafe):
    assert s3sync.unsafe_rel(rel) is unsafe


@pytest.mark.parametrize("value, parsed", [(None, (None, None)), ("", (None, None)), ("0", (0, None)),
                                           ("250", (250, None)), ("12.5%", (None, 12.5))])
def test_max_delete_parses(value, parsed):
    assert s3sync.parse_max_delete(value) == parsed


@pytest.mark.parametrize("value", ["-1", "ten", "101%", "%"])
def test_max_delete_rejects(value):
    with pytest.raises(OpsError, match="max_delete must be a count"):
        s3sync.parse_max_delete(value)


def test_safe_target_refuses_a_symlinked_parent(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "img")
    assert s3sync.safe_target(str(root), "css/deep/a.css") == str(root / "css" / "deep" / "a.css")
    with pytest.raises(OpsError, match="is not a directory"):
        s3sync.safe_target(str(root), "img/a.png")
    assert os.listdir(outside) == []


def test_byte_budget_lets_one_oversized_transfer_through_alone():
    budget = s3.ByteBudget(100)
    budget.acquire(500)  # alone: allowed
    started = threading.Event()

    def second():
        budget.acquire(10)
        started.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not started.wait(0.1)  # waits while the big one holds the budget
    budget.release(500)
    assert started.wait(2)
    thread.join()
