"""treazrisland.ops.release_gate against a real Prometheus (Debian's 2.42) scraping four stand-in releases.

The stand-ins run on 127.0.0.1 (sandbox.standin.local.LocalApp) under a small bounded load each: a healthy
baseline, a healthy canary, a canary answering a fifth of its reads 500 and a canary answering every read
150 ms late (both through the stand-in's DRILL.json, their /health stays ok). Prometheus scrapes them every
second, and Debian's postgres exporter in front of a throwaway PostgreSQL cluster.

Most gates call the module's service function (run_gate) directly: the module is its argument spec and that
one call, and an ansible-playbook start costs seconds per task on the sandbox's busy cores. One test runs
the module through ansible-playbook: in check mode, a failed task's result, the password kept out of the output.
Prometheus' API asks for basic auth, so every query goes with the gate's credentials.
"""

from __future__ import annotations

import concurrent.futures
import re
import secrets
import time

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.release_gate import run_gate
from helpers import run_tasks
from sandbox.load import Load
from sandbox.prometheus import Prometheus, available
from sandbox.standin.local import LocalApp
from sandbox.standin.releases import build

AVAILABLE = available(exporter=True)
pytestmark = pytest.mark.skipif(AVAILABLE is not True, reason=str(AVAILABLE))

LOAD_DB = "release_gate_load"
HELD_CONNECTIONS = 3
RELEASES = {  # job: (version, DRILL.json or None)
    "baseline": ("1.5.0", None),
    "good": ("1.6.0", None),
    "erring": ("1.6.1", b'{"error_rate": 0.2}'),
    "slow": ("1.6.2", b'{"delay_ms": 150}'),
}
USER, PASSWORD = "gate", "pw-" + secrets.token_hex(8)  # Prometheus' API asks for them (basic auth)


def error_rate(job):
    return ('sum(rate(http_requests_total{job="%s",route="/version",status_code=~"5.."}[5s]))'
            ' / sum(rate(http_requests_total{job="%s",route="/version"}[5s]))' % (job, job))


def p95_ms(job):
    return ('1000 * histogram_quantile(0.95, sum by (le) '
            '(rate(http_request_duration_seconds_bucket{job="%s",route="/version"}[5s])))' % job)


@pytest.fixture(scope="module")
def site(tmp_path_factory, pg_a):
    """The four apps under load, Prometheus and the exporter, and idle connections held on LOAD_DB."""
    artifacts = tmp_path_factory.mktemp("gate-releases")
    if not pg_a.query("SELECT 1 FROM pg_database WHERE datname = %s", params=(LOAD_DB,)):
        pg_a.create_database(LOAD_DB)
    apps, loads, held, prom = {}, [], [], None
    try:
        for job, (version, drill) in RELEASES.items():
            apps[job] = LocalApp(build(version, str(artifacts), version_of="1.5.0",
                                       overrides={"backend/DRILL.json": drill} if drill else None))
        with concurrent.futures.ThreadPoolExecutor(len(apps)) as pool:  # each waits for its own /health
            started = [pool.submit(app.start) for app in apps.values()]
        for future in started:
            future.result()
        # sslmode: the throwaway cluster has no TLS, and the exporter's driver asks for it by default.
        # Reads only (no write ever comes round), about 10 a second per app, bounded.
        loads = [Load(app.url, workers=2, requests=900, rate=10, write_every=10 ** 9).start() for app in apps.values()]
        held = [pg_a.connect(LOAD_DB) for _number in range(HELD_CONNECTIONS)]
        # The exporter connects to another database, so that LOAD_DB's connections are only the ones held here.
        prom = Prometheus({job: app.metrics_url for job, app in apps.items()},
                          postgres_dsn=pg_a.dsn("postgres") + "?sslmode=disable", basic_auth=(USER, PASSWORD)).start()
        for job in apps:
            prom.wait_for('sum(rate(http_requests_total{job="%s",route="/version"}[5s]))' % job)
        prom.wait_for(error_rate("erring"))
        prom.wait_for(p95_ms("slow"))
        idle = 'sum(pg_stat_activity_count{datname="%s",state="idle"})' % LOAD_DB
        deadline = time.monotonic() + 20
        while prom.wait_for(idle) < HELD_CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.2)
        yield prom, apps
    finally:
        for load in loads:
            load.stop()
        for connection in held:
            connection.close()
        if prom:
            prom.stop()
        for app in apps.values():
            app.stop()  # also one whose start failed: nothing to do then


def gate(checks, **options):
    """run_gate with the module's defaults: (passed, result); a failed gate's result carries its msg."""
    params = dict(bake_time=2, interval=1, failure_limit=2, prometheus_url=None, prometheus_username=USER,
                  prometheus_password=PASSWORD, prometheus_token=None, timeout=10, validate_certs=True, checks=checks)
    params.update(options)
    try:
        return True, run_gate(params, False)
    except OpsError as error:
        return False, dict(error.details, msg=error.msg)


def test_an_erring_canary_fails_naming_the_check_and_its_error_rate(site):
    prom, _apps = site
    passed, result = gate([
        {"name": "canary error rate", "kind": "prometheus", "query": error_rate("erring"), "max": 0.05,
         "on_empty": "zero"},
        {"name": "canary p95", "kind": "prometheus", "query": p95_ms("erring"), "max": 120},
    ], prometheus_url=prom.url)
    assert not passed and result["passed"] is False
    assert result["failed_checks"] == ["canary error rate"]
    assert result["samples"] == 2 and result["planned_samples"] == 3  # stopped at the second failure
    assert re.search(r'check "canary error rate": 0\.[12][0-9]* > max 0.05 in 2 of 2 samples$', result["msg"]), \
        result["msg"]
    rate, p95 = result["checks"]
    assert rate["failures"] == 2 and 0.1 < rate["last"]["value"] < 0.35  # a fifth, give or take a 5 s window
    assert p95["passed"]  # its reads are quick, only wrong


def test_a_slow_canary_fails_its_p95_check_while_its_error_rate_passes(site):
    prom, _apps = site
    passed, result = gate([
        {"name": "canary error rate", "kind": "prometheus", "query": error_rate("slow"), "max": 0.05,
         "on_empty": "zero"},
        {"name": "canary p95", "kind": "prometheus", "query": p95_ms("slow"), "max": 120},
    ], prometheus_url=prom.url)
    assert not passed and result["failed_checks"] == ["canary p95"]
    rate, p95 = result["checks"]
    assert rate["passed"] and rate["worst"] == {"value": 0.0}  # no 5xx series at all: on_empty zero
    assert p95["worst"]["value"] > 150  # the 150 ms delay lands in the 100-250 ms bucket
    assert re.search(r'check "canary p95": [0-9.]+ > max 120 in 2 of 2 samples$', result["msg"]), result["msg"]


def test_a_healthy_canary_passes_every_kind_of_check(site):
    prom, apps = site
    passed, result = gate([
        {"name": "canary error rate", "kind": "prometheus", "query": error_rate("good"), "max": 0.05,
         "on_empty": "zero"},
        {"name": "canary p95", "kind": "prometheus", "query": p95_ms("good"), "max": 120},
        {"name": "error rate vs baseline", "kind": "compare", "canary_query": error_rate("good"),
         "baseline_query": error_rate("baseline"), "on_empty": "zero", "margin": 0.01},
        {"name": "p95 vs baseline", "kind": "compare", "canary_query": p95_ms("good"),
         "baseline_query": p95_ms("baseline"), "relative_margin": 0.2, "margin": 50},
        {"name": "probed median vs baseline", "kind": "compare", "canary_url": apps["good"].url + "/version",
         "baseline_url": apps["baseline"].url + "/version", "measure": "p50_ms", "requests": 5,
         "relative_margin": 0.2, "margin": 50},
        {"name": "version answers", "kind": "http", "url": apps["good"].url + "/version", "requests": 5,
         "min_success_rate": 1, "max_p95_ms": 500},
    ], prometheus_url=prom.url)  # failure_limit 2: one sample slowed by a busy machine is not a verdict
    assert passed, result["msg"]
    assert result["samples"] == 3 and result["failed_checks"] == []
    assert result["msg"].startswith("release gate passed: 6 checks, 3 samples over ")
    by_name = {check["name"]: check for check in result["checks"]}
    assert by_name["canary error rate"]["last"] == {"value": 0.0}
    assert by_name["canary p95"]["last"]["value"] > 0
    last = by_name["p95 vs baseline"]["last"]
    assert last["limit"] == pytest.approx(last["baseline"] * 1.2 + 50)
    probe = by_name["version answers"]["last"]
    assert probe["requests"] == 5 and probe["success_rate"] == 1.0 and probe["p95_ms"] > 0
    assert all(check["samples"] == 3 and check["failures"] <= 1 and check["passed"] for check in result["checks"])


def test_canary_vs_baseline_fails_a_worse_canary_and_says_by_how_much(site):
    prom, apps = site
    passed, result = gate([
        {"name": "error rate vs baseline", "kind": "compare", "canary_query": error_rate("erring"),
         "baseline_query": error_rate("baseline"), "on_empty": "zero", "margin": 0.01},
    ], prometheus_url=prom.url)
    assert not passed
    assert re.search(r'check "error rate vs baseline": canary 0\.[12][0-9]* > limit 0.01 \(baseline 0 \+ 0.01\) '
                     r"in 2 of 2 samples$", result["msg"]), result["msg"]
    passed, result = gate([
        {"name": "p95 vs baseline", "kind": "compare", "canary_query": p95_ms("slow"),
         "baseline_query": p95_ms("baseline"), "relative_margin": 0.2, "margin": 50},
        {"name": "probed p95 vs baseline", "kind": "compare", "canary_url": apps["slow"].url + "/version",
         "baseline_url": apps["baseline"].url + "/version", "measure": "p95_ms", "requests": 5,
         "relative_margin": 0.2, "margin": 50},
    ], prometheus_url=prom.url)
    assert not passed and result["failed_checks"] == ["p95 vs baseline", "probed p95 vs baseline"]
    for check in result["checks"]:
        last = check["last"]
        assert last["canary"] > 150 and last["limit"] == pytest.approx(last["baseline"] * 1.2 + 50, abs=0.2)
        assert " * 1.2 + 50) in 2 of 2 samples" in check["message"]


def test_an_http_check_probes_the_url_itself(site):
    _prom, apps = site
    # Every fifth read of the erring canary fails, counted over its load too: 20 requests see a failure
    # unless they all fall between them (about 1 in 100 per sample).
    passed, result = gate([
        {"name": "version answers", "kind": "http", "url": apps["erring"].url + "/version", "requests": 20,
         "min_success_rate": 0.99, "max_p95_ms": 250},
    ], failure_limit=1)
    assert not passed
    last = result["checks"][0]["last"]
    assert last["requests"] == 20 and 0.5 < last["success_rate"] < 0.99
    assert last["error"] == "HTTP 500"
    assert re.search(r'check "version answers": success rate 0\.[0-9]+ < min 0.99 in 1 of [123] samples$',
                     result["msg"]), result["msg"]  # and not its p95: its answers are quick


def test_database_load_through_the_postgres_exporter(site):
    prom, _apps = site
    idle = 'sum(pg_stat_activity_count{datname="%s",state="idle"})' % LOAD_DB
    passed, result = gate([{"name": "idle connections", "kind": "prometheus", "query": idle,
                            "max": HELD_CONNECTIONS - 1}], prometheus_url=prom.url)
    assert not passed
    assert result["msg"].endswith('check "idle connections": 3 > max 2 in 2 of 2 samples'), result["msg"]
    passed, result = gate([{"name": "idle connections", "kind": "prometheus", "query": idle, "min": 1,
                            "max": HELD_CONNECTIONS + 5}], bake_time=0, failure_limit=1, prometheus_url=prom.url)
    assert passed and result["checks"][0]["last"] == {"value": HELD_CONNECTIONS}
    assert result["checks"][0]["rule"] == "value >= 1, value <= 8"


def test_no_series_a_rejected_query_refused_credentials_and_an_absent_prometheus_each_say_so(site):
    prom, _apps = site
    missing = {"name": "missing metric", "kind": "prometheus", "query": "sum(rate(no_such_metric_total[5s]))",
               "max": 1}
    passed, result = gate([missing], prometheus_url=prom.url)
    assert not passed
    assert result["msg"].endswith('check "missing metric": query returned no series in 2 of 2 samples')
    assert result["checks"][0]["last"] == {"value": None, "note": "query returned no series"}
    passed, result = gate([dict(missing, on_empty="pass")], bake_time=0, failure_limit=1, prometheus_url=prom.url)
    assert passed and result["checks"][0]["last"]["note"] == "query returned no series (on_empty=pass)"
    passed, result = gate([{"name": "typo", "kind": "prometheus", "query": "sum(rate(http_requests_total[5s])",
                            "max": 1}], prometheus_url=prom.url)
    assert not passed and "samples" not in result  # stopped at once: no retry makes a typo work
    assert result["msg"].startswith('release gate stopped: check "typo": Prometheus at %s rejected the query '
                                    "(bad_data: " % prom.url), result["msg"]
    passed, result = gate([missing], bake_time=0, failure_limit=1, prometheus_url="http://127.0.0.1:1")
    assert not passed
    assert result["msg"].endswith(
        'check "missing metric": Prometheus at http://127.0.0.1:1: Connection refused in 1 of 1 samples')
    token = "token-" + secrets.token_hex(8)
    passed, result = gate([missing], prometheus_url=prom.url, prometheus_username=None, prometheus_password=None,
                          prometheus_token=token)
    assert not passed and "samples" not in result and token not in result["msg"]
    assert result["msg"].startswith('release gate stopped: check "missing metric": Prometheus at %s refused the '
                                    "credentials (HTTP 401)" % prom.url), result["msg"]


def test_through_ansible_in_check_mode_a_failed_task_and_no_password_in_the_output(site):
    """The module as operators run it, in check mode: it still samples, and fails the task with its result."""
    prom, _apps = site
    erring = {"name": "canary error rate", "kind": "prometheus", "query": error_rate("erring"), "max": 0.05,
              "on_empty": "zero"}
    run = run_tasks([{"name": "gate", "check_mode": True, "ignore_errors": True, "treazrisland.ops.release_gate": dict(
        bake_time=1, interval=1, prometheus_url=prom.url, prometheus_username=USER, prometheus_password=PASSWORD,
        checks=[erring])}])
    assert run.failed, run.output
    result = run.result
    assert result["passed"] is False and result["failed_checks"] == ["canary error rate"] and not result["changed"]
    assert result["samples"] == 1 and result["planned_samples"] == 2  # failure_limit 1 by default
    assert re.search(r'check "canary error rate": 0\.[0-9]+ > max 0.05 in 1 of 1 samples$', result["msg"]), run.output
    assert PASSWORD not in run.output
