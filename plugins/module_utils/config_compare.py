# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Samples, comparisons and redaction (guide: Configuration Changes, Diff configs).

A sample is the release's ``.env.example`` or a Helm values file; nested YAML
keys become dotted paths. Which keys are secrets is decided by name only, so
that no value ever has to be looked at to know whether it may be shown.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re

from ansible_collections.treazrisland.ops.plugins.module_utils import runner
from ansible_collections.treazrisland.ops.plugins.module_utils.config_envfile import EnvFile
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

try:
    import yaml
except ImportError:  # PyYAML ships with ansible-core; only Helm values need it
    yaml = None

# Names (shell-style patterns, case-insensitive) whose values are never shown.
DEFAULT_SECRET_PATTERNS = ("*SECRET*", "*PASSWORD*", "*PASSWD*", "*KEY*", "*TOKEN*", "*CREDENTIAL*",
                           "*PRIVATE*", "DATABASE_URL")
SECRET = "<secret>"
SECRET_CHANGED = "<secret, changed>"

# The release's code is scanned for deprecated keys; these hold no code of the release.
SCAN_SKIP_DIRS = frozenset((".git", "node_modules", ".pnpm-store", ".next", "__pycache__"))
SCAN_MAX_FILE_SIZE = 8 * 1024 * 1024
SCAN_MAX_FILES_REPORTED = 20


class SecretPolicy:
    """Decides from a key's name whether its value is a secret."""

    def __init__(self, extra=()):
        self.patterns = [pattern.upper() for pattern in DEFAULT_SECRET_PATTERNS + tuple(extra or ())]

    def __call__(self, key):
        # A Helm path is judged whole and by its last part: env.DATABASE_URL is DATABASE_URL.
        names = {key.upper(), key.rsplit(".", 1)[-1].upper()}
        return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in self.patterns)


def load_sample(path, sample_format="auto", root=None):
    """{key: default} of a sample, with the EnvFile for .env samples (None for Helm values)."""
    text = read_text(path, "sample")
    if sample_format == "auto":
        sample_format = "helm_values" if path.endswith((".yaml", ".yml")) else "env"
    if sample_format == "env":
        if root:
            raise OpsError("sample_root applies to Helm values files only")
        envfile = EnvFile.parse(text, path)
        return envfile.values(), envfile
    return flatten_values(_load_yaml(text, path), path, root), None


def _load_yaml(text, path):
    if yaml is None:
        raise OpsError("the Python library PyYAML is required to read Helm values files")
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = ", line %d" % (mark.line + 1) if mark else ""
        raise OpsError("%s%s: not valid YAML" % (path, where)) from None


def flatten_values(document, path="values", root=None):
    """Nested mappings as {dotted.path: text}; lists and scalars are leaves."""
    if root:
        for part in root.split("."):
            if not isinstance(document, dict) or part not in document:
                raise OpsError("%s has no %s (sample_root)" % (path, root))
            document = document[part]
    if not isinstance(document, dict):
        raise OpsError("%s: the values to compare must be a mapping" % path)
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            dotted = "%s.%s" % (prefix, key) if prefix else str(key)
            if isinstance(value, dict) and value:
                walk(value, dotted)
            else:
                flat[dotted] = leaf_text(value)

    walk(document, "")
    return flat


def leaf_text(value):
    """A YAML or JSON leaf as the text an environment variable would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def compare(sample, live, is_secret, previous_sample=None):
    """Added, removed (deprecated) and changed-default keys between a sample and a live configuration.

    Without previous_sample, a changed default is a non-secret key whose live value differs from the
    sample's; with it, only keys whose default moved between the two samples count. A secret's sample
    value is a placeholder, never a default, so secrets are never listed as changed defaults.
    """
    added = [key for key in sample if key not in live]
    removed = [key for key in live if key not in sample]
    both = [key for key in sample if key in live and not is_secret(key)]
    if previous_sample is None:
        changed = [key for key in both if live[key] != sample[key]]
    else:
        changed = [key for key in both if key in previous_sample and previous_sample[key] != sample[key]]
    return {"added": added, "removed": removed, "changed_defaults": changed}


def redacted_lines(values, is_secret, before=None):
    """``KEY=value`` text sorted by key, secrets as <secret> (or <secret, changed> against before)."""
    lines = []
    for key in sorted(values):
        if is_secret(key):
            changed = before is not None and key in before and before[key] != values[key]
            shown = SECRET_CHANGED if changed else SECRET
        else:
            shown = runner.mask(values[key])
        lines.append("%s=%s\n" % (key, shown))
    return "".join(lines)


def find_references(release_path, keys):
    """{key: [files of the release that mention it]} for keys still referenced (whole-word match)."""
    if not os.path.isdir(release_path):
        raise OpsError("release_path %s is not a directory" % release_path)
    keys = sorted(set(keys))
    if not keys:
        return {}
    pattern = re.compile(rb"(?<![A-Za-z0-9_])(" + b"|".join(re.escape(key.encode()) for key in keys)
                         + rb")(?![A-Za-z0-9_])")
    found = {}
    for dirpath, dirnames, filenames in os.walk(release_path):
        dirnames[:] = sorted(name for name in dirnames if name not in SCAN_SKIP_DIRS)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full) or os.path.getsize(full) > SCAN_MAX_FILE_SIZE:
                continue
            with open(full, "rb") as handle:
                data = handle.read()
            if b"\0" in data[:8192]:
                continue  # binary
            rel = os.path.relpath(full, release_path)
            for key in {match.group(1).decode() for match in pattern.finditer(data)}:
                files = found.setdefault(key, [])
                if len(files) < SCAN_MAX_FILES_REPORTED:
                    files.append(rel)
    return found


def read_text(path, what):
    """A UTF-8 text file, with one clear message for each way reading it fails."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise OpsError("%s %s does not exist" % (what, path)) from None
    except IsADirectoryError:
        raise OpsError("%s %s is a directory, not a file" % (what, path)) from None
    except OSError as error:
        raise OpsError("cannot read %s %s: %s" % (what, path, error.strerror)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise OpsError("%s %s, line %d: not UTF-8 text" % (what, path, line)) from None
