"""A webhook receiver on 127.0.0.1 for the announcement tests: it records every request and answers as told.

    with Receiver(statuses=[500, 200]) as receiver:   # first request 500, every later one 200
        ... POST to receiver.url + "/hooks/<token>" ...
        receiver.requests[0]["json"]

It runs in a thread of the test's own process (no work directory, nothing left behind after stop()).
"""

from __future__ import annotations

import http.server
import json
import threading


class Receiver:
    """Records {method, path, headers, body, json} of each request; answers statuses in turn, the last one repeated."""

    def __init__(self, statuses=(200,), body=b"ok"):
        self.statuses = list(statuses)
        self.body = body
        self.requests = []
        self.lock = threading.Lock()
        self.server = None
        self.thread = None
        self.port = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802  pylint: disable=invalid-name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    document = json.loads(body)
                except ValueError:
                    document = None
                with receiver.lock:
                    receiver.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers),
                                              "body": body, "json": document})
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, *args):  # pylint: disable=arguments-differ
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
