"""module_utils.container: the pure parts, image references and the pin file."""

from __future__ import annotations

import json

import pytest

from ansible_collections.treazrisland.ops.plugins.module_utils.container import (
    ImageRef, PIN_HEADER, pin_text, read_pins, registry_url)
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("text, registry, repository, tag, name, url", [
    ("127.0.0.1:5000/treazrisland-backend:1.5.0", "127.0.0.1:5000", "treazrisland-backend", "1.5.0",
     "127.0.0.1:5000/treazrisland-backend", "http://127.0.0.1:5000/v2/treazrisland-backend/manifests/"),
    ("localhost/team/backend", "localhost", "team/backend", "latest", "localhost/team/backend",
     "http://localhost/v2/team/backend/manifests/"),
    ("ghcr.io/picmac/treazrisland/backend:v1", "ghcr.io", "picmac/treazrisland/backend", "v1",
     "ghcr.io/picmac/treazrisland/backend", "https://ghcr.io/v2/picmac/treazrisland/backend/manifests/"),
    ("postgres:16", None, "library/postgres", "16", "postgres",
     "https://registry-1.docker.io/v2/library/postgres/manifests/"),
    ("picmac/backend", None, "picmac/backend", "latest", "picmac/backend",
     "https://registry-1.docker.io/v2/picmac/backend/manifests/"),
])
def test_references_split_as_docker_reads_them(text, registry, repository, tag, name, url):
    ref = ImageRef(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.name) == (registry, repository, tag, None, name)
    assert registry_url(ref) == url
    assert ref.pinned(DIGEST) == name + "@" + DIGEST


def test_a_digest_reference_has_no_tag_and_pins_to_itself():
    ref = ImageRef("127.0.0.1:5000/treazrisland-backend@" + DIGEST)
    assert (ref.tag, ref.digest) == (None, DIGEST)
    assert ref.pinned(ref.digest) == ref.text


def test_insecure_asks_a_remote_registry_over_plain_http():
    assert registry_url(ImageRef("registry.lan:5000/app:1"), insecure=True).startswith("http://registry.lan:5000/")


@pytest.mark.parametrize("text, message", [
    ("app@sha256:short", "app@sha256:short: sha256:short is not a sha256 digest"),
    ("app:", "image app: is not a valid image reference (registry/repository:tag)"),
    ("Upper/Case:1", "image Upper/Case:1 is not a valid image reference (registry/repository:tag)"),
])
def test_bad_references_are_refused_with_one_sentence(text, message):
    with pytest.raises(OpsError) as raised:
        ImageRef(text)
    assert raised.value.msg.endswith(message), raised.value.msg


def test_the_pin_file_is_a_compose_override_and_reads_back():
    pins = {"backend": "127.0.0.1:5000/treazrisland-backend@" + DIGEST, "worker": "r/w@" + DIGEST}
    text = pin_text(pins)
    assert text.startswith(PIN_HEADER)
    body = json.loads("".join(line + "\n" for line in text.splitlines() if not line.startswith("#")))
    assert body == {"services": {"backend": {"image": pins["backend"]}, "worker": {"image": pins["worker"]}}}
    assert read_pins(text, "/x/pin.yml") == pins
    assert read_pins(None, "/x/pin.yml") == {}
    assert pin_text(dict(reversed(list(pins.items())))) == text  # one text for one content: idempotent writes


def test_a_file_that_is_not_a_pin_file_is_never_taken_for_one():
    with pytest.raises(OpsError) as raised:
        read_pins("services:\n  backend:\n    image: app:1\n", "/opt/app/pin.yml")
    assert raised.value.msg == ("pin file /opt/app/pin.yml was not written by this module (it cannot be read as "
                                "one): move it away, or point pin_file elsewhere")
