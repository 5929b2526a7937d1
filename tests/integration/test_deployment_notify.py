"""treazrisland.ops.deployment_notify against a webhook receiver on 127.0.0.1 (sandbox/receiver.py) recording what it gets."""

from __future__ import annotations

import pytest

from helpers import run_tasks
from sandbox.receiver import Receiver
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.notify import announce, safe_url

TOKEN = "T000SECRET/B111SECRET/XyZ2token3secret"

SUMMARY = dict(event="succeeded", from_version="1.4.0", to_version="1.5.0", result="3 hosts on 1.5.0, healthy",
               duration=754.2, restore_point_id="20261203T145512Z", run_id="20261203T145300Z-1a2b",
               operator="alice", fields={"hosts": ["app1", "app2", "app3"], "batch": 1})


def params(url, **extra):
    """The module's parameters with their defaults, as AnsibleModule would pass them to the service."""
    values = dict(url=url, event="started", application="Treazrisland", from_version=None, to_version=None,
                  result=None, duration=None, restore_point_id=None, run_id=None, operator=None, fields={}, headers={},
                  format="json", timeout=5, retries=2, delay=0.05, validate_certs=True, use_proxy=False)
    values.update(extra)
    return values


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


def test_the_module_posts_the_exact_summary_and_fails_clearly_without_the_token(receiver):
    """In a play: the JSON received, the header sent; a receiver answering 500 gets 3 attempts, the token stays hidden."""
    with Receiver(statuses=[500], body=b"hook %s broke" % TOKEN.encode()) as broken:
        good = dict(url="%s/hooks/%s" % (receiver.url, TOKEN), headers={"Authorization": "Bearer sekrit-42"},
                    use_proxy=False, **SUMMARY)
        bad = dict(url="%s/hooks/%s?token=q-%s" % (broken.url, TOKEN, TOKEN), event="failed", retries=2, delay=0.1,
                   use_proxy=False)
        tasks = [{"treazrisland.ops.deployment_notify": good},
                 {"treazrisland.ops.deployment_notify": bad, "ignore_errors": True}]
        run = run_tasks(tasks, verbosity=1)
        assert run.returncode == 0, run.output
        assert len(broken.requests) == 3
    assert [record["status"] for record in run.results] == ["ok", "failed"]
    sent, failed = [record["result"] for record in run.results]
    assert [request["path"] for request in receiver.requests] == ["/hooks/" + TOKEN]
    request = receiver.requests[0]
    assert request["json"] == {
        "event": "succeeded", "application": "Treazrisland", "from_version": "1.4.0", "to_version": "1.5.0",
        "result": "3 hosts on 1.5.0, healthy", "duration_seconds": 754.2, "restore_point_id": "20261203T145512Z",
        "run_id": "20261203T145300Z-1a2b", "operator": "alice", "fields": {"hosts": ["app1", "app2", "app3"], "batch": 1}}
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer sekrit-42"
    assert sent["sent"] and sent["attempts"] == 1 and sent["http_status"] == 200 and sent["payload"] == request["json"]
    assert failed["attempts"] == 3 and failed["http_status"] == 500
    assert failed["msg"] == ("the 'failed' announcement to http://127.0.0.1:%d/… was not delivered after 3 attempt(s): "
                             "HTTP 500 Internal Server Error: hook ********/********/******** broke (check that the webhook is reachable "
                             "from this host)" % broken.port), failed["msg"]
    for secret in ("SECRET", "token3secret", "sekrit-42"):
        assert secret not in run.output


def test_slack_form_and_duration_text(receiver):
    result = announce(params(receiver.url + "/services/" + TOKEN, format="slack", **SUMMARY), False)
    assert result["sent"] and receiver.requests[0]["json"] == {"text": (
        "Treazrisland upgrade succeeded: 1.4.0 → 1.5.0\n"
        "3 hosts on 1.5.0, healthy\n"
        "took 12 min 34 s, run 20261203T145300Z-1a2b, restore point 20261203T145512Z, by alice\n"
        'hosts: ["app1", "app2", "app3"]\n'
        "batch: 1")}
    announce(params(receiver.url + "/x", format="slack", event="rolled_back"), False)
    assert receiver.requests[1]["json"] == {"text": "Treazrisland upgrade rolled back"}


def test_check_mode_sends_nothing_and_reports_the_payload(receiver):
    result = announce(params(receiver.url + "/hooks/" + TOKEN, event="started", from_version="1.4.0", to_version="1.5.0"),
                      True)
    assert receiver.requests == [] and not result["sent"] and result["changed"]
    assert result["payload"] == {"event": "started", "application": "Treazrisland", "from_version": "1.4.0",
                                 "to_version": "1.5.0"}
    assert result["destination"] == "http://127.0.0.1:%d/…" % receiver.port


def test_retries_until_accepted_and_a_4xx_is_not_retried():
    with Receiver(statuses=[503, 429, 204]) as flaky:
        result = announce(params(flaky.url + "/hooks/" + TOKEN, retries=2), False)
        assert result["attempts"] == 3 and result["http_status"] == 204 and len(flaky.requests) == 3
    with Receiver(statuses=[404], body=b"no_service") as gone:
        with pytest.raises(OpsError) as caught:
            announce(params(gone.url + "/hooks/" + TOKEN, retries=5), False)
        assert len(gone.requests) == 1
    assert caught.value.msg == ("the 'started' announcement to http://127.0.0.1:%d/… was not delivered after 1 "
                                "attempt(s): HTTP 404 Not Found: no_service (check the webhook URL and its token)"
                                % gone.port)
    with pytest.raises(OpsError) as caught:
        announce(params("http://127.0.0.1:%d/hooks/%s" % (gone.port, TOKEN), retries=0), False)
    assert "not delivered after 1 attempt(s): Connection refused (check that the webhook is reachable" in caught.value.msg


def test_the_shown_url_never_carries_a_token():
    assert safe_url("https://user:pw@hooks.example.com:8443/services/T0/B1/abc?token=x") == "https://hooks.example.com:8443/…"
    assert safe_url("https://hooks.example.com") == "https://hooks.example.com/"
