# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy's runtime API over its unix socket: a server's administrative state, its weight and its sessions.

One command per connection (the socket's non-interactive mode: HAProxy answers and closes).
``set_server`` is the service of the ``haproxy_server`` module.
"""

from __future__ import annotations

import csv
import socket
import time

from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

# srv_admin_state bits of "show servers state" (HAProxy's SRV_ADMF_*).
ADMIN_FORCED_MAINT = 0x01
ADMIN_INHERITED_MAINT = 0x02
ADMIN_CONFIG_MAINT = 0x04
ADMIN_FORCED_DRAIN = 0x08
ADMIN_INHERITED_DRAIN = 0x10
ADMIN_RESOLVED_MAINT = 0x20

# state option -> (runtime API word, predicate on the admin bits saying the server is already there)
STATES = {
    "enabled": ("ready", lambda admin: admin & (ADMIN_FORCED_MAINT | ADMIN_FORCED_DRAIN) == 0),
    "drained": ("drain", lambda admin: bool(admin & ADMIN_FORCED_DRAIN) and not admin & ADMIN_FORCED_MAINT),
    "disabled": ("maint", lambda admin: bool(admin & ADMIN_FORCED_MAINT)),
}


# The options every module of the runtime API takes (doc fragment treazrisland.ops.haproxy).
RUNTIME_API_ARGUMENT_SPEC = dict(
    socket=dict(type="path", default="/run/haproxy/admin.sock"),
    timeout=dict(type="float", default=5),
)


def command(path, line, timeout=5.0):
    """Send one runtime API command; return HAProxy's answer as text."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(line.encode("utf-8") + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as error:
        raise OpsError("HAProxy runtime API at %s: %s (is HAProxy running, with a 'stats socket %s level admin'?)"
                       % (path, error, path)) from error
    finally:
        sock.close()
    return b"".join(chunks).decode("utf-8", "replace")


def admin_word(admin):
    """The administrative state as a word: disabled (maintenance), drained or enabled."""
    if admin & (ADMIN_FORCED_MAINT | ADMIN_INHERITED_MAINT | ADMIN_CONFIG_MAINT | ADMIN_RESOLVED_MAINT):
        return "disabled"
    if admin & (ADMIN_FORCED_DRAIN | ADMIN_INHERITED_DRAIN):
        return "drained"
    return "enabled"


def server_state(path, backend, server, timeout=5.0):
    """{admin, operational, weight, initial_weight} of one server, from "show servers state <backend>"."""
    answer = command(path, "show servers state %s" % backend, timeout)
    lines = [line for line in answer.splitlines() if line.strip()]
    if not lines or not lines[0].strip().isdigit():
        raise OpsError("HAProxy has no backend %r: %s" % (backend, answer.strip() or "no answer"))
    header = None
    for line in lines[1:]:
        if line.startswith("#"):
            header = line.lstrip("# ").split()
            continue
        fields = dict(zip(header or [], line.split()))
        if fields.get("be_name") == backend and fields.get("srv_name") == server:
            return {"admin": int(fields["srv_admin_state"]), "operational": int(fields["srv_op_state"]),
                    "weight": int(fields["srv_uweight"]), "initial_weight": int(fields["srv_iweight"])}
    raise OpsError("HAProxy backend %r has no server %r" % (backend, server))


def stat_rows(path, timeout=5.0):
    """The rows of "show stat" as dicts by column name (pxname, svname, status, scur, qcur...)."""
    answer = command(path, "show stat", timeout)
    header = None
    for row in csv.reader(line for line in answer.splitlines() if line.strip()):
        if row and row[0].startswith("# "):
            header = [row[0][2:]] + row[1:]
        elif header:
            yield dict(zip(header, row))


def server_stats(path, backend, server, timeout=5.0):
    """The "show stat" row of one server (scur: current sessions, qcur: queued requests, status...)."""
    for row in stat_rows(path, timeout):
        if row.get("pxname") == backend and row.get("svname") == server:
            return row
    raise OpsError("HAProxy's statistics have no server %s/%s" % (backend, server))


def sessions(path, backend, server, timeout=5.0):
    """Current sessions plus queued requests of one server."""
    stats = server_stats(path, backend, server, timeout)
    return int(stats.get("scur") or 0) + int(stats.get("qcur") or 0)


def wait_for_no_sessions(path, backend, server, wait_timeout, interval=0.2, timeout=5.0):
    """Wait until the server has no session left; return (seconds waited, sessions left)."""
    started = time.monotonic()
    while True:
        left = sessions(path, backend, server, timeout)
        waited = time.monotonic() - started
        if left == 0 or waited >= wait_timeout:
            return waited, left
        time.sleep(interval)


def wanted_weight(weight, initial_weight):
    """The absolute weight (0-256) that weight ("50", "50%") means for a server configured with initial_weight.

    A percentage is of the configured weight; a non-zero one never rounds down to 0 (which would drain).
    """
    text = str(weight).strip()
    number = text[:-1] if text.endswith("%") else text
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if text.endswith("%") and 0 <= value <= 100:
        absolute = int(round(initial_weight * value / 100.0))
        return max(absolute, 1) if value > 0 and initial_weight > 0 else absolute
    if not text.endswith("%") and value.is_integer() and 0 <= value <= 256:
        return int(value)
    raise OpsError("weight must be 0 to 256 or a percentage of the configured weight (0%%-100%%), not %r" % weight)


def describe(state, weight):
    return "state: %s\nweight: %d\n" % (state, weight)


def set_server(params, check_mode):
    """The haproxy_server module: bring a server to params["state"] and params["weight"], idempotently.

    Neither given: only reads the server. The weight is set before the state, so a server enabled with a
    weight never takes a request at its former weight.
    """
    path, backend, server = params["socket"], params["backend"], params["server"]
    timeout = params["timeout"]
    wanted = params["state"]
    before = server_state(path, backend, server, timeout)
    weight = None if params.get("weight") is None else wanted_weight(params["weight"], before["initial_weight"])
    weight_changed = weight is not None and weight != before["weight"]
    state_changed = wanted is not None and not STATES[wanted][1](before["admin"])
    name = "%s/%s" % (backend, server)
    if weight_changed and not check_mode:
        answer = command(path, "set server %s weight %d" % (name, weight), timeout).strip()
        if answer:
            raise OpsError("HAProxy refused to set the weight of %s to %d: %s" % (name, weight, answer))
    if state_changed and not check_mode:
        word = STATES[wanted][0]
        answer = command(path, "set server %s state %s" % (name, word), timeout).strip()
        if answer:
            raise OpsError("HAProxy refused to set %s to %s: %s" % (name, word, answer))
    after = before if check_mode else server_state(path, backend, server, timeout)
    previous_state = admin_word(before["admin"])
    result = {"changed": weight_changed or state_changed, "backend": backend, "server": server,
              "previous_state": previous_state,
              "state": wanted if check_mode and wanted else admin_word(after["admin"]),
              "previous_weight": before["weight"],
              "weight": weight if check_mode and weight is not None else after["weight"],
              "initial_weight": before["initial_weight"],
              "waited": 0.0, "sessions": None}
    if result["changed"]:
        result["diff"] = {"before": describe(previous_state, before["weight"]),
                          "after": describe(result["state"], result["weight"]),
                          "before_header": name, "after_header": name}
    if wanted in ("drained", "disabled") and params["wait"] and not check_mode:
        waited, left = wait_for_no_sessions(path, backend, server, params["wait_timeout"], timeout=timeout)
        result.update(waited=round(waited, 1), sessions=left)
        if left:
            message = ("%s/%s still has %d session(s) after %d s of draining; it stays %s (raise wait_timeout, "
                       "or set wait=false to go on regardless)"
                       % (backend, server, left, params["wait_timeout"], admin_word(after["admin"])))
            raise OpsError(message, **result)
    elif not check_mode:
        result["sessions"] = sessions(path, backend, server, timeout)
    return result
