"""A stand-in for the Kubernetes API server: core/v1 Secrets and ConfigMaps, on 127.0.0.1.

No real API server can run on these machines (no kube-apiserver, kind, k3s or
envtest in any reachable registry, no container engine), so the Kubernetes
sources are tested against this: the few endpoints the kubernetes Python client
calls for them, with the behaviour that matters to the modules —

    GET  /api/v1/namespaces/{ns}/{secrets|configmaps}/{name}   200, or 404 with a Status
    PUT  /api/v1/namespaces/{ns}/{secrets|configmaps}/{name}   200; 409 on a stale resourceVersion
    POST /api/v1/namespaces/{ns}/{secrets|configmaps}          201; 409 if it exists

and a bearer token that every request must carry (401 otherwise). Objects live
in memory; ``requests`` records what was called, for the tests.

    with FakeKubeApi() as api:
        api.put_object("Secret", "treazrisland", "treazrisland-config", {"JWT_SECRET": "..."})
        api.write_kubeconfig(path)
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_PLURALS = {"secrets": "Secret", "configmaps": "ConfigMap"}
_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<plural>secrets|configmaps)(?:/(?P<name>[^/?]+))?/?(?:\?.*)?$")


class FakeKubeApi:
    def __init__(self):
        self.token = secrets.token_hex(16)
        self.objects = {}  # (kind, namespace, name) -> object dict
        self.requests = []  # (method, path)
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self._version = 100

    # lifecycle -------------------------------------------------------------
    def start(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    def write_kubeconfig(self, path, namespace="default"):
        """A kubeconfig pointing at this server with its token (plain HTTP on loopback)."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": namespace}}],
        }
        with open(path, "w") as handle:
            json.dump(config, handle)  # JSON is YAML: the client reads it as is
        return path

    # objects -----------------------------------------------------------------
    def put_object(self, kind, namespace, name, values):
        """Create or overwrite an object from plain {key: text} (base64-encoded for a Secret)."""
        data = {key: _encode(kind, value) for key, value in values.items()}
        with self._lock:
            self.objects[(kind, namespace, name)] = self._stamp({
                "apiVersion": "v1", "kind": kind, "type": "Opaque" if kind == "Secret" else None,
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": "treazrisland"}},
                "data": data,
            })

    def values(self, kind, namespace, name):
        """{key: text} of an object, decoded."""
        data = self.objects[(kind, namespace, name)].get("data") or {}
        if kind == "Secret":
            return {key: base64.b64decode(value).decode("utf-8") for key, value in data.items()}
        return dict(data)

    def _stamp(self, body):
        body = {key: value for key, value in body.items() if value is not None}
        self._version += 1
        body.setdefault("metadata", {})["resourceVersion"] = str(self._version)
        return body


def _encode(kind, value):
    return base64.b64encode(value.encode("utf-8")).decode("ascii") if kind == "Secret" else value


def _status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message,
            "code": code}


def _handler_for(api):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def _reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self):
            api.requests.append((self.command, self.path))
            if self.headers.get("Authorization") != "Bearer " + api.token:
                self._reply(401, _status(401, "Unauthorized", "Unauthorized"))
                return None
            match = _PATH.match(self.path)
            if not match:
                self._reply(404, _status(404, "NotFound", "the server could not find the requested resource"))
                return None
            return _PLURALS[match.group("plural")], match.group("ns"), match.group("name")

        def _body(self):
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

        def do_GET(self):  # noqa: N802 (http.server's naming)
            route = self._route()
            if route is None:
                return
            with api._lock:
                found = api.objects.get(route)
            if found is None:
                self._reply(404, _status(404, "NotFound", '%ss "%s" not found' % (route[0].lower(), route[2])))
            else:
                self._reply(200, found)

        def do_PUT(self):  # noqa: N802
            route = self._route()
            if route is None:
                return
            body = self._body()
            with api._lock:
                current = api.objects.get(route)
                if current is None:
                    self._reply(404, _status(404, "NotFound", "not found"))
                    return
                if body.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
                    self._reply(409, _status(409, "Conflict", "the object has been modified; please apply your "
                                                              "changes to the latest version and try again"))
                    return
                api.objects[route] = api._stamp(body)
                self._reply(200, api.objects[route])

        def do_POST(self):  # noqa: N802
            route = self._route()
            if route is None:
                return
            body = self._body()
            key = (route[0], route[1], body.get("metadata", {}).get("name"))
            with api._lock:
                if key in api.objects:
                    self._reply(409, _status(409, "AlreadyExists", "already exists"))
                    return
                body["metadata"].setdefault("namespace", route[1])
                api.objects[key] = api._stamp(body)
                self._reply(201, api.objects[key])

    return Handler
