"""The ansible-vault 1.1 format written with cryptography: ansible's own VaultLib reads it, and the reverse."""

from __future__ import annotations

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.treazrisland.ops.plugins.module_utils import config_vault
from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

PLAINTEXT = '{"content": "JWT_SECRET=\\"é\\"\\n"}\n'.encode("utf-8") * 7


def test_ansible_reads_ours_and_we_read_ansible_s():
    ours = config_vault.encrypt(PLAINTEXT, b"correct horse")
    assert ours.startswith(b"$ANSIBLE_VAULT;1.1;AES256\n") and ours.endswith(b"\n")
    assert all(len(line) <= 80 for line in ours.splitlines())
    vault = VaultLib([("default", VaultSecret(b"correct horse"))])
    assert vault.decrypt(ours) == PLAINTEXT
    assert config_vault.decrypt(vault.encrypt(PLAINTEXT), b"correct horse") == PLAINTEXT


def test_each_encryption_uses_a_new_salt():
    assert config_vault.encrypt(b"x", b"pw") != config_vault.encrypt(b"x", b"pw")


def test_wrong_password_and_altered_file_are_refused():
    vaulttext = config_vault.encrypt(PLAINTEXT, b"right")
    with pytest.raises(config_vault.WrongPassword) as caught:
        config_vault.decrypt(vaulttext, b"wrong", "bundle b.vault")
    assert caught.value.msg == "cannot decrypt bundle b.vault: wrong password (or the file was altered)"
    lines = vaulttext.splitlines()
    flipped = lines[3][:10] + (b"0" if lines[3][10:11] != b"0" else b"1") + lines[3][11:]
    with pytest.raises(OpsError):
        config_vault.decrypt(b"\n".join(lines[:3] + [flipped] + lines[4:]), b"right")


def test_not_a_vault_file():
    with pytest.raises(OpsError) as caught:
        config_vault.decrypt(b'{"plain": "json"}', b"pw", "bundle x")
    assert caught.value.msg == "bundle x is not an ansible-vault file"


def test_password_from_file_is_stripped_like_ansible_vault(tmp_path):
    path = tmp_path / "pass"
    path.write_bytes(b"  s3cret pass \n")
    assert config_vault.read_password(password_file=str(path)) == b"s3cret pass"
    path.write_bytes(b"\n")
    with pytest.raises(OpsError) as caught:
        config_vault.read_password(password_file=str(path))
    assert caught.value.msg == "the bundle password file %s is empty" % path
    with pytest.raises(OpsError):
        config_vault.read_password()
