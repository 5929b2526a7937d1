"""What every server the sandbox starts itself has in common: a free port, a process, a work directory.

A subclass sets ``LOG`` (its log file's name in ``base``), starts ``process`` and makes ``base`` in
``start()``; ``stop()`` ends the process (SIGTERM, then SIGKILL) and removes the directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process, timeout):
    """SIGTERM, then SIGKILL if it is still there after timeout seconds; waits for it either way."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class OwnedServer:
    """A server process and its work directory, both gone after stop()."""

    LOG = "server.log"
    STOP_TIMEOUT = 10

    process = None
    base = None
    port = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        raise NotImplementedError

    def stop(self):
        stop_process(self.process, timeout=self.STOP_TIMEOUT)
        self.process = None
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def log_tail(self, size=2000):
        """The last size bytes of the server's log, "" when there is none."""
        try:
            with open(os.path.join(self.base, self.LOG), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - size))
                return handle.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
