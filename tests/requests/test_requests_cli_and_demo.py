"""The desk's commands against real servers, on the demo library `make run` starts with."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import pytest
from rich.console import Console

from bibliodesk.cli.context import CliContext
from bibliodesk.cli.main import build_parser

from .conftest import world_on


async def run_cli(stack: Any, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str]:
    """Runs ``bibliodesk <argv>`` as an operator would, against this stack; returns (exit code, output)."""
    monkeypatch.setenv("BIBLIODESK_TOKEN", stack.token(kind="staff", roles=("operator",)))
    settings = stack.settings
    for name in ("requests", "reservations"):
        settings = settings.with_service(name, address=stack.address(name))
    out = io.StringIO()
    ctx = CliContext(settings, Console(file=out, width=250, color_system=None))
    args = build_parser(ctx).parse_args(list(argv))
    code = await asyncio.to_thread(args.func, args)
    return code, out.getvalue()


async def test_the_desk_lists_todays_active_requests_and_advances_one(
    stack_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # patrons issues the service tokens the requests service needs to ask reservations.
    stack = await stack_factory(
        "patrons", "reservations", "requests", env={"BIBLIODESK_NOTIFY_ADDRESS": "127.0.0.1:9"}
    )
    assert stack.host is not None
    await stack.host.load_demo()

    code, today = await run_cli(stack, monkeypatch, "requests", "list", "--today", "--active")
    assert code == 0
    assert "Il nome della rosa" in today and "on the shelf" in today  # BD0001
    assert "La coscienza di Zeno" in today and "on loan until" in today  # BD0003, with its due date
    assert "Marcovaldo" not in today  # made two days ago

    code, everything = await run_cli(stack, monkeypatch, "requests", "list", "--status", "cut")
    assert code == 0 and "Se questo è un uomo" in everything

    # The notice was already sent for Zeno: a second one is refused with the reason, no stack trace.
    zeno = next(line for line in today.splitlines() if "Zeno" in line)
    match = re.search(r"│ ([0-9a-f]{8}) │", zeno)
    assert match, zeno
    short_id = match.group(1)
    code, refused = await run_cli(stack, monkeypatch, "requests", "notice", short_id, "--message", "x")
    assert code == 1 and "NOTICE_ALREADY_SENT" in refused

    # A real web request of an enrolled patron, advanced from the command line.
    world = await world_on(stack)
    patron = await world.enrolled_patron()
    request = await world.submit(patron, "BD0005")
    code, advanced = await run_cli(stack, monkeypatch, "requests", "advance", request.id[:8])
    assert code == 0, advanced
    assert "advanced" in advanced and "ready for pickup" in advanced
