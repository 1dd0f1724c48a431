"""Sealed secrets and the MIME e-mail, without a server."""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import SMTP, default
from pathlib import Path

import pytest

from services.notify.delivery.composer import Envelope, compose, sender_domain, valid_address
from services.notify.delivery.sealing import SealError, SecretBox
from services.notify.domain.templates import Rendered

CONTENT = Rendered("Le tue credenziali", "Password provvisoria: Zq7-vR2", "")


def test_sealed_content_opens_only_for_its_message_and_key(tmp_path: Path) -> None:
    box = SecretBox.from_key_file(tmp_path / "keys" / "notify.key")
    sealed = box.seal(CONTENT, "message-1")
    assert b"Zq7-vR2" not in sealed
    assert box.open(sealed, "message-1") == CONTENT
    with pytest.raises(SealError):
        box.open(sealed, "message-2")  # bound to its message: cannot be moved to another row
    with pytest.raises(SealError):
        SecretBox(os.urandom(32)).open(sealed, "message-1")
    # The key file is private and reused on the next start.
    assert stat.S_IMODE((tmp_path / "keys" / "notify.key").stat().st_mode) == 0o600
    assert SecretBox.from_key_file(tmp_path / "keys" / "notify.key").open(sealed, "message-1") == CONTENT


def test_key_from_settings_must_be_32_bytes() -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    assert SecretBox.from_setting(key).open(SecretBox.from_setting(key).seal(CONTENT, "m"), "m") == CONTENT
    with pytest.raises(SealError):
        SecretBox.from_setting(base64.b64encode(b"short").decode())


def _envelope(**changes: object) -> Envelope:
    values: dict = dict(
        mail_from="Biblioteca civica <prestiti@biblioteca.example.org>",
        recipient="maria.rossi@example.org",
        recipient_name="Maria Rossi",
        message_id_header="<0123456789abcdef@biblioteca.example.org>",
        date=datetime(2026, 12, 3, 9, 30, tzinfo=UTC),
        language="it",
        reference="reservation:r1",
    )
    values.update(changes)
    return Envelope(**values)  # type: ignore[arg-type]


def test_mail_is_utf8_with_stable_headers() -> None:
    mail = compose(_envelope(), Rendered("«Dune» è già disponibile", "Il documento è già disponibile.\n"))
    raw = mail.as_bytes(policy=SMTP)
    assert raw == compose(
        _envelope(), Rendered("«Dune» è già disponibile", "Il documento è già disponibile.\n")
    ).as_bytes(policy=SMTP)  # a resend is byte-for-byte the same
    parsed = message_from_bytes(raw, policy=default)
    assert parsed["Subject"] == "«Dune» è già disponibile"
    assert parsed["Date"] == "Thu, 03 Dec 2026 09:30:00 +0000"
    assert parsed["Auto-Submitted"] == "auto-generated" and parsed["Content-Language"] == "it"
    assert parsed["X-Bibliodesk-Reference"] == "reservation:r1"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed.get_content().rstrip() == "Il documento è già disponibile."


def test_html_alternative_and_person_written_mail() -> None:
    mail = compose(_envelope(auto_generated=False), Rendered("Ciao", "testo", "<p>testo</p>"))
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["Auto-Submitted"] is None


def test_addresses() -> None:
    assert sender_domain("Biblioteca <prestiti@biblioteca.example.org>") == "biblioteca.example.org"
    assert sender_domain("nonsense") == "bibliodesk.invalid"
    assert valid_address("maria.rossi@example.org")
    assert (
        not valid_address("maria@")
        and not valid_address("not an address")
        and not valid_address("a@localhost")
    )
