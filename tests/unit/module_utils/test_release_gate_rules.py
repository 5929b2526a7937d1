"""module_utils.release_gate and prometheus.single_value: the parts that decide, without clock or network."""

from __future__ import annotations

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils import release_gate
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.prometheus import Refused, single_value, split_credentials
from ansible_collections.treazrisland.ops.plugins.module_utils.release_gate import (
    Check, CheckState, Margin, Threshold, planned_samples, summarize, validate)

ERROR_RATE = {"name": "canary error rate", "kind": "prometheus", "query": "sum(rate(x[1m]))", "max": 0.05}


def gate(checks, **top):
    params = {"interval": 1.0, "bake_time": 2.0, "failure_limit": 1, "prometheus_url": "http://127.0.0.1:9090",
              "checks": checks}
    params.update(top)
    return params


def error_of(params):
    with pytest.raises(OpsError) as caught:
        validate(params)
    return caught.value.msg


def test_bake_time_and_interval_plan_one_sample_at_the_start_and_one_per_interval():
    assert planned_samples(60, 10) == 7
    assert planned_samples(2, 1) == 3
    assert planned_samples(0, 10) == 1
    assert planned_samples(0.3, 0.1) == 4  # no float rounding loses the last one
    assert planned_samples(25, 10) == 3


def test_bad_interval_bake_time_and_failure_limit_are_one_error_naming_each():
    msg = error_of(gate([ERROR_RATE], interval=0, bake_time=-1, failure_limit=0))
    assert msg.startswith("release gate not started: ")
    assert "interval must be more than 0 seconds, not 0" in msg
    assert "bake_time must be 0 seconds or more, not -1" in msg
    assert "failure_limit must be 1 or more, not 0" in msg


def test_a_failure_limit_the_samples_cannot_reach_is_refused():
    msg = error_of(gate([ERROR_RATE], bake_time=20, interval=10, failure_limit=4))
    assert "failure_limit 4 can never be reached: bake_time 20 with interval 10 takes 3 samples" in msg
    assert validate(gate([ERROR_RATE], bake_time=20, interval=10, failure_limit=3))


@pytest.mark.parametrize("check, expected", [
    ({"name": "a", "kind": "prometheus", "query": "up"}, 'check "a": give min, max or both'),
    ({"name": "a", "kind": "prometheus", "query": "up", "min": 2, "max": 1}, "min 2 is above max 1"),
    ({"name": "a", "kind": "prometheus", "query": "up", "max": 1, "url": "http://127.0.0.1/"},
     "url not for kind prometheus"),
    ({"name": "a", "kind": "http", "url": "http://127.0.0.1/"}, "give at least one of min_success_rate"),
    ({"name": "a", "kind": "http", "url": "ftp://127.0.0.1/", "max_p95_ms": 1}, "url must be an http or https URL"),
    ({"name": "a", "kind": "http", "url": "http://127.0.0.1/", "min_success_rate": 95}, "between 0 and 1, not 95"),
    ({"name": "a", "kind": "http", "url": "http://127.0.0.1/", "max_p95_ms": 1, "requests": 0},
     "requests must be 1 or more"),
    ({"name": "a", "kind": "compare", "canary_query": "x", "baseline_url": "http://127.0.0.1/"}, "not both kinds"),
    ({"name": "a", "kind": "compare", "canary_query": "x"}, "(both of a pair)"),
    ({"name": "a", "kind": "compare", "canary_url": "http://127.0.0.1/a", "baseline_url": "http://127.0.0.1/b"},
     "measure must be one of success_rate, p50_ms, p95_ms, p99_ms with URLs, not None"),
    ({"name": "a", "kind": "compare", "canary_query": "x", "baseline_query": "y", "margin": -1},
     "margin must be 0 or more, not -1"),
    ({"name": "a", "kind": "compare", "canary_query": "x", "baseline_query": "y", "measure": "p95_ms"},
     "measure applies to URLs only"),
    ({"name": "a", "kind": "canary"}, "kind must be one of http, prometheus, compare, not canary"),
    ({"kind": "prometheus", "query": "up", "max": 1}, "check 1 has no name"),
])
def test_each_bad_check_is_named_with_its_problem(check, expected):
    assert expected in error_of(gate([check]))


def test_check_names_are_unique_and_queries_need_a_prometheus_url():
    assert 'check "canary error rate": the name is used twice' in error_of(gate([ERROR_RATE, ERROR_RATE]))
    msg = error_of(gate([ERROR_RATE], prometheus_url=None))
    assert msg == ('release gate not started: prometheus_url (http or https) is needed by "canary error rate", '
                   "not unset")
    http_only = {"name": "probe", "kind": "http", "url": "http://127.0.0.1/", "max_p95_ms": 100}
    assert [check.name for check in validate(gate([http_only], prometheus_url=None))] == ["probe"]


def test_thresholds_cross_only_beyond_their_bound():
    ceiling, floor = Threshold("value", "max", 0.05), Threshold("success_rate", "min", 0.95)
    assert not ceiling.crossed(0.05) and ceiling.crossed(0.0501)
    assert not floor.crossed(0.95) and floor.crossed(0.9)
    assert ceiling.describe(0.21) == "0.21 > max 0.05"
    assert floor.describe(0.8) == "success rate 0.8 < min 0.95"
    assert Threshold("p95_ms", "max", 100).describe(162.34) == "p95 162.3 ms > max 100 ms"


def test_margins_add_relative_and_absolute_parts_in_the_worse_direction():
    latency = Margin("higher", margin=5, relative_margin=0.2)
    assert latency.limit(100) == pytest.approx(125)
    assert latency.excess(125, 100) <= 0 < latency.excess(126, 100)
    assert latency.describe(240, 100) == "canary 240 > limit 125 (baseline 100 * 1.2 + 5)"
    errors = Margin("higher", margin=0.01)
    assert errors.excess(0.2, 0.0) > 0 and errors.excess(0.005, 0.0) <= 0
    assert errors.describe(0.2, 0.0) == "canary 0.2 > limit 0.01 (baseline 0 + 0.01)"
    success = Margin("lower", margin=0.02, relative_margin=0.1)
    assert success.limit(1.0) == pytest.approx(0.88)
    assert success.excess(0.9, 1.0) <= 0 < success.excess(0.8, 1.0)
    assert str(success) == "canary >= baseline * 0.9 - 0.02"


def test_compare_with_urls_takes_its_direction_from_the_measure():
    pair = {"name": "a", "kind": "compare", "canary_url": "http://127.0.0.1/a", "baseline_url": "http://127.0.0.1/b"}
    assert Check(dict(pair, measure="success_rate")).margin.worse == "lower"
    assert Check(dict(pair, measure="p95_ms")).margin.worse == "higher"


def test_failures_count_over_the_whole_bake_time_not_only_consecutive_ones():
    check = Check(ERROR_RATE)
    state = CheckState(check)
    for value in (0.21, 0.0, 0.23):
        state.record(check.judge_value(value))
    assert (state.samples, state.failures) == (3, 2)
    result = state.result(failure_limit=2)
    assert not result["passed"]
    assert result["last"] == {"value": 0.23} and result["worst"] == {"value": 0.23}
    assert [item["failed"] for item in result["values"]] == [True, False, True]
    assert state.message() == 'check "canary error rate": 0.23 > max 0.05 in 2 of 3 samples'
    assert state.result(failure_limit=3)["passed"]


def test_with_min_and_max_the_worst_value_is_the_one_furthest_beyond_either():
    check = Check({"name": "connections", "kind": "prometheus", "query": "x", "min": 1, "max": 10})
    state = CheckState(check)
    for value in (5, 12, 0):
        state.record(check.judge_value(value))
    assert state.result(failure_limit=3)["worst"] == {"value": 12}  # 2 above max is worse than 1 below min
    assert state.message() == 'check "connections": 12 > max 10 in 1 of 3 samples, 0 < min 1 in 1 of 3 samples'
    assert state.result(failure_limit=3)["passed"] and state.failures == 2


def test_the_values_kept_are_bounded_but_worst_covers_every_sample():
    check = Check(ERROR_RATE)
    state = CheckState(check)
    for index in range(release_gate.VALUES_KEPT + 5):
        state.record(check.judge_value(0.9 if index == 0 else 0.01))
    result = state.result(failure_limit=1)
    assert len(result["values"]) == release_gate.VALUES_KEPT
    assert result["worst"] == {"value": 0.9} and result["failures"] == 1


def test_a_sample_without_a_value_fails_and_says_why():
    state = CheckState(Check(ERROR_RATE))
    state.record(release_gate.Sample.missing({"value": None}, "query returned no series"))
    assert state.failures == 1
    assert state.message() == 'check "canary error rate": query returned no series in 1 of 1 samples'
    state.record(release_gate.Sample.skipped({"value": None}, "query returned no series (on_empty=pass)"))
    assert (state.samples, state.failures) == (2, 1)


def test_an_http_probe_is_summarized_as_success_rate_and_nearest_rank_percentiles():
    answers = [(200, 0.010, "")] * 7 + [(302, 0.020, ""), (500, 0.300, "HTTP 500"), (None, 0.001, "refused")]
    measured = summarize(answers)
    assert measured["requests"] == 10 and measured["success_rate"] == pytest.approx(0.8)
    assert (measured["p50_ms"], measured["p95_ms"], measured["p99_ms"]) == (10.0, 300.0, 300.0)
    assert measured["error"] == "refused"
    check = Check({"name": "probe", "kind": "http", "url": "http://127.0.0.1/", "min_success_rate": 0.95,
                   "max_p95_ms": 100})
    state = CheckState(check)
    state.record(check.judge_probe(measured))
    assert state.message() == ('check "probe": success rate 0.8 < min 0.95 in 1 of 1 samples, '
                               "p95 300 ms > max 100 ms in 1 of 1 samples")
    nothing = summarize([(None, 0.001, "Connection refused")] * 3)
    assert nothing["success_rate"] == 0 and nothing["p95_ms"] is None


def test_a_query_result_gives_one_value_or_says_why_not():
    assert single_value({"resultType": "scalar", "result": [1, "0.5"]}) == (0.5, None, False)
    assert single_value({"resultType": "vector", "result": [{"metric": {}, "value": [1, "3"]}]}) == (3.0, None, False)
    assert single_value({"resultType": "vector", "result": []}) == (None, "no series", True)
    assert single_value({"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}) == (
        None, "NaN (no data)", True)
    value, why, empty = single_value({"resultType": "vector", "result": [
        {"metric": {"job": "a"}, "value": [1, "1"]}, {"metric": {"job": "b"}, "value": [1, "2"]}]})
    assert value is None and not empty and why.startswith('2 series ({job="a"}, {job="b"}), not one')
    with pytest.raises(Refused, match="returns a matrix"):
        single_value({"resultType": "matrix", "result": []})


def test_credentials_in_a_url_become_a_basic_authorization_header():
    bare, headers = split_credentials("http://gate:p%40ss@127.0.0.1:9090/prometheus")
    assert bare == "http://127.0.0.1:9090/prometheus"
    assert headers == {"Authorization": "Basic Z2F0ZTpwQHNz"}  # gate:p@ss
    assert split_credentials("https://127.0.0.1/x?y=1") == ("https://127.0.0.1/x?y=1", {})


def test_numbers_in_messages_are_short():
    assert [release_gate.number(value) for value in (0.0, 0.2051234, 162.345, 1234.5, float("inf"), None)] == [
        "0", "0.2051", "162.3", "1234", "+Inf", "none"]
