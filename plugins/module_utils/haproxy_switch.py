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

import time

from ansible_collections.treazrisland.ops.plugins.module_utils import haproxy_map
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.haproxy import stat_rows

CONFIG_HINT = ("its frontend needs use_backend rules that look this map up (docs/upgrade.md, blue_green), and the "
               "file must exist when HAProxy starts")


def backend_servers(path, backend, timeout=5.0):
    """{server: status} of a backend from "show stat" (UP, DOWN, MAINT, DRAIN, "UP 1/2"...)."""
    servers = {row["svname"]: row.get("status", "") for row in stat_rows(path, timeout)
               if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")}
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


def switch(params, check_mode):
    """The haproxy_switch module: bring the map entry to params["value"] (or only read it), idempotently."""
    path, map_name, key, timeout = params["socket"], params["map"], params["key"], params["timeout"]
    wanted, backend = params["value"], params["backend"]
    for name, word in (("key", key), ("value", wanted)):
        if word is not None and (not word or len(word.split()) != 1):
            raise OpsError("%s must be one word without spaces, not %r" % (name, word))
    values = haproxy_map.map_values(path, map_name, key, CONFIG_HINT, timeout)
    previous = values[0] if values else None
    result = {"changed": False, "map": map_name, "key": key, "previous_value": previous, "value": previous,
              "backend": backend, "servers": None}
    if wanted is None:
        return result
    runtime_changed = values != [wanted]
    lines = haproxy_map.file_lines(map_name) if params["persist"] else None
    file_changed = params["persist"] and haproxy_map.with_value(lines, key, wanted) != lines
    result.update(changed=bool(runtime_changed or file_changed), value=wanted)
    if backend and params["require_up"] != "none":
        if runtime_changed and not check_mode:
            result["servers"] = wait_serving(path, backend, params["require_up"], params["up_timeout"], timeout)
        else:
            result["servers"] = backend_servers(path, backend, timeout)
    if runtime_changed and not check_mode:
        # The switch itself: one command, every host's traffic at once.
        haproxy_map.set_value(path, map_name, key, values, wanted, CONFIG_HINT, timeout)
    if file_changed and not check_mode:
        haproxy_map.write_file(map_name, haproxy_map.with_value(lines, key, wanted), "the traffic switch")
    if result["changed"]:
        header = "%s (%s)" % (map_name, key)
        result["diff"] = {"before": "value: %s\n" % (previous or "none (the frontend's default)"),
                          "after": "value: %s\n" % wanted,
                          "before_header": header, "after_header": header}
    return result
