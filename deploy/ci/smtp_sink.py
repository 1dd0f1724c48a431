"""SMTP sink for CI (aiosmtpd handler): every message lands as one file in a folder.

    python3 -m aiosmtpd -n -l 0.0.0.0:1025 -c smtp_sink.FolderHandler /mail

Each message is written as <ns-timestamp>-<random>.eml: the message bytes as received, with
X-Envelope-From and X-Envelope-To headers prepended. Files are written under <folder>/.tmp and
renamed into place, so a reader never sees a half-written message. A one-line summary of each
message goes to stdout (the container log).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path


class FolderHandler:
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.tmp = self.folder / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_cli(cls, parser, *args):  # aiosmtpd's `-c CLASS ARGS...` hook
        if len(args) != 1:
            parser.error("FolderHandler takes exactly one argument: the folder")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        body = envelope.original_content or envelope.content
        if isinstance(body, str):
            body = body.encode("utf-8")
        head = (
            f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        name = f"{time.time_ns()}-{secrets.token_hex(4)}.eml"
        tmp = self.tmp / name
        with open(tmp, "wb") as f:
            f.write(head + body)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.folder / name)
        print(
            f"smtp-sink: {name} from={envelope.mail_from} to={','.join(envelope.rcpt_tos)} bytes={len(body)}",
            flush=True,
        )
        return "250 Message accepted for delivery"
