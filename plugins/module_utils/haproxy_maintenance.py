# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The maintenance window served by HAProxy itself: one entry of a map file, changed over the runtime API.

The frontend's ``http-request return status 503`` rules (docs/maintenance.md) look up a key in the map:
``writes`` refuses every method but GET and HEAD, ``all`` every request but /health, no entry nothing.
Changing the entry needs no reload. ``maintenance`` is the service of the ``haproxy_maintenance`` module.
"""

from __future__ import annotations

import os

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.haproxy import command

SCOPES = ("writes", "all")
CONFIG_HINT = ("its frontend needs the maintenance rules that look this map up (docs/maintenance.md), "
               "and the file must exist when HAProxy starts")


def map_entries(path, map_name, key, timeout=5.0):
    """Values of key in the map HAProxy loaded from map_name, in order (several if someone added twice)."""
    answer = command(path, "show map %s" % map_name, timeout)
    if answer.startswith("Unknown map identifier"):
        raise OpsError("HAProxy has no map %s loaded: %s" % (map_name, CONFIG_HINT))
    values = []
    for line in answer.splitlines():
        # "<entry address> <key> <value>"
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[0].startswith("0x") and fields[1] == key:
            values.append(fields[2].strip())
    return values


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
        raise OpsError("cannot read the map file %s to keep the maintenance window across a reload: %s"
                       % (map_name, error)) from error


def persisted_lines(lines, key, wanted):
    """The map file's lines with key's entry set to wanted (removed when None); comments and other keys kept."""
    kept = [line for line in lines if not (line.split(None, 1)[:1] == [key])]
    return kept + (["%s %s" % (key, wanted)] if wanted else [])


def write_map_file(map_name, lines):
    try:
        mode = os.stat(map_name).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644  # HAProxy reads it at start, often as another user than the one writing it
    try:
        atomic.write_text(map_name, "".join(line + "\n" for line in lines), mode=mode)
    except OSError as error:
        raise OpsError("the maintenance window is set in HAProxy but the map file %s could not be written (%s): "
                       "a reload would end it; fix the file's permissions, or set persist=false" % (map_name, error)
                       ) from error


def file_value(lines, key):
    for line in lines:
        fields = line.split(None, 1)
        if fields[:1] == [key]:
            return fields[1].strip() if len(fields) > 1 else ""
    return None


def describe(scope, persisted=False, file_scope=None):
    text = "maintenance: %s\n" % (scope or "off")
    return text + ("map file: %s\n" % (file_scope or "off") if persisted else "")


def maintenance(params, check_mode):
    """The haproxy_maintenance module: bring the map entry to the wanted scope (or none), idempotently."""
    path, map_name, key, timeout = params["socket"], params["map"], params["key"], params["timeout"]
    if not key or len(key.split()) != 1:
        raise OpsError("key must be one word without spaces, not %r" % key)
    wanted = params["scope"] if params["state"] == "on" else None
    values = map_entries(path, map_name, key, timeout)
    previous = values[0] if values else None
    # Two entries for the key (added by hand) are made one again, whatever their values.
    runtime_changed = values != ([wanted] if wanted else [])
    lines = file_lines(map_name) if params["persist"] else None
    file_changed = params["persist"] and persisted_lines(lines, key, wanted) != lines
    if runtime_changed and not check_mode:
        if wanted is None or len(values) > 1:
            send(path, "del map %s %s" % (map_name, key), timeout)
            values = []
        if wanted and values:
            send(path, "set map %s %s %s" % (map_name, key, wanted), timeout)
        elif wanted:
            send(path, "add map %s %s %s" % (map_name, key, wanted), timeout)
        values = map_entries(path, map_name, key, timeout)
        if values != ([wanted] if wanted else []):
            raise OpsError("HAProxy's map %s holds %r for %s after the change, not %r" % (map_name, values, key, wanted))
    if file_changed and not check_mode:
        write_map_file(map_name, persisted_lines(lines, key, wanted))
    result = {"changed": bool(runtime_changed or file_changed), "map": map_name, "key": key,
              "state": params["state"], "scope": wanted, "previous_scope": previous}
    if result["changed"]:
        header = "%s (%s)" % (map_name, key)
        persist = params["persist"]
        result["diff"] = {"before": describe(previous, persist, persist and file_value(lines, key)),
                          "after": describe(wanted, persist, wanted),
                          "before_header": header, "after_header": header}
    return result
