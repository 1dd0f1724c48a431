"""``bibliodesk``: one program for every service and the desk's commands.

bibliodesk up [--demo]          all five services in one process (embedded SQLite default)
bibliodesk serve <service>      one service (what each container runs)
bibliodesk health               are they all SERVING?
bibliodesk patrons|requests|reservations|desk|items|notify|devices ...   desk commands
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import secrets
import signal
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table

from bibliodesk.runtime.logs import configure_logging
from bibliodesk.runtime.service import Host, load_module
from bibliodesk.runtime.settings import SERVICES, Settings, SettingsError, load_settings

from .context import CliContext, CliError

log = logging.getLogger("bibliodesk")


def _local_service_secret(settings: Settings) -> Settings:
    """``up`` on a laptop: a service secret generated once into the data folder (mode 0600)."""
    if settings.service_secret:
        return settings
    from dataclasses import replace

    path = settings.home / "service-secret"
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return replace(settings, service_secret=path.read_text().strip())


async def _run_host(settings: Settings, names: list[str], *, demo: bool, console: Console) -> int:
    host = Host(settings, [load_module(n) for n in names], demo=demo)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    addresses = await host.start()
    table = Table(title="bibliodesk is running", show_header=True)
    table.add_column("service")
    table.add_column("address")
    table.add_column("database")
    for name, address in addresses.items():
        url = settings.service(name).database_url
        table.add_row(name, address, url.split("@")[-1] if "@" in url else url)
    console.print(table)
    marker = settings.home / "demo-loaded"
    if demo and not marker.exists():
        await host.load_demo()
        marker.write_text("1")
        console.print("[green]Demo library loaded (first start).[/green]")
    if demo:
        console.print(_next_steps(settings))
    console.print(f"Data folder: {settings.home}   (Ctrl-C stops; a restart keeps the data)")
    await stop.wait()
    console.print("stopping: finishing in-flight calls…")
    await host.stop()
    return 0


def _next_steps(settings: Settings) -> str:
    mail = settings.home / "outbox-mail"
    return (
        "\n[bold]Try next[/bold] (another terminal, same folder; the CLI logs in as the local admin):\n"
        "  .venv/bin/bibliodesk health                          all five SERVING?\n"
        "  .venv/bin/bibliodesk patrons search rossi            namesakes told apart (P2)\n"
        "  .venv/bin/bibliodesk requests list --today --active  today's web requests (R2)\n"
        "  .venv/bin/bibliodesk requests advance <id>           a request becomes a reservation (R5)\n"
        "  .venv/bin/bibliodesk reservations list --web         web reservations (V5)\n"
        "  .venv/bin/bibliodesk desk checkin <item barcode>     a return passes the item on (V4)\n"
        "  .venv/bin/bibliodesk devices list                    the emulated desk scanner and RFID pad\n"
        f"  no SMTP server configured: e-mails are written as .eml files to {mail}\n"
    )


def cmd_up(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    settings = _local_service_secret(settings)
    names = args.services.split(",") if args.services else list(SERVICES)
    return asyncio.run(_run_host(settings, names, demo=args.demo, console=console))


def cmd_serve(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    return asyncio.run(_run_host(settings, [args.service], demo=False, console=console))


async def _check(address: str, settings: Settings, timeout: float) -> str:
    from bibliodesk.runtime.peers import open_channel

    channel = open_channel(address, settings)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.aio.AioRpcError as exc:
        return f"DOWN ({exc.code().name})"
    finally:
        await channel.close(None)


def cmd_health(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    unknown = [s for s in args.service if s not in SERVICES]
    if unknown:
        raise CliError(f"unknown service(s): {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    targets = (
        [(a, a) for a in args.address]
        if args.address
        else [(n, settings.service(n).address) for n in (args.service or SERVICES)]
    )

    async def run() -> list[str]:
        return list(await asyncio.gather(*(_check(addr, settings, args.timeout) for _, addr in targets)))

    statuses = asyncio.run(run())
    table = Table(show_header=True)
    table.add_column("service")
    table.add_column("address")
    table.add_column("status")
    for (name, addr), status in zip(targets, statuses, strict=True):
        colour = "green" if status == "SERVING" else "red"
        table.add_row(name, addr, f"[{colour}]{status}[/{colour}]")
    if not args.quiet:
        console.print(table)
    return 0 if all(s == "SERVING" for s in statuses) else 1


def build_parser(ctx: CliContext) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bibliodesk", description="bibliodesk: library web patrons and desk"
    )
    parser.add_argument("--user", help="staff username to log in as (password asked)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run all services in one process (embedded default)")
    up.add_argument(
        "--demo", action="store_true", help="load a demo library on first start; emulated desk devices"
    )
    up.add_argument("--services", help="comma-separated subset (default: all five)")
    up.set_defaults(handler=cmd_up)

    serve = sub.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=SERVICES)
    serve.set_defaults(handler=cmd_serve)

    health = sub.add_parser("health", help="check that services answer SERVING")
    health.add_argument("service", nargs="*", help=f"services to check (default all: {', '.join(SERVICES)})")
    health.add_argument("--address", action="append", help="host:port to check (repeatable)")
    health.add_argument("--timeout", type=float, default=3.0)
    health.add_argument("--quiet", "-q", action="store_true")
    health.set_defaults(handler=cmd_health)

    for name in SERVICES:
        try:
            module = importlib.import_module(f"services.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name != f"services.{name}.cli":
                raise
            continue
        module.register(sub, ctx)
    return parser


def main(argv: list[str] | None = None) -> int:
    console = Console()
    try:
        settings = load_settings()
    except SettingsError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        return 2
    configure_logging(settings.log_format, settings.log_level)
    ctx = CliContext(settings, console)
    parser = build_parser(ctx)
    args = parser.parse_args(argv)
    ctx.user = args.user
    try:
        if hasattr(args, "handler"):
            return int(args.handler(args, settings, console) or 0)
        return int(args.func(args) or 0)
    except CliError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    except grpc.aio.AioRpcError as exc:
        return ctx.fail_from_rpc(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
