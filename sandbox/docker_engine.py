"""A throwaway Docker engine, a local registry and the stand-in's releases as images: the sandbox of issue 12.

Why it is built this way:

- ``dockerd`` (Debian's docker.io, 20.10) runs directly, without systemd, and keeps everything under the directory
  it is given: ``data/`` is its data root (images; kept between runs, so that the base image is imported once per
  clone) and ``run/`` its exec root, pidfile, API socket and the containerd it starts (removed at stop).
- No bridge, no iptables, no IP forwarding: the engine changes nothing in the machine's network, so two engines can
  run side by side (the two pytest-xdist workers) and leave no ``docker0`` behind. Containers run with
  ``network_mode: host`` and the stand-in listens on the ports its environment names (PORT and METRICS_PORT: the
  metrics port is fixed at 9464 otherwise, and two containers would fight for it).
- Each engine puts its containers under a cgroup parent of its own, so that stop() finds every process it started
  (dockerd, its containerd and shims, the containers' processes) and ends each by its PID.
- Nothing can be pulled from outside: the base image comes from Debian's packages only (mmdebstrap into
  ``docker import``) with what the stand-in imports (python3-psycopg, python3-boto3). Its root file system is kept
  as a tar in ~/.cache/treazrisland-ops/docker-images, shared by every clone; each data root imports it once.
- The registry is Debian's docker-registry on a free 127.0.0.1 port, its storage a temporary directory: every run
  starts with an empty registry, so a digest it does not have is really missing. Deleting manifests is enabled (a
  test can take a digest away). The engine needs no insecure-registry setting for 127.0.0.0/8.
- Digests change with every build (the image configuration holds its creation time): read them, never write them
  down.

    with DockerEngine("test_container_sandbox") as engine:       # under .build/docker/test_container_sandbox
        first = engine.push_release("1.4.0")                    # ReleaseImage: .reference (repo@sha256:...)
        moved = engine.push_release("1.4.0", version_of="1.5.0")    # another build pushed over the same tag
        engine.registry.manifest_digest("treazrisland-backend", "1.4.0")    # == moved.digest
        engine.compose("-p", "app1", "-f", compose_file, "up", "-d")       # docker-compose v1 on this engine

Where dockerd cannot run (a program missing, not root, it exits at start), start() raises DockerUnavailable with
the reason, for pytest.skip; available() tells the same without starting anything.
"""

from __future__ import annotations

import collections
import fcntl
import glob
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from sandbox.owned import OwnedServer, free_port, stop_process
from sandbox.standin import releases

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINES = os.path.join(REPO, ".build", "docker")
# Shared by every clone on the machine (as ansible-test's sanity virtualenvs are): the tar's name is its recipe's key,
# so a clone with another package list builds its own, and a fresh clone skips the 40 to 90 s of mmdebstrap.
IMAGE_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "treazrisland-ops", "docker-images")

DOCKERD = "/usr/sbin/dockerd"
REGISTRY = "/usr/bin/docker-registry"
MMDEBSTRAP = "/usr/bin/mmdebstrap"
COMPOSE = "/usr/bin/docker-compose"
# Debian's client, of the daemon's own version; a newer one in /usr/local/bin ahead of it on PATH works too.
DEBIAN_CLI = "/usr/bin/docker"
PACKAGES = {DOCKERD: "docker.io", REGISTRY: "docker-registry", MMDEBSTRAP: "mmdebstrap", COMPOSE: "docker-compose"}

SUITE = "bookworm"
BASE_REPOSITORY = "local/debian-python"
# What sandbox/standin/app.py imports beyond the standard library: psycopg (3) and boto3.
BASE_PACKAGES = ("python3", "python3-psycopg", "python3-boto3")
# Nothing in the image reads them; without them the layer every push compresses is smaller. botocore's service
# models are three quarters of it: the stand-in makes S3 clients only, so only S3's model stays (and the top-level
# endpoint and retry files, which have no "/" after data/).
BOTOCORE_DATA = "/usr/lib/python3/dist-packages/botocore/data"
DPKG_FILTERS = ("path-exclude=/usr/share/doc/*", "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
                "path-exclude=/usr/share/locale/*", "path-exclude=%s/*/*" % BOTOCORE_DATA,
                "path-include=%s/s3/*" % BOTOCORE_DATA)
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"
RELEASE_REPOSITORY = "treazrisland-backend"
# Inside the image, laid out as on a host: current/ is the release, shared/ what outlives it (the maintenance flag,
# found by the app as ../shared from current/).
APP_BASE = "/srv/treazrisland"
# Keys the stand-in reads beyond its release's required and sample ones.
OPTIONAL_KEYS = ("METRICS_PORT", "LOG_LEVEL", "REDIS_URL", "OBJECT_STORAGE_USE_SSL", "DEGRADED_VERSIONS")
# The image's own healthcheck, as a real image has one: HTTP 200 from /health on the port the app's configuration
# names (read the way the app reads it, so a bind-mounted .env works as well as the environment). Like the real
# backend's, /health answers 200 when degraded: the collection's gate reads the JSON status, not this.
HEALTH_PROBE = ("import urllib.request, app; "
                "urllib.request.urlopen('http://127.0.0.1:%s/health' % app.load_env()['PORT'], timeout=2).close()")

DOCKERFILE = """FROM %(base)s
ADD %(artifact)s %(base_dir)s/current/
COPY env %(base_dir)s/current/backend/.env
WORKDIR %(base_dir)s/shared
WORKDIR %(base_dir)s/current/backend
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
LABEL org.opencontainers.image.title=%(repository)s org.opencontainers.image.version=%(version)s
HEALTHCHECK --interval=2s --timeout=3s --retries=2 CMD %(probe)s
CMD ["python3", "app.py"]
"""

REGISTRY_CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %(storage)s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:%(port)d
"""

# Asked for together, so that the registry answers with the manifest as pushed (and its digest), never with a
# schema 1 conversion of it.
MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))

ReleaseImage = collections.namedtuple("ReleaseImage", "version tag reference digest image_id")
ReleaseImage.__doc__ = """A release pushed to the local registry.

tag: what an operator writes (127.0.0.1:PORT/treazrisland-backend:1.4.0), and what can move;
reference: what a host runs (127.0.0.1:PORT/treazrisland-backend@sha256:...); digest: its manifest digest, as the
registry answers it (Docker-Content-Digest); image_id: the engine's image id (the same after a pull by digest)."""


class DockerUnavailable(RuntimeError):
    """dockerd cannot run here (a program missing, not root, it exits at start): the reason, for pytest.skip."""


class DockerError(RuntimeError):
    """A docker or docker-compose command failed: its command line, exit code and output."""


def docker_cli():
    """Debian's docker client, else whichever is on PATH, else None."""
    if os.access(DEBIAN_CLI, os.X_OK):
        return DEBIAN_CLI
    return shutil.which("docker")


def available():
    """True when the container sandbox can be tried here; else the reason (for pytest.skip)."""
    if os.geteuid() != 0:
        return "dockerd needs root here (no rootless Docker is set up): run the container tests as root"
    for program, package in PACKAGES.items():
        if not os.access(program, os.X_OK):
            return "%s not found: run bash sandbox/setup.sh (Debian's %s package)" % (program, package)
    if not docker_cli():
        return "no docker client found: run bash sandbox/setup.sh (Debian's docker.io package)"
    return True


# Base image ----------------------------------------------------------------------------------------------------------
def _source_lines(path):
    """The lines of an apt sources file without comments; a whole comment line is left out (in deb822 it is not
    the blank line that ends a stanza)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.split("#", 1)[0].rstrip() for line in handle if not line.lstrip().startswith("#")]
    except OSError:
        return []


def _one_line_sources(path):
    """(options, uri, suite, components) of each ``deb`` line of a sources.list file."""
    for line in _source_lines(path):
        fields = line.split()
        if len(fields) < 4 or fields[0] != "deb":
            continue
        options = ""
        if fields[1].startswith("["):
            end = next((index for index, field in enumerate(fields) if field.endswith("]")), None)
            if end is None:
                continue
            options, fields = " ".join(fields[1:end + 1]), [fields[0]] + fields[end + 1:]
        if len(fields) >= 4:
            yield options, fields[1], fields[2], fields[3:]


def _deb822_sources(path):
    """The same from a deb822 .sources file (one entry per suite of a stanza)."""
    stanzas, current, key = [], {}, None
    for line in _source_lines(path) + [""]:
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, _colon, value = line.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    for stanza in stanzas:
        if "deb" not in stanza.get("types", "").split() or stanza.get("enabled", "yes").lower() == "no":
            continue
        signed_by = stanza.get("signed-by", "")
        # A key file is passed on; an inline key block is not (mmdebstrap reads /etc/apt/trusted.gpg.d as well).
        options = "[signed-by=%s]" % signed_by if signed_by.startswith("/") and "\n" not in signed_by else ""
        for uri in stanza.get("uris", "").split():
            for suite in stanza.get("suites", "").split():
                yield options, uri, suite, stanza.get("components", "").split()


def apt_mirrors(suite=SUITE):
    """The machine's own apt sources of suite (and its -updates, -security), main only, as mmdebstrap's lines."""
    found = []
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        found.extend(_one_line_sources(path))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        found.extend(_deb822_sources(path))
    lines = []
    for options, uri, dist, components in found:
        if (dist == suite or dist.startswith(suite + "-")) and "main" in components:
            line = " ".join(part for part in ("deb", options, uri, dist, "main") if part)
            if line not in lines:
                lines.append(line)
    if not lines:
        raise RuntimeError("no apt source of %s (main) in /etc/apt/sources.list*: mmdebstrap has no mirror" % suite)
    return lines


def base_key(mirrors=None):
    """What the base image is made of, hashed: it names the image and its cached root file system."""
    recipe = [SUITE, list(BASE_PACKAGES), list(DPKG_FILTERS), MERGED_USR_HOOK, mirrors or apt_mirrors()]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]


def base_archive(cache=IMAGE_CACHE):
    """The base image's root file system as a tar: built with mmdebstrap once per machine (about 40 s), then kept.

    Two workers that want it at once build it once: the second waits for the first (a lock in the cache)."""
    mirrors = apt_mirrors()
    key = base_key(mirrors)
    path = os.path.join(cache, "debian-python-%s-%s.tar" % (SUITE, key))
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, "build.lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            return path
        partial = path[:-len(".tar")] + ".partial.tar"
        argv = [MMDEBSTRAP, "--quiet", "--variant=essential", "--format=tar", "--include=" + ",".join(BASE_PACKAGES),
                # A mirror of a fixed snapshot serves Release files whose Valid-Until has passed (the host's apt
                # is told the same).
                '--aptopt=Acquire::Check-Valid-Until "false"', '--aptopt=APT::Install-Recommends "false"']
        # No fsync per unpacked file: the tar is written once, and a crash leaves only a .partial.tar.
        argv += ["--dpkgopt=force-unsafe-io"] + ["--dpkgopt=" + dpkg_filter for dpkg_filter in DPKG_FILTERS]
        # Merged /usr set up by mmdebstrap itself (usr-is-merged), not by the usrmerge package and the perl it needs.
        argv.append("--hook-dir=" + MERGED_USR_HOOK)
        argv += [SUITE, partial] + mirrors
        log_path = os.path.join(cache, "mmdebstrap.log")
        with open(log_path, "wb") as log:
            completed = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=900,
                                       check=False)
        if completed.returncode != 0:
            if os.path.exists(partial):
                os.unlink(partial)
            with open(log_path, "rb") as log:
                tail = log.read()[-2000:].decode("utf-8", "replace")
            raise RuntimeError("mmdebstrap failed (exit %d) building the base image's root file system: %s"
                               % (completed.returncode, tail))
        os.replace(partial, path)
        for older in glob.glob(os.path.join(cache, "debian-python-*.tar")):
            if older != path:
                os.unlink(older)
    return path


def _image_env(files):
    """backend/.env of a release image: every key the stand-in reads, each empty.

    The stand-in, like dotenv-flow, takes from its environment only the keys its files name: these empty entries let
    the container's environment (compose ``environment:`` or ``env_file:``) configure it, and a required key that
    the environment leaves out stays empty, so the app refuses to start as the real one does. A host's own .env
    bind-mounted over this file works as well."""
    keys = files["backend/src/config/required-env.txt"].decode().split()
    for line in files["backend/.env.example"].decode().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            keys.append(line.split("=", 1)[0].strip())
    unique = []
    for key in keys + list(OPTIONAL_KEYS):
        if key not in unique:
            unique.append(key)
    return "".join("%s=\n" % key for key in unique)


# Registry ------------------------------------------------------------------------------------------------------------
class LocalRegistry(OwnedServer):
    """Debian's docker-registry (distribution 2.8) on a free 127.0.0.1 port, storage in its own temporary directory."""

    LOG = "registry.log"
    STOP_TIMEOUT = 5
    READY_TIMEOUT = 15.0

    @property
    def address(self):
        """host:port, the prefix of image names in this registry."""
        return "127.0.0.1:%d" % self.port

    def start(self):
        if not os.access(REGISTRY, os.X_OK):
            raise DockerUnavailable("%s not found: run bash sandbox/setup.sh (Debian's docker-registry package)"
                                    % REGISTRY)
        self.base = tempfile.mkdtemp(prefix="treazrisland-registry-")
        try:
            self.port = free_port()
            config = os.path.join(self.base, "config.yml")
            with open(config, "w", encoding="utf-8") as handle:
                handle.write(REGISTRY_CONFIG % {"storage": os.path.join(self.base, "storage"), "port": self.port})
            with open(os.path.join(self.base, self.LOG), "ab") as log:
                self.process = subprocess.Popen([REGISTRY, "serve", config], stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=log, start_new_session=True)
            deadline = time.monotonic() + self.READY_TIMEOUT
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError("docker-registry exited at start: %s" % self.log_tail())
                try:
                    with urllib.request.urlopen(self.url + "/v2/", timeout=1):
                        return self
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("docker-registry did not answer on %s within %.0f s: %s"
                                           % (self.url, self.READY_TIMEOUT, self.log_tail())) from None
                    time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def _request(self, method, path, headers=None):
        request = urllib.request.Request(self.url + path, method=method, headers=headers or {})
        return urllib.request.urlopen(request, timeout=10)  # 127.0.0.1 only

    def manifest(self, name, reference):
        """(digest, media type, body) of a manifest by tag or digest, as the registry serves it; None when missing."""
        try:
            with self._request("GET", "/v2/%s/manifests/%s" % (name, reference), {"Accept": MANIFEST_TYPES}) as answer:
                return answer.headers["Docker-Content-Digest"], answer.headers["Content-Type"], answer.read()
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def manifest_digest(self, name, reference):
        """The digest a tag (or digest) resolves to now, from the registry's API; None when it has none."""
        found = self.manifest(name, reference)
        return found[0] if found else None

    def tags(self, name):
        try:
            with self._request("GET", "/v2/%s/tags/list" % name) as answer:
                return sorted(json.load(answer).get("tags") or [])
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return []
            raise

    def delete_manifest(self, name, digest):
        """Take a manifest (by digest) out of the registry: what a registry's garbage collection or a purge does."""
        self._request("DELETE", "/v2/%s/manifests/%s" % (name, digest)).close()


# Engine --------------------------------------------------------------------------------------------------------------
class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the engine's unix socket: the readiness probe, without starting a client per try."""

    def __init__(self, path):
        super().__init__("localhost", timeout=1)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(1)
        self.sock.connect(self.path)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


class DockerEngine:
    """One dockerd with its own data root, exec root, socket and cgroup parent, and (by default) a LocalRegistry.

    name: the directory .build/docker/<name> (one engine at a time per directory: a second one is refused);
    directory: another directory instead (keep it short: containerd's sockets live under it, and unix socket paths
    are limited to 107 bytes); registry: start a LocalRegistry with the engine (engine.registry)."""

    READY_TIMEOUT = 30.0
    STOP_TIMEOUT = 20

    def __init__(self, name="sandbox", directory=None, registry=True, dockerd=DOCKERD):
        self.directory = os.path.abspath(directory or os.path.join(ENGINES, name))
        self.data_root = os.path.join(self.directory, "data")
        self.exec_root = os.path.join(self.directory, "run")
        self.socket = os.path.join(self.exec_root, "docker.sock")
        self.pidfile = os.path.join(self.exec_root, "dockerd.pid")
        self.log = os.path.join(self.directory, "dockerd.log")
        self.cgroup = "treazrisland-docker-" + hashlib.sha256(self.directory.encode()).hexdigest()[:10]
        self.dockerd = dockerd
        self.with_registry = registry
        self.registry = None
        self.process = None
        self.cli = None
        self.server_version = None
        self._lock = None
        self._base = None

    # lifecycle ---------------------------------------------------------------------------------------------------
    def unavailable_reason(self):
        """None when dockerd can be started here; else why not."""
        if os.geteuid() != 0:
            return "dockerd needs root here (no rootless Docker is set up): run the container tests as root"
        if not os.access(self.dockerd, os.X_OK):
            return "%s not found: run bash sandbox/setup.sh (Debian's docker.io package)" % self.dockerd
        if not docker_cli():
            return "no docker client found: run bash sandbox/setup.sh (Debian's docker.io package)"
        # containerd's ttrpc socket is the longest path under the exec root.
        longest = os.path.join(self.exec_root, "containerd", "containerd.sock.ttrpc")
        if len(longest.encode()) > 107:
            return "the engine's directory %s is too long for unix sockets: give a shorter one" % self.directory
        return None

    def start(self):
        reason = self.unavailable_reason()
        if reason:
            raise DockerUnavailable(reason)
        os.makedirs(self.directory, exist_ok=True)
        lock_path = os.path.join(self.directory, "engine.lock")
        self._lock = open(lock_path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise RuntimeError("another engine runs on %s: one dockerd per data root (give another name)"
                               % self.directory) from None
        try:
            # A run that was killed may have left its dockerd, containerd or mounts: they are this directory's.
            self._end_leftovers()
            shutil.rmtree(self.exec_root, ignore_errors=True)
            os.makedirs(self.exec_root, mode=0o700)
            os.makedirs(os.path.join(self.exec_root, "client"))
            os.makedirs(self.data_root, exist_ok=True)
            self.cli = docker_cli()
            self._spawn()
            self._forget_earlier_runs()
            if self.with_registry:
                self.registry = LocalRegistry().start()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self):
        config = os.path.join(self.exec_root, "daemon.json")
        with open(config, "w", encoding="utf-8") as handle:
            # Not /etc/docker/daemon.json: nothing of the machine's own Docker setup. 20.10 still makes a trust key,
            # by default as /etc/docker/key.json: it is kept in the data root instead (no command line flag for it).
            json.dump({"deprecated-key-path": os.path.join(self.data_root, "key.json")}, handle)
        argv = [self.dockerd, "--config-file", config, "--data-root", self.data_root, "--exec-root", self.exec_root,
                "--pidfile", self.pidfile, "--host", "unix://" + self.socket, "--storage-driver", "overlay2",
                "--bridge", "none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                "--cgroup-parent", "/" + self.cgroup, "--log-level", "warn"]
        # dockerd finds docker-init, docker-proxy, runc and containerd on PATH.
        env = dict(os.environ, PATH=os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/local/sbin:/usr/sbin:/sbin")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                            start_new_session=True)
        deadline = time.monotonic() + self.READY_TIMEOUT
        while not self._pings():
            if self.process.poll() is not None:
                raise DockerUnavailable("dockerd exited at start (exit %d): %s" % (self.process.returncode,
                                                                                   self.log_tail()))
            if time.monotonic() > deadline:
                raise RuntimeError("dockerd did not answer on %s within %.0f s: %s"
                                   % (self.socket, self.READY_TIMEOUT, self.log_tail()))
            time.sleep(0.05)
        self.server_version = self.docker("version", "--format", "{{.Server.Version}}").stdout.strip()

    def _pings(self):
        if not os.path.exists(self.socket):
            return False
        connection = _UnixHTTPConnection(self.socket)
        try:
            connection.request("GET", "/_ping")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def _forget_earlier_runs(self):
        """Containers, networks, volumes and release images an earlier run left in the data root; base images stay."""
        self._remove_containers()
        listed = self.docker("images", "--all", "--no-trunc", "--format", "{{.ID}} {{.Repository}}").stdout.split("\n")
        pairs = [line.split(" ", 1) for line in listed if line.strip()]
        keep = {image_id for image_id, repository in pairs if repository == BASE_REPOSITORY}
        others = sorted({image_id for image_id, _repository in pairs} - keep)
        if others:
            self.docker("rmi", "--force", *others, check=False)
        self.docker("volume", "prune", "--force")
        self.docker("network", "prune", "--force")

    def _remove_containers(self):
        ids = self.docker("ps", "--all", "--quiet", "--no-trunc").stdout.split()
        if ids:
            self.docker("rm", "--force", "--volumes", *ids, timeout=120)

    def stop(self):
        """Stop the registry, every container (SIGKILL: nothing of theirs is kept), dockerd (SIGTERM, it stops its
        containerd), then whatever of this engine is still running, by PID, and what it left mounted."""
        if self.registry is not None:
            self.registry.stop()
            self.registry = None
        if self._lock is None:
            return  # never started (or another engine holds the directory): nothing here is this one's
        if self.process is not None and self.process.poll() is None:
            try:
                self._remove_containers()
            except (DockerError, OSError, subprocess.SubprocessError):
                pass  # dockerd is stopped below all the same, and what is left after it is ended by PID
        stop_process(self.process, timeout=self.STOP_TIMEOUT)
        self.process = None
        self._end_leftovers()
        shutil.rmtree(self.exec_root, ignore_errors=True)
        self._lock.close()  # releases the directory
        self._lock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, size=2000):
        try:
            with open(self.log, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - size))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # what this engine started ---------------------------------------------------------------------------------------
    def _cgroup_dirs(self):
        return glob.glob("/sys/fs/cgroup/*/%s" % self.cgroup) + glob.glob("/sys/fs/cgroup/%s" % self.cgroup)

    def leftover_processes(self):
        """PIDs of this engine still running: dockerd (its pidfile), its containerd and shims (their command lines
        name this engine's directory) and its containers' processes (in its cgroup parent). [] after stop()."""
        pids = set()
        try:
            with open(self.pidfile, encoding="utf-8") as handle:
                pid = int(handle.read().strip())
            if _alive(pid) and self.directory + os.sep in _cmdline(pid):
                pids.add(pid)
        except (OSError, ValueError):
            pass
        for entry in os.listdir("/proc"):
            if entry.isdigit() and self.directory + os.sep in _cmdline(entry):
                pids.add(int(entry))
        for cgroup in self._cgroup_dirs():
            for procs in glob.glob(os.path.join(cgroup, "**", "cgroup.procs"), recursive=True):
                try:
                    with open(procs, encoding="utf-8") as handle:
                        pids.update(int(line) for line in handle if line.strip())
                except (OSError, ValueError):
                    pass
        pids.discard(os.getpid())
        return sorted(pid for pid in pids if _alive(pid))

    def _end_leftovers(self):
        """SIGTERM, then SIGKILL, to each leftover process; then unmount what is mounted under the directory and
        remove the (empty) cgroups."""
        pids = self.leftover_processes()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _alive(pid) and _cmdline(pid)]  # a zombie has no command line
            time.sleep(0.05)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for mount_point in sorted(self._mounts(), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", mount_point], capture_output=True, check=False)
        for cgroup in self._cgroup_dirs():
            for path, _dirs, _files in sorted(os.walk(cgroup), key=lambda walked: len(walked[0]), reverse=True):
                try:
                    os.rmdir(path)
                except OSError:
                    pass

    def _mounts(self):
        found = []
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            for line in handle:
                mount_point = line.split()[4]
                for escape in ("\\040", "\\011", "\\012", "\\134"):
                    mount_point = mount_point.replace(escape, chr(int(escape[1:], 8)))
                if mount_point.startswith(self.directory + os.sep):
                    found.append(mount_point)
        return found

    # clients ------------------------------------------------------------------------------------------------------
    @property
    def env(self):
        """The environment for docker, docker-compose, the Docker SDK or Ansible to talk to this engine, and only to
        it (its own client configuration: nothing of ~/.docker)."""
        env = dict(os.environ)
        for key in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            env.pop(key, None)
        env.update(DOCKER_HOST="unix://" + self.socket, DOCKER_CONFIG=os.path.join(self.exec_root, "client"),
                   DOCKER_BUILDKIT="0", COMPOSE_INTERACTIVE_NO_CLI="1")
        return env

    def _run(self, argv, timeout, check, cwd=None):
        try:
            completed = subprocess.run(argv, env=self.env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                                       text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as error:
            raise DockerError("%s: no answer within %d s" % (" ".join(argv), timeout)) from error
        if check and completed.returncode != 0:
            output = (completed.stderr or completed.stdout).strip()[-2000:]
            raise DockerError("%s exited %d: %s" % (" ".join(argv), completed.returncode, output))
        return completed

    def docker(self, *args, timeout=120, check=True):
        """Run the docker client against this engine; the CompletedProcess (text). DockerError when it fails."""
        return self._run([self.cli] + list(args), timeout, check)

    def compose(self, *args, cwd=None, timeout=180, check=True):
        """Run docker-compose (v1, 1.29: the v2 plugin is in no registry reachable here) against this engine."""
        return self._run([COMPOSE] + list(args), timeout, check, cwd=cwd)

    def inspect(self, reference):
        """docker image inspect of one image, as a dict; DockerError when the engine has no such image."""
        return json.loads(self.docker("image", "inspect", reference).stdout)[0]

    def inspect_container(self, container):
        return json.loads(self.docker("container", "inspect", container).stdout)[0]

    def image_exists(self, reference):
        return self.docker("image", "inspect", "--format", "{{.Id}}", reference, check=False).returncode == 0

    def pull(self, reference):
        self.docker("pull", "--quiet", reference, timeout=300)
        return self.inspect(reference)["Id"]

    def remove_image(self, reference):
        self.docker("rmi", "--force", reference)

    # images -------------------------------------------------------------------------------------------------------
    def base_image(self):
        """The base image (Debian 12, python3, psycopg, boto3) in this engine: imported from the cached root file
        system when the data root lacks it (a few seconds), the file system built first when missing (mmdebstrap,
        about 40 s). Its tag names its recipe, so a changed package list makes a new one."""
        if self._base is None:
            reference = "%s:%s-%s" % (BASE_REPOSITORY, SUITE, base_key())
            if not self.image_exists(reference):
                self.docker("import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]', base_archive(),
                            reference, timeout=600)
            self._base = reference
        return self._base

    def push_release(self, version, tag=None, version_of=None, overrides=None):
        """Build the stand-in's release as an image on the base image, push it under ``tag`` (the version by
        default) and return its ReleaseImage, the digest read back from the registry.

        version_of and overrides are those of sandbox.standin.releases.build: another release's content, or changed
        files, under this version's name. Every call is a new build with a new digest: called again with the same
        tag, it moves the tag, and the digest pushed before stays in the registry."""
        if self.registry is None:
            raise RuntimeError("this engine was started without a registry")
        tag_reference = "%s/%s:%s" % (self.registry.address, RELEASE_REPOSITORY, tag or version)
        context = tempfile.mkdtemp(prefix="build-", dir=self.exec_root)
        try:
            artifact = releases.build(version, context, version_of=version_of, overrides=overrides)
            with open(os.path.join(context, "env"), "w", encoding="utf-8") as handle:
                handle.write(_image_env(releases.release_files(version, version_of, overrides)))
            with open(os.path.join(context, "Dockerfile"), "w", encoding="utf-8") as handle:
                handle.write(DOCKERFILE % {"base": self.base_image(), "artifact": os.path.basename(artifact),
                                           "base_dir": APP_BASE, "repository": RELEASE_REPOSITORY,
                                           "version": version, "probe": json.dumps(["python3", "-c", HEALTH_PROBE])})
            # No build cache: a rebuild of the same content is a new image, as a real rebuild is. The engine has no
            # bridge: the builder's containers use the host's network.
            self.docker("build", "--quiet", "--no-cache", "--network", "host", "--tag", tag_reference, context,
                        timeout=300)
            self.docker("push", tag_reference, timeout=300)
        finally:
            shutil.rmtree(context, ignore_errors=True)
        image = self.inspect(tag_reference)
        repository = tag_reference.rsplit(":", 1)[0]
        local = [entry.split("@", 1)[1] for entry in image.get("RepoDigests") or []
                 if entry.startswith(repository + "@")]
        digest = self.registry.manifest_digest(RELEASE_REPOSITORY, tag or version)
        if not digest or digest not in local:
            raise RuntimeError("the registry has %s for %s, the engine %s: the push did not land"
                               % (digest, tag_reference, local))
        return ReleaseImage(version, tag_reference, "%s@%s" % (repository, digest), digest, image["Id"])


if __name__ == "__main__":
    # Keep an engine with its registry for manual work: python -m sandbox.docker_engine [name]
    import sys

    with DockerEngine(sys.argv[1] if len(sys.argv) > 1 else "sandbox") as running:
        print("dockerd %s: export DOCKER_HOST=unix://%s; registry on %s; Ctrl-C stops both"
              % (running.server_version, running.socket, running.registry.address), file=sys.stderr)
        try:
            running.process.wait()
        except KeyboardInterrupt:
            pass
