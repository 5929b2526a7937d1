"""Several SSH hosts on one machine, for multi-host plays: network namespaces with their own sshd.

Each host is a network namespace on a bridge of the controller, with its own
address, hostname, sshd (own host key, config, pid file) and its own /opt and
/srv (bind-mounted privately), so that releases deployed on one host are not
seen by the others. Traffic goes only between the controller and these
namespaces.

Teardown kills every process left in each namespace (sshd, the app) before
deleting it, since deleting a namespace does not end its processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

# One bridge and subnet per process, so that two runs (a developer's and CI's) never share them.
_RUN = os.getpid() % 200 + 20
BRIDGE = "trzbr%d" % _RUN
SUBNET = "10.231.%d" % _RUN
CONTROLLER_ADDRESS = SUBNET + ".1"


def _run(argv, check=True):
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode:
        raise RuntimeError("%s failed: %s" % (" ".join(argv), result.stderr.strip()))
    return result


def namespaces_permitted():
    probe = "trz-probe-%d" % os.getpid()
    if _run(["ip", "netns", "add", probe], check=False).returncode:
        return False
    _run(["ip", "netns", "del", probe], check=False)
    return True


class SshHost:
    def __init__(self, name, address, root):
        self.name = name
        self.address = address
        self.namespace = "trz%d-%s" % (_RUN, name)
        self.root = root  # this host's own /opt and /srv live here on the controller
        self.pid = None

    @property
    def opt(self):
        return os.path.join(self.root, "opt")

    @property
    def srv(self):
        return os.path.join(self.root, "srv")


class SshHosts:
    """N hosts reachable over SSH as root with a key of their own, and their inventory."""

    def __init__(self, count=3, prefix="app"):
        self.count = count
        self.prefix = prefix
        self.base = None
        self.hosts = []

    @property
    def private_key(self):
        return os.path.join(self.base, "id_ed25519")

    def start(self):
        self.base = tempfile.mkdtemp(prefix="treazrisland-hosts-")
        os.makedirs("/run/sshd", exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.private_key])
        shutil.copy(self.private_key + ".pub", os.path.join(self.base, "authorized_keys"))
        self._cleanup_network()
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", CONTROLLER_ADDRESS + "/24", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        for number in range(1, self.count + 1):
            host = SshHost("%s%d" % (self.prefix, number), "%s.%d" % (SUBNET, 10 + number),
                           os.path.join(self.base, "%s%d" % (self.prefix, number)))
            self._start_host(host, number)
            self.hosts.append(host)
        for host in self.hosts:
            self._wait_for_ssh(host)
        return self

    def _start_host(self, host, number):
        for directory in (host.opt, host.srv):
            os.makedirs(directory)
        veth = "trzv%d-%d" % (_RUN, number)
        _run(["ip", "netns", "add", host.namespace])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.namespace])
        _run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
        inside = ["ip", "netns", "exec", host.namespace]
        _run(inside + ["ip", "addr", "add", host.address + "/24", "dev", "eth0"])
        _run(inside + ["ip", "link", "set", "eth0", "up"])
        _run(inside + ["ip", "link", "set", "lo", "up"])
        host_key = os.path.join(host.root, "ssh_host_ed25519_key")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key])
        config = os.path.join(host.root, "sshd_config")
        with open(config, "w") as handle:
            handle.write("\n".join([
                "ListenAddress %s" % host.address, "Port 22", "HostKey %s" % host_key,
                "PidFile %s" % os.path.join(host.root, "sshd.pid"),
                "AuthorizedKeysFile %s" % os.path.join(self.base, "authorized_keys"),
                "PermitRootLogin prohibit-password", "PasswordAuthentication no", "UsePAM no", "StrictModes no",
                "Subsystem sftp internal-sftp", "MaxSessions 50", "MaxStartups 50", "",
            ]))
        # Own hostname, own /opt and /srv: the sshd and every session it starts see only this host's.
        script = "hostname %s && mount --bind %s /opt && mount --bind %s /srv && exec /usr/sbin/sshd -D -e -f %s" % (
            host.name, host.opt, host.srv, config)
        log = open(os.path.join(host.root, "sshd.log"), "w")  # pylint: disable=consider-using-with
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            inside + ["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=log, stderr=log, start_new_session=True)
        host.pid = process.pid

    def _wait_for_ssh(self, host):
        deadline = time.monotonic() + 15
        while True:
            result = _run(["ssh"] + self.ssh_options() + ["root@" + host.address, "hostname"], check=False)
            if result.returncode == 0 and result.stdout.strip() == host.name:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("sshd of %s did not answer: %s" % (host.name, result.stderr.strip()))
            time.sleep(0.1)

    def ssh(self, host, argv):
        """Run a command on a host over SSH; returns the CompletedProcess."""
        import shlex  # pylint: disable=import-outside-toplevel
        return _run(["ssh"] + self.ssh_options() + ["root@" + host.address, shlex.join(argv)], check=False)

    def ssh_options(self):
        return ["-i", self.private_key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]

    def inventory(self, group="app", python="/usr/bin/python3", host_vars=None, **group_vars):
        """An INI inventory of the hosts, written next to the key; returns its path."""
        path = os.path.join(self.base, "inventory.ini")
        control = os.path.join(self.base, "cp-%h")
        lines = ["[%s]" % group]
        lines += ["%s ansible_host=%s%s" % (host.name, host.address, "".join(
            " %s=%s" % item for item in sorted((host_vars or {}).get(host.name, {}).items())))
            for host in self.hosts]
        lines += ["", "[%s:vars]" % group, "ansible_user=root", "ansible_python_interpreter=%s" % python,
                  "ansible_ssh_private_key_file=%s" % self.private_key,
                  "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                  # Keep-alives: a master connection to a host whose network went away dies within 6 s
                  # instead of hanging every later task on that host until TCP gives up.
                  "-o ServerAliveInterval=3 -o ServerAliveCountMax=2 "
                  "-o ControlMaster=auto -o ControlPersist=60s -o ControlPath=%s'" % control]
        lines += ["%s=%s" % item for item in sorted(group_vars.items())]
        lines += ["", "[local]", 'localhost ansible_connection=local ansible_python_interpreter="{{ '
                  'ansible_playbook_python }}"', ""]
        with open(path, "w") as handle:
            handle.write("\n".join(lines))
        return path

    def stop(self):
        if not self.base:
            return
        # ssh ControlPersist masters of this sandbox: their command line names its control path.
        _run(["pkill", "-f", "ControlPath=%s" % os.path.join(self.base, "cp-")], check=False)
        _run(["pkill", "-f", os.path.join(self.base, "cp-")], check=False)
        for host in self.hosts:
            pids = _run(["ip", "netns", "pids", host.namespace], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._cleanup_network()
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
        self.hosts = []

    def _cleanup_network(self):
        for number in range(1, self.count + 1):
            namespace = "trz%d-%s%d" % (_RUN, self.prefix, number)
            for pid in _run(["ip", "netns", "pids", namespace], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _run(["ip", "netns", "del", namespace], check=False)
            _run(["ip", "link", "del", "trzv%d-%d" % (_RUN, number)], check=False)
        _run(["ip", "link", "del", BRIDGE], check=False)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    with SshHosts() as sandbox:
        started = time.monotonic()
        for each in sandbox.hosts:
            out = _run(["ssh"] + sandbox.ssh_options() + ["root@" + each.address, "hostname; touch /opt/mine; ls /opt"])
            print(each.name, each.address, out.stdout.split())
        print("inventory:", open(sandbox.inventory()).read())
