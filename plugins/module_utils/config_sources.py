# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where Treazrisland's configuration lives: env files, Kubernetes Secrets/ConfigMaps, Secrets Manager.

Every source answers the same questions: what does it hold now (``read``: a
Snapshot of key/values plus the bundle section that restores it exactly), write
new key/values (``write``), and put a bundle section back (``restore``).
"""

from __future__ import annotations

import base64
import glob
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import time

from ansible.module_utils.common.warnings import warn

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic, runner
from ansible_collections.treazrisland.ops.plugins.module_utils.config_compare import read_text
from ansible_collections.treazrisland.ops.plugins.module_utils.config_envfile import EnvFile
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError
from ansible_collections.treazrisland.ops.plugins.module_utils.kube import KubeObjects
from ansible_collections.treazrisland.ops.plugins.module_utils.secrets_manager import SecretsManager

SOURCE_TYPES = ("env_file", "kubernetes_secret", "kubernetes_configmap", "secretsmanager")
# Shortest secret value masked in messages: masking every "1" or "on" would garble them.
MIN_MASKED_LENGTH = 4
# An env file's backups: <file name>.<UTC time>.bak, or <file name>.<UTC time>-<n>.bak (n = 1, 2...) when that
# second already has one. Nothing else beside the file is ever taken for one of its backups.
BACKUP_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_BACKUP_SUFFIX = r"\.(?P<time>[0-9]{8}T[0-9]{6}Z)(?:-(?P<number>[1-9][0-9]*))?\.bak"


class Connection:
    """Clients built once per module run from the connection options, and the secret values seen."""

    def __init__(self, params, is_secret):
        self.params = params
        self.is_secret = is_secret
        self._kube = None
        self._secrets_manager = None
        self.secret_values = set()

    def kube(self):
        if self._kube is None:
            self._kube = KubeObjects(self.params.get("kubeconfig"), self.params.get("kube_context"))
        return self._kube

    def secrets_manager(self):
        if self._secrets_manager is None:
            self._secrets_manager = SecretsManager(self.params)
        return self._secrets_manager

    def saw(self, values):
        """Remember secret values read, so that any message can be masked with them."""
        for key, value in values.items():
            if self.is_secret(key) and value and len(value) >= MIN_MASKED_LENGTH:
                self.secret_values.add(value)

    def mask(self, text):
        return runner.mask(text, self.secret_values)


class Snapshot:
    """What a source holds: ``values`` to compare, ``section`` to restore it exactly.

    ``native`` is what the source itself gave: the file's stat result, the Kubernetes object.
    """

    def __init__(self, values, section, envfile=None, native=None):
        self.values = values
        self.section = section
        self.envfile = envfile
        self.native = native


def identity(spec):
    """The keys that name a source (its bundle section's ``source``), checked for completeness."""
    kind = spec.get("type")
    needs = {"env_file": ("path",), "kubernetes_secret": ("name",), "kubernetes_configmap": ("name",),
             "secretsmanager": ("secret_id",)}
    if kind not in needs:
        raise OpsError("unknown source type %r; expected one of %s" % (kind, ", ".join(SOURCE_TYPES)))
    missing = [field for field in needs[kind] if not spec.get(field)]
    if missing:
        raise OpsError("a %s source needs %s" % (kind, " and ".join(missing)))
    found = {"type": kind}
    if kind == "env_file":
        found["path"] = spec["path"]
    elif kind == "secretsmanager":
        found["secret_id"] = spec["secret_id"]
    else:
        found.update(namespace=spec.get("namespace") or "default", name=spec["name"])
    return found


def label(source):
    """How a source is named in results and messages."""
    if source["type"] == "env_file":
        return "env_file %s" % source["path"]
    if source["type"] == "secretsmanager":
        return "secretsmanager %s" % source["secret_id"]
    return "%s %s/%s" % (source["type"], source["namespace"], source["name"])


def expand(specs):
    """Source identities for capture: an env_file path may be a glob; duplicates are dropped."""
    found = []
    for spec in specs:
        source = identity(spec)
        if source["type"] == "env_file" and glob.has_magic(source["path"]):
            paths = sorted(glob.glob(source["path"]))
            if not paths:
                raise OpsError("no file matches %s" % source["path"])
            candidates = [dict(source, path=path) for path in paths]
        else:
            candidates = [source]
        found.extend(candidate for candidate in candidates if candidate not in found)
    return found


def open_source(source, connection):
    return {"env_file": EnvFileSource, "kubernetes_secret": KubernetesSource, "kubernetes_configmap": KubernetesSource,
            "secretsmanager": SecretsManagerSource}[source["type"]](source, connection)


def section_values(section):
    """{key: value} that a bundle section holds."""
    kind = section["source"]["type"]
    if kind == "env_file":
        return EnvFile.parse(section["content"], section["source"]["path"] + " (in the bundle)").values()
    if kind == "kubernetes_secret":
        return {key: _b64_text(value) for key, value in (section["data"] or {}).items()}
    if kind == "kubernetes_configmap":
        return dict(section["data"] or {})
    return _secret_json(section["secret_string"], section["source"]["secret_id"])


class EnvFileSource:
    """A ``.env`` file: kept byte for byte, with its mode and owner."""

    def __init__(self, source, connection):
        self.source = source
        self.path = source["path"]
        self.connection = connection

    def read(self, required=True):
        try:
            stat_result = os.stat(self.path)
        except FileNotFoundError:
            if required:
                raise OpsError("env file %s does not exist" % self.path) from None
            return None
        if not stat.S_ISREG(stat_result.st_mode):
            raise OpsError("env file %s is not a regular file" % self.path)
        text = read_text(self.path, "env file")
        envfile = EnvFile.parse(text, self.path)
        values = envfile.values()
        self.connection.saw(values)
        section = {"source": self.source, "content": text, "mode": "%04o" % stat.S_IMODE(stat_result.st_mode),
                   "uid": stat_result.st_uid, "gid": stat_result.st_gid,
                   "owner": _user_name(stat_result.st_uid), "group": _group_name(stat_result.st_gid)}
        return Snapshot(values, section, envfile, native=stat_result)

    def write(self, snapshot, envfile, backup):
        """Write envfile's text atomically with the file's mode and owner; return the backup's path or None."""
        backup_path = self._backup() if backup else None
        self._write_text(envfile.render(), stat.S_IMODE(snapshot.native.st_mode), snapshot.native.st_uid,
                         snapshot.native.st_gid)
        return backup_path

    def plan_restore(self, section):
        """Whether restoring the section would change anything, and the current snapshot (None if missing)."""
        current = self.read(required=False)
        if current is None:
            return True, None
        same = (current.section["content"] == section["content"] and current.section["mode"] == section["mode"]
                and (current.native.st_uid, current.native.st_gid) == (section["uid"], section["gid"]))
        return not same, current

    def restore(self, section, current, backup):
        mode, uid, gid = int(section["mode"], 8), section["uid"], section["gid"]
        if not self.replaces_content(section, current):
            # Only mode or owner differ: fix them in place, the content is already right.
            os.chmod(self.path, mode)
            if (current.native.st_uid, current.native.st_gid) != (uid, gid):
                os.chown(self.path, uid, gid)
            return None
        backup_path = self._backup() if backup and current is not None else None
        self._write_text(section["content"], mode, uid, gid)
        return backup_path

    @staticmethod
    def replaces_content(section, current):
        """Whether restoring section writes the file (else at most its mode and owner are fixed in place)."""
        return current is None or current.section["content"] != section["content"]

    def _write_text(self, text, mode, uid, gid):
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise OpsError("cannot write %s: directory %s does not exist" % (self.path, directory))
        try:
            with atomic.atomic_file(self.path, mode=mode) as target:
                target.write(text.encode("utf-8"))
                if (os.geteuid(), os.getegid()) != (uid, gid):
                    os.chown(target.temp_path, uid, gid)
                    os.chmod(target.temp_path, mode)  # chown may clear set-id bits
        except OSError as error:
            raise OpsError("cannot write %s: %s" % (self.path, error.strerror or error)) from None

    def _backup(self):
        """Copy the current file to ``<path>.<UTC time>.bak`` (0600: it holds secrets).

        A second backup within the same second gets the next number after that second's highest (``-1``,
        ``-2``...), never a gap left by a pruned one: names sort in the order the backups were taken.
        """
        stamp = time.strftime(BACKUP_TIME_FORMAT, time.gmtime())
        try:
            same_second = [number for taken, number, _name in self._backup_names() if taken == stamp]
        except OSError:
            same_second = []  # a directory that cannot be listed: the name checks below still apply
        number = max(same_second) + 1 if same_second else 0
        candidate = self._backup_path(stamp, number)
        while os.path.lexists(candidate):
            number += 1
            candidate = self._backup_path(stamp, number)
        try:
            with open(self.path, "rb") as source, atomic.atomic_file(candidate, replace=False) as target:
                shutil.copyfileobj(source, target.handle)
        except OSError as error:
            raise OpsError("cannot back up %s to %s: %s" % (self.path, candidate, error.strerror or error)) from None
        return candidate

    def _backup_path(self, stamp, number):
        return "%s.%s%s.bak" % (self.path, stamp, "-%d" % number if number else "")

    def _backup_names(self):
        """(time, number, name) of this file's backups, oldest first: regular files named as _backup names them.

        Raises OSError when the directory cannot be listed.
        """
        directory = os.path.dirname(self.path) or "."
        pattern = re.compile(re.escape(os.path.basename(self.path)) + _BACKUP_SUFFIX)
        found = []
        for name in os.listdir(directory):
            match = pattern.fullmatch(name)
            if not match:
                continue
            try:
                if not stat.S_ISREG(os.lstat(os.path.join(directory, name)).st_mode):
                    continue  # a directory or symlink of that name was not made by _backup
            except FileNotFoundError:
                continue
            found.append((match.group("time"), int(match.group("number") or 0), name))
        return sorted(found)

    def old_backups(self, keep, new_backup=None, counts_new=False):
        """This file's backups beyond the newest ``keep``, oldest first: the ones to remove.

        ``new_backup`` is the backup this run just made: never among them. With ``counts_new``, that backup
        (made, or in check mode one that would be made) is the newest one kept, whatever its name; so with
        ``keep`` 0 every earlier backup goes and only the new one stays.
        """
        try:
            names = self._backup_names()
        except OSError as error:
            warn("cannot list %s to remove old backups of %s: %s" % (
                os.path.dirname(self.path) or ".", self.path, error.strerror or error))
            return []
        exclude = os.path.basename(new_backup) if new_backup else None
        earlier = [name for _time, _number, name in names if name != exclude]
        room = max(keep - (1 if counts_new else 0), 0)
        directory = os.path.dirname(self.path)
        return [os.path.join(directory, name) for name in earlier[:max(len(earlier) - room, 0)]]

    def remove_backups(self, paths):
        """Remove the given backups; return those removed. One that cannot be removed is a warning, not a failure:
        the file itself is already written."""
        removed = []
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue  # removed meanwhile (another run pruning the same file)
            except OSError as error:
                warn("%s was written, but its old backup %s could not be removed: %s; remove it with: rm -- %s"
                     % (self.path, path, error.strerror or error, shlex.quote(path)))
                continue
            removed.append(path)
        return removed


class KubernetesSource:
    """A Secret (values base64 in ``data``) or ConfigMap (plain ``data``) in a namespace."""

    def __init__(self, source, connection):
        self.source = source
        self.kind = "Secret" if source["type"] == "kubernetes_secret" else "ConfigMap"
        self.connection = connection

    def _get(self):
        return self.connection.kube().get(self.kind, self.source["namespace"], self.source["name"])

    def read(self, required=True):
        body = self._get()
        if body is None:
            if required:
                raise OpsError("Kubernetes %s %s/%s does not exist"
                               % (self.kind, self.source["namespace"], self.source["name"]))
            return None
        data = dict(body.get("data") or {})
        section = {"source": self.source, "data": data}
        values = section_values(section)
        self.connection.saw(values)
        return Snapshot(values, section, native=body)

    def write(self, snapshot, values, backup=False):
        old_data = snapshot.section["data"]
        old_values = snapshot.values
        data = {}
        for key, value in values.items():
            # Untouched keys keep their exact encoding (binary Secret data survives).
            data[key] = old_data[key] if key in old_data and old_values.get(key) == value else self._encode(value)
        self._put(snapshot.native, data)

    def plan_restore(self, section):
        current = self.read(required=False)
        return current is None or current.section["data"] != (section["data"] or {}), current

    def restore(self, section, current, backup=False):
        if current is None:
            body = {"apiVersion": "v1", "kind": self.kind, "data": section["data"],
                    "metadata": {"name": self.source["name"], "namespace": self.source["namespace"]}}
            self.connection.kube().create(self.kind, self.source["namespace"], body)
        else:
            self._put(current.native, section["data"])

    def _put(self, body, data):
        # The object as read, data replaced: its resourceVersion makes a concurrent change fail, not vanish.
        body = dict(body, data=data)
        self.connection.kube().replace(self.kind, self.source["namespace"], self.source["name"], body)

    def _encode(self, value):
        if self.kind == "Secret":
            return base64.b64encode(value.encode("utf-8")).decode("ascii")
        return value


class SecretsManagerSource:
    """A Secrets Manager secret whose SecretString is a JSON object of key/values."""

    def __init__(self, source, connection):
        self.source = source
        self.secret_id = source["secret_id"]
        self.connection = connection

    def read(self, required=True):
        found = self.connection.secrets_manager().get(self.secret_id)
        if found is None:
            if required:
                raise OpsError("Secrets Manager secret %s does not exist" % self.secret_id)
            return None
        secret_string, _version = found
        section = {"source": self.source, "secret_string": secret_string}
        values = _secret_json(secret_string, self.secret_id)
        self.connection.saw(values)
        return Snapshot(values, section)

    def write(self, snapshot, values, backup=False):
        original = json.loads(snapshot.section["secret_string"])
        # Untouched keys keep their JSON type (a number stays a number).
        document = {key: original[key] if key in original and snapshot.values.get(key) == value else value
                    for key, value in values.items()}
        self.connection.secrets_manager().put(self.secret_id, json.dumps(document))

    def plan_restore(self, section):
        current = self.read(required=False)
        if current is None:
            raise OpsError("Secrets Manager secret %s does not exist; create it before restoring into it"
                           % self.secret_id)
        return current.section["secret_string"] != section["secret_string"], current

    def restore(self, section, current, backup=False):
        self.connection.secrets_manager().put(self.secret_id, section["secret_string"])


def _secret_json(secret_string, secret_id):
    try:
        document = json.loads(secret_string)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise OpsError("Secrets Manager secret %s does not hold a JSON object of key/values" % secret_id)
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in document.items()}


def _b64_text(value):
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return "<binary>"


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
