# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Blue/green traffic in HAProxy: one map entry names the color the frontend's use_backend rules send users to.

Switching is one runtime API command (``set map``, or ``add map`` when the entry is missing), so every app host's
traffic moves at once and needs no reload. Before it, the target backend's servers must be UP in HAProxy's own
health checks, so a switch never sends users to a color that is not serving. ``switch`` is the service of the
``haproxy_switch`` module.
"""

from __future__ import annotations

import csv
import os
import time

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.haproxy import command

CONFIG_HINT = ("its frontend needs use_backend rules that look this map up (docs/upgrade.md, blue_green), and the "
               "file must exist when HAProxy starts")


def map_values(path, map_name, key, timeout=5.0):
    """Values of key in the map HAProxy loaded from map_name, in order (several if someone added twice)."""
    answer = command(path, "show map %s" % map_name, timeout)
    if answer.startswith("Unknown map identifier"):
        raise OpsError("HAProxy has no map %s loaded: %s" % (map_name, CONFIG_HINT))
    values = []
    for line in answer.splitlines():
        fields = line.split(None, 2)  # "<entry address> <key> <value>"
        if len(fields) == 3 and fields[0].startswith("0x") and fields[1] == key:
            values.append(fields[2].strip())
    return values


def backend_servers(path, backend, timeout=5.0):
    """{server: status} of a backend from "show stat" (UP, DOWN, MAINT, DRAIN, "UP 1/2"...)."""
    answer = command(path, "show stat", timeout)
    header, servers = None, {}
    for row in csv.reader(line for line in answer.splitlines() if line.strip()):
        if row and row[0].startswith("# "):
            header = [row[0][2:]] + row[1:]
            continue
        fields = dict(zip(header or [], row))
        if fields.get("pxname") == backend and fields.get("svname") not in ("FRONTEND", "BACKEND"):
            servers[fields["svname"]] = fields.get("status", "")
    if not servers:
        raise OpsError("HAProxy has no backend %r with servers: the map's value must name a configured backend" % backend)
    return servers


def serving(servers, require):
    """Whether the backend can take the traffic: every server not in maintenance UP ("all"), or one ("any")."""
    up = [name for name, status in servers.items() if status == "UP"]
    counted = [name for name, status in servers.items() if not status.startswith("MAINT")]
    if require == "any":
        return bool(up)
    return bool(up) and len(up) == len(counted)


def wait_serving(path, backend, require, up_timeout, timeout, interval=0.2):
    """Wait (bounded) until the backend serves; return its servers' statuses, or raise naming the ones not UP."""
    deadline = time.monotonic() + up_timeout
    while True:
        servers = backend_servers(path, backend, timeout)
        if serving(servers, require) or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not serving(servers, require):
        down = ", ".join("%s (%s)" % item for item in sorted(servers.items()) if item[1] != "UP")
        raise OpsError("backend %s is not serving after %d s (%s of its servers must be UP): %s; the traffic was "
                       "not switched" % (backend, up_timeout, require, down), servers=servers)
    return servers


def send(path, line, timeout):
    """One map command; HAProxy answers nothing but a blank line when it did it."""
    answer = command(path, line, timeout).strip()
    if answer:
        raise OpsError("HAProxy refused '%s': %s" % (line, answer))


def file_lines(map_name):
    try:
        with open(map_name, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as error:
        raise OpsError("cannot read the map file %s: %s" % (map_name, error)) from error


def with_entry(lines, key, value):
    """The map file's lines with key's entry set to value; comments and other keys kept."""
    return [line for line in lines if line.split(None, 1)[:1] != [key]] + ["%s %s" % (key, value)]


def write_file(map_name, lines):
    try:
        mode = os.stat(map_name).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644  # HAProxy reads it at start, often as another user than the one writing it
    try:
        atomic.write_text(map_name, "".join(line + "\n" for line in lines), mode=mode)
    except OSError as error:
        raise OpsError("the traffic is switched in HAProxy but the map file %s could not be written (%s): a reload "
                       "would send it back; fix the file's permissions, or set persist=false" % (map_name, error)
                       ) from error


def switch(params, check_mode):
    """The haproxy_switch module: bring the map entry to params["value"] (or only read it), idempotently."""
    path, map_name, key, timeout = params["socket"], params["map"], params["key"], params["timeout"]
    wanted, backend = params["value"], params["backend"]
    for name, word in (("key", key), ("value", wanted)):
        if word is not None and (not word or len(word.split()) != 1):
            raise OpsError("%s must be one word without spaces, not %r" % (name, word))
    values = map_values(path, map_name, key, timeout)
    previous = values[0] if values else None
    result = {"changed": False, "map": map_name, "key": key, "previous_value": previous, "value": previous,
              "backend": backend, "servers": None}
    if wanted is None:
        return result
    runtime_changed = values != [wanted]
    lines = file_lines(map_name) if params["persist"] else None
    file_changed = params["persist"] and with_entry(lines, key, wanted) != lines
    result.update(changed=bool(runtime_changed or file_changed), value=wanted)
    if backend and params["require_up"] != "none":
        if runtime_changed and not check_mode:
            result["servers"] = wait_serving(path, backend, params["require_up"], params["up_timeout"], timeout)
        else:
            result["servers"] = backend_servers(path, backend, timeout)
    if runtime_changed and not check_mode:
        if len(values) > 1:  # two entries (added by hand) are made one again
            send(path, "del map %s %s" % (map_name, key), timeout)
            values = []
        # The switch itself: one command, every host's traffic at once.
        send(path, "%s map %s %s %s" % ("set" if values else "add", map_name, key, wanted), timeout)
        after = map_values(path, map_name, key, timeout)
        if after != [wanted]:
            raise OpsError("HAProxy's map %s holds %r for %s after the switch, not %r" % (map_name, after, key, wanted))
    if file_changed and not check_mode:
        write_file(map_name, with_entry(lines, key, wanted))
    if result["changed"]:
        header = "%s (%s)" % (map_name, key)
        result["diff"] = {"before": "value: %s\n" % (previous or "none (the frontend's default)"),
                          "after": "value: %s\n" % wanted,
                          "before_header": header, "after_header": header}
    return result
