"""Mail transports: real SMTP (plain, STARTTLS or implicit TLS, with auth) and, when no SMTP server
is configured, a folder of .eml files so the whole flow works on a laptop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """The transport could not hand the message over. ``permanent``: retrying cannot help."""

    def __init__(self, detail: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent


class Transport(Protocol):
    description: str

    async def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> str:
        """Hands the message over; returns the server's answer. Raises DeliveryError."""
        ...


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    security: str = "none"  # none | starttls | tls
    username: str = ""
    password: str = ""
    timeout: float = 10.0
    ca_file: str = ""  # extra trust anchor (self-signed relay, tests)


class SmtpTransport:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.description = f"SMTP {config.host}:{config.port} ({config.security})"

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.config.ca_file:
            context.load_verify_locations(self.config.ca_file)
        return context

    def _send_blocking(self, message: EmailMessage, envelope_from: str, recipient: str) -> str:
        c = self.config
        client: smtplib.SMTP
        if c.security == "tls":
            client = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=self._tls_context())
        else:
            client = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        try:
            client.ehlo()
            if c.security == "starttls":
                client.starttls(context=self._tls_context())
                client.ehlo()
            if c.username:
                client.login(c.username, c.password)
            refused = client.send_message(message, from_addr=envelope_from, to_addrs=[recipient])
            if refused:
                code, text = refused[recipient]
                raise smtplib.SMTPRecipientsRefused({recipient: (code, text)})
            return "250 accepted"
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    async def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> str:
        try:
            return await asyncio.to_thread(self._send_blocking, message, envelope_from, recipient)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise DeliveryError(f"recipient refused: {code} {_text(text)}", permanent=code >= 500) from None
        except smtplib.SMTPDataError as exc:
            raise DeliveryError(
                f"message refused: {exc.smtp_code} {_text(exc.smtp_error)}", permanent=exc.smtp_code >= 500
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            # A configuration problem, not this message's fault: keep retrying while it is fixed.
            raise DeliveryError(f"SMTP authentication failed: {exc.smtp_code}", permanent=False) from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP error {exc.smtp_code} {_text(exc.smtp_error)}", permanent=False
            ) from None
        except (TimeoutError, smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise DeliveryError(
                f"SMTP server unreachable: {type(exc).__name__}: {exc}", permanent=False
            ) from None


class FileTransport:
    """Writes each e-mail as an .eml file, named after its Message-ID (a resend overwrites it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"mail folder {folder}"

    def _write(self, message: EmailMessage) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(str(message["Message-ID"]).encode()).hexdigest()[:24]
        path = self.folder / f"{digest}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(message.as_bytes(policy=SMTP_POLICY))
        os.replace(tmp, path)
        return path

    async def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> str:
        try:
            path = await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise DeliveryError(f"cannot write the mail file: {exc}", permanent=False) from None
        return f"written to {path}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
