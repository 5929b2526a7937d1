# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release directories on an app host (guide 6 and 7.1).

Layout under ``base_dir``::

    releases/<version>/   one unpacked release artifact each
    shared/               what outlives releases (.env, uploads), linked into each release
    current -> releases/<version>
    .deploy.json          switch history and the last known good release

The current release is always read from the ``current`` symlink, never guessed
from directory times; the switch is atomic (a new symlink renamed over the old).
Pruning never removes the current release nor the last known good one.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tarfile
import tempfile

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic, checksum, runner
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

STATE_FILE = ".deploy.json"
RELEASE_RECORD = ".release.json"


class HashingReader:
    """File-like reader that hashes what is read through it (one pass over the artifact)."""

    def __init__(self, handle):
        self._handle = handle
        self._writer = checksum.HashingWriter(_Discard())

    def read(self, size=-1):
        data = self._handle.read(size)
        self._writer.write(data)
        return data

    def hexdigest(self):
        return self._writer.hexdigest()


class _Discard:
    def write(self, data):
        return len(data)


class Releases:
    """The release directories of one application on one host."""

    def __init__(self, base_dir):
        self.base = base_dir
        self.releases_dir = os.path.join(base_dir, "releases")
        self.current_link = os.path.join(base_dir, "current")
        self.state_path = os.path.join(base_dir, STATE_FILE)

    def path(self, version):
        if not version or "/" in version or version in (".", ".."):
            raise OpsError("%r is not a valid release version" % version)
        return os.path.join(self.releases_dir, version)

    def current(self):
        """The version the current symlink points at, or None."""
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        except OSError:
            raise OpsError("%s exists but is not a symlink; refusing to guess the current release" %
                           self.current_link)
        return os.path.basename(os.path.normpath(target))

    def state(self):
        try:
            with open(self.state_path) as handle:
                return json.load(handle)
        except FileNotFoundError:
            return {"history": [], "last_good": None}

    def save_state(self, state):
        atomic.write_json(self.state_path, state, mode=0o644)

    def installed(self):
        if not os.path.isdir(self.releases_dir):
            return []
        return sorted(name for name in os.listdir(self.releases_dir)
                      if not name.startswith(".")
                      and os.path.isfile(os.path.join(self.releases_dir, name, RELEASE_RECORD)))

    def summary(self):
        state = self.state()
        history = [entry["version"] for entry in state["history"]]
        current = self.current()
        previous = next((v for v in reversed(history[:-1]) if v != current), None) if history else None
        return {"current": current, "previous": previous, "last_good": state.get("last_good"),
                "releases": self.installed()}


def _safe_members(tar, destination):
    """Yield members of a streamed tar, refusing anything that would land outside destination."""
    root = os.path.realpath(destination)
    for member in tar:
        name = os.path.normpath(member.name)
        if name.startswith(("/", "..")) or os.path.isabs(member.name):
            raise OpsError("the artifact holds %r, outside the release directory; refusing it" % member.name)
        if member.issym() or member.islnk():
            target = os.path.normpath(os.path.join(os.path.dirname(os.path.join(root, name)), member.linkname))
            if member.islnk():
                target = os.path.normpath(os.path.join(root, member.linkname))
            if not (target + os.sep).startswith(root + os.sep):
                raise OpsError("the artifact's link %r points outside the release directory" % member.name)
        elif not (member.isfile() or member.isdir()):
            raise OpsError("the artifact holds %r, which is neither a file, a directory nor a link" % member.name)
        yield member


def _unpack(src, destination):
    """Unpack a .tar.gz into destination in one streamed pass; return its sha256."""
    with open(src, "rb") as raw:
        reader = HashingReader(raw)
        with tarfile.open(fileobj=reader, mode="r|*") as tar:
            for member in _safe_members(tar, destination):
                tar.extract(member, destination, set_attrs=not member.issym())
        while reader.read(1024 * 1024):  # hash trailing padding too: the sha256 is of the whole file
            pass
    return reader.hexdigest()


def _link_shared(release_dir, base, shared):
    for relative, shared_relative in sorted(shared.items()):
        link = os.path.join(release_dir, relative)
        target = os.path.join(base, "shared", shared_relative)
        if os.path.lexists(link):
            if os.path.isdir(link) and not os.path.islink(link):
                shutil.rmtree(link)
            else:
                os.unlink(link)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(target, link)


def present(releases, params, check_mode):
    version = params["version"]
    destination = releases.path(version)
    if os.path.isfile(os.path.join(destination, RELEASE_RECORD)):
        return False, {}
    if not params["src"]:
        raise OpsError("release %s is not installed and no src artifact was given" % version)
    if not os.path.isfile(params["src"]):
        raise OpsError("artifact %s does not exist" % params["src"])
    if check_mode:
        return True, {}
    os.makedirs(releases.releases_dir, exist_ok=True)
    os.makedirs(os.path.join(releases.base, "shared"), exist_ok=True)
    if os.path.lexists(destination):
        shutil.rmtree(destination)  # a half-unpacked leftover without its record: not a release
    temp = tempfile.mkdtemp(prefix="." + version + ".", suffix=".partial", dir=releases.releases_dir)
    try:
        try:
            digest = _unpack(params["src"], temp)
        except (tarfile.TarError, EOFError, OSError) as error:
            raise OpsError("artifact %s cannot be unpacked: %s" % (params["src"], error))
        if params["sha256"] and digest != params["sha256"].lower():
            raise OpsError("artifact %s has sha256 %s, expected %s; release not installed" % (
                params["src"], digest, params["sha256"]))
        _link_shared(temp, releases.base, params["shared"] or {})
        atomic.write_json(os.path.join(temp, RELEASE_RECORD), {"version": version, "sha256": digest}, mode=0o644)
        os.chmod(temp, 0o755)
        os.rename(temp, destination)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return True, {"sha256": digest}


def switch(releases, version, check_mode):
    """Point current at version atomically; record the switch."""
    target = releases.path(version)
    if not os.path.isfile(os.path.join(target, RELEASE_RECORD)):
        raise OpsError("release %s is not installed on this host; cannot make it current" % version)
    before = releases.current()
    if before == version:
        return False, before
    if not check_mode:
        temp_link = os.path.join(releases.base, ".current.%d.tmp" % os.getpid())
        if os.path.lexists(temp_link):
            os.unlink(temp_link)
        os.symlink(os.path.join("releases", version), temp_link)
        os.rename(temp_link, releases.current_link)  # rename over the old link: never a moment without one
        atomic.fsync_directory(releases.base)
        state = releases.state()
        state["history"].append({"version": version, "switched_at": datetime.datetime.now(
            datetime.timezone.utc).isoformat()})
        releases.save_state(state)
    return True, before


def mark_good(releases, version, check_mode):
    state = releases.state()
    if state.get("last_good") == version:
        return False
    if releases.current() != version:
        raise OpsError("release %s is not current (current is %s); only the running release can be marked good" % (
            version, releases.current()))
    if not check_mode:
        state["last_good"] = version
        releases.save_state(state)
    return True


def prune(releases, keep, check_mode):
    """Remove all but the newest ``keep`` releases by switch history; never current or last good."""
    state = releases.state()
    order = []
    for entry in reversed(state["history"]):
        if entry["version"] not in order:
            order.append(entry["version"])
    installed = releases.installed()
    never_switched = [v for v in installed if v not in order]
    ranked = never_switched + [v for v in order if v in installed]  # not yet switched to = newest
    protected = {releases.current(), state.get("last_good")}
    removable = [v for v in ranked[keep:] if v not in protected]
    if not check_mode:
        for version in removable:
            shutil.rmtree(releases.path(version))
    return removable


def release(params, check_mode):
    releases = Releases(params["base_dir"])
    state = params["state"]
    version = params["version"]
    result = {}
    if state == "present":
        changed, extra = present(releases, params, check_mode)
        result.update(extra)
    elif state == "current":
        changed, before = switch(releases, version, check_mode)
        if changed:
            result["diff"] = {"before": "current -> %s\n" % before, "after": "current -> %s\n" % version}
    elif state == "good":
        changed = mark_good(releases, version, check_mode)
    else:
        removed = prune(releases, params["keep_releases"], check_mode)
        changed = bool(removed)
        result["removed"] = removed
    result.update(releases.summary(), changed=changed)
    if check_mode and state == "current" and changed:
        result["current"] = version
    return result


def release_info(params, check_mode):
    """The app_release_info module: read-only."""
    info = dict(Releases(params["base_dir"]).summary(), changed=False)
    if params.get("restart_command") is not None:
        info["restart_command_problem"] = restart_command_problem(params["restart_command"])
    return info


# systemctl verbs that act on the units named after them.
_SYSTEMCTL_UNIT_VERBS = ("restart", "try-restart", "reload-or-restart", "try-reload-or-restart", "start", "reload")


def restart_command_problem(argv):
    """Why the restart command cannot work on this host, or None: its program is missing, or the unit is.

    Treazrisland ships no systemd unit, so ``systemctl restart treazrisland-backend`` only works once the
    operator has installed one; finding out in preflight costs nothing, finding out after the switch costs a
    rollback.
    """
    if not argv:
        return "the restart command is empty"
    program = argv[0]
    systemd = os.path.basename(program) == "systemctl"
    advice = (": Treazrisland ships no systemd unit; install one (docs/examples/treazrisland-backend.service) "
              "or set treazrisland_restart_command (docs/upgrade.md, Restarting the backend)") if systemd else ""
    found = program if os.sep in program else shutil.which(program)
    if not found or not os.access(found, os.X_OK):
        return "restart command %s: %s not found on this host%s" % (" ".join(argv), program, advice)
    if not systemd or len(argv) < 3 or argv[1] not in _SYSTEMCTL_UNIT_VERBS:
        return None
    for unit in (arg for arg in argv[2:] if not arg.startswith("-")):
        answer = runner.run([found, "show", "--property=LoadState", "--value", unit], timeout=30)
        if answer.returncode != 0:
            why = (answer.stderr or "").strip().splitlines() or ["exit status %d" % answer.returncode]
            return "restart command %s: systemctl cannot tell whether unit %s exists (%s)%s" % (
                " ".join(argv), unit, why[0], advice)
        if answer.stdout.strip() == "not-found":
            return "restart command %s: no systemd unit %s on this host%s" % (" ".join(argv), unit, advice)
    return None
