"""Secret encryption at rest: AES-256-GCM, a fresh 12-byte nonce per value.

Stored form: urlsafe-base64(nonce || ciphertext || tag), as upstream, so a database written by
upstream can be read here with the same key.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SecretKeyMismatch(ValueError):
    """A stored secret fails its authentication tag: it was encrypted with a different key."""


class SecretCipher:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), None)
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str) -> str:
        raw = base64.urlsafe_b64decode(token.encode())
        try:
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None).decode()
        except InvalidTag as exc:
            raise SecretKeyMismatch("secret cannot be decrypted with SECRETS_ENCRYPTION_KEY") from exc
