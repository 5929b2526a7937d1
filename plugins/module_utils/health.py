# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The application's health endpoint, read the way Treazrisland answers it.

Treazrisland answers ``GET /health`` with HTTP 200 even when degraded, so the
JSON ``status`` decides; when it is not the wanted one, the reasons are read
from whichever form the release reports them in: ``dependencies`` (a map of
name to ``{"status": "up" | "down", "error": ...}``, the current backend),
``components`` (a list of ``{"component", "status", "error"}``, older
releases, which also answer 503) or ``problems`` (a list of strings).
"""

from __future__ import annotations

import json
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.treazrisland.ops.plugins.module_utils import runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

# Statuses a dependency reports when it is fine, in the forms health endpoints use.
UP = frozenset(("up", "ok", "pass", "healthy"))
BODY_LIMIT = 64 * 1024


def reasons(body):
    """Why a health document is not fine: one "name status: error" string per dependency that is not up."""
    if not isinstance(body, dict):
        return []
    found = []
    dependencies = body.get("dependencies")
    if isinstance(dependencies, dict):
        for name, state in dependencies.items():
            found += _dependency_reason(name, state)
    components = body.get("components")
    if isinstance(components, list):
        for state in components:
            if isinstance(state, dict):
                found += _dependency_reason(state.get("component") or state.get("name") or "?", state)
    problems = body.get("problems")
    if isinstance(problems, list):
        found += [str(problem) for problem in problems]
    return found


def _dependency_reason(name, state):
    if isinstance(state, dict):
        status = str(state.get("status", "?"))
        detail = state.get("error") or state.get("message") or state.get("output")
    else:
        status, detail = str(state), None
    if status.lower() in UP:
        return []
    return ["%s %s%s" % (name, status, ": %s" % detail if detail else "")]


def probe(url, timeout, validate_certs=True):
    """(http status or None, parsed JSON or None, a one-line account of the answer)."""
    try:
        answer = open_url(url, timeout=timeout, validate_certs=validate_certs, use_proxy=False)
        status = answer.getcode()
    except HTTPError as error:
        answer, status = error, error.code
    except (URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        return None, None, getattr(reason, "strerror", None) or str(reason)  # "Connection refused", not "[Errno 111] ..."
    try:
        raw = answer.read(BODY_LIMIT)
    finally:
        answer.close()
    try:
        body = json.loads(raw)
    except ValueError:
        return status, None, "HTTP %d, not JSON: %r" % (status, raw[:80].decode("utf-8", "replace"))
    state = body.get("status") if isinstance(body, dict) else None
    account = "HTTP %d, status %s" % (status, json.dumps(state))
    why = reasons(body)
    return status, body, account + ("; " + "; ".join(why) if why else "")


def wait_until_healthy(params, check_mode):
    """Ask the endpoint until it answers HTTP 200 with a wanted status, at most ``tries`` times."""
    del check_mode  # read-only
    if params["tries"] < 1:
        raise OpsError("tries must be 1 or more, not %d" % params["tries"])
    wanted = params["ok_status"]
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        status, body, account = probe(params["url"], params["timeout"], params["validate_certs"])
        healthy = status == 200 and isinstance(body, dict) and body.get("status") in wanted
        if healthy or attempts >= params["tries"]:
            break
        time.sleep(params["delay"])
    result = {
        "changed": False, "healthy": healthy, "url": params["url"], "http_status": status, "attempts": attempts,
        "elapsed": round(time.monotonic() - started, 1),
        "status": body.get("status") if isinstance(body, dict) else None,
        "reasons": [runner.mask(reason) for reason in reasons(body)],
        "dependencies": json.loads(runner.mask(json.dumps(body.get("dependencies")))) if isinstance(body, dict)
        else None,
    }
    if not healthy:
        raise OpsError("not healthy at %s after %d tries in %.0f s: %s" % (
            params["url"], attempts, result["elapsed"], runner.mask(account)), **result)
    result["msg"] = "healthy at %s (status %s)" % (params["url"], json.dumps(result["status"]))
    return result
