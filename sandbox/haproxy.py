"""A throwaway HAProxy (Debian's package, 2.6) in front of the sandbox's app hosts, owned by the harness.

It listens on a free 127.0.0.1 port, balances backend ``app`` over one server per host (health checks
``GET /health``), and opens its runtime API on a unix socket (mode 600, level admin) in its own temporary
directory, which stop() removes.

    with HAProxy({"app1": ("10.200.0.11", 4000), ...}) as lb:
        urllib.request.urlopen(lb.url + "/version")
        # lb.socket: the runtime API (treazrisland.ops.haproxy_server)

With ``colors`` ({"blue": 4000, "green": 4001}), it also has one backend per color (``app_blue``, ``app_green``: the
same hosts on that color's port) and the frontend sends the traffic to the one named by the ``active`` entry of
``lb.color_map`` (treazrisland.ops.haproxy_switch); while the map has no entry, to backend ``app`` as before.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from sandbox.owned import OwnedServer, free_port

HAPROXY = "/usr/sbin/haproxy"
READY_TIMEOUT = 15.0
BACKEND = "app"

CONFIG = """global
    stats socket %(socket)s mode 600 level admin
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue 10s
    # A connection refused by a server (restarting outside a drain) is tried once more, on another server.
    retries 2
    option redispatch

frontend web
    bind 127.0.0.1:%(port)d
    # Maintenance window (treazrisland.ops.haproxy_maintenance, docs/maintenance.md): the map's entry for
    # "treazrisland", set over the runtime API, refuses everything but /health ("all") or writes ("writes").
    acl maintenance_all str(treazrisland),map(%(maintenance_map)s) -m str all
    acl maintenance_writes str(treazrisland),map(%(maintenance_map)s) -m str writes
    http-request return status 503 content-type text/plain string "maintenance" hdr Retry-After 30 if maintenance_all !{ path /health }
    http-request return status 503 content-type text/plain string "maintenance" hdr Retry-After 30 if maintenance_writes !METH_GET
%(color_rules)s    default_backend %(backend)s

backend %(backend)s
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2
%(servers)s
%(color_backends)s"""

# Blue/green (docs/upgrade.md): the map's entry names the color; no entry leaves the default backend.
COLOR_RULES = """    acl color_%(color)s str(%(key)s),map(%(color_map)s) -m str %(color)s
    use_backend %(backend)s_%(color)s if color_%(color)s
"""

COLOR_BACKEND = """
backend %(backend)s_%(color)s
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2
%(servers)s
"""
COLOR_KEY = "active"


def available():
    return os.access(HAPROXY, os.X_OK)


class HAProxy(OwnedServer):
    LOG = "haproxy.log"

    def __init__(self, servers, backend=BACKEND, weight=None, colors=None):
        """servers: {name: (address, port)}, in order; weight: each server's configured weight (HAProxy's 1 if None;
        100 lets a canary step of 10% mean 10); colors: {color: port} for blue/green backends, or None."""
        self.servers = dict(servers)
        self.backend = backend
        self.weight = weight
        self.colors = dict(colors or {})

    @property
    def socket(self):
        return os.path.join(self.base, "admin.sock")

    @property
    def maintenance_map(self):
        """The maintenance window's map file (empty at start: no window)."""
        return os.path.join(self.base, "maintenance.map")

    @property
    def color_map(self):
        """The blue/green map file (empty at start: the default backend)."""
        return os.path.join(self.base, "colors.map")

    def color_backends(self):
        """{color: backend name}."""
        return {color: "%s_%s" % (self.backend, color) for color in self.colors}

    def start(self):
        if not available():
            raise RuntimeError("%s not found: run bash sandbox/setup.sh (Debian's haproxy package)" % HAPROXY)
        self.base = tempfile.mkdtemp(prefix="treazrisland-haproxy-")
        self.port = free_port()
        config = os.path.join(self.base, "haproxy.cfg")
        weight = " weight %d" % self.weight if self.weight else ""
        open(self.maintenance_map, "w").close()  # pylint: disable=consider-using-with
        open(self.color_map, "w").close()  # pylint: disable=consider-using-with
        names = {"backend": self.backend, "key": COLOR_KEY, "color_map": self.color_map}
        with open(config, "w") as handle:
            handle.write(CONFIG % {
                "socket": self.socket, "port": self.port, "backend": self.backend,
                "maintenance_map": self.maintenance_map,
                "servers": self._servers(weight),
                "color_rules": "".join(COLOR_RULES % dict(names, color=color) for color in self.colors),
                "color_backends": "".join(COLOR_BACKEND % dict(names, color=color, servers=self._servers(weight, port))
                                          for color, port in self.colors.items())})
        log = open(os.path.join(self.base, "haproxy.log"), "ab")  # pylint: disable=consider-using-with
        try:
            # -db: stay in the foreground, the harness owns the process.
            self.process = subprocess.Popen([HAPROXY, "-db", "-f", config], stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=log, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                message = "haproxy exited at start: %s" % self.log_tail()
                self.stop()
                raise RuntimeError(message)
            if os.path.exists(self.socket):
                try:
                    urllib.request.urlopen(self.url + "/health", timeout=1).close()
                    return self
                except urllib.error.HTTPError:
                    return self  # HAProxy's own answer (503 while no server is up yet)
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("haproxy did not answer on %s within %.0f s" % (self.url, READY_TIMEOUT))

    def _servers(self, weight, port=None):
        """The server lines, on each server's own port or on a color's."""
        return "\n".join("    server %s %s:%d%s" % (name, address, port or own_port, weight)
                         for name, (address, own_port) in self.servers.items())

    def color(self):
        """The color the blue/green map sends the traffic to, or None (no entry: the default backend)."""
        for line in self.command("show map %s" % self.color_map).splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[1] == COLOR_KEY:
                return fields[2]
        return None

    def wait_until_up(self, timeout=10.0):
        """Wait until every server passed its health check (status UP in show stat)."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.server_status()
            if all(status.startswith("UP") for status in states.values()):
                return states
            if time.monotonic() > deadline:
                raise RuntimeError("HAProxy servers not all up after %.0f s: %s" % (timeout, states))
            time.sleep(0.1)

    def command(self, line):
        import socket  # pylint: disable=import-outside-toplevel
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(self.socket)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks).decode()
                chunks.append(chunk)

    def server_status(self, backend=None):
        """{server: status of show stat (UP, DOWN, DRAIN, MAINT...)} of the app backend, or of another one."""
        import csv  # pylint: disable=import-outside-toplevel
        rows = list(csv.reader(line for line in self.command("show stat").splitlines() if line.strip()))
        header = [rows[0][0][2:]] + rows[0][1:]
        found = {}
        for row in rows[1:]:
            fields = dict(zip(header, row))
            if fields["pxname"] == (backend or self.backend) and fields["svname"] in self.servers:
                found[fields["svname"]] = fields["status"]
        return found
