"""Secret content at rest: AES-256-GCM with a key from the settings.

A message with secret variables (a temporary password) keeps the content to deliver sealed until
it is delivered or given up, then the sealed copy is deleted; the history only ever holds the
redacted copy. The key comes from ``BIBLIODESK_NOTIFY_SECRET_KEY`` (32 bytes, base64; or
``..._FILE``); without it, a key file is created in the data folder on first start (mode 0600).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.notify.domain.templates import Rendered


class SealError(Exception):
    pass


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SealError("the notify secret key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        try:
            key = base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4), altchars=b"-_")
        except (binascii.Error, ValueError):
            raise SealError("BIBLIODESK_NOTIFY_SECRET_KEY must be 32 bytes in base64") from None
        return cls(key)

    @classmethod
    def from_key_file(cls, path: Path) -> SecretBox:
        if path.exists():
            return cls(base64.b64decode(path.read_text().strip()))
        path.parent.mkdir(parents=True, exist_ok=True)
        key = AESGCM.generate_key(bit_length=256)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(key).decode() + "\n")
        return cls(key)

    def seal(self, content: Rendered, message_id: str) -> bytes:
        nonce = os.urandom(12)
        plain = json.dumps(
            {"subject": content.subject, "body_text": content.body_text, "body_html": content.body_html},
            ensure_ascii=False,
        ).encode()
        return nonce + self._aead.encrypt(nonce, plain, message_id.encode())

    def open(self, sealed: bytes, message_id: str) -> Rendered:
        try:
            plain = self._aead.decrypt(sealed[:12], sealed[12:], message_id.encode())
        except InvalidTag:
            raise SealError("cannot decrypt the sealed content (wrong key?)") from None
        data = json.loads(plain)
        return Rendered(data["subject"], data["body_text"], data["body_html"])
