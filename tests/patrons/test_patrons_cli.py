"""``bibliodesk patrons ...`` against the running service, as the desk uses it."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from rich.console import Console

from bibliodesk.cli.context import CliContext
from bibliodesk.cli.main import build_parser
from tests.patrons.support import admin, adult_category, pre_register, start


async def _run(stack: Any, token: str, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("BIBLIODESK_TOKEN", token)
    settings = stack.settings.with_service("patrons", address=stack.address("patrons"))
    out = io.StringIO()
    ctx = CliContext(settings, Console(file=out, width=220))
    args = build_parser(ctx).parse_args(list(argv))
    code = await asyncio.to_thread(args.func, args)
    return int(code), out.getvalue()


async def test_the_desk_completes_enrolls_and_prints_from_the_command_line(
    stack_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    stack = await start(stack_factory)
    boss = await admin(stack)
    await adult_category(boss)
    patron_id = await pre_register(stack)
    token = boss.token
    code, out = await _run(
        stack, token, monkeypatch, "patrons", "search", "dangelo", "--name", "nic", "--web"
    )
    assert code == 0 and patron_id in out and "D'Angelo Nicolò" in out and "pre-registered" in out
    code, out = await _run(
        stack,
        token,
        monkeypatch,
        "patrons",
        "complete",
        patron_id,
        "--document-type",
        "identity_card",
        "--document-number",
        "CA1234567",
        "--nationality",
        "it",
    )
    assert code == 0 and "CA1234567" in out and "missing for enrollment" not in out
    code, out = await _run(stack, token, monkeypatch, "patrons", "enroll", patron_id, "--category", "ADULT")
    assert code == 0 and "web / enrolled" in out
    sheet = tmp_path / "scheda.pdf"
    code, out = await _run(
        stack, token, monkeypatch, "patrons", "credentials", patron_id, "--sheet", str(sheet)
    )
    assert code == 0 and "temporary password:" in out and sheet.read_bytes().startswith(b"%PDF")
    code, out = await _run(stack, token, monkeypatch, "patrons", "show", patron_id)
    assert "temporary credentials, to be changed at first log-in" in out and "password:" not in out
    # A refusal is printed readably, with the field, and exits 1.
    code, out = await _run(stack, token, monkeypatch, "patrons", "complete", patron_id, "--email", "bad@")
    assert code == 1 and "patron.email" in out and "Traceback" not in out
    code, out = await _run(stack, token, monkeypatch, "patrons", "show", "--card", "2999999999999")
    assert code == 1 and "CARD_NOT_FOUND" in out
