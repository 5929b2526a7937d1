# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The maintenance window served by HAProxy itself: one entry of a map file, changed over the runtime API.

The frontend's ``http-request return status 503`` rules (docs/maintenance.md) look up a key in the map:
``writes`` refuses every method but GET and HEAD, ``all`` every request but /health, no entry nothing.
Changing the entry needs no reload. ``maintenance`` is the service of the ``haproxy_maintenance`` module.
"""

from __future__ import annotations

from ansible_collections.treazrisland.ops.plugins.module_utils import haproxy_map
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

SCOPES = ("writes", "all")
CONFIG_HINT = ("its frontend needs the maintenance rules that look this map up (docs/maintenance.md), "
               "and the file must exist when HAProxy starts")


def describe(scope, persisted=False, file_scope=None):
    text = "maintenance: %s\n" % (scope or "off")
    return text + ("map file: %s\n" % (file_scope or "off") if persisted else "")


def maintenance(params, check_mode):
    """The haproxy_maintenance module: bring the map entry to the wanted scope (or none), idempotently."""
    path, map_name, key, timeout = params["socket"], params["map"], params["key"], params["timeout"]
    if not key or len(key.split()) != 1:
        raise OpsError("key must be one word without spaces, not %r" % key)
    wanted = params["scope"] if params["state"] == "on" else None
    values = haproxy_map.map_values(path, map_name, key, CONFIG_HINT, timeout)
    previous = values[0] if values else None
    # Two entries for the key (added by hand) are made one again, whatever their values.
    runtime_changed = values != ([wanted] if wanted else [])
    lines = haproxy_map.file_lines(map_name) if params["persist"] else None
    file_changed = params["persist"] and haproxy_map.with_value(lines, key, wanted) != lines
    if runtime_changed and not check_mode:
        haproxy_map.set_value(path, map_name, key, values, wanted, CONFIG_HINT, timeout)
    if file_changed and not check_mode:
        haproxy_map.write_file(map_name, haproxy_map.with_value(lines, key, wanted), "the maintenance window")
    result = {"changed": bool(runtime_changed or file_changed), "map": map_name, "key": key,
              "state": params["state"], "scope": wanted, "previous_scope": previous}
    if result["changed"]:
        header = "%s (%s)" % (map_name, key)
        persist = params["persist"]
        result["diff"] = {"before": describe(previous, persist, persist and haproxy_map.file_value(lines, key)),
                          "after": describe(wanted, persist, wanted),
                          "before_header": header, "after_header": header}
    return result
