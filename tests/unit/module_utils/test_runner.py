"""The subprocess runner: masking, streaming, and how failures are described."""

from __future__ import annotations

import io
import sys

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils import runner


def test_mask_hides_secrets_uri_passwords_and_keyword_passwords():
    text = ("connect postgresql://app:hunter2@db:5432/x failed; dsn host=db password='a b' user=app; "
            "token abc123 and s3://bucket/key stays")
    masked = runner.mask(text, ["abc123"])
    assert masked == ("connect postgresql://app:********@db:5432/x failed; dsn host=db password=******** "
                      "user=app; token ******** and s3://bucket/key stays")


def test_streams_stdout_into_a_sink_in_chunks():
    sink = io.BytesIO()
    size = 3 * runner.CHUNK_SIZE + 17
    result = runner.run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'x' * %d)" % size], sink=sink)
    assert result.ok and result.stdout is None
    assert sink.getvalue() == b"x" * size


def test_failure_sentence_carries_masked_stderr():
    result = runner.run([sys.executable, "-c",
                         "import sys; sys.stderr.write('FATAL: postgresql://u:pw@h/db s3cr3t'); sys.exit(3)"],
                        secrets=["s3cr3t"])
    assert not result.ok
    assert result.failure("dumping") == (
        "dumping failed: python%s exited with status 3: FATAL: postgresql://u:********@h/db ********"
        % sys.executable.rsplit("python", 1)[1])


def test_signal_and_timeout_are_named():
    result = runner.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    assert "was killed by signal 9 (SIGKILL)" in result.failure("x")
    result = runner.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert result.timed_out and "timed out" in result.failure("x")


def test_failing_sink_stops_the_command_and_propagates():
    class FullDisk:
        def write(self, data):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as raised:
        runner.run([sys.executable, "-c", "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536)"],
                   sink=FullDisk())
    assert raised.value.errno == 28


def test_missing_program_is_an_ops_error():
    from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
    with pytest.raises(OpsError) as raised:
        runner.run(["/nonexistent/pg_dump", "--version"])
    assert raised.value.msg == "cannot run /nonexistent/pg_dump: No such file or directory"
