"""The notify service as a runtime module: wiring from settings, nothing at import time.

Settings (besides the shared BIBLIODESK_SMTP_* / MAIL_FROM / MAIL_REPLY_TO):

- ``BIBLIODESK_SMTP_HOST`` empty (the embedded default): every e-mail is written as an .eml file in
  ``$BIBLIODESK_HOME/outbox-mail/`` (``BIBLIODESK_NOTIFY_MAIL_FOLDER`` to move it).
- ``BIBLIODESK_SMTP_CA_FILE``: an extra CA to trust for STARTTLS / implicit TLS.
- ``BIBLIODESK_NOTIFY_SECRET_KEY`` (32 bytes base64, or ``_FILE``): seals secret content until
  delivery; default: ``$BIBLIODESK_HOME/keys/notify-secret.key``, created on first start.
- ``BIBLIODESK_LIBRARY_NAME`` (templates' ``library_name``), ``BIBLIODESK_NOTIFY_DEFAULT_LANGUAGE`` (it).
- Retries: ``BIBLIODESK_NOTIFY_MAX_ATTEMPTS`` (8), ``..._RETRY_BASE_SECONDS`` (30),
  ``..._RETRY_MAX_SECONDS`` (3600); worker: ``..._POLL_SECONDS`` (2), ``..._LEASE_SECONDS`` (120).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bibliodesk.runtime.service import ServiceModule, ServiceRuntime
from bibliodesk.runtime.settings import SettingsError
from services.notify.app.contacts import PatronsContactDirectory
from services.notify.app.messages import MessageService, NotifyConfig
from services.notify.app.templates import TemplateService
from services.notify.delivery.sealing import SealError, SecretBox
from services.notify.delivery.transport import FileTransport, SmtpConfig, SmtpTransport, Transport
from services.notify.delivery.worker import PATRON_NOTIFIED_TOPIC, DeliveryWorker, WorkerConfig
from services.notify.domain.errors import InvalidInput
from services.notify.domain.messages import MessageStatus, RetryPolicy
from services.notify.domain.templates import Renderer, validate_language
from services.notify.store import repository as repo
from services.notify.store import tables

log = logging.getLogger(__name__)


def _number(rt: ServiceRuntime, key: str, default: float) -> float:
    raw = rt.settings.get(key, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"BIBLIODESK_{key} must be a number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"BIBLIODESK_{key} must not be negative")
    return value


def _default_language(rt: ServiceRuntime) -> str:
    raw = rt.settings.get("NOTIFY_DEFAULT_LANGUAGE", "it")
    try:
        return validate_language(raw)
    except InvalidInput:
        raise SettingsError(f"BIBLIODESK_NOTIFY_DEFAULT_LANGUAGE must be it or en, got {raw!r}") from None


def build_transport(rt: ServiceRuntime) -> Transport:
    smtp = rt.settings.smtp
    if smtp.host:
        return SmtpTransport(
            SmtpConfig(
                host=smtp.host,
                port=smtp.port,
                security=smtp.security,
                username=smtp.username,
                password=smtp.password,
                timeout=smtp.timeout_seconds,
                ca_file=rt.settings.get("SMTP_CA_FILE"),
            )
        )
    folder = Path(rt.settings.get("NOTIFY_MAIL_FOLDER") or rt.settings.home / "outbox-mail")
    log.warning("no SMTP server configured (BIBLIODESK_SMTP_HOST): e-mails are written to %s", folder)
    return FileTransport(folder)


def build_secret_box(rt: ServiceRuntime) -> SecretBox:
    configured = rt.settings.get("NOTIFY_SECRET_KEY")
    try:
        if configured:
            return SecretBox.from_setting(configured)
        return SecretBox.from_key_file(rt.settings.home / "keys" / "notify-secret.key")
    except SealError as exc:
        raise SettingsError(str(exc)) from None


async def setup(rt: ServiceRuntime) -> None:
    from bibliodesk.notify.v1 import notify_pb2_grpc as pb_grpc

    from .api import SERVICE_NAME, NotifyServicer

    policy = RetryPolicy(
        max_attempts=max(1, int(_number(rt, "NOTIFY_MAX_ATTEMPTS", 8))),
        base_delay=timedelta(seconds=_number(rt, "NOTIFY_RETRY_BASE_SECONDS", 30)),
        max_delay=timedelta(seconds=_number(rt, "NOTIFY_RETRY_MAX_SECONDS", 3600)),
    )
    config = NotifyConfig(
        mail_from=rt.settings.smtp.mail_from,
        reply_to=rt.settings.smtp.reply_to,
        library_name=rt.settings.get("LIBRARY_NAME", "Biblioteca"),
        default_language=_default_language(rt),
        policy=policy,
    )
    box = build_secret_box(rt)
    renderer = Renderer()
    worker = DeliveryWorker(
        rt.db,
        rt.clock,
        build_transport(rt),
        box,
        policy,
        WorkerConfig(
            mail_from=config.mail_from,
            reply_to=config.reply_to,
            lease=timedelta(seconds=_number(rt, "NOTIFY_LEASE_SECONDS", 120)),
            poll_interval=_number(rt, "NOTIFY_POLL_SECONDS", 2),
        ),
        tables.outbox,
        on_outbox=rt.relay.wake,
    )
    messages = MessageService(
        rt.db,
        rt.clock,
        PatronsContactDirectory(lambda: rt.peers.channel("patrons")),
        box,
        config,
        renderer,
        on_queued=worker.wake,
    )
    templates = TemplateService(rt.clock, renderer)
    added = await rt.db.write(templates.install_shipped)
    if added:
        log.info("installed %d shipped templates", added)
    wiped = await rt.db.write(repo.wipe_stale_secrets)
    if wiped:
        log.warning("wiped sealed secrets left on %d finished messages", wiped)

    async def record_patron_notified(payload: dict[str, Any], key: str) -> None:
        from bibliodesk.reservations.v1 import reservations_pb2, reservations_pb2_grpc

        stub = reservations_pb2_grpc.ReservationServiceStub(rt.peers.channel("reservations"))
        request = reservations_pb2.RecordPatronNotifiedRequest(
            request_id=key, reservation_id=payload["reservation_id"]
        )
        request.notified_at.FromDatetime(datetime.fromisoformat(payload["notified_at"]))
        await stub.RecordPatronNotified(request, timeout=10)

    rt.relay.register(PATRON_NOTIFIED_TOPIC, record_patron_notified)
    rt.add_service(
        pb_grpc.add_NotifyServiceServicer_to_server,
        NotifyServicer(rt.db, rt.clock, messages, templates),
        SERVICE_NAME,
    )
    rt.background(worker.run)
    for status in (MessageStatus.QUEUED, MessageStatus.RETRYING, MessageStatus.FAILED):
        rt.metrics.gauge(
            f'bibliodesk_notify_messages{{status="{status.value.lower()}"}}',
            lambda status=status: float(rt.db.read_sync(repo.count_in_status, status)),  # type: ignore[misc]
        )

    async def housekeep_once() -> None:
        """Forget delivered outbox rows after a week; wipe any sealed secret left on a finished message."""
        purged = await rt.db.write(rt.relay.purge_delivered)
        wiped = await rt.db.write(repo.wipe_stale_secrets)
        if purged or wiped:
            log.info("housekeeping: %d delivered outbox rows purged, %d sealed secrets wiped", purged, wiped)

    async def housekeeping() -> None:
        while True:
            await asyncio.sleep(_number(rt, "NOTIFY_HOUSEKEEPING_SECONDS", 3600))
            try:
                await housekeep_once()
            except Exception:
                log.exception("notify housekeeping failed")

    rt.background(housekeeping)

    async def stop() -> None:
        worker.stop()

    rt.on_stop(stop)
    rt.state.update(messages=messages, templates=templates, worker=worker, box=box, housekeep=housekeep_once)


MODULE = ServiceModule(
    name="notify",
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "store" / "migrations",
    setup=setup,
)
