# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One entry of an HAProxy map, read and set over the runtime API, and kept in the map file for reloads.

The maintenance window (``haproxy_maintenance``) and the blue/green switch (``haproxy_switch``) are each one
key of a map that the frontend's rules look up; both change it the same way, without a reload.
"""

from __future__ import annotations

import os

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.haproxy import command


def map_values(path, map_name, key, hint, timeout=5.0):
    """Values of key in the map HAProxy loaded from map_name, in order (several if someone added twice)."""
    answer = command(path, "show map %s" % map_name, timeout)
    if answer.startswith("Unknown map identifier"):
        raise OpsError("HAProxy has no map %s loaded: %s" % (map_name, hint))
    values = []
    for line in answer.splitlines():
        fields = line.split(None, 2)  # "<entry address> <key> <value>"
        if len(fields) == 3 and fields[0].startswith("0x") and fields[1] == key:
            values.append(fields[2].strip())
    return values


def send(path, line, timeout):
    """One map command; HAProxy answers nothing but a blank line when it did it."""
    answer = command(path, line, timeout).strip()
    if answer:
        raise OpsError("HAProxy refused '%s': %s" % (line, answer))


def set_value(path, map_name, key, values, wanted, hint, timeout):
    """Bring key's entries (values, as read) to the one value wanted, or to none when wanted is None; verified."""
    if wanted is None or len(values) > 1:  # two entries (added by hand) are made one again
        send(path, "del map %s %s" % (map_name, key), timeout)
        values = []
    if wanted:
        send(path, "%s map %s %s %s" % ("set" if values else "add", map_name, key, wanted), timeout)
    after = map_values(path, map_name, key, hint, timeout)
    if after != ([wanted] if wanted else []):
        raise OpsError("HAProxy's map %s holds %r for %s after the change, not %r" % (map_name, after, key, wanted))


def file_lines(map_name):
    """The map file's lines ([] when there is none yet)."""
    try:
        with open(map_name, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as error:
        raise OpsError("cannot read the map file %s: %s" % (map_name, error)) from error


def file_value(lines, key):
    """key's value in the map file's lines, or None."""
    for line in lines:
        fields = line.split(None, 1)
        if fields[:1] == [key]:
            return fields[1].strip() if len(fields) > 1 else ""
    return None


def with_value(lines, key, wanted):
    """The map file's lines with key's entry set to wanted (removed when None); comments and other keys kept."""
    kept = [line for line in lines if line.split(None, 1)[:1] != [key]]
    return kept + (["%s %s" % (key, wanted)] if wanted else [])


def write_file(map_name, lines, what):
    """Write the map file atomically, keeping its mode; what says what a reload would undo if this fails."""
    try:
        mode = os.stat(map_name).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644  # HAProxy reads it at start, often as another user than the one writing it
    try:
        atomic.write_text(map_name, "".join(line + "\n" for line in lines), mode=mode)
    except OSError as error:
        raise OpsError("%s is set in HAProxy but the map file %s could not be written (%s): a reload would undo it; "
                       "fix the file's permissions, or set persist=false" % (what, map_name, error)) from error
