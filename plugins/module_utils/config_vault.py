# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encrypt and decrypt in the ansible-vault 1.1 format (``$ANSIBLE_VAULT;1.1;AES256``).

Written with the ``cryptography`` library because modules run on the managed
host, where only ``ansible.module_utils`` is shipped, not ansible's own vault
code. The result is what ``ansible-vault encrypt`` writes, so operators open a
config bundle with ``ansible-vault view --vault-password-file FILE bundle``.

The format: PBKDF2-HMAC-SHA256 (10000 rounds, 32-byte random salt) derives 80
bytes: an AES-256 key, an HMAC-SHA256 key and a 16-byte counter block. The
PKCS#7-padded plaintext is encrypted with AES-CTR and authenticated with
HMAC-SHA256 over the ciphertext. The body is ``hex(salt)\\nhex(hmac)\\nhex(ct)``,
hex-encoded once more and wrapped at 80 columns under the header line.
"""

from __future__ import annotations

import binascii
import os
import traceback

from ansible_collections.treazrisland.ops.plugins.module_utils.errors import OpsError

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.hmac import HMAC
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
except ImportError:
    Cipher = None
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

HEADER = b"$ANSIBLE_VAULT;1.1;AES256"
KDF_ROUNDS = 10000
KEY_LENGTH = 32
IV_LENGTH = 16
SALT_LENGTH = 32
LINE_WIDTH = 80


class WrongPassword(OpsError):
    """The HMAC does not match: another password, or a damaged file."""


def _require_cryptography():
    if Cipher is None:
        raise OpsError("the Python library cryptography is required on the managed host: pip install cryptography",
                       exception=CRYPTOGRAPHY_IMPORT_ERROR)


def _derive(password, salt):
    derived = PBKDF2HMAC(algorithm=hashes.SHA256(), length=2 * KEY_LENGTH + IV_LENGTH, salt=salt,
                         iterations=KDF_ROUNDS).derive(password)
    return derived[:KEY_LENGTH], derived[KEY_LENGTH:2 * KEY_LENGTH], derived[2 * KEY_LENGTH:]


def encrypt(plaintext, password):
    """Vault text (bytes, ending in a newline) of plaintext bytes under password bytes."""
    _require_cryptography()
    salt = os.urandom(SALT_LENGTH)
    cipher_key, hmac_key, counter = _derive(password, salt)
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    encryptor = Cipher(algorithms.AES(cipher_key), modes.CTR(counter)).encryptor()
    ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    signer = HMAC(hmac_key, hashes.SHA256())
    signer.update(ciphertext)
    body = binascii.hexlify(b"\n".join([
        binascii.hexlify(salt), binascii.hexlify(signer.finalize()), binascii.hexlify(ciphertext)]))
    lines = [HEADER] + [body[start:start + LINE_WIDTH] for start in range(0, len(body), LINE_WIDTH)]
    return b"\n".join(lines) + b"\n"


def is_vault(data):
    return data.startswith(HEADER[:len(b"$ANSIBLE_VAULT;")])


def decrypt(vaulttext, password, name="the file"):
    """Plaintext bytes; OpsError for anything that is not 1.1/AES256 vault text, WrongPassword on a bad HMAC."""
    _require_cryptography()
    lines = vaulttext.strip().splitlines()
    if not lines or not is_vault(lines[0]):
        raise OpsError("%s is not an ansible-vault file" % name)
    header = [part.strip() for part in lines[0].split(b";")]
    if len(header) < 3 or header[1] not in (b"1.1", b"1.2") or header[2] != b"AES256":
        raise OpsError("%s uses vault format %s, only 1.1/1.2 with AES256 is supported"
                       % (name, b";".join(header[1:3]).decode("ascii", "replace")))
    try:
        salt_hex, hmac_hex, ciphertext_hex = binascii.unhexlify(b"".join(lines[1:])).split(b"\n", 2)
        salt, expected_hmac, ciphertext = (binascii.unhexlify(salt_hex), binascii.unhexlify(hmac_hex),
                                           binascii.unhexlify(ciphertext_hex))
    except (binascii.Error, ValueError):
        raise OpsError("%s is damaged: its vault body is not valid hex" % name) from None
    cipher_key, hmac_key, counter = _derive(password, salt)
    verifier = HMAC(hmac_key, hashes.SHA256())
    verifier.update(ciphertext)
    try:
        verifier.verify(expected_hmac)
    except InvalidSignature:
        raise WrongPassword("cannot decrypt %s: wrong password (or the file was altered)" % name) from None
    decryptor = Cipher(algorithms.AES(cipher_key), modes.CTR(counter)).decryptor()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise OpsError("%s is damaged: bad padding after decryption" % name) from None


def read_password(password=None, password_file=None):
    """The bundle password as bytes, from the option or a file (stripped as ansible-vault strips it)."""
    if password is not None and password_file is not None:
        raise OpsError("bundle_password and bundle_password_file are mutually exclusive")
    if password_file is not None:
        try:
            with open(password_file, "rb") as handle:
                secret = handle.read().strip()
        except OSError as error:
            raise OpsError("cannot read the bundle password file %s: %s" % (password_file, error.strerror)) from None
        if not secret:
            raise OpsError("the bundle password file %s is empty" % password_file)
        return secret
    if not password:
        raise OpsError("a bundle password is needed: set bundle_password or bundle_password_file")
    return password.encode("utf-8")
