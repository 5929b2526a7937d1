# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one subprocess runner: no shell, secrets masked, stdout streamed.

Secrets never go on a command line (callers pass them through the environment
or a 0600 file); this module also masks them in every message it builds, along
with any ``scheme://user:password@`` or ``password=...`` it finds.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tempfile
import threading

from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

MASK = "********"
CHUNK_SIZE = 1024 * 1024
STDERR_TAIL = 8192

_URI_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask(text, secrets=()):
    """Text with every secret, URI password and password= value hidden."""
    if not text:
        return text
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URI_PASSWORD.sub(r"\1" + MASK + "@", text)
    return _KEYWORD_PASSWORD.sub(r"\1" + MASK, text)


class CommandResult:
    """What a finished command did. stdout is None when it was streamed to a sink."""

    def __init__(self, argv, returncode, stdout, stderr, timed_out=False):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out

    @property
    def ok(self):
        return self.returncode == 0 and not self.timed_out

    def failure(self, action):
        """One sentence saying how the command failed, for OpsError."""
        name = os.path.basename(self.argv[0])
        if self.timed_out:
            how = "%s timed out" % name
        elif self.returncode < 0:
            how = "%s was killed by signal %s" % (name, _signal_name(-self.returncode))
        else:
            how = "%s exited with status %d" % (name, self.returncode)
        detail = self.stderr.strip()
        return "%s failed: %s%s" % (action, how, (": " + detail) if detail else "")


def _signal_name(number):
    try:
        return "%d (%s)" % (number, signal.Signals(number).name)
    except ValueError:
        return str(number)


def display_command(argv, secrets=()):
    return mask(" ".join(shlex.quote(str(arg)) for arg in argv), secrets)


def run(argv, env=None, secrets=(), sink=None, timeout=None, cwd=None):
    """Run argv without a shell and wait for it.

    ``env`` is added to this process's environment. With ``sink`` (any object
    with ``write(bytes)``) stdout is streamed into it chunk by chunk, never held
    in memory; without it stdout is returned as text. stderr is kept (its last
    8 KiB, masked). A sink that fails (disk full) stops the command and its
    error propagates unchanged.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    with tempfile.TemporaryFile() as stderr_file:
        try:
            process = subprocess.Popen(
                [str(arg) for arg in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=stderr_file, env=full_env, cwd=cwd,
            )
        except OSError as error:
            raise OpsError("cannot run %s: %s" % (argv[0], error.strerror or error))
        timer = _kill_after(process, timeout)
        try:
            stdout = _drain(process, sink)
        except BaseException:
            # The sink failed (disk full...): stop the command, let the caller say what it was writing.
            process.kill()
            process.wait()
            raise
        finally:
            if timer:
                timer.cancel()
        returncode = process.wait()
        stderr_file.seek(0, os.SEEK_END)
        stderr_file.seek(max(0, stderr_file.tell() - STDERR_TAIL))
        stderr = stderr_file.read().decode("utf-8", "replace")
    timed_out = bool(timer and timer.fired)
    return CommandResult(list(argv), returncode, stdout, mask(stderr, secrets), timed_out)


def _drain(process, sink):
    if sink is None:
        return process.stdout.read().decode("utf-8", "replace")
    read = process.stdout.read
    write = sink.write
    while True:
        chunk = read(CHUNK_SIZE)
        if not chunk:
            return None
        write(chunk)


class _Timer(threading.Timer):
    fired = False


def _kill_after(process, timeout):
    if not timeout:
        return None

    def kill():
        timer.fired = True
        process.kill()

    timer = _Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    return timer


def check(argv, action, **kwargs):
    """run(), raising OpsError with a clear sentence when the command fails."""
    result = run(argv, **kwargs)
    if not result.ok:
        raise OpsError(result.failure(action))
    return result
