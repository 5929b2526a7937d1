# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Instant queries through Prometheus' HTTP API (``POST /api/v1/query``), standard library only.

The HTTP goes through one plain urllib opener per gate (``http_opener``), not ansible's open_url: that
builds a fresh TLS context for every request, about 300 ms on a busy two-core host, which would swamp
the latencies a gate measures and its sampling interval.

Two kinds of trouble are told apart, because a gate treats them differently: Prometheus refusing the
request (HTTP 400 or 422 for a typo or a wrong function, 401 or 403 for credentials; it will refuse it
every time, a configuration error) and Prometheus being unreachable or overloaded (it may answer next
time).
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import ssl
import urllib.error
import urllib.parse
import urllib.request

from ansible_collections.treazrisland.ops.plugins.module_utils import runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

BODY_LIMIT = 4 * 1024 * 1024
# Statuses with which Prometheus refuses a query itself (bad_data, execution): no retry helps.
REJECTED = (400, 422)
UNAUTHORIZED = (401, 403)


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer of its own: a probe measures the URL it was given, not where that points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def http_opener(validate_certs=True):
    """A urllib opener for one gate: no proxy (the targets are the deployment's own), one TLS context, no redirects."""
    # pylint: disable-next=protected-access
    context = ssl.create_default_context() if validate_certs else ssl._create_unverified_context()
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context),
                                       _KeepRedirects())


def basic_auth(username, password):
    pair = "%s:%s" % (username, password or "")
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def split_credentials(url):
    """(the URL without user:password@, headers with its Basic authorization or {}); urllib cannot take them in the URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    netloc = parts.hostname if ":" not in (parts.hostname or "") else "[%s]" % parts.hostname
    if parts.port:
        netloc += ":%d" % parts.port
    bare = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, {"Authorization": basic_auth(urllib.parse.unquote(parts.username),
                                              urllib.parse.unquote(parts.password or ""))}


def request(opener, url, timeout, data=None, headers=None):
    """(HTTP status, body up to BODY_LIMIT): an HTTP error status is an answer too; no answer raises a NO_ANSWER."""
    bare, auth = split_credentials(url)
    asked = urllib.request.Request(bare, data=data, headers=dict(headers or {}, **auth),
                                   method="POST" if data is not None else "GET")
    try:
        answer = opener.open(asked, timeout=timeout)
    except urllib.error.HTTPError as error:
        answer = error
    try:
        return answer.getcode(), answer.read(BODY_LIMIT)
    finally:
        answer.close()


# What urllib raises when nothing usable came back: refused, timed out, cut off, not HTTP, a mangled URL.
NO_ANSWER = (OSError, http.client.HTTPException, ValueError)


def reason_of(error):
    """'Connection refused', not the whole text of urllib's URLError around it."""
    reason = getattr(error, "reason", None) or error
    return getattr(reason, "strerror", None) or str(reason)


class Refused(OpsError):
    """Prometheus refused the query or the credentials; it will refuse them every time."""


class Unavailable(OpsError):
    """No answer from Prometheus this time (unreachable, timeout, 5xx, not Prometheus' JSON)."""


class Prometheus:
    """One Prometheus server; ``username``/``password`` for basic auth or ``token`` for a bearer token."""

    def __init__(self, url, username=None, password=None, token=None, timeout=10.0, opener=None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.opener = opener or http_opener()
        self.headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        self.secrets = [secret for secret in (password, token) if secret]
        if token:
            self.headers["Authorization"] = "Bearer " + token
        elif username:
            self.headers["Authorization"] = basic_auth(username, password)

    @property
    def shown_url(self):
        """The URL for messages, credentials in it masked."""
        return runner.mask(self.url)

    def query(self, promql):
        """The ``data`` of an instant query: ``{"resultType": ..., "result": ...}``."""
        try:
            status, raw = request(self.opener, self.url + "/api/v1/query", self.timeout,
                                  data=urllib.parse.urlencode({"query": promql}).encode("utf-8"), headers=self.headers)
        except NO_ANSWER as error:
            raise Unavailable("Prometheus at %s: %s" % (self.shown_url, self._mask(reason_of(error))))
        if status in UNAUTHORIZED:
            raise Refused("Prometheus at %s refused the credentials (HTTP %d): check prometheus_username and "
                          "prometheus_password, or prometheus_token" % (self.shown_url, status))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Unavailable("Prometheus at %s answered HTTP %d, not its JSON: %r" % (
                self.shown_url, status, self._mask(raw[:120].decode("utf-8", "replace"))))
        if body.get("status") != "success":
            why = "%s: %s" % (body.get("errorType", "error"), self._mask(body.get("error", "?")))
            if status in REJECTED:
                raise Refused("Prometheus at %s rejected the query (%s)" % (self.shown_url, why))
            raise Unavailable("Prometheus at %s answered HTTP %d (%s)" % (self.shown_url, status, why))
        return body.get("data") or {}

    def _mask(self, text):
        return runner.mask(str(text), self.secrets)


def single_value(data):
    """(value, None, False) from an instant query's data, or (None, why there is no value, empty).

    A scalar or a vector of one series gives its value. An empty vector, or a NaN (0/0 when there was no
    traffic, histogram_quantile over empty buckets) is ``empty``: there was nothing to measure. Several
    series are not empty but still no value. A range vector or a string cannot be judged at all
    (Refused).
    """
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        series = [{"value": result}]
    elif kind == "vector":
        series = result or []
    else:
        raise Refused("the query returns a %s, not one number: use an instant vector (for a range vector, "
                      "wrap it in rate(), avg_over_time() or the like)" % kind)
    if not series:
        return None, "no series", True
    if len(series) > 1:
        labels = ", ".join(_labels(item.get("metric") or {}) for item in series[:3])
        return None, "%d series (%s%s), not one: aggregate them (sum, max, ...)" % (
            len(series), labels, ", ..." if len(series) > 3 else ""), False
    value = float(series[0]["value"][1])
    if math.isnan(value):
        return None, "NaN (no data)", True
    return value, None, False


def _labels(metric):
    return "{%s}" % ",".join('%s="%s"' % item for item in sorted(metric.items()))
