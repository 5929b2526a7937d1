# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The services behind config_capture, config_diff and config_apply (guide: Capture current state,
Configuration bundle, Configuration Changes, Rollback: Configuration).

Values never leave these functions: results name keys and sources only, diffs
show secrets as ``<secret>`` / ``<secret, changed>``, and every failure message
is masked with the secret values read during the run.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import traceback

from ansible.module_utils.common.validation import check_type_int

from ansible_collections.treazrisland.ops.plugins.module_utils import config_bundle, config_vault, runner
from ansible_collections.treazrisland.ops.plugins.module_utils.checksum import sha256_file
from ansible_collections.treazrisland.ops.plugins.module_utils.config_compare import (
    SECRET, SECRET_CHANGED, SecretPolicy, compare, find_references, leaf_text, load_sample, redacted_lines,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.config_envfile import (
    ENV_SYNTAXES, NODE_DOTENV, PYTHON_DOTENV, EnvFile, Unrepresentable, readers,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.config_sources import (
    SOURCE_TYPES, Connection, expand, identity, label, open_source, section_values,
)
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

# Keys an env file can hold unquoted, and that shells and Node accept (dots for flattened Helm paths).
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")

SOURCE_OPTIONS = dict(
    type=dict(type="str", required=True, choices=list(SOURCE_TYPES)),
    path=dict(type="path"),
    name=dict(type="str"),
    namespace=dict(type="str", default="default"),
    secret_id=dict(type="str"),
)

CONNECTION_ARGUMENT_SPEC = dict(
    kubeconfig=dict(type="path"),
    kube_context=dict(type="str"),
    aws_region=dict(type="str"),
    aws_endpoint_url=dict(type="str"),
    aws_access_key_id=dict(type="str", no_log=False),
    aws_secret_access_key=dict(type="str", no_log=True),
    aws_session_token=dict(type="str", no_log=True),
    aws_profile=dict(type="str"),
    secret_keys=dict(type="list", elements="str", default=[], no_log=False),
)

BUNDLE_PASSWORD_ARGUMENT_SPEC = dict(
    bundle_password=dict(type="str", no_log=True),
    bundle_password_file=dict(type="path", no_log=False),
)

# The parser of the application that reads the env file config_apply writes.
ENV_SYNTAX_OPTION = dict(type="str", choices=list(ENV_SYNTAXES), default=NODE_DOTENV)

SAMPLE_ARGUMENT_SPEC = dict(
    sample=dict(type="path"),
    sample_format=dict(type="str", choices=["auto", "env", "helm_values"], default="auto"),
    sample_root=dict(type="str"),
)


def show_non_secret_values(module):
    """Let Ansible show what O(values) gives non-secret keys; what it gives secret keys stays hidden.

    ``values`` is a no_log option, so AnsibleModule hides every string given in it wherever it shows
    up (results, --diff, invocation.module_args): OBJECT_STORAGE_PORT=9000 would read
    OBJECT_STORAGE_PORT=********. The option stays no_log, the safe default for everything that
    happens before this runs: the syslog line of the invocation (written while the module is built,
    with ``values`` left out), and a failed argument check, which returns the invocation. Then the
    strings given for non-secret keys are taken out of module.no_log_values, except any that is also
    a secret key's value or the value of another no_log option.
    """
    is_secret = SecretPolicy(module.params.get("secret_keys"))
    values = module.params.get("values") or {}
    hidden, shown = set(), set()
    for key, value in values.items():
        (hidden if is_secret(key) else shown).update(_no_log_strings(value))
    for name, spec in module.argument_spec.items():
        if spec.get("no_log") and name != "values":
            hidden.update(_no_log_strings(module.params.get(name)))
    module.no_log_values.difference_update(shown - hidden)


def _no_log_strings(value):
    """The strings AnsibleModule hides for a no_log value: every non-empty string and number inside it."""
    if isinstance(value, str):
        return {value} if value else set()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple, set)):
        return set().union(*(_no_log_strings(item) for item in value))
    if value is None or isinstance(value, bool):
        return set()
    return {str(value)}


def _service(body):
    """Give body a Connection; mask the secret values it read in any failure."""

    @functools.wraps(body)
    def run(params, check_mode):
        connection = Connection(params, SecretPolicy(params.get("secret_keys")))
        try:
            return body(params, check_mode, connection)
        except OpsError as error:
            details = {key: connection.mask(value) if isinstance(value, str) else value
                       for key, value in error.details.items()}
            raise OpsError(connection.mask(error.msg), **details) from None
        except Exception as error:  # pylint: disable=broad-except
            raise OpsError(connection.mask("unexpected error: %s" % error),
                           exception=connection.mask(traceback.format_exc())) from None

    return run


def _password(params):
    return config_vault.read_password(params.get("bundle_password"), params.get("bundle_password_file"))


def _one_source(spec):
    source = identity(spec)
    if source["type"] == "env_file" and glob.has_magic(source["path"]):
        raise OpsError("source path %s is a pattern; this module works on one file" % source["path"])
    return source


# ---------------------------------------------------------------------------------------------- capture
@_service
def capture(params, check_mode, connection):
    """Write the bundle of every source; unchanged when the bundle already holds exactly that."""
    password = _password(params)
    dest = params["dest"]
    snapshots = [open_source(source, connection).read() for source in expand(params["sources"])]
    document = config_bundle.seal([snapshot.section for snapshot in snapshots])
    try:
        previous = config_bundle.read(dest, password, missing_ok=True)
    except config_vault.WrongPassword:
        raise OpsError("bundle %s exists and cannot be opened with this password; refusing to overwrite it"
                       % dest) from None
    changed = config_bundle.without_times(previous) != document["sections"]
    if changed and not check_mode:
        config_bundle.write(dest, document, password)
    described = [_describe(snapshot) for snapshot in snapshots]
    key_count = sum(len(item["keys"]) for item in described)
    result = {
        "changed": changed, "path": dest, "sources": described, "key_count": key_count,
        "msg": "%s %d key(s) of %d source(s) in %s" % ("captured" if changed else "bundle already holds", key_count,
                                                       len(described), dest),
    }
    if os.path.exists(dest):
        result["sha256"] = sha256_file(dest)[0]
    if changed:
        result["diff"] = {"before": _bundle_text(previous, connection.is_secret) if previous else "",
                          "after": _bundle_text(document, connection.is_secret, previous),
                          "before_header": dest, "after_header": dest}
    return result


def _describe(snapshot):
    source = snapshot.section["source"]
    described = dict(source, source=label(source), keys=list(snapshot.values))
    if source["type"] == "env_file":
        described.update(mode=snapshot.section["mode"], owner=snapshot.section["owner"],
                         group=snapshot.section["group"])
    return described


def _bundle_text(document, is_secret, before_document=None):
    """The sections of a bundle as redacted ``KEY=value`` lines under a ``# <source>`` line each."""
    before = {}
    for section in (before_document or {}).get("sections", []):
        before[label(section["source"])] = section_values(section)
    parts = []
    for section in document["sections"]:
        name = label(section["source"])
        parts.append("# %s\n" % name)
        parts.append(redacted_lines(section_values(section), is_secret, before.get(name)))
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- diff
@_service
def diff(params, check_mode, connection):
    """Compare a sample with a live source; never changes anything.

    ``changed`` says whether they differ (as ansible.utils.fact_diff does): Ansible prints a task's
    diff only when it reports a change, and showing that diff is this module's job.
    """
    is_secret = connection.is_secret
    sample, _sample_env = load_sample(params["sample"], params["sample_format"], params["sample_root"])
    previous = None
    if params.get("previous_sample"):
        previous = load_sample(params["previous_sample"], params["sample_format"], params["sample_root"])[0]
    source = _one_source(params["source"])
    live = open_source(source, connection).read().values
    comparison = compare(sample, live, is_secret, previous)
    # Keys the sample lacks but the release's code uses are required, not removed: they stay.
    required = _required_unlisted(params.get("release_path"), comparison["removed"])
    comparison["removed"] = [key for key in comparison["removed"] if key not in required]
    in_sync = not any(comparison.values())
    summary = ", ".join("%d %s" % (len(keys), kind.replace("_", " ")) for kind, keys in comparison.items() if keys)
    if in_sync:
        msg = "%s matches %s" % (label(source), params["sample"])
    else:
        msg = "%s against %s: %s" % (label(source), params["sample"], summary)
    if required:
        msg += "; %d required, not in the sample (the release's code uses them)" % len(required)
    expected = dict(sample, **{key: live[key] for key in required})
    return dict(
        comparison,
        required_unlisted=required,
        changed=not in_sync,
        source=label(source),
        sample=params["sample"],
        in_sync=in_sync,
        secrets=sorted(key for key in set(sample) | set(live) if is_secret(key)),
        msg=msg,
        diff={"before": redacted_lines(live, is_secret), "after": redacted_lines(expected, is_secret, before=live),
              "before_header": label(source), "after_header": params["sample"]},
    )


# ---------------------------------------------------------------------------------------------- apply
@_service
def apply(params, check_mode, connection):
    params = dict(params, keep_backups=_keep_backups(params.get("keep_backups")))
    if params["state"] == "restored":
        return _restore(params, check_mode, connection)
    return _bring_in_line(params, check_mode, connection)


def _keep_backups(value):
    """keep_backups as an int, or None (keep every backup): a whole number of 0 or more, or null."""
    if value is None:
        return None
    try:
        keep = None if isinstance(value, bool) else check_type_int(value)
    except TypeError:
        keep = None
    if keep is None or keep < 0:
        raise OpsError("keep_backups must be a whole number of 0 or more, or null to keep every backup, not %r; "
                       "nothing was changed" % (value,))
    return keep


def _bring_in_line(params, check_mode, connection):
    """Add the sample's new keys, set given values, remove deprecated keys no longer referenced."""
    is_secret = connection.is_secret
    syntax = params.get("env_syntax") or NODE_DOTENV
    source = _one_source(params["source"])
    handler = open_source(source, connection)
    snapshot = handler.read()
    live = snapshot.values
    values = {key: leaf_text(value) for key, value in (params.get("values") or {}).items()}
    sample, sample_env = {}, None
    if params.get("sample"):
        sample, sample_env = load_sample(params["sample"], params["sample_format"], params["sample_root"])

    added = [key for key in sample if key not in live] + [key for key in values if key not in live and key not in sample]
    missing_secrets = [key for key in added if is_secret(key) and key not in values]
    if missing_secrets:
        raise OpsError("no value given for the new secret key(s) %s: a sample's placeholder is never written for "
                       "a secret; set them in values" % ", ".join(missing_secrets))
    misread = _misread(snapshot, values, syntax)
    updated = [key for key in values if key in live and (live[key] != values[key] or key in misread)]
    rotated = [key for key in updated if is_secret(key)]
    if rotated and not params.get("bundle"):
        raise OpsError("changing the secret(s) %s needs bundle: the previous values are kept there for rollback"
                       % ", ".join(rotated))
    unlisted = [key for key in live if key not in sample and key not in values] if sample else []
    required = _required_unlisted(params.get("release_path"), unlisted)
    deprecated = [key for key in unlisted if key not in required]
    removed = deprecated if params.get("remove_deprecated") else []

    new_values = {key: value for key, value in live.items() if key not in removed}
    for key in updated + added:
        new_values[key] = values[key] if key in values else sample[key]
    if snapshot.envfile is not None:
        new_state = _edited_envfile(snapshot, source["path"], new_values, sample_env, added, updated, removed, syntax)
        changed = new_state.render() != snapshot.section["content"]
    else:
        new_state = new_values
        changed = new_values != live

    bundle_saved = False
    if changed and params.get("bundle"):
        bundle_saved = _keep_in_bundle(params["bundle"], _password(params), snapshot, check_mode)
    backup_file, removed_backups = None, []
    if changed and not check_mode:
        backup_file = handler.write(snapshot, new_state, params["backup"])
    if changed and snapshot.envfile is not None:
        removed_backups = _prune_backups(handler, params.get("keep_backups"), backup_file, params["backup"],
                                         check_mode)

    result = {
        "changed": changed, "source": label(source), "added": added, "updated": updated, "removed": removed,
        "deprecated": deprecated, "required_unlisted": required, "bundle_saved": bundle_saved,
        "removed_backups": removed_backups,
        "msg": _apply_summary(label(source), added, updated, removed, deprecated, required,
                              params.get("remove_deprecated")) + _pruned_summary(removed_backups, check_mode),
    }
    if backup_file:
        result["backup_file"] = backup_file
    if changed:
        result["diff"] = _state_diff(snapshot, new_state, live, new_values, is_secret, label(source))
    return result


def _required_unlisted(release_path, unlisted):
    """{key: files of the release that mention it} for the live keys the sample does not list.

    A sample may list only a few keys (Treazrisland's backend/.env.example has NODE_ENV and PORT): a key
    it lacks is deprecated only when the release's code no longer mentions it. Without release_path
    nothing can be told apart, and every unlisted key counts as deprecated.
    """
    if not release_path or not unlisted:
        return {}
    references = find_references(release_path, unlisted)
    return {key: references[key] for key in unlisted if key in references}


def _misread(snapshot, values, syntax):
    """Keys of values that one of the syntax's parsers reads from the live env file otherwise than given.

    python-dotenv's reading is the live value; for node_dotenv, Node's dotenv may read the same line
    differently (an inline comment or an escape kept, an ``export`` line skipped): such a key is
    rewritten even though python-dotenv already reads the value given.
    """
    if snapshot.envfile is None or not values:
        return set()
    misread = set()
    for _name, read in readers(syntax):
        parsed = read(snapshot.section["content"])
        misread.update(key for key, value in values.items() if parsed.get(key) != value)
    return misread


def _edited_envfile(snapshot, path, new_values, sample_env, added, updated, removed, syntax):
    """The live env file with keys set, removed and added, every other line untouched.

    Each value is written for syntax; keys whose value it cannot hold fail the run together, before
    anything is written.
    """
    invalid = [key for key in added if not _ENV_KEY.fullmatch(key)]
    if invalid:
        raise OpsError("%s cannot be written to an env file: not a valid key name" % ", ".join(invalid))
    original = snapshot.section["content"]
    parsers = readers(syntax)
    edited = EnvFile.parse(original, path)
    unwritable = []
    for key in updated:
        try:
            edited.set(key, new_values[key], syntax)
        except Unrepresentable:
            unwritable.append(key)
    for key in removed:
        edited.remove(key)
    documented = sample_env.values() if sample_env is not None else {}
    for key in added:
        comment = sample_env.comment_above(key) if key in documented else ""
        line = None
        if documented.get(key) == new_values[key]:
            line = sample_env.binding_text(key)
            if not all(read(line + "\n").get(key) == new_values[key] for _name, read in parsers):
                line = None  # the sample's line reads otherwise under the target parser: written afresh
        try:
            # The sample's own line when it fits: its quoting and ${VAR} references stay as documented.
            edited.append(key, new_values[key], comment, text=line, syntax=syntax)
        except Unrepresentable:
            unwritable.append(key)
    if unwritable:
        raise OpsError("%s: the value of %s cannot be written so that %s reads it exactly as given (env_syntax "
                       "%s; see the option's documentation for the values it can hold); nothing was written"
                       % (path, ", ".join(unwritable), _READER_OF[syntax], syntax))
    _check_reads_back(original, edited.render(), path, new_values, updated + added, removed, parsers)
    return edited


_READER_OF = {NODE_DOTENV: "Node's dotenv", PYTHON_DOTENV: "python-dotenv"}


def _check_reads_back(original, text, path, new_values, written, removed, parsers):
    """Read the edited text back as each target parser will: what is written must mean what was meant.

    Written keys must read as their new value, removed keys not at all, and every other key as that
    parser read it before the edit. Keys python-dotenv does not know are not compared: Node's dotenv 8
    may take a line inside a multi-line value for a binding of its own.
    """
    compared = set(new_values) | set(EnvFile.parse(original, path).values())
    for name, read in parsers:
        expected = dict(read(original))
        for key in removed:
            expected.pop(key, None)
        expected.update((key, new_values[key]) for key in written)
        after = read(text)
        wrong = sorted(key for key in compared if expected.get(key) != after.get(key))
        if wrong:
            raise OpsError("refusing to write %s: %s would read %s otherwise than intended; nothing was written"
                           % (path, name, ", ".join(wrong)))


def _keep_in_bundle(path, password, snapshot, check_mode):
    """Save the source's current state in the bundle, unless it already holds an (earlier) state of it.

    An earlier section wins: it is the state from before the upgrade, the one to roll back to.
    """
    try:
        document = config_bundle.read(path, password, missing_ok=True)
    except config_vault.WrongPassword:
        raise OpsError("bundle %s exists and cannot be opened with this password; nothing was changed" % path) from None
    sections = [{key: value for key, value in section.items() if key != "sha256"}
                for section in (document or {}).get("sections", [])]
    if any(section["source"] == snapshot.section["source"] for section in sections):
        return False
    if not check_mode:
        config_bundle.write(path, config_bundle.seal(sections + [snapshot.section]), password)
    return True


def _prune_backups(handler, keep, new_backup, backing_up, check_mode):
    """After an env file was written (or would be, in check mode), remove its backups beyond the newest keep.

    ``backing_up`` says whether this write takes a backup (made, or that a real run would make): it counts as
    the newest and is never removed. Check mode removes nothing and returns what a real run would remove.
    """
    if keep is None:
        return []
    doomed = handler.old_backups(keep, new_backup=new_backup, counts_new=backing_up)
    return doomed if check_mode else handler.remove_backups(doomed)


def _pruned_summary(removed_backups, check_mode):
    if not removed_backups:
        return ""
    return "; %s %d old backup(s)" % ("would remove" if check_mode else "removed", len(removed_backups))


def _apply_summary(name, added, updated, removed, deprecated, required, remove_deprecated):
    parts = []
    for verb, keys in (("added", added), ("updated", updated), ("removed", removed)):
        if keys:
            parts.append("%s %s" % (verb, ", ".join(keys)))
    if required:
        parts.append("kept %s (required: the release's code uses them, the sample does not list them)"
                     % ", ".join(required))
    if deprecated and not remove_deprecated:
        parts.append("kept deprecated %s (remove_deprecated is off)" % ", ".join(deprecated))
    return "%s: %s" % (name, "; ".join(parts) if parts else "already in line")


def _state_diff(snapshot, new_state, before_values, after_values, is_secret, name):
    """Before/after of a source, secrets shown only as changed or not."""
    def after_marker(key):
        changed = key in before_values and before_values[key] != after_values.get(key)
        return SECRET_CHANGED if changed else SECRET

    if snapshot.envfile is not None:
        before = snapshot.envfile.redacted(is_secret, lambda key: SECRET, runner.mask)
        after = new_state.redacted(is_secret, after_marker, runner.mask)
    else:
        before = redacted_lines(before_values, is_secret)
        after = redacted_lines(after_values, is_secret, before=before_values)
    return {"before": before, "after": after, "before_header": name, "after_header": name}


# ---------------------------------------------------------------------------------------------- restore
def _restore(params, check_mode, connection):
    """Put every section of a bundle back; nothing is written unless the whole bundle checks out."""
    path = params["bundle"]
    try:
        document = config_bundle.read(path, _password(params))
    except OpsError as error:
        raise OpsError("%s; nothing was restored" % error.msg, **error.details) from None
    plans = []
    for section in document["sections"]:
        connection.saw(section_values(section))
        handler = open_source(section["source"], connection)
        needed, current = handler.plan_restore(section)
        plans.append((section, handler, needed, current))

    restored, unchanged, backups, removed_backups, diffs = [], [], [], [], []
    for section, handler, needed, current in plans:
        name = label(section["source"])
        if not needed:
            unchanged.append(name)
            continue
        diffs.append(_restore_diff(section, current, connection.is_secret))
        backup = None
        if not check_mode:
            try:
                backup = handler.restore(section, current, params["backup"])
            except OpsError as error:
                raise OpsError("%s; restored before this failure: %s" % (error.msg, ", ".join(restored) or "nothing"),
                               restored=restored) from None
            if backup:
                backups.append(backup)
        restored.append(name)
        if section["source"]["type"] == "env_file" and handler.replaces_content(section, current):
            removed_backups += _prune_backups(handler, params.get("keep_backups"), backup,
                                              params["backup"] and current is not None, check_mode)
    result = {
        "changed": bool(restored), "bundle": path, "restored": restored, "unchanged": unchanged,
        "backup_files": backups, "removed_backups": removed_backups, "created_at": document.get("created_at"),
        "msg": ("restored %s from %s" % (", ".join(restored), path) if restored
                else "every source already matches %s" % path) + _pruned_summary(removed_backups, check_mode),
    }
    if diffs:
        result["diff"] = diffs
    return result


def _restore_diff(section, current, is_secret):
    name = label(section["source"])
    target_values = section_values(section)
    before_values = current.values if current is not None else {}

    def after_marker(key):
        return SECRET_CHANGED if key in before_values and before_values[key] != target_values.get(key) else SECRET

    if section["source"]["type"] == "env_file":
        target = EnvFile.parse(section["content"], name)
        before = current.envfile.redacted(is_secret, lambda key: SECRET, runner.mask) if current is not None else ""
        after = target.redacted(is_secret, after_marker, runner.mask)
        before_header = "%s (mode %s)" % (name, current.section["mode"]) if current is not None else name
        return {"before": before, "after": after, "before_header": before_header,
                "after_header": "%s (mode %s)" % (name, section["mode"])}
    return {"before": redacted_lines(before_values, is_secret) if current is not None else "",
            "after": redacted_lines(target_values, is_secret, before=before_values),
            "before_header": name, "after_header": name}
