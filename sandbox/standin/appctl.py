"""Restart the stand-in app of a host: the sandbox's "restart command" (systemctl restart elsewhere).

    python3 appctl.py restart BASE_DIR PYTHON     stop the running app, start BASE_DIR/current/backend/app.py
    python3 appctl.py stop BASE_DIR                stop every app of the host (both colors)
    python3 appctl.py maintenance BASE_DIR on|off   the maintenance hook: writes refused (503) while on
    python3 appctl.py start-color BASE_DIR COLOR PORT PYTHON   (re)start BASE_DIR/COLOR/backend/app.py (blue/green)
    python3 appctl.py stop-color BASE_DIR PORT     stop the app of the color that listens on PORT

One process per port (shared/app-<port>.pid), as one systemd unit per color would be: ``restart`` restarts the
process on the port ``current``'s release listens on (PORT of its .env, then of its .env.local, as dotenv-flow
reads them), so after a blue/green switch it restarts the live color, never a second copy beside it.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time


def pidfile(base, port):
    return os.path.join(base, "shared", "app-%s.pid" % port)


def stop_pid(path):
    try:
        with open(path) as handle:
            pid = int(handle.read())
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


def stop(base):
    for path in glob.glob(os.path.join(base, "shared", "app*.pid")):
        stop_pid(path)


def port_of(backend):
    """The PORT the app in backend/ listens on: the last one of .env, then .env.local (later files win)."""
    port = None
    for name in (".env", ".env.local"):
        try:
            with open(os.path.join(backend, name), encoding="utf-8") as handle:
                for line in handle:
                    key, _sep, value = line.partition("=")
                    if key.strip() == "PORT":
                        port = value.strip().strip("\"'")
        except FileNotFoundError:
            pass
    return port or "4000"


def start(base, python, backend, port):
    # As the real backend is started: from its directory, where it reads .env (cd backend && node dist/src/index.js).
    log = open(os.path.join(base, "shared", "app.log"), "a")  # pylint: disable=consider-using-with
    process = subprocess.Popen([python, os.path.join(backend, "app.py")], cwd=backend, stdout=log, stderr=log,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    with open(pidfile(base, port), "w") as handle:
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
    elif action == "stop":
        stop(base)
    elif action == "restart":
        backend = os.path.join(base, "current", "backend")
        port = port_of(backend)
        stop_pid(pidfile(base, port))
        start(base, sys.argv[3], backend, port)
    elif action == "start-color":
        # Started from <base>/<color>, a link to the release: the app finds <base>/shared beside it, as from current.
        color, port, python = sys.argv[3], sys.argv[4], sys.argv[5]
        stop_pid(pidfile(base, port))
        start(base, python, os.path.join(base, color, "backend"), port)
    elif action == "stop-color":
        stop_pid(pidfile(base, sys.argv[3]))
    else:
        sys.exit("unknown action %r" % action)


if __name__ == "__main__":
    main()
