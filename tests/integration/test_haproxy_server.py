"""treazrisland.ops.haproxy_server against a real HAProxy (Debian's 2.6) and two local HTTP servers."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.request

import pytest

from helpers import run_module, run_tasks
from sandbox.haproxy import HAProxy, available

pytestmark = pytest.mark.skipif(not available(), reason="Debian's haproxy is not installed (sandbox/setup.sh)")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # pylint: disable=invalid-name
        if self.path.startswith("/slow"):
            time.sleep(float(self.path.split("=")[1]))
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # HAProxy's health checks hang up without reading the answer


@pytest.fixture(scope="module")
def lb():
    servers = [Server(("127.0.0.1", 0), Handler) for _number in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    # Configured weight 100, so that a percentage step such as 10% is a weight of 10.
    with HAProxy({"web%d" % number: ("127.0.0.1", server.server_address[1])
                  for number, server in enumerate(servers, 1)}, weight=100) as proxy:
        proxy.wait_until_up()
        yield proxy
    for server in servers:
        server.shutdown()
        server.server_close()


def set_state(lb, state, check=False, diff=False, **args):
    if state is not None:
        args["state"] = state
    return run_module("haproxy_server", dict(socket=lb.socket, backend="app", server="web1", **args), check=check,
                      diff=diff)


def weights(lb):
    """{server: (current weight, configured weight)} as HAProxy reports them."""
    lines = [line.split() for line in lb.command("show servers state app").splitlines()[1:] if line.strip()]
    header = lines[0][1:]
    rows = [dict(zip(header, line)) for line in lines[1:]]
    return {row["srv_name"]: (int(row["srv_uweight"]), int(row["srv_iweight"])) for row in rows}


def test_drain_and_enable_are_idempotent_and_check_mode_changes_nothing(lb):
    run = set_state(lb, "drained", check=True)
    assert not run.failed and run.result["changed"] and run.result["state"] == "drained", run.output
    assert lb.server_status()["web1"] == "UP"

    run = set_state(lb, "drained")
    assert not run.failed, run.output
    assert run.result["changed"] and run.result["previous_state"] == "enabled" and run.result["state"] == "drained"
    assert run.result["sessions"] == 0
    diff = run.result["diff"]
    assert (diff["before"], diff["after"]) == ("state: enabled\nweight: 100\n", "state: drained\nweight: 100\n")
    assert lb.server_status()["web1"] == "DRAIN"
    again = set_state(lb, "drained").result
    assert not again["changed"] and "diff" not in again

    run = set_state(lb, "enabled")
    assert run.result["changed"] and run.result["previous_state"] == "drained" and run.result["state"] == "enabled"
    assert lb.server_status()["web1"] == "UP"
    assert not set_state(lb, "enabled").result["changed"]

    assert set_state(lb, "disabled").result["state"] == "disabled"
    assert lb.server_status()["web1"] == "MAINT"
    assert set_state(lb, "enabled").result["previous_state"] == "disabled"


def test_drain_waits_for_the_requests_in_flight_and_fails_when_they_outlast_the_timeout(lb):
    def slow(seconds):
        threads = [threading.Thread(target=lambda: urllib.request.urlopen(lb.url + "/slow?s=%s" % seconds).read())
                   for _number in range(4)]  # round robin: two reach web1
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        return threads

    # Long enough for the module to start on a busy machine (it takes a few seconds there).
    threads = slow(10)
    run = set_state(lb, "drained", wait_timeout=20)
    assert not run.failed, run.output
    assert run.result["sessions"] == 0 and run.result["waited"] > 0.5, run.result
    for thread in threads:
        thread.join()
    set_state(lb, "enabled")

    threads = slow(12)
    run = set_state(lb, "drained", wait_timeout=1)
    assert run.failed
    assert "app/web1 still has " in run.msg and "session(s) after 1 s of draining; it stays drained" in run.msg
    for thread in threads:
        thread.join()
    assert set_state(lb, "enabled").result["changed"]


def test_an_unknown_server_or_socket_fails_with_its_name(lb):
    run = run_module("haproxy_server", dict(socket=lb.socket, backend="app", server="nope", state="drained"))
    assert run.failed and "HAProxy backend 'app' has no server 'nope'" in run.msg, run.output
    run = run_module("haproxy_server", dict(socket=lb.socket + ".missing", backend="app", server="web1",
                                            state="drained"))
    assert run.failed and "HAProxy runtime API at " in run.msg, run.output


def test_weight_steps_are_idempotent_with_diff_and_check_mode_and_enable_at_full_weight(lb):
    assert weights(lb) == {"web1": (100, 100), "web2": (100, 100)}
    server = dict(socket=lb.socket, backend="app", server="web1")

    def task(name, check=False, **args):
        return {"name": name, "treazrisland.ops.haproxy_server": dict(server, **args), "check_mode": check,
                "diff": True, "ignore_errors": True}

    # One play, so one ansible-playbook start: each result's weight and state are read back from HAProxy.
    run = run_tasks([
        task("check 10%", check=True, weight="10%"),
        task("10%", weight="10%"),
        task("10 again, as a number", weight="10"),
        task("drain", state="drained"),
        task("enable at 50%", state="enabled", weight="50%"),
        task("weight 0", weight="0"),
        task("enable at full weight", state="enabled", weight="100%"),
        task("full weight again", state="enabled", weight="100%"),
        task("read", check=False),
    ] + [task("wrong " + wrong, weight=wrong) for wrong in ("257", "120%", "-1", "half")])
    results = {record["task"]: record["result"] for record in run.results}
    failed = {record["task"] for record in run.results if record["status"] == "failed"}

    check = results["check 10%"]
    assert check["changed"] and check["weight"] == 10 and check["previous_weight"] == 100, run.output
    first = results["10%"]
    assert (first["previous_weight"], first["weight"], first["initial_weight"]) == (100, 10, 100), first
    assert first["diff"]["before"] == "state: enabled\nweight: 100\n", first
    assert first["diff"]["after"] == "state: enabled\nweight: 10\n", first
    assert not results["10 again, as a number"]["changed"] and "diff" not in results["10 again, as a number"]

    # Drained, then enabled at a step: the weight is set with the state, in one task.
    step = results["enable at 50%"]
    assert (step["previous_state"], step["state"], step["previous_weight"], step["weight"]) == (
        "drained", "enabled", 10, 50), step
    # A weight 0 takes the server out of the rotation, its state untouched.
    assert (results["weight 0"]["state"], results["weight 0"]["weight"]) == ("enabled", 0)
    full = results["enable at full weight"]
    assert full["changed"] and (full["state"], full["weight"]) == ("enabled", 100), full
    assert not results["full weight again"]["changed"]
    read = results["read"]
    assert not read["changed"] and (read["state"], read["weight"], read["initial_weight"]) == ("enabled", 100, 100)
    assert failed == {"wrong 257", "wrong 120%", "wrong -1", "wrong half"}, run.output
    for wrong in ("257", "120%", "-1", "half"):
        assert "weight must be 0 to 256 or a percentage of the configured weight" in results["wrong " + wrong]["msg"]
    assert weights(lb) == {"web1": (100, 100), "web2": (100, 100)}
    assert lb.server_status()["web1"] == "UP"
