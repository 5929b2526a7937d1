# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Announcing a deployment (guide 6.3, and its start) to a webhook: a JSON summary, or Slack's ``{"text": ...}``.

Webhook URLs carry their token in the path (Slack, Teams), the query (``?token=``) or the user part, so a
URL is only ever shown as its scheme, host and port; header values and every part of the URL are also
masked in any message built from an error. ``announce`` is the service of the ``deployment_notify`` module.
"""

from __future__ import annotations

import json
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import unquote, urlsplit
from ansible.module_utils.urls import open_url

from ansible_collections.treazrisland.ops.plugins.module_utils import runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

EVENTS = ("started", "succeeded", "failed", "rolled_back")
HEADLINES = {"started": "upgrade started", "succeeded": "upgrade succeeded", "failed": "upgrade failed",
             "rolled_back": "upgrade rolled back"}
# Summary keys in the order the Slack text lists them.
SUMMARY_KEYS = ("event", "application", "from_version", "to_version", "result", "duration_seconds",
                "restore_point_id", "run_id", "operator")
BODY_SNIPPET = 200


def safe_url(url):
    """The URL as it may be shown: scheme, host and port, with the rest (where tokens live) elided."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<the webhook URL>"
    shown = "%s://%s%s" % (parts.scheme or "?", host, ":%d" % port if port else "")
    return shown + ("/…" if parts.path.strip("/") or parts.query else "/")


def url_secrets(url):
    """Every piece of the URL that may be a token: the whole, its path, query, each segment, user part."""
    secrets = [url, unquote(url)]
    try:
        parts = urlsplit(url)
    except ValueError:
        return secrets
    secrets += [parts.path, parts.query, parts.fragment, parts.username or "", parts.password or ""]
    for piece in parts.path.split("/") + parts.query.replace("&", "=").split("="):
        if len(piece) >= 6:  # short words (api, hooks, v1) are not tokens; masking them would garble messages
            secrets += [piece, unquote(piece)]
    return [secret for secret in secrets if secret]


def summary(params):
    """The announcement's JSON document: the given summary keys (unset ones left out) and ``fields``."""
    document = {"event": params["event"], "application": params["application"]}
    for key, param in (("from_version", "from_version"), ("to_version", "to_version"), ("result", "result"),
                       ("duration_seconds", "duration"), ("restore_point_id", "restore_point_id"),
                       ("run_id", "run_id"), ("operator", "operator")):
        if params.get(param) is not None:
            document[key] = params[param]
    if params.get("fields"):
        document["fields"] = params["fields"]
    return document


def duration_text(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return "%d s" % seconds
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return "%d min %02d s" % (minutes, seconds)
    hours, minutes = divmod(minutes, 60)
    return "%d h %02d min" % (hours, minutes)


def slack_text(document):
    """One headline, then the details a person scanning the channel wants, one per line."""
    versions = ""
    if document.get("from_version") or document.get("to_version"):
        versions = ": %s → %s" % (document.get("from_version", "?"), document.get("to_version", "?"))
    lines = ["%s %s%s" % (document["application"], HEADLINES[document["event"]], versions)]
    if document.get("result"):
        lines.append(str(document["result"]))
    details = []
    if document.get("duration_seconds") is not None:
        details.append("took %s" % duration_text(document["duration_seconds"]))
    for key, label in (("run_id", "run"), ("restore_point_id", "restore point"), ("operator", "by")):
        if document.get(key):
            details.append("%s %s" % (label, document[key]))
    if details:
        lines.append(", ".join(details))
    for key, value in (document.get("fields") or {}).items():
        lines.append("%s: %s" % (key, value if isinstance(value, str) else json.dumps(value, sort_keys=True)))
    return "\n".join(lines)


def payload(params):
    document = summary(params)
    if params["format"] == "slack":
        return {"text": slack_text(document)}
    return document


def _retryable(status):
    # A 4xx other than 408/429 (wrong token, gone hook, bad payload) will not change on a second try.
    return status is None or status >= 500 or status in (408, 429)


def post(params, body, secrets):
    """(attempts, HTTP status) of the first successful POST; OpsError after the last failed one."""
    headers = {"Content-Type": "application/json"}
    headers.update(params.get("headers") or {})
    attempts, last = 0, None
    while True:
        attempts += 1
        status, why = None, None
        try:
            answer = open_url(params["url"], data=body, headers=headers, method="POST", timeout=params["timeout"],
                              validate_certs=params["validate_certs"], use_proxy=params["use_proxy"],
                              follow_redirects="none")
            try:
                answer.read(BODY_SNIPPET)
                return attempts, answer.getcode()
            finally:
                answer.close()
        except HTTPError as error:
            status = error.code
            try:
                text = error.read(BODY_SNIPPET).decode("utf-8", "replace").strip()
            except (OSError, ValueError):
                text = ""
            why = "HTTP %d %s%s" % (status, error.reason or "", (": " + text) if text else "")
        except (URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            why = getattr(reason, "strerror", None) or str(reason)
        last = runner.mask(" ".join(why.split()), secrets)
        if attempts > params["retries"] or not _retryable(status):
            raise OpsError("the %r announcement to %s was not delivered after %d attempt(s): %s (%s)" % (
                params["event"], safe_url(params["url"]), attempts, last,
                "check the webhook URL and its token" if status is not None and not _retryable(status)
                else "check that the webhook is reachable from this host"), attempts=attempts, http_status=status)
        time.sleep(params["delay"])


def announce(params, check_mode):
    """The deployment_notify module: send the summary, or in check mode say what would be sent."""
    if params["retries"] < 0:
        raise OpsError("retries must be 0 or more, not %d" % params["retries"])
    secrets = url_secrets(params["url"]) + [value for value in (params.get("headers") or {}).values() if value]
    document = payload(params)
    body = json.dumps(document, sort_keys=False).encode("utf-8")
    result = {"changed": True, "sent": False, "destination": safe_url(params["url"]), "payload": document,
              "attempts": 0, "http_status": None}
    if check_mode:
        result["msg"] = "would announce %s to %s" % (params["event"], result["destination"])
        return result
    attempts, status = post(params, body, secrets)
    result.update(sent=True, attempts=attempts, http_status=status,
                  msg="announced %s to %s" % (params["event"], result["destination"]))
    return result
