"""module_utils.health: the health gate against a real HTTP server on 127.0.0.1 answering as Treazrisland does."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.health import reasons, wait_until_healthy

DEGRADED = {"status": "degraded", "dependencies": {
    "redis": {"status": "up"}, "prisma": {"status": "up"},
    "objectStorage": {"status": "down", "error": "connect ECONNREFUSED 10.0.0.5:9000"}}}


@pytest.fixture
def endpoint():
    """An HTTP server whose answers the test sets: a list of (status, body bytes), the last one repeated."""
    answers = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            status, body = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield answers, "http://127.0.0.1:%d/health" % server.server_address[1]
    server.shutdown()
    server.server_close()


def params(url, tries=3):
    return {"url": url, "ok_status": ["ok"], "tries": tries, "delay": 0.01, "timeout": 2, "validate_certs": True}


def test_a_degraded_answer_names_each_dependency_that_is_down(endpoint):
    answers, url = endpoint
    answers.append((200, json.dumps(DEGRADED).encode()))
    with pytest.raises(OpsError) as failed:
        wait_until_healthy(params(url), False)
    assert failed.value.msg.startswith("not healthy at %s after 3 tries in " % url)
    assert failed.value.msg.endswith(' s: HTTP 200, status "degraded"; objectStorage down: connect ECONNREFUSED '
                                     '10.0.0.5:9000')
    assert failed.value.details["reasons"] == ["objectStorage down: connect ECONNREFUSED 10.0.0.5:9000"]
    assert failed.value.details["attempts"] == 3 and failed.value.details["healthy"] is False


def test_healthy_after_a_degraded_answer(endpoint):
    answers, url = endpoint
    answers += [(200, json.dumps(DEGRADED).encode()), (200, b'{"status": "ok", "dependencies": {}}')]
    result = wait_until_healthy(params(url), False)
    assert result["healthy"] and result["attempts"] == 2 and result["status"] == "ok" and result["reasons"] == []


def test_older_releases_and_the_stand_in_formats(endpoint):
    answers, url = endpoint
    # Older Treazrisland: 503 with a components list.
    answers.append((503, json.dumps({"status": "fail", "components": [
        {"component": "database", "status": "fail", "error": "connect to postgresql://app:hunter2@db/x failed"},
        {"component": "metrics", "status": "pass"}]}).encode()))
    with pytest.raises(OpsError) as failed:
        wait_until_healthy(params(url, tries=1), False)
    assert failed.value.msg.endswith('HTTP 503, status "fail"; database fail: connect to postgresql://app:********@db/x '
                                     'failed')
    assert "hunter2" not in json.dumps(failed.value.details)
    assert reasons({"status": "degraded", "problems": ["missing configuration: JWT_SECRET"]}) == [
        "missing configuration: JWT_SECRET"]
    assert reasons({"dependencies": {"redis": "down", "prisma": "up"}}) == ["redis down"]


def test_no_answer_or_not_json(endpoint):
    answers, url = endpoint
    answers.append((200, b"<html>proxy error</html>"))
    with pytest.raises(OpsError) as failed:
        wait_until_healthy(params(url, tries=1), False)
    assert failed.value.msg.endswith("HTTP 200, not JSON: '<html>proxy error</html>'")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = "http://127.0.0.1:%d/health" % unused.getsockname()[1]
    with pytest.raises(OpsError) as failed:
        wait_until_healthy(params(closed, tries=2), False)
    assert failed.value.msg.startswith("not healthy at %s after 2 tries in " % closed)
    assert failed.value.msg.endswith(" s: Connection refused"), failed.value.msg
    assert failed.value.details["http_status"] is None


def test_tries_below_one_is_refused():
    with pytest.raises(OpsError, match="^tries must be 1 or more, not 0$"):
        wait_until_healthy(params("http://127.0.0.1:1/health", tries=0), False)
