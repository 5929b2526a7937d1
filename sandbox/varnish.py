"""A throwaway Varnish cache on 127.0.0.1, in front of any local HTTP server (the S3 server's endpoint).

Debian's varnish package (7.1): ``varnishd -F`` runs in the foreground with its own working
directory (-n), no management port, and a VCL that caches every answer for an hour (so a stale
object really is served until purged) and accepts PURGE and BAN from 127.0.0.1 only.

    with Varnish(backend_port=s3.port) as cache:
        urllib.request.urlopen(cache.url + "/bucket/index.html")
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from sandbox.owned import OwnedServer, free_port

VARNISHD = "/usr/sbin/varnishd"
READY_TIMEOUT = 30.0

VCL = """vcl 4.1;

backend origin {
    .host = "127.0.0.1";
    .port = "%(backend_port)d";
}

acl purgers {
    "127.0.0.1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(405, "PURGE not allowed from " + client.ip));
        }
        return (purge);
    }
    if (req.method == "BAN") {
        if (client.ip !~ purgers) {
            return (synth(405, "BAN not allowed from " + client.ip));
        }
        # The path is a prefix: BAN /img/ drops everything under /img/.
        ban("req.url ~ ^" + req.url);
        return (synth(200, "Banned"));
    }
}

sub vcl_backend_response {
    # Cache every answer an hour, whatever the origin says: stale until purged.
    set beresp.ttl = 1h;
    set beresp.grace = 0s;
    unset beresp.http.Set-Cookie;
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
"""


def available():
    return os.access(VARNISHD, os.X_OK)


class Varnish(OwnedServer):
    LOG = "varnishd.log"

    def __init__(self, backend_port):
        self.backend_port = backend_port

    def start(self):
        if not available():
            raise RuntimeError("%s not found: run bash sandbox/setup.sh (Debian's varnish package)" % VARNISHD)
        self.base = tempfile.mkdtemp(prefix="treazrisland-varnish-")
        os.chmod(self.base, 0o755)  # varnishd's workers run as the varnish users
        vcl = os.path.join(self.base, "default.vcl")
        with open(vcl, "w") as handle:
            handle.write(VCL.replace("%(backend_port)d", str(self.backend_port)))
        os.chmod(vcl, 0o644)
        self.port = free_port()
        log = open(os.path.join(self.base, "varnishd.log"), "ab")
        try:
            self.process = subprocess.Popen(
                [VARNISHD, "-F", "-n", os.path.join(self.base, "work"), "-a", "127.0.0.1:%d" % self.port,
                 "-f", vcl, "-s", "malloc,32m", "-T", "none", "-p", "vsl_space=1M", "-p", "workspace_client=64k"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                message = "varnishd exited at start: %s" % self.log_tail()
                self.stop()
                raise RuntimeError(message)
            try:
                urllib.request.urlopen(self.url + "/", timeout=1).close()
                return self
            except urllib.error.HTTPError:
                return self  # the backend's own answer (403, 404...) came through
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("varnishd did not answer on %s within %.0f s" % (self.url, READY_TIMEOUT))

    def get(self, path, headers=None):
        """(body, X-Cache) of a GET through the cache."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read(), response.headers.get("X-Cache")
