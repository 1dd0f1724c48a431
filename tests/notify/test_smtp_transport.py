"""The SMTP transport against real SMTP servers: STARTTLS with authentication, implicit TLS, refusals."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.notify.delivery.transport import DeliveryError, SmtpConfig, SmtpTransport


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class Inbox:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword) and (data.login, data.password) == (b"biblioteca", b"s3greto"):
            self.logins.append(data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return context


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=_server_context(certificate),
        require_starttls=True,
        authenticator=inbox.authenticate,
        auth_required=True,
    )
    controller.start()
    yield inbox, port
    controller.stop()


def _mail() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "prestiti@biblioteca.example.org"
    msg["To"] = "maria.rossi@example.org"
    msg["Subject"] = "Il documento è già disponibile"
    msg["Message-ID"] = "<abc@biblioteca.example.org>"
    msg.set_content("è già disponibile", charset="utf-8")
    return msg


async def test_starttls_with_login_delivers(
    starttls_server: tuple[Inbox, int], certificate: tuple[Path, Path]
) -> None:
    inbox, port = starttls_server
    transport = SmtpTransport(
        SmtpConfig(
            host="127.0.0.1",
            port=port,
            security="starttls",
            username="biblioteca",
            password="s3greto",
            ca_file=str(certificate[0]),
        )
    )
    await transport.send(_mail(), "prestiti@biblioteca.example.org", "maria.rossi@example.org")
    assert inbox.logins == ["biblioteca"] and len(inbox.received) == 1
    assert b"Message-ID: <abc@biblioteca.example.org>" in inbox.received[0]


async def test_wrong_password_is_a_temporary_failure(
    starttls_server: tuple[Inbox, int], certificate: tuple[Path, Path]
) -> None:
    _, port = starttls_server
    transport = SmtpTransport(
        SmtpConfig(
            host="127.0.0.1",
            port=port,
            security="starttls",
            username="biblioteca",
            password="wrong",
            ca_file=str(certificate[0]),
        )
    )
    with pytest.raises(DeliveryError) as err:
        await transport.send(_mail(), "prestiti@biblioteca.example.org", "maria.rossi@example.org")
    assert not err.value.permanent and "authentication failed" in err.value.detail


async def test_an_untrusted_certificate_is_not_accepted(starttls_server: tuple[Inbox, int]) -> None:
    inbox, port = starttls_server
    transport = SmtpTransport(
        SmtpConfig(
            host="127.0.0.1", port=port, security="starttls", username="biblioteca", password="s3greto"
        )
    )
    with pytest.raises(DeliveryError) as err:
        await transport.send(_mail(), "prestiti@biblioteca.example.org", "maria.rossi@example.org")
    assert not err.value.permanent and inbox.received == []


async def test_implicit_tls_delivers(certificate: tuple[Path, Path]) -> None:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=_server_context(certificate))
    controller.start()
    try:
        transport = SmtpTransport(
            SmtpConfig(host="127.0.0.1", port=port, security="tls", ca_file=str(certificate[0]))
        )
        await transport.send(_mail(), "prestiti@biblioteca.example.org", "maria.rossi@example.org")
    finally:
        controller.stop()
    assert len(inbox.received) == 1


async def test_nobody_listening_is_a_temporary_failure() -> None:
    transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=_free_port(), timeout=2))
    with pytest.raises(DeliveryError) as err:
        await transport.send(_mail(), "prestiti@biblioteca.example.org", "maria.rossi@example.org")
    assert not err.value.permanent and "unreachable" in err.value.detail
