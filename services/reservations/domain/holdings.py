"""Loading a library's holdings from CSV: every bad row is reported with its line and field."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from bibliodesk.runtime.errors import FieldViolation, InvalidArgument

# --- holdings import (CSV) -----------------------------------------------------------------------

BARCODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
REQUIRED_COLUMNS = ("barcode", "title", "branch")
KNOWN_COLUMNS = ("barcode", "title", "author", "branch", "call_number")


@dataclass(frozen=True)
class HoldingRow:
    line_number: int
    barcode: str
    title: str
    author: str
    branch: str
    call_number: str


@dataclass(frozen=True)
class RejectedRow:
    line_number: int
    barcode: str
    field: str
    reason: str


def valid_barcode(value: str) -> bool:
    return bool(BARCODE_RE.match(value))


def parse_holdings(
    text: str, *, first_line_number: int = 2, default_branch: str = ""
) -> tuple[list[HoldingRow], list[RejectedRow]]:
    """Reads a holdings CSV (header row first). Bad rows are reported, not fatal; a bad header is."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InvalidArgument(field="csv_content", description="is empty: a header row is required") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header and not (c == "branch" and default_branch)]
    if missing:
        raise InvalidArgument(
            [
                FieldViolation(
                    "csv_content",
                    f"header lacks column(s) {', '.join(missing)}; expected {','.join(KNOWN_COLUMNS)}",
                    "MISSING_COLUMN",
                )
            ]
        )
    index = {name: header.index(name) for name in KNOWN_COLUMNS if name in header}
    rows: list[HoldingRow] = []
    rejected: list[RejectedRow] = []
    seen: dict[str, int] = {}
    for raw in reader:
        # reader.line_num counts physical lines, so quoted multi-line cells keep numbers right.
        line = first_line_number - 2 + reader.line_num
        if not any(cell.strip() for cell in raw):
            continue

        def col(name: str, raw: list[str] = raw) -> str:
            i = index.get(name)
            return raw[i].strip() if i is not None and i < len(raw) else ""

        barcode, title, author = col("barcode"), col("title"), col("author")
        branch, call_number = col("branch") or default_branch, col("call_number")
        problem: tuple[str, str] | None = None
        if len(raw) > len(header):
            problem = ("barcode", f"row has {len(raw)} columns, the header {len(header)}")
        elif not barcode:
            problem = ("barcode", "is required")
        elif not valid_barcode(barcode):
            problem = ("barcode", "must be 1-64 letters, digits, '.', '_' or '-'")
        elif barcode in seen:
            problem = ("barcode", f"duplicates line {seen[barcode]}")
        elif not title:
            problem = ("title", "is required")
        elif len(title) > 500:
            problem = ("title", "must be at most 500 characters")
        elif len(author) > 300:
            problem = ("author", "must be at most 300 characters")
        elif not branch:
            problem = ("branch", "is required")
        elif len(branch) > 64:
            problem = ("branch", "must be at most 64 characters")
        elif len(call_number) > 64:
            problem = ("call_number", "must be at most 64 characters")
        if problem:
            rejected.append(RejectedRow(line, barcode, problem[0], problem[1]))
            continue
        seen[barcode] = line
        rows.append(HoldingRow(line, barcode, title, author, branch, call_number))
    return rows, rejected
