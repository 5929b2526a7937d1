"""The maintenance role (guide 3.2 and 6.3) against a real HAProxy in front of a real stand-in app and its database.

Each kind is run through the role, as the playbooks include it, and judged by what a client sees: a write refused
with 503 and Retry-After and no row written, reads still served (or, with scope all, only /health).
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.error
import urllib.request

import pytest

from helpers import run_tasks
from sandbox.haproxy import HAProxy, available
from sandbox.standin.local import LocalApp
from sandbox.standin.releases import build

pytestmark = pytest.mark.skipif(not available(), reason="Debian's haproxy is not installed (sandbox/setup.sh)")

DATABASE = "maintenance_window"
TOKEN = "tok-9f2c7e51d0a4-never-shown"
PASSWORD = "url-pass-4417"


@pytest.fixture(scope="module")
def app(pg_a, tmp_path_factory):
    pg_a.create_database(DATABASE)
    pg_a.execute('CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL UNIQUE)', DATABASE)
    artifact = build("1.5.0", str(tmp_path_factory.mktemp("releases")))
    with LocalApp(artifact, {"DATABASE_URL": pg_a.dsn(DATABASE)}) as local:
        yield local


@pytest.fixture(scope="module")
def lb(app):
    with HAProxy({"app1": ("127.0.0.1", app.port)}) as proxy:
        proxy.wait_until_up()
        yield proxy


def request(url, method="GET", email=None):
    """(status, Retry-After header) of one request; a POST writes a user."""
    data = json.dumps({"email": email}).encode() if email else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=10) as answer:
            return answer.status, answer.headers.get("Retry-After")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After")


def users(pg_a, email):
    return pg_a.query('SELECT count(*) FROM "User" WHERE email = %s', DATABASE, (email,))[0][0]


def role(entry, check=False, **role_vars):
    """One import of the maintenance role's entry point (import: a check_mode set here reaches its tasks)."""
    task = {"name": "maintenance %s" % entry,
            "ansible.builtin.import_role": {"name": "treazrisland.ops.maintenance", "tasks_from": entry},
            "vars": role_vars}
    return dict(task, check_mode=True) if check else task


def probe(name, url, method="GET", email=None):
    """A client's request in the middle of the play (each ansible-playbook run costs seconds: one per test)."""
    task = {"name": name, "ansible.builtin.uri": {"url": url, "method": method, "status_code": [200, 201, 503]}}
    if email:
        task["ansible.builtin.uri"].update(body={"email": email}, body_format="json")
    return task


def seen(run, name):
    """(status, Retry-After) the probe named name got."""
    (result,) = [record["result"] for record in run.results if record["task"] == name]
    return result["status"], result.get("retry_after")


def changes(run, task_name):
    """changed of each result of the role's task named task_name, in order."""
    return [record["result"].get("changed") for record in run.results if record["task"] == task_name]


HAPROXY_ON = "Let HAProxy refuse the requests the window refuses"
HAPROXY_OFF = "Let HAProxy pass every request again"


def test_haproxy_answers_the_window_itself_without_a_reload(lb, pg_a):
    window = dict(treazrisland_maintenance_kind="haproxy", treazrisland_haproxy_socket=lb.socket,
                  treazrisland_haproxy_maintenance_map=lb.maintenance_map)
    persisted = dict(window, treazrisland_haproxy_maintenance_persist=True)
    run = run_tasks([
        role("on", check=True, **window),
        probe("write after check mode", lb.url + "/users", "POST", "check@example.org"),
        role("on", **window), role("on", **window),
        probe("write in the window", lb.url + "/users", "POST", "during@example.org"),
        probe("read in the window", lb.url + "/version"),
        # scope all, kept in the map file too: an HAProxy reload would keep the window
        role("on", treazrisland_maintenance_scope="all", **persisted),
        {"name": "map file", "ansible.builtin.slurp": {"src": lb.maintenance_map}},
        probe("read in the window for all", lb.url + "/version"),
        probe("health in the window for all", lb.url + "/health"),
        role("off", **persisted), role("off", **window),
        probe("write after the window", lb.url + "/users", "POST", "after@example.org"),
    ], diff=True)
    assert run.returncode == 0, run.output
    assert changes(run, HAPROXY_ON) == [True, True, False, True] and changes(run, HAPROXY_OFF) == [True, False]
    assert seen(run, "write after check mode") == (201, None)
    assert "-maintenance: off\n+maintenance: writes" in run.output
    assert seen(run, "write in the window") == (503, "30") and users(pg_a, "during@example.org") == 0
    assert seen(run, "read in the window") == (200, None)
    assert seen(run, "read in the window for all") == (503, "30")
    assert seen(run, "health in the window for all") == (200, None)
    assert [r["result"]["content"] for r in run.results if r["task"] == "map file"] == ["dHJlYXpyaXNsYW5kIGFsbAo="]
    assert seen(run, "write after the window") == (201, None) and users(pg_a, "after@example.org") == 1
    assert request(lb.url + "/version") == (200, None) and os.path.getsize(lb.maintenance_map) == 0
    assert lb.command("show map %s" % lb.maintenance_map).strip() == ""


def test_flag_file_makes_the_app_refuse_by_itself(app, pg_a):
    window = dict(treazrisland_maintenance_kind="flag_file", treazrisland_base_dir=app.base)
    run = run_tasks([
        role("on", **window),
        probe("write in the window", app.url + "/users", "POST", "flag@example.org"),
        probe("read in the window", app.url + "/version"),
        role("on", treazrisland_maintenance_scope="all", **window),
        probe("read in the window for all", app.url + "/version"),
        role("off", **window), role("off", **window),
        probe("write after the window", app.url + "/users", "POST", "flag@example.org"),
    ])
    assert run.returncode == 0, run.output
    assert seen(run, "write in the window") == (503, "30")
    assert seen(run, "read in the window") == (200, None)
    assert seen(run, "read in the window for all") == (503, "30")
    assert changes(run, "Write the maintenance flag on this host") == [True, True]
    assert changes(run, "Remove the maintenance flag on this host") == [True, False]
    assert seen(run, "write after the window") == (201, None) and users(pg_a, "flag@example.org") == 1


class Receiver(http.server.ThreadingHTTPServer):
    """A maintenance API: records each request, answers 204, or 403 to a DELETE."""

    daemon_threads = True

    def __init__(self):
        self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(handler):  # pylint: disable=no-self-argument
                body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
                self.seen.append((handler.command, handler.path, dict(handler.headers), body))
                handler.send_response(403 if handler.command == "DELETE" else 204)
                handler.send_header("Content-Length", "0")
                handler.end_headers()

            do_POST = do_DELETE = _record

            def log_message(self, *args):  # pylint: disable=arguments-differ
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_http_asks_the_api_with_a_token_that_never_shows():
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = "http://ops:%s@127.0.0.1:%d/admin/maintenance" % (PASSWORD, receiver.server_address[1])
        window = dict(treazrisland_maintenance_kind="http", treazrisland_maintenance_http_url=url,
                      treazrisland_maintenance_http_token=TOKEN, treazrisland_maintenance_http_off_method="DELETE")
        run = run_tasks([role("on", **window), role("off", **window)], verbosity=1)
    finally:
        receiver.shutdown()
        receiver.server_close()
    (method, path, headers, body), (off_method, _path, _headers, _body) = receiver.seen
    assert (method, path, off_method) == ("POST", "/admin/maintenance", "DELETE")
    assert json.loads(body) == {"maintenance": True, "scope": "writes"}
    assert headers["Authorization"] == "Bearer " + TOKEN
    assert changes(run, "Send the request to the maintenance API") == [True, False]
    # the refused DELETE fails the role, saying so with the URL's password masked
    assert run.returncode != 0 and run.failed
    assert "did not close the maintenance window: it answered 403" in run.msg, run.output
    assert "http://********@127.0.0.1:" in run.msg
    recorded = json.dumps(run.results)
    for secret in (TOKEN, PASSWORD):
        assert secret not in run.output and secret not in recorded


def test_command_runs_the_hooks_with_the_scope(tmp_path):
    log = tmp_path / "hooks.log"
    window = dict(treazrisland_maintenance_kind="command",
                  treazrisland_maintenance_command=["sh", "-c", 'echo "on $TREAZRISLAND_MAINTENANCE_SCOPE" >> %s' % log],
                  treazrisland_maintenance_off_command=["sh", "-c", 'echo off >> %s' % log])
    unclosable = {**window, "treazrisland_maintenance_off_command": []}
    run = run_tasks([role("on", treazrisland_maintenance_scope="all", **window), role("off", **window),
                     role("on", **unclosable)])
    assert log.read_text() == "on all\noff\n"
    assert run.failed and "needs treazrisland_maintenance_command" in run.msg, run.output
