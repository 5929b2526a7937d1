# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container releases pinned by image digest: a tag resolved once, what each Compose service runs, the switch.

Docker is driven through its command line (``docker``, and Compose as the v2 plugin ``docker compose`` or the
v1 program ``docker-compose``) by the collection's one subprocess runner: an app host needs no Python package
for it, and Compose needs the command line there anyway. A tag is resolved through the registry's HTTP API
(``/v2/<name>/manifests/<tag>``), from wherever the module runs and without pulling anything, or, for
registries that want a token login, by ``docker pull`` on a host that is logged in.

The collection never rewrites the operator's compose files: the digest of each service goes into a pin file of
its own (a Compose override, JSON being YAML), written atomically, the previous one kept beside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.treazrisland.ops.plugins.module_utils import atomic, runner
from ansible_collections.treazrisland.ops.plugins.module_utils.checksum import digest_chunks
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

# Every manifest kind a registry may hold for a tag; the digest is that of the one it answers with.
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
))
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
DOCKER_HUB = "registry-1.docker.io"
PIN_HEADER = ("# Written by treazrisland.ops.container_release: the image digest each service runs. Pass it last\n"
              "# (-f) to docker compose; edit your own compose files, never this one.\n")
MANIFEST_LIMIT = 4 * 1024 * 1024


class ImageRef:
    """``[registry/]repository[:tag][@digest]``, with Docker's defaults (Docker Hub, ``library/``, ``latest``)."""

    def __init__(self, text):
        self.text = text
        rest, _at, digest = text.partition("@")
        if digest and not DIGEST.match(digest):
            raise OpsError("image %s: %s is not a sha256 digest" % (text, digest))
        self.digest = digest or None
        head, slash, last = rest.rpartition("/")
        name, colon, tag = last.partition(":")
        self.tag = tag if colon else (None if self.digest else "latest")
        path = (head + slash + name) if slash else name
        first, _sep, remainder = path.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            self.registry, self.repository = first, remainder
        else:
            self.registry, self.repository = None, path if "/" in path else "library/" + path
        self.name = (self.registry + "/" if self.registry else "") + (path if not self.registry else remainder)
        if not self.repository or not re.match(r"^[a-z0-9]+([._/-][a-z0-9]+)*$", self.repository) or (colon and not tag):
            raise OpsError("image %s is not a valid image reference (registry/repository:tag)" % text)

    def pinned(self, digest):
        """The reference Compose runs: name@digest (a tag beside a digest would be ignored, so none is kept)."""
        return "%s@%s" % (self.name, digest)

    @property
    def registry_host(self):
        return self.registry or DOCKER_HUB


def registry_url(ref, insecure=False):
    """The manifest URL; plain HTTP for a loopback registry (as Docker allows) or when told it is insecure."""
    host = ref.registry_host
    bare = host.rsplit(":", 1)[0].strip("[]") if ":" in host and not host.endswith("]") else host.strip("[]")
    plain = insecure or bare == "localhost" or bare == "::1" or bare.startswith("127.")
    return "%s://%s/v2/%s/manifests/" % ("http" if plain else "https", host, ref.repository)


def ask_registry(ref, reference, params):
    """(HTTP status, body bytes, Docker-Content-Digest header) of one manifest request; no answer fails."""
    url = registry_url(ref, params.get("registry_insecure")) + reference
    try:
        answer = open_url(url, method="GET", headers={"Accept": MANIFEST_TYPES}, timeout=params["timeout"],
                          validate_certs=params.get("validate_certs", True), use_proxy=False,
                          url_username=params.get("registry_username"), url_password=params.get("registry_password"),
                          force_basic_auth=bool(params.get("registry_username")))
    except HTTPError as error:
        return error.code, b"", None
    except (URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise OpsError("registry %s cannot be reached: %s" % (ref.registry_host, getattr(reason, "strerror", None) or reason))
    with answer:
        body = answer.read(MANIFEST_LIMIT + 1)
        return answer.getcode(), body, answer.headers.get("Docker-Content-Digest")


def resolve_from_registry(ref, params):
    """The digest the registry serves for the reference's tag (or confirms for its digest)."""
    reference = ref.digest or ref.tag
    status, body, header = ask_registry(ref, reference, params)
    if status == 404:
        raise OpsError("image %s: the registry %s has no manifest %s (%s)" % (
            ref.text, ref.registry_host, reference,
            "pushed over, or deleted by a garbage collection" if ref.digest else "no such tag"))
    if status in (401, 403):
        raise OpsError("image %s: the registry %s refused the request (HTTP %d): give registry_username and "
                       "registry_password, or resolve_with=docker on a host where docker login was done"
                       % (ref.text, ref.registry_host, status))
    if status != 200:
        raise OpsError("image %s: the registry %s answered HTTP %d" % (ref.text, ref.registry_host, status))
    if len(body) > MANIFEST_LIMIT:
        raise OpsError("image %s: the registry's manifest is larger than %d bytes" % (ref.text, MANIFEST_LIMIT))
    # The digest is the sha256 of the manifest exactly as served: computed, then compared with the header.
    computed = "sha256:" + digest_chunks([body])[0]
    if header and header != computed:
        raise OpsError("image %s: the registry says digest %s but served a manifest of digest %s"
                       % (ref.text, header, computed))
    if ref.digest and computed != ref.digest:
        raise OpsError("image %s: the registry served a manifest of digest %s" % (ref.text, computed))
    return computed


def resolve_with_docker(ref, docker):
    """The digest by ``docker pull`` and the image's RepoDigests (the host's docker login is used)."""
    runner.check([docker, "pull", "--quiet", ref.text], "pull %s" % ref.text)
    shown = runner.check([docker, "image", "inspect", "--format", "{{json .RepoDigests}}", ref.text],
                         "inspect %s" % ref.text).stdout
    for repo_digest in json.loads(shown or "[]") or []:
        name, _at, digest = repo_digest.partition("@")
        if name in (ref.name, "docker.io/" + ref.name, ref.repository):
            return digest
    raise OpsError("image %s: docker pulled it but reports no digest for %s (RepoDigests %s)"
                   % (ref.text, ref.name, shown.strip()))


def resolve(params):
    """{image, tag, digest, pinned} of params['image'], resolved the way params['resolve_with'] says."""
    ref = ImageRef(params["image"])
    if params.get("resolve_with") == "docker":
        digest = resolve_with_docker(ref, params.get("docker") or "docker")
    else:
        digest = resolve_from_registry(ref, params)
    return {"image": ref.text, "name": ref.name, "tag": ref.tag, "digest": digest, "pinned": ref.pinned(digest)}


# Compose ---------------------------------------------------------------------
def compose_command(docker="docker", preferred=None):
    """The Compose command line: the v2 plugin (``docker compose``) when it answers, else v1 ``docker-compose``."""
    if preferred:
        return list(preferred)
    if runner.run([docker, "compose", "version"], timeout=30).ok:
        return [docker, "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise OpsError("neither docker compose (the v2 plugin) nor docker-compose (v1) is installed on this host")


def _inspect(docker, kind, ids):
    if not ids:
        return []
    shown = runner.check([docker, kind, "inspect"] + sorted(ids), "inspect %s" % kind).stdout
    return json.loads(shown or "[]")


def running(docker, project):
    """{service: what its container runs}: image reference, image id, digest, state and health, per service."""
    listed = runner.check([docker, "ps", "--all", "--quiet", "--no-trunc", "--filter",
                           "label=%s=%s" % (PROJECT_LABEL, project)], "list the containers of %s" % project).stdout
    containers = _inspect(docker, "container", listed.split())
    images = {image["Id"]: image for image in _inspect(docker, "image", {c["Image"] for c in containers})}
    services = {}
    for container in containers:
        service = (container["Config"].get("Labels") or {}).get(SERVICE_LABEL)
        if not service:
            continue
        configured = container["Config"]["Image"]
        state = container["State"]
        services.setdefault(service, []).append({
            "container": container["Name"].lstrip("/"), "image": configured, "image_id": container["Image"],
            "digest": _digest_of(configured, images.get(container["Image"], {})),
            "state": state.get("Status"), "health": (state.get("Health") or {}).get("Status"),
            "started_at": state.get("StartedAt")})
    return services


def _digest_of(configured, image):
    """The registry digest a container runs: from its reference when pinned, else from its image's RepoDigests."""
    _name, _at, digest = configured.partition("@")
    if digest:
        return digest
    try:
        name = ImageRef(configured).name
    except OpsError:
        return None
    for repo_digest in image.get("RepoDigests") or []:
        repo, _at, digest = repo_digest.partition("@")
        if repo in (name, "docker.io/" + name):
            return digest
    return None  # built on the host, never pushed: no digest to go back to


def pin_text(pinned):
    """The pin file: a Compose override naming each service's image by digest."""
    document = {"services": {service: {"image": reference} for service, reference in sorted(pinned.items())}}
    return PIN_HEADER + json.dumps(document, indent=2, sort_keys=True) + "\n"


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise OpsError("cannot read %s: %s" % (path, error.strerror or error))


def write_pin(path, text):
    """Write the pin file atomically, the one it replaces kept as <path>.previous."""
    previous = read_text(path)
    if previous is not None:
        atomic.write_text(path + ".previous", previous, mode=0o644)
    atomic.write_text(path, text, mode=0o644)


def wait_until_up(docker, project, services, timeout):
    """Each service's containers running, and healthy when the image has a healthcheck; bounded by timeout."""
    deadline = time.monotonic() + timeout
    while True:
        now = running(docker, project)
        waiting = {service: [(c["state"], c["health"]) for c in now.get(service, [])] for service in services}
        waiting = {service: states for service, states in waiting.items()
                   if not states or any(state != "running" or health not in (None, "healthy")
                                        for state, health in states)}
        if not waiting:
            return now
        unhealthy = {service: states for service, states in waiting.items()
                     if any(health == "unhealthy" or state in ("exited", "dead") for state, health in states)}
        if unhealthy or time.monotonic() > deadline:
            raise OpsError("%s not up after %d s: %s" % (
                ", ".join(sorted(unhealthy or waiting)), timeout, "; ".join(
                    "%s %s" % (service, ", ".join("%s%s" % (state, "/" + health if health else "")
                                                  for state, health in states) or "no container")
                    for service, states in sorted((unhealthy or waiting).items()))))
        time.sleep(1)


def read_pins(text, path):
    """{service: image reference} of a pin file's text (None: no file)."""
    if text is None:
        return {}
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    try:
        services = json.loads(body)["services"]
        return {service: entry["image"] for service, entry in services.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise OpsError("pin file %s was not written by this module (it cannot be read as one): move it away, or "
                       "point pin_file elsewhere" % path) from None


def _brief(services):
    """{service: digest or state} for results and diffs: one line per service."""
    return {service: ", ".join(sorted({c["digest"] or ("image %s" % c["image_id"]) for c in containers}))
            for service, containers in sorted(services.items())}


# module entry points ---------------------------------------------------------
def info(params, check_mode):
    """container_release_info: a tag resolved to its digest, and/or what a Compose project's services run."""
    result = {"changed": False}
    if params.get("image"):
        result["resolved"] = resolve(params)
    if params.get("project"):
        result["services"] = running(params["docker"], params["project"])
        result["digests"] = {service: containers[0]["digest"] for service, containers in result["services"].items()
                             if len({c["digest"] for c in containers}) == 1}
    return result


def switch(params, check_mode):
    """container_release: pin the services to image@digest and bring up those whose containers run anything else."""
    ref = ImageRef(params["image"])
    if not ref.digest:
        raise OpsError("image %s has no digest: give name@sha256:... (container_release_info resolves a tag once, "
                       "so that every host runs the same image even if the tag moves)" % ref.text)
    docker, project, services = params["docker"], params["project"], params["services"]
    pin_file = params["pin_file"]
    wanted = ref.pinned(ref.digest)
    before = running(docker, project)
    stale = [service for service in services
             if not before.get(service) or any(c["digest"] != ref.digest or c["state"] != "running"
                                               for c in before[service])]
    old_text = read_text(pin_file)
    pins = read_pins(old_text, pin_file)
    pins.update(dict.fromkeys(services, wanted))
    new_text = pin_text(pins)
    result = {"changed": bool(stale) or new_text != old_text, "image": wanted, "digest": ref.digest,
              "pin_file": pin_file, "restarted": stale, "before": _brief(before)}
    result["diff"] = {"before": old_text or "", "after": new_text, "before_header": pin_file, "after_header": pin_file}
    if check_mode or not result["changed"]:
        result["after"] = result["before"]
        result["image_ids"] = {service: before[service][0]["image_id"] for service in services if before.get(service)}
        return result
    if new_text != old_text:
        write_pin(pin_file, new_text)
    if stale:
        files = [argument for path in list(params["files"]) + [pin_file] for argument in ("-f", path)]
        argv = compose_command(docker, params.get("compose_command")) + ["-p", project] + files + [
            "up", "-d", "--no-deps"] + stale
        brought_up = runner.run(argv, cwd=params.get("project_dir") or os.path.dirname(params["files"][0]),
                                timeout=params["timeout"])
        if not brought_up.ok:
            # Compose leaves the old containers running when it cannot start the new ones: the pin file goes back
            # to what runs, so that the next `up` by hand does not start the failed image.
            if old_text is None:
                os.unlink(pin_file)
            else:
                write_pin(pin_file, old_text)
            raise OpsError("%s; the pin file was put back (%s)" % (
                brought_up.failure("bring up %s on %s" % (", ".join(stale), wanted)),
                "previous digests" if old_text else "none"), restarted=stale, before=result["before"])
    after = wait_until_up(docker, project, services, params["wait_timeout"])
    wrong = {service: [c["digest"] for c in containers] for service, containers in after.items()
             if service in services and any(c["digest"] != ref.digest for c in containers)}
    if wrong:
        raise OpsError("after the switch to %s, %s run other images: %s" % (wanted, ", ".join(sorted(wrong)), wrong))
    result["after"] = _brief(after)
    result["image_ids"] = {service: after[service][0]["image_id"] for service in services}
    return result
