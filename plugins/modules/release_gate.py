#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_gate
short_description: Watch a canary over a bake time and fail when its metrics cross their thresholds
version_added: 0.3.0
description:
  - The metrics gate of a gradual traffic shift (guide 6.2, "monitoring metrics (latency, error rates, database
    load)"), in the manner of Argo Rollouts and Flagger analyses and of Kayenta's canary-versus-baseline judgement.
  - Takes one sample of every check at the start and then every O(interval) seconds until O(bake_time) has passed
    (O(bake_time) 60 with O(interval) 10 is 7 samples). A sample that takes longer than O(interval) delays the
    next one; samples never overlap.
  - "Failures are counted per check over the whole bake time, not only consecutive ones. The gate stops and fails
    at the sample where one check has failed O(failure_limit) times, naming that check with its measured value
    against its threshold, for example V(check \"canary error rate\": 0.21 > max 0.05 in 2 of 3 samples). It
    passes when all samples were taken without that."
  - "Check kinds: V(http) probes a URL itself (O(checks[].requests) requests per sample) for its success rate
    (HTTP 2xx or 3xx, redirects not followed) and latency percentiles in milliseconds; V(prometheus) runs one instant query
    (C(/api/v1/query) of O(prometheus_url)) and holds its single value against O(checks[].min) and
    O(checks[].max); V(compare) measures the canary and the baseline alike (two queries, or two URLs probed in
    turn) and fails when the canary is worse than the baseline by more than its margins."
  - A query that returns no series, or NaN (for example a ratio with no traffic, or C(histogram_quantile) over empty
    buckets), has nothing to judge; O(checks[].on_empty) says what that means. A query returning several series
    is a failed sample (aggregate it). A query Prometheus rejects (a typo), or credentials it refuses, stops the gate at once. An unreachable
    Prometheus or URL is a failed sample, since a gate that cannot see must not pass.
  - Only reads, so it runs in check mode too, exactly as without it.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Only reads; it samples and judges in check mode exactly as without it.
  diff_mode:
    support: none
  platform:
    platforms: posix
    details: Runs where Prometheus and the probed URLs can be reached (the controller, as a rule).
options:
  checks:
    description:
      - The checks, each sampled every O(interval). Option names of one kind given to a check of another kind are
        an error.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the check, used in messages and results; unique.
        type: str
        required: true
      kind:
        description: V(http), V(prometheus) or V(compare).
        type: str
        required: true
        choices: [http, prometheus, compare]
      url:
        description: For V(http), the URL probed (C(GET)); credentials in it are masked in messages.
        type: str
      requests:
        description:
          - For V(http) and V(compare) with URLs, requests per sample and URL (sequential), default V(10).
          - Percentiles are nearest-rank over those requests; with 10, p95 and p99 are the slowest one.
        type: int
      min_success_rate:
        description: For V(http), the lowest share (0 to 1) of requests answered with HTTP 2xx or 3xx.
        type: float
      max_p50_ms:
        description: For V(http), the highest median latency in milliseconds.
        type: float
      max_p95_ms:
        description: For V(http), the highest 95th percentile latency in milliseconds.
        type: float
      max_p99_ms:
        description: For V(http), the highest 99th percentile latency in milliseconds.
        type: float
      query:
        description: For V(prometheus), the PromQL instant query; it must give one number (aggregate with C(sum) or C(max)).
        type: str
      min:
        description: For V(prometheus), the value must not be below this.
        type: float
      max:
        description: For V(prometheus), the value must not be above this.
        type: float
      on_empty:
        description:
          - For V(prometheus) and V(compare) with queries, what a query with no series (or NaN) means.
          - V(fail) (the default) counts the sample as failed, reported as V(query returned no series).
          - V(zero) takes the value as 0, for counters whose series only appear with their first event (the
            rate of HTTP 5xx answers before the first error).
          - V(pass) counts the sample as passed without a value.
        type: str
        choices: [fail, zero, pass]
      canary_query:
        description: For V(compare), the query measuring the canary (with O(checks[].baseline_query)).
        type: str
      baseline_query:
        description: For V(compare), the same query for the baseline.
        type: str
      canary_url:
        description: For V(compare), the canary's URL to probe (with O(checks[].baseline_url) and O(checks[].measure)).
        type: str
      baseline_url:
        description: For V(compare), the baseline's URL, probed in turn with the canary's.
        type: str
      measure:
        description: For V(compare) with URLs, which measure of the probes is compared.
        type: str
        choices: [success_rate, p50_ms, p95_ms, p99_ms]
      worse:
        description:
          - For V(compare) with queries, whether a V(higher) value (error rate, latency, the default) or a V(lower)
            one (success rate, throughput) is worse. With URLs it follows O(checks[].measure).
        type: str
        choices: [higher, lower]
      margin:
        description:
          - For V(compare), how much worse than the baseline the canary may be, in the measure's unit
            (V(0.01) for an error rate, V(5) for milliseconds). Default 0.
        type: float
      relative_margin:
        description:
          - For V(compare), how much worse as a share of the baseline (V(0.2) is 20 percent). Default 0.
          - With both margins the canary may reach baseline times 1 + O(checks[].relative_margin), plus
            O(checks[].margin), when higher is worse; when lower is worse it must stay at or above baseline times
            1 - O(checks[].relative_margin), minus O(checks[].margin).
        type: float
  bake_time:
    description: Seconds the checks are watched; V(0) takes one sample.
    type: float
    default: 60
  interval:
    description: Seconds between the starts of two samples; more than 0.
    type: float
    default: 10
  failure_limit:
    description:
      - Failed samples of one check (over the whole bake time, not only consecutive) that fail the gate; 1 or more,
        and no more than the samples the bake time takes.
    type: int
    default: 1
  prometheus_url:
    description:
      - Base URL of Prometheus (or of a server with its HTTP API, such as Thanos or VictoriaMetrics), needed by
        V(prometheus) checks and V(compare) checks with queries.
    type: str
  prometheus_username:
    description: User for HTTP basic authentication to Prometheus.
    type: str
  prometheus_password:
    description: Password for HTTP basic authentication to Prometheus.
    type: str
  prometheus_token:
    description: Bearer token for Prometheus (instead of basic authentication).
    type: str
  timeout:
    description: Seconds one query or one probe request may take.
    type: float
    default: 10
  validate_certs:
    description: Verify the certificates of C(https) URLs (Prometheus and probes).
    type: bool
    default: true
seealso:
  - module: treazrisland.ops.app_health
  - name: Prometheus HTTP API, instant queries
    description: The C(/api/v1/query) endpoint the V(prometheus) checks use.
    link: https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries
  - name: Argo Rollouts analysis
    description: The same idea (failure limit over measurements) for Kubernetes.
    link: https://argo-rollouts.readthedocs.io/en/stable/features/analysis/
"""

EXAMPLES = r"""
- name: Bake the canary for 5 minutes against its metrics and the baseline
  treazrisland.ops.release_gate:
    prometheus_url: http://prometheus.internal:9090
    bake_time: 300
    interval: 30
    failure_limit: 2
    checks:
      - name: canary error rate
        kind: prometheus
        query: >-
          sum(rate(http_requests_total{instance="app1:9464",status_code=~"5.."}[1m]))
          / sum(rate(http_requests_total{instance="app1:9464"}[1m]))
        max: 0.05
      - name: canary p95 latency
        kind: prometheus
        query: >-
          1000 * histogram_quantile(0.95,
          sum by (le) (rate(http_request_duration_seconds_bucket{instance="app1:9464"}[1m])))
        max: 250
      - name: database active connections
        kind: prometheus
        query: sum(pg_stat_activity_count{datname="treazrisland",state="active"})
        max: 40
      - name: error rate vs baseline
        kind: compare
        canary_query: sum(rate(http_requests_total{instance="app1:9464",status_code=~"5.."}[1m]))
        baseline_query: sum(rate(http_requests_total{instance="app2:9464",status_code=~"5.."}[1m]))
        on_empty: zero
        margin: 0.01
      - name: ROM list answers
        kind: http
        url: http://app1:4000/roms
        requests: 5
        min_success_rate: 0.99
        max_p95_ms: 300

- name: p95 of the canary no more than baseline * 1.2 + 5 ms, probed directly
  treazrisland.ops.release_gate:
    bake_time: 60
    interval: 10
    checks:
      - name: p95 vs baseline
        kind: compare
        canary_url: http://app1:4000/version
        baseline_url: http://app2:4000/version
        measure: p95_ms
        relative_margin: 0.2
        margin: 5
"""

RETURN = r"""
passed:
  description: Whether the gate passed (a failed gate fails the task, with this false).
  returned: always
  type: bool
  sample: false
samples:
  description: Samples taken (fewer than planned when the gate failed early).
  returned: always
  type: int
  sample: 3
planned_samples:
  description: Samples the bake time takes.
  returned: always
  type: int
  sample: 7
elapsed:
  description: Seconds the gate took.
  returned: always
  type: float
  sample: 20.1
failed_checks:
  description: Names of the checks that reached O(failure_limit).
  returned: always
  type: list
  elements: str
  sample: ["canary error rate"]
checks:
  description: Each check's record.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name.
      type: str
      sample: canary error rate
    kind:
      description: Its kind.
      type: str
      sample: prometheus
    rule:
      description: What it holds the values to.
      type: str
      sample: value <= 0.05
    passed:
      description: Whether it stayed under O(failure_limit).
      type: bool
      sample: false
    samples:
      description: Samples of it taken.
      type: int
      sample: 3
    failures:
      description: Its failed samples.
      type: int
      sample: 2
    last:
      description:
        - The last sample's values. V(prometheus) C(value); V(http) C(success_rate), C(p50_ms), C(p95_ms), C(p99_ms),
          C(requests) (and C(error), the last failed request's account); V(compare) C(canary), C(baseline), C(limit).
          C(note) says why a value is missing.
      type: dict
      sample: {"value": 0.21}
    worst:
      description: The worst value seen of each measure (for V(compare), the sample where the canary was furthest beyond its limit).
      type: dict
      sample: {"value": 0.23}
    values:
      description: The values of each sample, with C(failed); the last 20 samples only.
      type: list
      elements: dict
      sample: [{"value": 0.0, "failed": false}, {"value": 0.21, "failed": true}]
    message:
      description: Its crossings and in how many samples, null when none.
      type: str
      sample: 'check "canary error rate": 0.21 > max 0.05 in 2 of 3 samples'
msg:
  description: On failure, the samples taken and the message of each failed check; on success, a summary.
  returned: always
  type: str
  sample: 'release gate failed after 3 of 7 samples (20 s): check "canary error rate": 0.21 > max 0.05 in 2 of 3 samples'
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module
from ansible_collections.treazrisland.ops.plugins.module_utils.release_gate import run_gate


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                kind=dict(type="str", required=True, choices=["http", "prometheus", "compare"]),
                url=dict(type="str"),
                requests=dict(type="int"),
                min_success_rate=dict(type="float"),
                max_p50_ms=dict(type="float"),
                max_p95_ms=dict(type="float"),
                max_p99_ms=dict(type="float"),
                query=dict(type="str"),
                min=dict(type="float"),
                max=dict(type="float"),
                on_empty=dict(type="str", choices=["fail", "zero", "pass"]),
                canary_query=dict(type="str"),
                baseline_query=dict(type="str"),
                canary_url=dict(type="str"),
                baseline_url=dict(type="str"),
                measure=dict(type="str", choices=["success_rate", "p50_ms", "p95_ms", "p99_ms"]),
                worse=dict(type="str", choices=["higher", "lower"]),
                margin=dict(type="float"),
                relative_margin=dict(type="float"),
            )),
            bake_time=dict(type="float", default=60),
            interval=dict(type="float", default=10),
            failure_limit=dict(type="int", default=1),
            prometheus_url=dict(type="str"),
            prometheus_username=dict(type="str"),
            prometheus_password=dict(type="str", no_log=True),
            prometheus_token=dict(type="str", no_log=True),
            timeout=dict(type="float", default=10),
            validate_certs=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("prometheus_token", "prometheus_username")],
        supports_check_mode=True,
    )
    run_module(module, run_gate)


if __name__ == "__main__":
    main()
