"""``bibliodesk notify ...`` against the running service, as an operator would use it."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace

import pytest
from rich.console import Console

from bibliodesk.cli.context import CliContext
from bibliodesk.cli.main import build_parser
from bibliodesk.notify.v1 import notify_pb2 as pb

from .conftest import MARIA, NOMAIL, NotifyEnv


async def _run(env: NotifyEnv, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("BIBLIODESK_TOKEN", env.admin())
    settings = env.stack.settings.with_service("notify", address=env.stack.address("notify"))
    out = io.StringIO()
    ctx = CliContext(replace(settings), Console(file=out, width=200))
    args = build_parser(ctx).parse_args(list(argv))
    code = await asyncio.to_thread(args.func, args)
    return int(code), out.getvalue()


async def test_send_history_show_templates_and_refusals_from_the_command_line(
    notify_env: NotifyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = await _run(
        notify_env,
        monkeypatch,
        "notify",
        "send",
        MARIA,
        "--template",
        "reservation_ready",
        "--var",
        "title=Dune",
        "--var",
        "pickup_branch=Sede centrale",
        "--request-id",
        "cli-1",
        "--wait",
    )
    assert code == 0, out
    assert "maria.rossi@example.org" in out and "SENT" in out
    assert len(notify_env.smtp.received) == 1
    # Re-running with the same request id is safe: the same message, no second e-mail.
    code, out = await _run(
        notify_env,
        monkeypatch,
        "notify",
        "send",
        MARIA,
        "--template",
        "reservation_ready",
        "--var",
        "title=Dune",
        "--var",
        "pickup_branch=Sede centrale",
        "--request-id",
        "cli-1",
    )
    assert code == 0 and "SENT" in out
    assert len(notify_env.smtp.received) == 1

    code, out = await _run(notify_env, monkeypatch, "notify", "history", "--patron", MARIA)
    assert code == 0 and "«Dune» è già disponibile" in out and "SENT" in out
    message = (await notify_env.stub().ListMessages(pb.ListMessagesRequest(patron_id=MARIA))).messages[0]
    code, out = await _run(notify_env, monkeypatch, "notify", "show", message.id)
    assert code == 0 and "Gentile Maria Rossi" in out and message.message_id_header in out

    code, out = await _run(notify_env, monkeypatch, "notify", "templates", "--event", "credentials")
    assert code == 0 and "credentials" in out and "it" in out and "en" in out
    code, out = await _run(notify_env, monkeypatch, "notify", "templates", "preview", "pickup_reminder", "en")
    assert code == 0 and "reminder" in out
    code, out = await _run(
        notify_env, monkeypatch, "notify", "send", NOMAIL, "--subject", "Ciao", "--body", "x"
    )
    assert code == 1
    assert "NO_EMAIL_ADDRESS" in out and "Traceback" not in out
