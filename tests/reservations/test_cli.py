"""The desk's commands against a running server: holdings import in chunks, lists, check-in."""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path

from rich.console import Console

from bibliodesk.cli.context import CliContext
from bibliodesk.reservations.v1 import reservations_pb2 as pb
from bibliodesk.runtime.settings import load_settings
from services.reservations import cli

from .conftest import TTL, Desk


def _cli(desk: Desk, monkeypatch: object) -> tuple[argparse.ArgumentParser, CliContext, io.StringIO]:
    token = desk.stack.token(kind="staff", roles=("admin",), ttl=TTL)
    monkeypatch.setenv("BIBLIODESK_TOKEN", token)  # type: ignore[attr-defined]
    settings = load_settings({"BIBLIODESK_RESERVATIONS_ADDRESS": desk.stack.address("reservations")})
    out = io.StringIO()
    ctx = CliContext(settings, Console(file=out, width=200, force_terminal=False))
    parser = argparse.ArgumentParser(prog="bibliodesk")
    cli.register(parser.add_subparsers(dest="command", required=True), ctx)
    return parser, ctx, out


async def _run(parser: argparse.ArgumentParser, *argv: str) -> int:
    args = parser.parse_args(list(argv))
    return int(await asyncio.to_thread(args.func, args))


def test_split_keeps_whole_records_and_original_line_numbers() -> None:
    text = 'barcode,title,branch\nA,"two\nlines",C\nB,x,C\n\nD,y,C\n'
    header, chunks = cli.split_csv(text, 2)
    assert header == "barcode,title,branch\n"
    assert [(first, n) for first, _, n in chunks] == [(2, 2), (5, 2)]
    assert chunks[0][1] == 'barcode,title,branch\nA,"two\nlines",C\nB,x,C\n'


async def test_items_import_in_chunks_reports_rejected_rows_with_file_lines(
    desk: Desk, tmp_path: Path, monkeypatch: object
) -> None:
    rows = ["barcode,title,author,branch"]
    rows += [f"C{i:04d},Titolo {i},Autore,CEN" for i in range(1, 1201)]
    rows[600] = "bad code,Titolo,Autore,CEN"  # line 601 of the file
    rows[1100] = "C1101,,Autore,CEN"  # line 1101
    path = tmp_path / "holdings.csv"
    path.write_text("\n".join(rows) + "\n")
    parser, _, out = _cli(desk, monkeypatch)
    assert await _run(parser, "items", "import", str(path), "--chunk", "500") == 1
    text = out.getvalue()
    assert "1200 rows read: 1198 were created" in text and "2 rejected" in text
    assert "601" in text and "bad code" in text and "1101" in text and "title" in text
    assert (await desk.item("C1200")).title == "Titolo 1200"
    # Running the same file again changes nothing (same chunks, same request ids).
    assert await _run(parser, "items", "import", str(path)) == 1


async def test_reservation_list_marks_web_and_checkin_tells_the_desk_to_set_aside(
    desk: Desk, monkeypatch: object
) -> None:
    await desk.check_out("borrower", "B002")
    await desk.reserve("webpatron", "B002", origin=pb.RESERVATION_ORIGIN_WEB)
    await desk.reserve("deskpatron", "B001", origin=pb.RESERVATION_ORIGIN_DESK)
    parser, _, out = _cli(desk, monkeypatch)
    assert await _run(parser, "reservations", "list", "--web") == 0
    listing = out.getvalue()
    assert "webpatron" in listing and "deskpatron" not in listing and "web" in listing
    assert await _run(parser, "desk", "checkin", "B002") == 0
    assert "hold shelf for patron webpatron" in out.getvalue()
    assert await _run(parser, "desk", "checkout", "B001", "--patron", "someone") == 1
    assert "ITEM_SET_ASIDE_FOR_ANOTHER_PATRON" in out.getvalue()
