"""``bibliodesk devices ...``: the desk hardware from the command line.

bibliodesk devices list [--station S]         devices and their health
bibliodesk devices watch STATION              live scans and tag events
bibliodesk devices tags STATION [--fresh]     tags on the pad
bibliodesk devices encode-card STATION BARCODE [--request-id ID] [--overwrite]
bibliodesk devices emulate scanner|rfid [--tcp PORT | --link PATH] ...   an emulated device
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from rich.table import Table

from services.device_gateway.hardware.emulators.cli import build_parser as emulate_parser
from services.device_gateway.hardware.emulators.cli import main_emulate


def register(subparsers: Any, ctx: Any) -> None:
    devices = subparsers.add_parser("devices", help="desk scanners and RFID pads (device gateway)")
    sub = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="devices and their health")
    listing.add_argument("--station", default="")
    listing.set_defaults(func=lambda args: ctx.run(_list(ctx, args.station)))

    watch = sub.add_parser("watch", help="live scans and tag events of a station")
    watch.add_argument("station")
    watch.set_defaults(func=lambda args: ctx.run(_watch(ctx, args.station)))

    tags = sub.add_parser("tags", help="tags on a station's pad")
    tags.add_argument("station")
    tags.add_argument("--fresh", action="store_true", help="ask the pad now")
    tags.set_defaults(func=lambda args: ctx.run(_tags(ctx, args.station, args.fresh)))

    encode = sub.add_parser("encode-card", help="encode a patron card on a station's pad")
    encode.add_argument("station")
    encode.add_argument("barcode")
    encode.add_argument("--request-id", default="")
    encode.add_argument("--overwrite", action="store_true")
    encode.set_defaults(func=lambda args: ctx.run(_encode(ctx, args)))

    demo = sub.add_parser("demo", help="drive the demo desk's emulated scanner and pad (up --demo)")
    demo.add_argument("words", nargs=argparse.REMAINDER, help="scanner <command> | rfid <command>")
    demo.set_defaults(func=lambda args: _demo(ctx, args.words))

    emulate_help = emulate_parser()
    emulate = sub.add_parser(
        "emulate", help="run an emulated scanner or RFID pad", parents=[emulate_help], add_help=False
    )
    emulate.set_defaults(func=lambda args: main_emulate(_emulate_argv(args)))


def _emulate_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        args.device,
        "--host",
        args.host,
        "--prefix",
        args.prefix,
        "--suffix",
        args.suffix,
        "--terminator",
        args.terminator,
        "--protocol",
        args.protocol,
    ]
    if args.tcp is not None:
        argv += ["--tcp", str(args.tcp)]
    if args.link:
        argv += ["--link", args.link]
    if args.no_aim:
        argv.append("--no-aim")
    for uid in args.blank:
        argv += ["--blank", uid]
    return argv


def _stub(ctx: Any) -> Any:
    from bibliodesk.device_gateway.v1 import device_gateway_pb2_grpc as pb_grpc

    return pb_grpc.DeviceGatewayServiceStub(ctx.channel("device_gateway"))


async def _list(ctx: Any, station: str) -> int:
    from bibliodesk.device_gateway.v1 import device_gateway_pb2 as pb

    reply = await _stub(ctx).ListDevices(pb.ListDevicesRequest(station_id=station, page_size=200), timeout=10)
    table = Table(
        "device", "station", "kind", "url", "connected", "read", "rejected", "reconnects", "last error"
    )
    for d in reply.devices:
        h = d.health
        table.add_row(
            d.device_id,
            d.station_id,
            pb.DeviceKind.Name(d.kind).removeprefix("DEVICE_KIND_").lower(),
            d.url,
            "[green]yes[/green]" if h.connected else "[red]no[/red]",
            str(h.frames_read),
            str(h.frames_rejected),
            str(h.reconnects),
            h.last_error,
        )
    ctx.console.print(table)
    return 0


async def _watch(ctx: Any, station: str) -> int:
    from bibliodesk.device_gateway.v1 import device_gateway_pb2 as pb

    async for r in _stub(ctx).WatchStation(pb.WatchStationRequest(station_id=station)):
        kind = r.WhichOneof("event")
        if kind == "barcode_read":
            b = r.barcode_read
            symbology = pb.Symbology.Name(b.symbology).removeprefix("SYMBOLOGY_").lower()
            what = f"[bold]{b.value}[/bold] ({symbology})"
        elif kind == "tag":
            t = r.tag
            change = pb.TagChange.Name(t.change).removeprefix("TAG_CHANGE_").lower()
            content = t.tag.content.primary_id or t.tag.content_error
            what = f"tag {t.tag.uid} {change} {content}"
        else:
            s = r.device_status
            what = f"{s.device_id} {'connected' if s.connected else 'disconnected'} {s.detail}"
        ctx.console.print(f"#{r.sequence} {what}")
    return 0


async def _tags(ctx: Any, station: str, fresh: bool) -> int:
    from bibliodesk.device_gateway.v1 import device_gateway_pb2 as pb

    reply = await _stub(ctx).ReadTags(pb.ReadTagsRequest(station_id=station, fresh=fresh), timeout=20)
    table = Table("uid", "primary id", "usage", "part", "AFI", "secured", "problem")
    for t in reply.tags:
        c = t.content
        usage = (
            pb.UsageType.Name(c.usage).removeprefix("USAGE_TYPE_").lower() if t.HasField("content") else ""
        )
        part = f"{c.part_number}/{c.parts_in_set}" if t.HasField("content") else ""
        table.add_row(
            t.uid, c.primary_id, usage, part, f"{t.afi:#04x}", "yes" if t.secured else "no", t.content_error
        )
    ctx.console.print(table)
    for s in reply.item_sets:
        if not s.complete:
            ctx.console.print(f"[yellow]{s.primary_id}: parts missing {list(s.missing_parts)}[/yellow]")
    return 0


async def _encode(ctx: Any, args: argparse.Namespace) -> int:
    from bibliodesk.device_gateway.v1 import device_gateway_pb2 as pb

    request = pb.EncodePatronCardRequest(
        request_id=args.request_id or f"cli-{uuid.uuid4()}",
        station_id=args.station,
        patron_barcode=args.barcode,
        overwrite=args.overwrite,
    )
    reply = await _stub(ctx).EncodePatronCard(request, timeout=30)
    ctx.console.print(f"card encoded: UID [bold]{reply.tag_uid}[/bold] (attempts: {reply.attempts})")
    return 0


def _demo(ctx: Any, words: list[str]) -> int:
    import shlex
    import socket

    path = ctx.settings.home / "devices" / "demo-control"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall((shlex.join(words) + "\n").encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError as exc:
        ctx.console.print(f"[red]no demo desk at {path} ({exc}); is `bibliodesk up --demo` running?[/red]")
        return 1
    ctx.console.print(b"".join(chunks).decode(), markup=False, end="")
    return 0
