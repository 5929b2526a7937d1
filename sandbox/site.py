"""A complete local Treazrisland deployment for the demo and the playbook tests.

Three app hosts (network namespaces with their own sshd), a PostgreSQL cluster
they reach over the sandbox bridge, the stand-in app's release artifacts, the
database at release 1.4.0's schema with some rows, and 1.4.0 deployed and
healthy on every host. ``variables`` are the deployment's variables, as an
operator would put them in group_vars (secrets included, so they travel to
ansible-playbook in a 0600 file, never on its command line).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import urllib.request
import sys
import tarfile
import tempfile

from sandbox.haproxy import HAProxy
from sandbox.hosts import CONTROLLER_ADDRESS, SshHosts
from sandbox.pgcluster import PgCluster
from sandbox.s3server import S3Server
from sandbox.standin.releases import build, build_all, release_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
APPCTL = os.path.join(REPO, "sandbox", "standin", "appctl.py")
RUNNER = os.path.join(REPO, "sandbox", "prisma_migrate.py")
BASE = "/opt/treazrisland"
DATABASE = "treazrisland"
ASSET_BUCKET = "treazrisland-assets"
BACKUP_BUCKET = "treazrisland-backups"
ASSETS_DIR = "frontend/dist/"
APP_PORT = 4000
# Blue/green (treazrisland_traffic_strategy: blue_green): blue is the port every host already serves on.
COLOR_PORTS = {"blue": APP_PORT, "green": APP_PORT + 1}


def run_playbook(playbook, inventory, variables, env=None):
    """ansible-playbook with variables from a 0600 file; returns the CompletedProcess (output streamed)."""
    handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # pylint: disable=consider-using-with
    with handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(variables, handle)
    try:
        return subprocess.run(["ansible-playbook", "-i", inventory, playbook, "-e", "@" + handle.name],
                              cwd=REPO, env=env, check=False)
    finally:
        os.unlink(handle.name)


class Site:
    """The sandbox deployment; start() leaves release 1.4.0 serving on every host."""

    def __init__(self, work_dir, hosts=None, base=BASE):
        self.work = work_dir
        self.base = base
        self.hosts = hosts
        self.own_hosts = hosts is None
        self.cluster = None
        self.s3 = None
        self.lb = None
        self.artifacts = {}
        self.variables = {}

    def start(self, deploy=None):
        """Start every server and build the deployment; a failure part way stops what was started."""
        try:
            return self._start(deploy)
        except BaseException:
            self.stop()
            raise

    def _start(self, deploy):
        if self.own_hosts:
            self.hosts = SshHosts(count=3).start()
        # HAProxy on 127.0.0.1 in front of the app hosts: one server per host, named as in the inventory.
        # Weight 100 each, so that a canary step of 10% is a weight of 10 (HAProxy's default weight is 1).
        # Also the blue and green backends and their map, for blue/green; the default backend stays "app" until the
        # map names a color.
        self.lb = HAProxy({host.name: (host.address, APP_PORT) for host in self.hosts.hosts}, weight=100,
                          colors=COLOR_PORTS).start()
        self.cluster = PgCluster(name="site", also_listen=CONTROLLER_ADDRESS).start()
        # The app hosts reach the bucket over the bridge, as the backend's object storage.
        self.s3 = S3Server("rclone", name="site", also_listen=CONTROLLER_ADDRESS).start()
        for bucket in (ASSET_BUCKET, BACKUP_BUCKET):
            self.s3.make_bucket(bucket)
        self.cluster.create_database(DATABASE)
        self.artifacts = build_all(os.path.join(self.work, "artifacts"))
        # 1.5.1: release 1.5.0 whose second new migration fails, for failure drills.
        self.artifacts["1.5.1"] = build("1.5.1", os.path.join(self.work, "artifacts"), version_of="1.5.0", overrides={
            "backend/prisma/migrations/20250701000000_rom_platform/migration.sql":
                b'ALTER TABLE "NoSuchTable" ADD COLUMN platform text;\n'})
        backups = os.path.join(self.work, "backups")
        os.makedirs(backups, exist_ok=True)
        self.variables = {
            "treazrisland_database_url": self.cluster.dsn(DATABASE),
            "treazrisland_backup_dir": backups,
            "treazrisland_base_dir": self.base,
            "treazrisland_migrate_command": [PYTHON, RUNNER, "deploy", "backend/prisma/migrations"],
            # The restore runbook migrates up to a chosen version: the runner stops after {to}.
            "restore_migrate_command": [PYTHON, RUNNER, "deploy", "backend/prisma/migrations", "--to", "{to}"],
            "treazrisland_restart_command": [PYTHON, APPCTL, "restart", self.base, PYTHON],
            "treazrisland_stop_command": [PYTHON, APPCTL, "stop", self.base],
            # The health URL is the collection's default (port 4000, as the backend's own sample says).
            "treazrisland_version_url": "http://127.0.0.1:%d/version" % APP_PORT,
            "treazrisland_deployment_log": os.path.join(self.work, "deployment.log"),
            "treazrisland_config_bundle_password": "bundle-" + os.urandom(8).hex(),
            "treazrisland_assets_uri": "s3://%s" % ASSET_BUCKET,
            "treazrisland_assets_snapshot_uri": "s3://%s/assets" % BACKUP_BUCKET,
            "treazrisland_s3_endpoint_url": self.s3.endpoint,
            "treazrisland_s3_region": self.s3.module_params()["region"],
            "treazrisland_s3_access_key": self.s3.access_key,
            "treazrisland_s3_secret_key": self.s3.secret_key,
            # What the traffic role needs when treazrisland_lb_kind is haproxy (default none: not used).
            "treazrisland_haproxy_socket": self.lb.socket,
            "treazrisland_haproxy_backend": self.lb.backend,
            # ...and the maintenance role when treazrisland_maintenance_kind is haproxy (default none).
            "treazrisland_haproxy_maintenance_map": self.lb.maintenance_map,
            # What blue/green needs (treazrisland_traffic_strategy: blue_green; not used otherwise).
            "treazrisland_blue_green_ports": COLOR_PORTS,
            "treazrisland_haproxy_color_map": self.lb.color_map,
            "treazrisland_haproxy_color_backends": self.lb.color_backends(),
            "treazrisland_color_start_command": [PYTHON, APPCTL, "start-color", self.base, "{color}", "{port}", PYTHON],
            "treazrisland_color_stop_command": [PYTHON, APPCTL, "stop-color", self.base, "{port}"],
            "treazrisland_color_version_url": "http://127.0.0.1:{port}/version",
        }
        self._database_at_140()
        self._assets_of_140()
        self._shared_env()
        if deploy:
            deploy(self)
        return self

    def _database_at_140(self):
        staged = os.path.join(self.work, "staged-1.4.0")
        with tarfile.open(self.artifacts["1.4.0"]) as tar:
            tar.extractall(staged)  # the sandbox's own artifact
        subprocess.run([PYTHON, RUNNER, "deploy", os.path.join(staged, "backend", "prisma", "migrations")],
                       env=dict(os.environ, DATABASE_URL=self.cluster.dsn(DATABASE)), check=True,
                       stdout=subprocess.DEVNULL)
        self.cluster.execute("""INSERT INTO "User" (email) SELECT 'player' || g || '@treazris.land'
                                FROM generate_series(1, 50) g;
                                INSERT INTO "Rom" (title, asset_uri) SELECT 'Game ' || g, 's3://assets/roms/' || g
                                FROM generate_series(1, 500) g""", DATABASE)

    def _assets_of_140(self):
        client = self.s3.client()
        for name, data in release_files("1.4.0").items():
            if name.startswith(ASSETS_DIR):
                client.put_object(Bucket=ASSET_BUCKET, Key=name[len(ASSETS_DIR):], Body=data)

    def served(self, port=APP_PORT):
        """{host: the release its app says it runs} (the stand-in's /version), on the app's port or a color's."""
        versions = {}
        for host in self.hosts.hosts:
            with urllib.request.urlopen("http://%s:%d/version" % (host.address, port), timeout=5) as answer:
                versions[host.name] = json.load(answer)["version"]
        return versions

    def metrics_versions(self):
        """{host: the release in treazrisland_build_info} from each app's Prometheus port (9464, as the real one)."""
        versions = {}
        for host in self.hosts.hosts:
            with urllib.request.urlopen("http://%s:9464/metrics" % host.address, timeout=5) as answer:
                for line in answer.read().decode().splitlines():
                    if line.startswith("treazrisland_build_info{"):
                        versions[host.name] = line.split('version="', 1)[1].split('"', 1)[0]
        return versions

    def served_where_reachable(self, port=APP_PORT):
        """{host: release} of the hosts that answer within 3 seconds (on the app's port or a color's)."""
        versions = {}
        for host in self.hosts.hosts:
            try:
                with urllib.request.urlopen("http://%s:%d/version" % (host.address, port), timeout=3) as answer:
                    versions[host.name] = json.load(answer)["version"]
            except OSError:
                pass
        return versions

    def current(self):
        """{host: the release its current symlink names}."""
        return {host.name: os.path.basename(os.readlink(os.path.join(host.opt, os.path.relpath(self.base, "/opt"),
                                                                     "current")))
                for host in self.hosts.hosts}

    def env_files(self):
        """{host: (bytes, mode)} of every host's shared .env."""
        found = {}
        for host in self.hosts.hosts:
            path = os.path.join(host.opt, os.path.relpath(self.base, "/opt"), "shared", ".env")
            with open(path, "rb") as handle:
                found[host.name] = (handle.read(), os.stat(path).st_mode & 0o7777)
        return found

    def runs(self):
        """The run records, oldest first."""
        records = []
        for path in glob.glob(os.path.join(self.variables["treazrisland_backup_dir"], "runs", "*.json")):
            if os.path.basename(path) != "lock.json":
                with open(path) as handle:
                    records.append(json.load(handle))
        return sorted(records, key=lambda record: (record["started_at"], record["id"]))

    def assets(self):
        """{key: bytes} of the asset bucket, without the sync's own manifest object."""
        return {key: data for key, data in self.s3.objects(ASSET_BUCKET).items() if not key.startswith(".treazrisland")}

    def _shared_env(self):
        for number, host in enumerate(self.hosts.hosts):
            shared = os.path.join(host.opt, os.path.relpath(self.base, "/opt"), "shared")
            os.makedirs(shared, exist_ok=True)
            with open(os.path.join(shared, ".env"), "w") as handle:
                handle.write(self.env_text(number))
            os.chmod(os.path.join(shared, ".env"), 0o600)

    def env_text(self, number):
        """A host's backend .env: the keys the real backend requires, pointing at the sandbox's servers."""
        return "\n".join([
            "# Treazrisland backend", "NODE_ENV=production", "PORT=%d" % APP_PORT,
            "DATABASE_URL=%s" % self.cluster.dsn(DATABASE, CONTROLLER_ADDRESS),
            "JWT_SECRET=jwt-%d-%s" % (number, os.urandom(16).hex()),
            "OBJECT_STORAGE_ENDPOINT=%s" % CONTROLLER_ADDRESS, "OBJECT_STORAGE_PORT=%d" % self.s3.port,
            "OBJECT_STORAGE_USE_SSL=false", "OBJECT_STORAGE_ACCESS_KEY=%s" % self.s3.access_key,
            "OBJECT_STORAGE_SECRET_KEY=%s" % self.s3.secret_key, "OBJECT_STORAGE_BUCKET=%s" % ASSET_BUCKET,
            "LOG_LEVEL=info", ""])

    def inventory(self, **host_vars):
        """The hosts' inventory; the health gates give a stopping app 5 seconds."""
        # The hosts use the project's venv (python-dotenv, cryptography, psycopg), which they share with the controller.
        return self.hosts.inventory(python=PYTHON, host_vars=host_vars, deploy_health_retries=5,
                                    verify_health_retries=5)

    def first_deploy_playbook(self):
        path = os.path.join(self.work, "first-deploy.yml")
        with open(path, "w") as handle:
            json.dump([{"name": "First deployment of 1.4.0", "hosts": "app", "gather_facts": False,
                        "roles": ["treazrisland.ops.deploy"]}], handle)
        return path

    def release_vars(self, version):
        return dict(self.variables, treazrisland_target_version=version,
                    treazrisland_release_artifact=self.artifacts[version])

    def stop_apps(self):
        for host in self.hosts.hosts:
            self.hosts.ssh(host, [PYTHON, APPCTL, "stop", self.base])

    def stop(self):
        if self.hosts and not self.own_hosts:
            self.stop_apps()  # shared hosts: leave no app holding the port for the next user
        if self.lb:
            self.lb.stop()
            self.lb = None
        if self.cluster:
            self.cluster.stop()
        if self.s3:
            self.s3.stop()
        if self.hosts and self.own_hosts:
            self.hosts.stop()
