"""``bibliodesk devices emulate scanner|rfid``: run an emulated device and drive it by typing.

    main_emulate(["scanner"])                      # on a new pty; prints its /dev/pts/N path
    main_emulate(["rfid", "--tcp", "4001"])        # socket://127.0.0.1:4001
    main_emulate(["rfid", "--link", "/tmp/pad"])   # a stable path for the pty (survives restarts)

Commands are read from standard input, one per line (``help`` lists them).
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
from typing import TextIO

from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.barcode import Symbology
from services.device_gateway.hardware.emulators.base import Emulator, Endpoint, PtyEndpoint, TcpEndpoint
from services.device_gateway.hardware.emulators.rfid import PROTOCOLS, EmulatedTag, RfidPadEmulator
from services.device_gateway.hardware.emulators.scanner import ScannerEmulator

TERMINATORS = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}
SYMBOLOGIES = {s.value: s for s in Symbology if s is not Symbology.UNKNOWN}

SCANNER_HELP = """\
  <value>                     scan a Code 128 label
  <symbology> <value>         scan with a symbology: code39 code128 ean13 ean8 codabar itf qr datamatrix
                              (Code 39 gets its mod 43 check, EAN its check digit, Codabar A..B)
  raw <text>                  send text as typed plus the terminator (a damaged read)
  noise                       send line noise
  restart                     unplug and plug back in
  quit"""

RFID_HELP = """\
  list                        tags on the pad
  blank <uid>                 place a blank tag (8 blocks)
  item <uid> <barcode> [<part>/<parts>] [<afi hex>]   place an item tag (ISO 28560-3)
  card <uid> <patron barcode> place an encoded patron card
  remove <uid>                take a tag off the pad
  clear                       take every tag off
  new-card                    clear the pad and put a fresh blank card on it
  corrupt-writes <n>          the next n block writes store a wrong byte
  bad-crc | garbage | wrong-length   inject a corrupt frame
  restart                     unplug and plug back in
  quit"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bibliodesk devices emulate", description="run an emulated desk device"
    )
    parser.add_argument("device", choices=["scanner", "rfid"])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve socket://HOST:PORT instead of a pty")
    where.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the pty")
    parser.add_argument("--host", default="127.0.0.1", help="with --tcp: address to listen on")
    parser.add_argument("--no-aim", action="store_true", help="scanner: no AIM symbology identifiers")
    parser.add_argument("--prefix", default="", help="scanner: prefix before each read")
    parser.add_argument("--suffix", default="", help="scanner: suffix after each read")
    parser.add_argument("--terminator", choices=sorted(TERMINATORS), default="cr", help="scanner: line end")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="3m810", help="rfid: reader protocol")
    parser.add_argument(
        "--blank", action="append", default=[], metavar="UID", help="rfid: start with a blank tag"
    )
    return parser


def build_emulator(args: argparse.Namespace) -> Emulator:
    endpoint: Endpoint = TcpEndpoint(args.host, args.tcp) if args.tcp is not None else PtyEndpoint(args.link)
    if args.device == "scanner":
        return ScannerEmulator(
            endpoint,
            aim=not args.no_aim,
            prefix=args.prefix,
            suffix=args.suffix,
            terminator=TERMINATORS[args.terminator],
        )
    pad = RfidPadEmulator(endpoint, protocol=args.protocol)
    for uid in args.blank:
        pad.place(EmulatedTag.blank(uid))
    return pad


def main_emulate(
    argv: list[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Runs until ``quit`` or end of input; returns the exit code."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        emulator = build_emulator(args)
        url = emulator.start()
    except (OSError, ValueError) as exc:
        print(f"cannot start the emulator: {exc}", file=stdout)
        return 1
    print(f"{args.device} emulator ready: device url {url}", file=stdout)
    print("type 'help' for commands", file=stdout, flush=True)
    try:
        for line in stdin:
            words = shlex.split(line.strip()) if line.strip() else []
            if not words:
                continue
            if words[0] in ("quit", "exit"):
                break
            try:
                reply = run_command(emulator, words)
            except (ValueError, KeyError, IndexError, iso28560.TagDataError) as exc:
                reply = f"error: {exc}"
            print(reply, file=stdout, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


def run_command(emulator: Emulator, words: list[str]) -> str:
    """One typed command; returns what to print."""
    if words[0] == "restart":
        return f"replugged at {emulator.restart()}"
    if isinstance(emulator, ScannerEmulator):
        return _scanner_command(emulator, words)
    assert isinstance(emulator, RfidPadEmulator)
    return _rfid_command(emulator, words)


def _scanner_command(scanner: ScannerEmulator, words: list[str]) -> str:
    if words[0] == "help":
        return SCANNER_HELP
    if words[0] == "raw":
        scanner.send_raw(" ".join(words[1:]).encode("latin-1") + scanner.terminator)
        return "sent"
    if words[0] == "noise":
        scanner.send_raw(b"\x1b[\x07\xfe~~" + scanner.terminator)
        return "sent noise"
    symbology = Symbology.CODE128
    if words[0].lower() in SYMBOLOGIES and len(words) > 1:
        symbology, words = SYMBOLOGIES[words[0].lower()], words[1:]
    sent = scanner.scan(" ".join(words), symbology)
    return f"scanned {sent!r}"


def _rfid_command(pad: RfidPadEmulator, words: list[str]) -> str:
    command, rest = words[0], words[1:]
    if command == "help":
        return RFID_HELP
    if command == "list":
        lines = []
        for tag in pad.tags():
            try:
                content = iso28560.decode(bytes(tag.memory)).data
                part = f"{content.part_number}/{content.parts_in_set}"
                what = f"{content.usage.name.lower()} {content.primary_id} part {part}"
            except iso28560.TagDataError as exc:
                what = exc.reason.lower()
            lines.append(f"{tag.uid}  AFI {tag.afi:#04x}  EAS {'on' if tag.eas else 'off'}  {what}")
        return "\n".join(lines) or "(no tags on the pad)"
    if command == "blank":
        return f"placed {pad.place(EmulatedTag.blank(rest[0])).uid}"
    if command == "item":
        part_number, parts_in_set = 1, 1
        if len(rest) > 2:
            part_text, parts_text = rest[2].split("/")
            part_number, parts_in_set = int(part_text), int(parts_text)
        afi = int(rest[3], 16) if len(rest) > 3 else 0x07
        data = iso28560.LibraryTagData(primary_id=rest[1], parts_in_set=parts_in_set, part_number=part_number)
        return f"placed {pad.place(EmulatedTag.with_content(rest[0], data, afi=afi)).uid}"
    if command == "card":
        data = iso28560.LibraryTagData.patron_card(rest[1])
        return f"placed {pad.place(EmulatedTag.with_content(rest[0], data)).uid}"
    if command == "remove":
        return "removed" if pad.remove(rest[0]) else "no such tag on the pad"
    if command == "clear":
        pad.clear()
        return "pad cleared"
    if command == "new-card":
        pad.clear()
        return f"placed blank card {pad.place(EmulatedTag.blank('E00401' + secrets.token_hex(5))).uid}"
    if command == "corrupt-writes":
        pad.set_corrupt_writes(int(rest[0]))
        return f"the next {rest[0]} writes will be corrupted"
    injections = {
        "bad-crc": pad.inject_bad_crc,
        "garbage": pad.inject_garbage,
        "wrong-length": pad.inject_wrong_length,
    }
    if command in injections:
        injections[command]()
        return f"injected {command}"
    return f"unknown command {command!r}; type 'help'"


if __name__ == "__main__":
    sys.exit(main_emulate())
