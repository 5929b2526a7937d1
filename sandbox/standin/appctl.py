"""Restart the stand-in app of a host: the sandbox's "restart command" (systemctl restart elsewhere).

    python3 appctl.py restart BASE_DIR PYTHON     stop the running app, start BASE_DIR/current/backend/app.py
    python3 appctl.py stop BASE_DIR
    python3 appctl.py maintenance BASE_DIR on|off   the maintenance hook: writes refused (503) while on
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def stop(base):
    pidfile = os.path.join(base, "shared", "app.pid")
    try:
        with open(pidfile) as handle:
            pid = int(handle.read())
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


def start(base, python):
    # As the real backend is started: from its directory, where it reads .env (cd backend && node dist/src/index.js).
    backend = os.path.join(base, "current", "backend")
    log = open(os.path.join(base, "shared", "app.log"), "a")  # pylint: disable=consider-using-with
    process = subprocess.Popen([python, os.path.join(backend, "app.py")], cwd=backend, stdout=log, stderr=log,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    with open(os.path.join(base, "shared", "app.pid"), "w") as handle:
        handle.write(str(process.pid))


def maintenance(base, state):
    flag = os.path.join(base, "shared", "maintenance")
    if state == "on":
        with open(flag, "w"):
            pass
    elif os.path.exists(flag):
        os.unlink(flag)


def main():
    action, base = sys.argv[1], sys.argv[2]
    if action == "maintenance":
        maintenance(base, sys.argv[3])
        return
    stop(base)
    if action == "restart":
        start(base, sys.argv[3])


if __name__ == "__main__":
    main()
