"""A bounded load generator: live traffic through the load balancer, measured.

N worker threads share a fixed budget of requests, paced to a total rate, to a URL on 127.0.0.1 only:
reads (GET /version) and writes (POST /users with a unique email), mixed. It stops by itself once the
budget is spent (or at stop()); it counts successes, failures by status (None: no answer at all), the
requests a maintenance window refused on purpose (503 with Retry-After, apart from the failures), the
emails of the writes the app accepted, and latencies.

    load = Load(lb.url, workers=4, requests=20000, rate=80).start()
    ...  # the upgrade
    report = load.stop()   # {"sent", "ok", "failed", "failures", "p95_ms", ...}
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ALLOWED_HOSTS = ("127.0.0.1", "localhost")


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Load:
    def __init__(self, url, workers=4, requests=5000, rate=100.0, write_every=3, timeout=10.0, prefix="load"):
        host = urllib.parse.urlsplit(url).hostname
        if host not in ALLOWED_HOSTS:
            raise ValueError("the load generator sends to 127.0.0.1 only, not %r" % host)
        self.url = url.rstrip("/")
        self.workers = workers
        self.budget = requests
        self.interval = workers / float(rate)  # each worker's pause between two of its requests
        self.write_every = write_every  # one request in write_every is a write
        self.timeout = timeout
        self.prefix = "%s-%d" % (prefix, int(time.time() * 1000))
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self.ok = 0
        self.refused = 0  # 503 with Retry-After: the maintenance window, on purpose
        self.examples = []  # the first failures: method, URL, status and the answer's first words
        self.failures = {}  # status (or None) -> count
        self.accepted = set()  # emails of the writes answered 201
        self.latencies = []
        self.started = self.ended = None

    @property
    def email_pattern(self):
        """SQL LIKE pattern matching every email this load writes."""
        return self.prefix + "-%"

    def start(self):
        self.started = time.monotonic()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _number in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def running(self):
        return any(thread.is_alive() for thread in self._threads)

    def _next(self):
        with self._lock:
            number = next(self._numbers)
        return number if number <= self.budget else None

    def _work(self):
        while not self._stop.is_set():
            number = self._next()
            if number is None:
                return
            began = time.monotonic()
            if number % self.write_every == 0:
                email = "%s-%d@treazris.land" % (self.prefix, number)
                request = urllib.request.Request(self.url + "/users", data=json.dumps({"email": email}).encode(),
                                                 headers={"Content-Type": "application/json"}, method="POST")
            else:
                email, request = None, urllib.request.Request(self.url + "/version")
            refused = False
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    answer.read()
                    status = answer.status
            except urllib.error.HTTPError as error:
                status = error.code
                # A maintenance window refuses on purpose, saying when to come back: not a failure.
                refused = status == 503 and error.headers.get("Retry-After") is not None
                if not refused:
                    self._example(request, status, error.read(300).decode("utf-8", "replace"))
            except OSError as error:
                status = None
                self._example(request, status, str(error))
            elapsed = time.monotonic() - began
            with self._lock:
                if refused:
                    self.refused += 1
                elif status in (200, 201):
                    self.ok += 1
                    self.latencies.append(elapsed)
                    if email and status == 201:
                        self.accepted.add(email)
                else:
                    self.failures[status] = self.failures.get(status, 0) + 1
            self._stop.wait(max(0.0, self.interval - elapsed))

    def _example(self, request, status, why):
        """Keep the first few failures' answers: a report that says 5 failed should also say why."""
        with self._lock:
            if len(self.examples) < 10:
                answer = " ".join(why.split())[:200]
                self.examples.append("%s %s: %s %s" % (request.get_method(), request.full_url, status, answer))

    def stop(self):
        """Stop sending (the requests in flight finish) and return the report."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.ended = time.monotonic()
        return self.report()

    def wait(self):
        """Wait until the budget is spent; return the report."""
        for thread in self._threads:
            thread.join()
        self.ended = time.monotonic()
        return self.report()

    def report(self):
        with self._lock:
            failed = sum(self.failures.values())
            return {"sent": self.ok + failed + self.refused, "ok": self.ok, "failed": failed,
                    "refused_by_maintenance": self.refused, "failures": dict(self.failures),
                    "failure_examples": list(self.examples),
                    "writes_accepted": len(self.accepted),
                    "p50_ms": round(1000 * percentile(self.latencies, 0.50), 1) if self.latencies else None,
                    "p95_ms": round(1000 * percentile(self.latencies, 0.95), 1) if self.latencies else None,
                    "seconds": round((self.ended or time.monotonic()) - self.started, 1),
                    "budget_spent": self.ok + failed + self.refused >= self.budget}


class PhasedLoad:
    """A Load cut into the phases of a run: {phase, ok, failed, refused, p95_ms} for each, as the run goes.

    phases() is polled every 0.2 s and returns the names of the phases begun so far (for example those the
    run record notes); each new name starts a phase. Used as a context manager around the run:

        with PhasedLoad(load, lambda: site_phases(site)) as phased:
            ...  # the upgrade
        phased.report, phased.phases
    """

    def __init__(self, load, phases):
        self.load = load
        self.source = phases
        self.marks = [("before the run", 0, 0, 0)]  # (phase, latencies, failures, refused) seen at its start
        self.report, self.phases = None, []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _seen(self):
        return len(self.load.latencies), sum(self.load.failures.values()), self.load.refused

    def _watch(self):
        seen = set()
        while not self._done.wait(0.2):
            for name in self.source():
                if name not in seen:
                    seen.add(name)
                    with self.load._lock:  # pylint: disable=protected-access
                        self.marks.append((name,) + self._seen())

    def __enter__(self):
        self.load.start()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.report = self.load.stop()
        ends = self.marks[1:] + [("end",) + self._seen()]
        for (name, start, failed, refused), (_next, end, failed_end, refused_end) in zip(self.marks, ends):
            latencies = self.load.latencies[start:end]
            self.phases.append({"phase": name, "ok": end - start, "failed": failed_end - failed,
                                "refused": refused_end - refused,
                                "p95_ms": round(1000 * percentile(latencies, 0.95), 1) if latencies else None})

    def table(self):
        """The phases as lines of text."""
        return ["  %(phase)-24s ok %(ok)6d  failed %(failed)3d  refused %(refused)4d  p95 %(p95_ms)s ms" % phase
                for phase in self.phases]
