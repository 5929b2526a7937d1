#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: container_release
short_description: Run Compose services on an image pinned by digest, through a pin file the collection owns
version_added: 0.4.0
description:
  - Writes the pin file, a Compose override (JSON, which is YAML) naming O(image) by digest for each of
    O(services) and keeping what it pinned for other services, atomically; the file it replaces is kept as
    C(<pin_file>.previous). The operator's own compose files are never written.
  - Then brings up (C(up -d --no-deps)) only the services whose containers run another image or are not running,
    and waits until their containers run, and report healthy when the image has a healthcheck.
  - Compose is the v2 plugin (C(docker compose)) when it answers, else C(docker-compose) (v1).
  - When Compose cannot start the new containers (a digest missing from the registry, for example), it leaves the
    old ones running; the pin file is then put back, so that it names what runs, and the module fails.
  - Idempotent; C(changed) only when the pin file or a container changes. Rolling back is the same call with the
    digest recorded before the upgrade.
author:
  - Treazrisland ops contributors (@picmac)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the containers and the pin file and says which services it would bring up.
  diff_mode:
    support: full
    details: The pin file before and after.
  platform:
    platforms: posix
    details: Runs on the host of the Compose project.
options:
  image:
    description:
      - "The image by digest, C(registry/repository@sha256:...), as M(treazrisland.ops.container_release_info)
        resolved it. A tag is refused: it may move between two hosts."
    type: str
    required: true
  project:
    description: The Compose project name (C(-p)).
    type: str
    required: true
  files:
    description: The operator's compose files, in order (C(-f) each); the pin file comes after them.
    type: list
    elements: path
    required: true
  services:
    description: The services that run O(image).
    type: list
    elements: str
    required: true
  pin_file:
    description: The collection's override file (for example next to the compose file).
    type: path
    required: true
  project_dir:
    description: The directory Compose runs in (its C(.env) is read there); default, the first file's directory.
    type: path
  compose_command:
    description: The Compose command line, for example V([docker, compose]); default, detected.
    type: list
    elements: str
  docker:
    description: The docker program.
    type: str
    default: docker
  timeout:
    description: Seconds for C(up), pulls included.
    type: int
    default: 600
  wait_timeout:
    description: Seconds to wait for the containers to run (and be healthy).
    type: int
    default: 120
notes:
  - "Give the services C(init: true) (or an init in the image): a Node or Python process as PID 1 ignores
    SIGTERM, and every switch then waits for Compose's 10 s stop timeout before it kills it."
seealso:
  - module: treazrisland.ops.container_release_info
"""

EXAMPLES = r"""
- name: Run the release resolved in preflight
  treazrisland.ops.container_release:
    image: "{{ release_image.resolved.pinned }}"
    project: treazrisland
    files: [/opt/treazrisland/compose.yml]
    pin_file: /opt/treazrisland/compose.treazrisland-ops.yml
    services: [backend]

- name: Roll back to the digest that ran before the upgrade
  treazrisland.ops.container_release:
    image: "127.0.0.1:5000/treazrisland-backend@{{ restore_point.image_digest }}"
    project: treazrisland
    files: [/opt/treazrisland/compose.yml]
    pin_file: /opt/treazrisland/compose.treazrisland-ops.yml
    services: [backend]
"""

RETURN = r"""
image:
  description: The pinned reference the services run.
  returned: always
  type: str
digest:
  description: Its digest.
  returned: always
  type: str
pin_file:
  description: The pin file.
  returned: always
  type: str
restarted:
  description: The services that were (or in check mode would be) brought up on the image.
  returned: always
  type: list
  elements: str
before:
  description: Per service, the digest its containers ran before (or C(image <id>) for an image with no digest).
  returned: always
  type: dict
after:
  description: The same, afterwards.
  returned: success
  type: dict
image_ids:
  description: Per service of O(services), the local image id its container runs (compare it to prove a rollback
    runs byte for byte the image that ran before); in check mode, the ones before.
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.treazrisland.ops.plugins.module_utils.container import switch
from ansible_collections.treazrisland.ops.plugins.module_utils.module import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            image=dict(type="str", required=True),
            project=dict(type="str", required=True),
            files=dict(type="list", elements="path", required=True),
            services=dict(type="list", elements="str", required=True),
            pin_file=dict(type="path", required=True),
            project_dir=dict(type="path"),
            compose_command=dict(type="list", elements="str"),
            docker=dict(type="str", default="docker"),
            timeout=dict(type="int", default=600),
            wait_timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    run_module(module, switch)


if __name__ == "__main__":
    main()
