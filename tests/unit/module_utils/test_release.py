"""The restart command check of preflight (module_utils.release.restart_command_problem)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils.release import restart_command_problem

ADVICE = (": Treazrisland ships no systemd unit; install one (docs/examples/treazrisland-backend.service) or set "
          "treazrisland_restart_command (docs/upgrade.md, Restarting the backend)")


@pytest.fixture
def fake_systemctl(tmp_path):
    """A stand-in for systemctl (no systemd runs here): answers LoadState from a table, or fails like a host
    without systemd as init."""
    def make(load_states=None, fail=False):
        script = tmp_path / "systemctl"
        body = 'echo "System has not been booted with systemd as init system (PID 1). Can\'t operate." >&2; exit 1' \
            if fail else 'case "$4" in %s *) echo not-found ;; esac' % "".join(
                "%s) echo %s ;; " % (unit, state) for unit, state in (load_states or {}).items())
        script.write_text("#!/bin/sh\n%s\n" % body)
        script.chmod(0o755)
        return str(script)
    return make


def test_an_installed_unit_or_a_plain_program_passes(fake_systemctl):
    assert restart_command_problem([fake_systemctl({"treazrisland-backend": "loaded"}), "restart",
                                    "treazrisland-backend"]) is None
    assert restart_command_problem(["true"]) is None
    assert restart_command_problem([fake_systemctl(), "daemon-reload"]) is None  # no unit named: nothing to check


def test_a_missing_unit_is_named_with_what_to_do(fake_systemctl):
    systemctl = fake_systemctl({"other": "loaded"})
    assert restart_command_problem([systemctl, "restart", "treazrisland-backend"]) == (
        "restart command %s restart treazrisland-backend: no systemd unit treazrisland-backend on this host%s"
        % (systemctl, ADVICE))


def test_a_host_without_systemd_says_so(fake_systemctl):
    systemctl = fake_systemctl(fail=True)
    assert restart_command_problem([systemctl, "restart", "treazrisland-backend"]) == (
        "restart command %s restart treazrisland-backend: systemctl cannot tell whether unit treazrisland-backend "
        "exists (System has not been booted with systemd as init system (PID 1). Can't operate.)%s" % (systemctl, ADVICE))


def test_a_missing_program_or_an_empty_command(tmp_path):
    missing = str(tmp_path / "restart-treazrisland")
    assert restart_command_problem([missing]) == "restart command %s: %s not found on this host" % (missing, missing)
    assert restart_command_problem(["no-such-program-here", "now"]) == (
        "restart command no-such-program-here now: no-such-program-here not found on this host")
    assert restart_command_problem([]) == "the restart command is empty"
    assert not os.path.exists(missing)
