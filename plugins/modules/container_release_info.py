#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: container_release_info
short_description: Resolve an image tag to its digest once, and read the digest each Compose service runs
version_added: 0.4.0
description:
  - With O(image), asks the registry which manifest the tag names now and returns its digest and the pinned
    reference (C(name@sha256:...)) that every host should then run, so a tag pushed over during the upgrade
    changes nothing. With a digest in O(image), confirms the registry still has it (the preflight of a rollback).
  - With O(project), reads the containers of that Compose project on this host (by Compose's own labels) and
    returns per service the image reference, image id, registry digest, state and healthcheck status.
  - Reads only.
  - The registry is asked over its HTTP API (C(GET /v2/<name>/manifests/<tag>)); the digest is the sha256 of the
    manifest as served, checked against the registry's C(Docker-Content-Digest) header. Registries that want a
    token login (Docker Hub, GHCR) are asked through C(docker pull) instead (O(resolve_with=docker)), on a host
    where C(docker login) was done.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  image:
    description:
      - An image reference, C(registry/repository:tag) or C(registry/repository@sha256:...).
      - A loopback registry (C(localhost), C(127.0.0.0/8)) is asked over plain HTTP, as Docker does; any other over
        HTTPS unless O(registry_insecure).
    type: str
  resolve_with:
    description:
      - V(registry), the registry's HTTP API (anonymous, or basic authentication with O(registry_username)).
      - V(docker), C(docker pull) then the pulled image's C(RepoDigests), with the host's C(docker login).
    type: str
    choices: [registry, docker]
    default: registry
  registry_username:
    description: User for the registry's basic authentication.
    type: str
  registry_password:
    description: Its password or token; never shown.
    type: str
  registry_insecure:
    description: Ask a registry that is not on loopback over plain HTTP.
    type: bool
    default: false
  validate_certs:
    description: Check the registry's TLS certificate.
    type: bool
    default: true
  timeout:
    description: Seconds for each registry request.
    type: int
    default: 30
  project:
    description: A Compose project name whose services' containers are read on this host.
    type: str
  docker:
    description: The docker program.
    type: str
    default: docker
seealso:
  - module: treazrisland.ops.container_release
  - name: OCI distribution specification, pulling manifests
    description: What the registry answers for a tag or a digest.
    link: https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
"""

EXAMPLES = r"""
- name: Resolve the release tag once, in preflight
  treazrisland.ops.container_release_info:
    image: registry.example.com/treazrisland/backend:1.5.0
  register: release_image
  delegate_to: localhost
  run_once: true

- name: Read what the backend runs on this host
  treazrisland.ops.container_release_info:
    project: treazrisland
  register: running

- name: Before a rollback, check the recorded digest is still in the registry
  treazrisland.ops.container_release_info:
    image: "registry.example.com/treazrisland/backend@{{ restore_point.image_digest }}"
  delegate_to: localhost
"""

RETURN = r"""
resolved:
  description: The image O(image) names, resolved.
  returned: when O(image) is given
  type: dict
  contains:
    image:
      description: O(image) as given.
      type: str
    name:
      description: The image's name, without tag or digest.
      type: str
    tag:
      description: The tag asked for; null when O(image) had only a digest.
      type: str
    digest:
      description: The manifest's digest.
      type: str
      sample: sha256:4f1c0b4d2b9c0bb1dc1a8d9e4c1e7d0f8f6c1e3a2b5d4c6e8f0a1b2c3d4e5f60
    pinned:
      description: The reference to run, C(name@digest).
      type: str
services:
  description: Per service of O(project), its containers on this host.
  returned: when O(project) is given
  type: dict
  sample:
    backend:
      - {container: treazrisland_backend_1, image: "127.0.0.1:5000/treazrisland-backend@sha256:4f1c...",
         image_id: "sha256:9a8b...", digest: "sha256:4f1c...", state: running, health: healthy,
         started_at: "2026-12-03T18:00:00Z"}
digests:
  description: Per service, the one registry digest its containers run (left out when they run several, or
    an image with no registry digest, which was built on the host).
  returned: when O(project) is given
  type: dict
  sample: {"backend": "sha256:4f1c..."}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.container import info
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            image=dict(type="str"),
            resolve_with=dict(type="str", default="registry", choices=["registry", "docker"]),
            registry_username=dict(type="str"),
            registry_password=dict(type="str", no_log=True),
            registry_insecure=dict(type="bool", default=False),
            validate_certs=dict(type="bool", default=True),
            timeout=dict(type="int", default=30),
            project=dict(type="str"),
            docker=dict(type="str", default="docker"),
        ),
        required_one_of=[("image", "project")],
        supports_check_mode=True,
    )
    run_module(module, info)


if __name__ == "__main__":
    main()
