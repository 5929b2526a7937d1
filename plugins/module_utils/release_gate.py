# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release gate: named checks sampled every interval over a bake time (guide 6.2).

A check is one of three kinds:

- ``http``: the gate probes a URL itself, N requests per sample: success rate (2xx/3xx) and latency
  percentiles in milliseconds.
- ``prometheus``: one instant query whose single value is held against ``min``/``max``.
- ``compare``: the same measure of the canary and of the baseline (two queries, or two URLs probed
  alike); the canary fails when it is worse than the baseline by more than its margins.

Failures are counted per check over the whole bake time (not only consecutive ones): a canary that is
bad every other minute is a bad canary. The gate stops at the sample where a check reaches
``failure_limit``, and passes when every planned sample was taken without that.

The parts that decide (validation, thresholds, margins, counting) are pure; ``run_gate`` adds the clock
and the network.
"""

from __future__ import annotations

import math
import time
from collections import deque

from ansible.module_utils.six.moves.urllib.parse import urlsplit

from ansible_collections.treazrisland.ops.plugins.module_utils import prometheus, runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

KINDS = ("http", "prometheus", "compare")
HTTP_MEASURES = ("success_rate", "p50_ms", "p95_ms", "p99_ms")
PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
ON_EMPTY = ("fail", "zero", "pass")
WORSE = ("higher", "lower")
DEFAULT_REQUESTS = 10
# Each check returns at most this many samples (the last ones); last and worst cover them all.
VALUES_KEPT = 20

HTTP_THRESHOLDS = (("min_success_rate", "success_rate", "min"), ("max_p50_ms", "p50_ms", "max"),
                   ("max_p95_ms", "p95_ms", "max"), ("max_p99_ms", "p99_ms", "max"))
# Which check options each kind takes; an option of another kind is a mistake worth saying.
KIND_OPTIONS = {
    "http": {"url", "requests"} | {option for option, _measure, _bound in HTTP_THRESHOLDS},
    "prometheus": {"query", "min", "max", "on_empty"},
    "compare": {"canary_query", "baseline_query", "canary_url", "baseline_url", "requests", "measure", "worse",
                "margin", "relative_margin", "on_empty"},
}
CHECK_OPTIONS = {"name", "kind"} | set().union(*KIND_OPTIONS.values())


def number(value):
    """A value as messages show it: 4 significant digits, no exponent for big latencies."""
    if value is None:
        return "none"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if abs(value) >= 1000:
        return "%.0f" % value
    return "%.4g" % value


def _finite(value):
    """A value for the returned JSON: an infinity (a histogram's +Inf bucket) as a string."""
    if value is not None and math.isinf(value):
        return number(value)
    return value


class Threshold:
    """One bound on one measure: ``max`` (crossed above it) or ``min`` (crossed below it)."""

    def __init__(self, measure, bound, limit):
        self.measure, self.bound, self.limit = measure, bound, float(limit)

    def excess(self, value):
        """How far beyond the bound the value is; positive when crossed."""
        return value - self.limit if self.bound == "max" else self.limit - value

    def crossed(self, value):
        return self.excess(value) > 0

    def describe(self, value):
        """'0.21 > max 0.05', 'p95 162.3 ms > max 100 ms', 'success rate 0.8 < min 0.95'."""
        label, unit = "", ""
        if self.measure.endswith("_ms"):
            label, unit = self.measure[:-3] + " ", " ms"
        elif self.measure != "value":
            label = self.measure.replace("_", " ") + " "
        return "%s%s%s %s %s %s%s" % (label, number(value), unit, ">" if self.bound == "max" else "<", self.bound,
                                      number(self.limit), unit)

    def __str__(self):
        return "%s %s %s" % (self.measure, "<=" if self.bound == "max" else ">=", number(self.limit))


class Margin:
    """How much worse than the baseline a canary may be: ``baseline * (1 +- relative) +- absolute``."""

    def __init__(self, worse="higher", margin=0.0, relative_margin=0.0):
        self.worse, self.margin, self.relative = worse, float(margin or 0), float(relative_margin or 0)

    def limit(self, baseline):
        if self.worse == "higher":
            return baseline * (1 + self.relative) + self.margin
        return baseline * (1 - self.relative) - self.margin

    def excess(self, canary, baseline):
        """How far beyond the limit the canary is; positive when it is worse by more than the margins."""
        limit = self.limit(baseline)
        return canary - limit if self.worse == "higher" else limit - canary

    def describe(self, canary, baseline):
        sign = "+" if self.worse == "higher" else "-"
        formula = "baseline %s" % number(baseline)
        if self.relative:
            formula += " * %s" % number(1 + self.relative if self.worse == "higher" else 1 - self.relative)
        if self.margin:
            formula += " %s %s" % (sign, number(self.margin))
        return "canary %s %s limit %s (%s)" % (number(canary), ">" if self.worse == "higher" else "<",
                                               number(self.limit(baseline)), formula)

    def __str__(self):
        formula = "baseline"
        if self.relative:
            formula += " * %s" % number(1 + self.relative if self.worse == "higher" else 1 - self.relative)
        if self.margin:
            formula += " %s %s" % ("+" if self.worse == "higher" else "-", number(self.margin))
        return "canary %s %s" % ("<=" if self.worse == "higher" else ">=", formula)


class Check:
    """One validated check: its kind, what it measures and its thresholds or margin."""

    def __init__(self, spec):
        self.name = spec["name"]
        self.kind = spec["kind"]
        self.url = spec.get("url")
        self.query = spec.get("query")
        self.requests = spec.get("requests") or DEFAULT_REQUESTS
        self.on_empty = spec.get("on_empty") or "fail"
        self.canary_query, self.baseline_query = spec.get("canary_query"), spec.get("baseline_query")
        self.canary_url, self.baseline_url = spec.get("canary_url"), spec.get("baseline_url")
        self.measure = spec.get("measure")
        self.thresholds = []
        self.margin = None
        if self.kind == "http":
            self.thresholds = [Threshold(measure, bound, spec[option]) for option, measure, bound in HTTP_THRESHOLDS
                               if spec.get(option) is not None]
        elif self.kind == "prometheus":
            self.thresholds = [Threshold("value", bound, spec[bound]) for bound in ("min", "max")
                               if spec.get(bound) is not None]
        else:
            worse = spec.get("worse") or ("lower" if self.measure == "success_rate" else "higher")
            self.margin = Margin(worse, spec.get("margin"), spec.get("relative_margin"))

    @property
    def uses_prometheus(self):
        return self.kind == "prometheus" or (self.kind == "compare" and self.canary_query is not None)

    def describe(self):
        """The check's rule, for the result: "value <= 0.05", "canary <= baseline * 1.2 + 5"."""
        if self.margin:
            return str(self.margin)
        return ", ".join(str(threshold) for threshold in self.thresholds)

    # one sample, judged -----------------------------------------------------
    def judge_value(self, value):
        """A Sample of a prometheus check from its value."""
        sample = Sample({"value": _finite(value)})
        sample.score("value", max(threshold.excess(value) for threshold in self.thresholds), {"value": _finite(value)})
        for threshold in self.thresholds:
            if threshold.crossed(value):
                sample.cross("%s %s" % (threshold.bound, threshold.limit), threshold.describe(value),
                             threshold.excess(value))
        return sample

    def judge_probe(self, measured):
        """A Sample of an http check from one probe's measures (success_rate, p50_ms, ...; None: no answer)."""
        sample = Sample(dict(measured))
        for measure in HTTP_MEASURES:
            if measured.get(measure) is not None:
                value = measured[measure]
                sample.score(measure, -value if measure == "success_rate" else value, {measure: value})
        for threshold in self.thresholds:
            value = measured.get(threshold.measure)
            if value is None:
                sample.cross("no " + threshold.measure, "no %s: %s" % (
                    threshold.measure.replace("_", " "), measured.get("error") or "no answer"))
            elif threshold.crossed(value):
                sample.cross("%s %s" % (threshold.measure, threshold.bound), threshold.describe(value),
                             threshold.excess(value))
        return sample

    def judge_pair(self, canary, baseline):
        """A Sample of a compare check from the canary's and the baseline's values."""
        limit = self.margin.limit(baseline)
        values = {"canary": _finite(canary), "baseline": _finite(baseline), "limit": _finite(limit)}
        sample = Sample(values)
        excess = self.margin.excess(canary, baseline)
        if math.isnan(excess):  # inf - inf: both in the +Inf bucket
            excess = 0.0
        sample.score("canary", excess, values)
        if excess > 0:
            sample.cross("margin", self.margin.describe(canary, baseline), excess)
        return sample


class Sample:
    """What one sample of one check found: its values and the rules it crossed."""

    def __init__(self, values):
        self.values = values
        self.crossings = []  # (key, description, excess): key groups the same failure across samples
        self.scores = {}  # group -> (how bad, values to show as the worst of that group)

    @classmethod
    def missing(cls, values, why):
        """No value to judge: a failed sample."""
        sample = cls(dict(values, note=why))
        sample.cross(why, why)
        return sample

    @classmethod
    def skipped(cls, values, why):
        """No value, and the check says that is fine (on_empty=pass)."""
        return cls(dict(values, note=why))

    def cross(self, key, description, excess=None):
        self.crossings.append((key, description, excess))

    def score(self, group, badness, shown):
        self.scores[group] = (badness, shown)

    @property
    def failed(self):
        return bool(self.crossings)


class CheckState:
    """A check's record over the bake time: samples, failed samples, last and worst values."""

    def __init__(self, check):
        self.check = check
        self.samples = 0
        self.failures = 0
        self.values = deque(maxlen=VALUES_KEPT)
        self.last = None
        self.worst = {}  # group -> (badness, shown)
        self.crossed = {}  # key -> [count, worst excess, description], in first-seen order

    def record(self, sample):
        self.samples += 1
        self.failures += 1 if sample.failed else 0
        self.last = sample.values
        self.values.append(dict(sample.values, failed=sample.failed))
        for group, (badness, shown) in sample.scores.items():
            if group not in self.worst or badness > self.worst[group][0]:
                self.worst[group] = (badness, shown)
        for key, description, excess in sample.crossings:
            seen = self.crossed.setdefault(key, [0, None, description])
            seen[0] += 1
            if excess is not None and (seen[1] is None or excess > seen[1]):
                seen[1], seen[2] = excess, description

    def message(self):
        """'check "name": 0.21 > max 0.05 in 2 of 3 samples', one clause per rule crossed."""
        clauses = ["%s in %d of %d samples" % (description, count, self.samples)
                   for count, _excess, description in self.crossed.values()]
        return 'check "%s": %s' % (self.check.name, ", ".join(clauses))

    def result(self, failure_limit):
        worst = {}
        for _badness, shown in self.worst.values():
            worst.update(shown)
        failed = self.failures >= failure_limit
        return {"name": self.check.name, "kind": self.check.kind, "rule": self.check.describe(),
                "passed": not failed, "samples": self.samples, "failures": self.failures,
                "last": self.last, "worst": worst or None, "values": list(self.values),
                "message": self.message() if self.failures else None}


# validation -----------------------------------------------------------------
def planned_samples(bake_time, interval):
    """One sample at the start and one every interval until bake_time: 60 s every 10 s is 7 samples."""
    return int(bake_time / interval + 1e-9) + 1


def validate(params):
    """The checks, validated; every problem found goes into one OpsError."""
    problems = []
    interval, bake_time, limit = params.get("interval"), params.get("bake_time"), params.get("failure_limit")
    if interval is None or interval <= 0:
        problems.append("interval must be more than 0 seconds, not %s" % interval)
    if bake_time is None or bake_time < 0:
        problems.append("bake_time must be 0 seconds or more, not %s" % bake_time)
    if limit is None or limit < 1:
        problems.append("failure_limit must be 1 or more, not %s" % limit)
    if not problems:
        samples = planned_samples(bake_time, interval)
        if limit > samples:
            problems.append("failure_limit %d can never be reached: bake_time %s with interval %s takes %d samples"
                            % (limit, number(bake_time), number(interval), samples))
    specs = params.get("checks") or []
    if not specs:
        problems.append("checks is empty: give at least one check")
    seen = set()
    for position, spec in enumerate(specs, 1):
        name = spec.get("name")
        label = 'check "%s"' % name if name else "check %d" % position
        if not name:
            problems.append("%s has no name" % label)
        elif name in seen:
            problems.append("%s: the name is used twice" % label)
        seen.add(name)
        problems += ["%s: %s" % (label, problem) for problem in _check_problems(spec)]
    if params.get("prometheus_token") and params.get("prometheus_username"):
        problems.append("prometheus_token and prometheus_username exclude each other")
    if problems:
        raise OpsError("release gate not started: " + "; ".join(problems))
    checks = [Check(spec) for spec in specs]
    if any(check.uses_prometheus for check in checks):
        url = params.get("prometheus_url")
        if not url or urlsplit(url).scheme not in ("http", "https"):
            names = ", ".join('"%s"' % check.name for check in checks if check.uses_prometheus)
            raise OpsError("release gate not started: prometheus_url (http or https) is needed by %s, not %s" % (
                names, runner.mask(url) if url else "unset"))
    return checks


def _check_problems(spec):
    kind = spec.get("kind")
    if kind not in KINDS:
        return ["kind must be one of %s, not %s" % (", ".join(KINDS), kind)]
    given = {key for key, value in spec.items() if value is not None}
    unknown = sorted(given - CHECK_OPTIONS)
    foreign = sorted((given & CHECK_OPTIONS) - KIND_OPTIONS[kind] - {"name", "kind"})
    problems = ["unknown option%s %s" % ("s" if len(unknown) > 1 else "", ", ".join(unknown))] if unknown else []
    if foreign:
        problems.append("%s not for kind %s" % (", ".join(foreign), kind))
    if spec.get("requests") is not None and spec["requests"] < 1:
        problems.append("requests must be 1 or more, not %s" % spec["requests"])
    if spec.get("on_empty") is not None and spec["on_empty"] not in ON_EMPTY:
        problems.append("on_empty must be one of %s, not %s" % (", ".join(ON_EMPTY), spec["on_empty"]))
    if kind == "http":
        problems += _url_problems(spec, "url")
        thresholds = [option for option, _measure, _bound in HTTP_THRESHOLDS if spec.get(option) is not None]
        if not thresholds:
            problems.append("give at least one of %s" % ", ".join(option for option, _m, _b in HTTP_THRESHOLDS))
        rate = spec.get("min_success_rate")
        if rate is not None and not 0 <= rate <= 1:
            problems.append("min_success_rate must be between 0 and 1, not %s" % rate)
        problems += ["%s must be 0 or more, not %s" % (option, spec[option]) for option in thresholds
                     if option != "min_success_rate" and spec[option] < 0]
    elif kind == "prometheus":
        if not spec.get("query"):
            problems.append("query is required")
        if spec.get("min") is None and spec.get("max") is None:
            problems.append("give min, max or both")
        elif spec.get("min") is not None and spec.get("max") is not None and spec["min"] > spec["max"]:
            problems.append("min %s is above max %s" % (number(spec["min"]), number(spec["max"])))
    else:
        problems += _compare_problems(spec)
    return problems


def _compare_problems(spec):
    problems = []
    queries = [spec.get(key) is not None for key in ("canary_query", "baseline_query")]
    urls = [spec.get(key) is not None for key in ("canary_url", "baseline_url")]
    if any(queries) and any(urls):
        return ["give canary_query and baseline_query, or canary_url and baseline_url, not both kinds"]
    if not all(queries) and not all(urls):
        return ["give canary_query and baseline_query, or canary_url and baseline_url (both of a pair)"]
    if all(urls):
        problems += _url_problems(spec, "canary_url") + _url_problems(spec, "baseline_url")
        if spec.get("measure") not in HTTP_MEASURES:
            choices = ", ".join(HTTP_MEASURES)
            problems.append("measure must be one of %s with URLs, not %s" % (choices, spec.get("measure")))
        problems += ["%s applies to queries only (the measure decides what is worse)" % option
                     for option in ("worse", "on_empty") if spec.get(option) is not None]
    else:
        problems += ["%s applies to URLs only" % option for option in ("measure", "requests")
                     if spec.get(option) is not None]
        if spec.get("worse") is not None and spec["worse"] not in WORSE:
            problems.append("worse must be higher or lower, not %s" % spec["worse"])
    problems += ["%s must be 0 or more, not %s" % (option, spec[option]) for option in ("margin", "relative_margin")
                 if spec.get(option) is not None and spec[option] < 0]
    if spec.get("worse") == "lower" and (spec.get("relative_margin") or 0) > 1:
        problems.append("relative_margin above 1 would let a canary fall below zero")
    return problems


def _url_problems(spec, option):
    url = spec.get(option)
    if not url:
        return ["%s is required" % option]
    if urlsplit(url).scheme not in ("http", "https"):
        return ["%s must be an http or https URL, not %s" % (option, runner.mask(url))]
    return []


# measuring --------------------------------------------------------------------
def percentile(values, fraction):
    """Nearest rank: the smallest value at least fraction of the values are at or below."""
    ordered = sorted(values)
    return ordered[max(0, int(math.ceil(fraction * len(ordered))) - 1)]


def summarize(answers):
    """Measures of one probe from its answers: [(HTTP status or None, seconds, account)].

    Success is HTTP 2xx or 3xx. Latencies count every request that got an HTTP answer; a refused or
    timed-out request counts against the success rate only.
    """
    statuses = [status for status, _seconds, _account in answers]
    latencies = [seconds * 1000 for status, seconds, _account in answers if status is not None]
    measured = {"requests": len(answers),
                "success_rate": sum(1 for status in statuses if status is not None and 200 <= status < 400)
                / float(len(answers))}
    for measure, fraction in PERCENTILES.items():
        measured[measure] = round(percentile(latencies, fraction), 1) if latencies else None
    errors = [account for status, _seconds, account in answers if status is None or status >= 400]
    if errors:
        measured["error"] = runner.mask(errors[-1])
    return measured


def _ask(opener, url, timeout):
    """(HTTP status or None, seconds to the whole answer, a short account for messages)."""
    began = time.monotonic()
    try:
        status, _body = prometheus.request(opener, url, timeout)
    except prometheus.NO_ANSWER as error:
        return None, time.monotonic() - began, prometheus.reason_of(error)
    return status, time.monotonic() - began, "HTTP %d" % status


def probe(opener, urls, requests, timeout):
    """Measures of each URL, requests each; several URLs are asked in turn so they see the same moments."""
    answers = [[] for _url in urls]
    for _round in range(requests):
        for index, url in enumerate(urls):
            answers[index].append(_ask(opener, url, timeout))
    return [summarize(found) for found in answers]


def _query(client, check, promql):
    """(value, None) or (None, Sample for the missing value) of one query under the check's on_empty."""
    try:
        value, why, empty = prometheus.single_value(client.query(promql))
    except prometheus.Unavailable as error:
        return None, error.msg
    except prometheus.Refused as error:
        raise OpsError('release gate stopped: check "%s": %s; query: %s' % (check.name, error.msg, promql))
    if value is None and empty and check.on_empty == "zero":
        return 0.0, None
    if value is None:
        return None, "query returned %s" % why if empty else why
    return value, None


def measure(check, client, opener, timeout):
    """One sample of one check."""
    if check.kind == "http":
        measured = probe(opener, [check.url], check.requests, timeout)[0]
        return check.judge_probe(measured)
    if check.kind == "prometheus":
        value, why = _query(client, check, check.query)
        if why is None:
            return check.judge_value(value)
        if check.on_empty == "pass" and why.startswith("query returned"):
            return Sample.skipped({"value": None}, why + " (on_empty=pass)")
        return Sample.missing({"value": None}, why)
    if check.canary_url:
        canary, baseline = probe(opener, [check.canary_url, check.baseline_url], check.requests, timeout)
        values = {"canary": canary[check.measure], "baseline": baseline[check.measure]}
        for side, measured in (("canary", canary), ("baseline", baseline)):
            if measured[check.measure] is None:
                return Sample.missing(values, "no %s from the %s: %s" % (
                    check.measure.replace("_", " "), side, measured.get("error") or "no answer"))
        return check.judge_pair(values["canary"], values["baseline"])
    found = {}
    for side, promql in (("canary", check.canary_query), ("baseline", check.baseline_query)):
        found[side] = _query(client, check, promql)
    values = {"canary": found["canary"][0], "baseline": found["baseline"][0]}
    for side in ("canary", "baseline"):
        why = found[side][1]
        if why is not None:
            why = "%s %s" % (side, why)
            if check.on_empty == "pass" and "query returned" in why:
                return Sample.skipped(values, why + " (on_empty=pass)")
            return Sample.missing(values, why)
    return check.judge_pair(values["canary"], values["baseline"])


# the gate ---------------------------------------------------------------------
def run_gate(params, check_mode):
    """Sample every check every interval over bake_time; fail at the first check with failure_limit failures."""
    del check_mode  # the gate only reads: it runs the same in check mode
    checks = validate(params)
    opener = prometheus.http_opener(params["validate_certs"])
    client = None
    if any(check.uses_prometheus for check in checks):
        client = prometheus.Prometheus(params["prometheus_url"], params.get("prometheus_username"),
                                       params.get("prometheus_password"), params.get("prometheus_token"),
                                       params["timeout"], opener)
    interval, limit = float(params["interval"]), params["failure_limit"]
    planned = planned_samples(params["bake_time"], interval)
    states = [CheckState(check) for check in checks]
    started = time.monotonic()
    taken = 0
    failed = []
    while taken < planned and not failed:
        pause = started + taken * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        for state in states:
            state.record(measure(state.check, client, opener, params["timeout"]))
        taken += 1
        failed = [state for state in states if state.failures >= limit]
    elapsed = round(time.monotonic() - started, 1)
    result = {"changed": False, "passed": not failed, "samples": taken, "planned_samples": planned,
              "elapsed": elapsed, "checks": [state.result(limit) for state in states],
              "failed_checks": [state.check.name for state in failed]}
    if failed:
        raise OpsError("release gate failed after %d of %d samples (%s s): %s" % (
            taken, planned, number(elapsed), "; ".join(state.message() for state in failed)), **result)
    result["msg"] = "release gate passed: %d check%s, %d samples over %s s" % (
        len(states), "" if len(states) == 1 else "s", taken, number(elapsed))
    return result
