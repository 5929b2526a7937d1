"""The obstore exit hazard: a process that used obstore's async API sometimes aborts (SIGABRT)
during interpreter shutdown, after all its work finished. s3_sync runs its transfers in a
forked child that reports over a pipe and leaves with os._exit; these tests run it many times
in a row, and show that even the async API, which does abort, cannot fail a finished run."""

from __future__ import annotations

import asyncio
import os

from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.treazrisland.ops.plugins.module_utils import s3

RUNS = 25


def test_s3_sync_many_times_in_a_row_never_fails(s3_servers, tmp_path):
    """On rclone serve s3, where the aborts were seen (the hazard is in the client process,
    whatever the server)."""
    s3server = s3_servers("rclone")
    s3_bucket = s3server.make_bucket("many-runs-%d" % os.getpid())
    local = tmp_path / "dist"
    for number in range(20):
        directory = local / ("d%d" % (number % 3))
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ("f%02d.txt" % number)).write_bytes(os.urandom(1000 + number))
    from helpers import run_tasks  # pylint: disable=import-outside-toplevel

    # Every run uploads 20 files to its own prefix: real transfers each time, each its own process.
    task = {"name": "sync %d times" % RUNS, "loop": list(range(RUNS)), "ignore_errors": True,
            "treazrisland.ops.s3_sync": dict(s3server.module_params(), src=str(local),
                                             dest="s3://%s/run-{{ item }}" % s3_bucket)}
    play = run_tasks([task])
    items = play.result["results"]
    assert len(items) == RUNS
    failures = [(item["item"], item.get("msg"), item.get("rc")) for item in items if item.get("failed")]
    assert failures == [], play.output[-3000:]
    assert all(item["changed"] and item["counts"]["uploaded"] == 20 for item in items)
    assert len(s3server.keys(s3_bucket)) == RUNS * 21  # 20 files and a manifest per run


def _async_uploads(server, bucket, number):
    """Work that uses obstore's async API, as the issue's failing runs did."""
    conn = s3.S3Connection(server.module_params(), concurrency=8)
    store = conn.store(bucket)

    async def upload_all():
        await asyncio.gather(*(s3.obstore.put_async(store, "async-%d/%d" % (number, i), b"x" * 100)
                               for i in range(30)))

    asyncio.run(upload_all())
    return {"run": number}


def test_async_obstore_aborts_cannot_turn_a_finished_run_into_a_failure(s3_servers):
    server = s3_servers("rclone")
    bucket = server.make_bucket("async-hazard-%d" % os.getpid())
    before = len(ansible_warnings.get_warning_messages())
    results = [s3.run_in_child(_async_uploads, server, bucket, number) for number in range(RUNS)]
    assert results == [{"run": number} for number in range(RUNS)]
    assert len(server.keys(bucket)) == RUNS * 30
    # How many children died after reporting (os._exit leaves no shutdown to abort in, so usually 0).
    aborted = [w for w in ansible_warnings.get_warning_messages()[before:] if "after it reported" in w]
    print("children that died after reporting: %d of %d" % (len(aborted), RUNS))
