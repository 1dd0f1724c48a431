"""``python -m bench.run``: load a realistic library into a fresh bibliodesk and measure it.

1. starts ``bibliodesk up`` (all five services, one child process) on a fresh data folder (SQLite)
   or fresh PostgreSQL schemas, so the services' migrations create the schema; measures its idle
   RSS; stops it;
2. bulk-loads patrons, items, loans, reservations and past requests into the services' own tables;
3. starts it again, measures the idle RSS with the data, logs in as the bootstrap admin;
4. for each operation: ``--clients`` grpc.aio clients call it back to back for ``--duration``
   seconds, then the same clients call the empty-handler ceiling with messages of the same size;
   the server's CPU and peak RSS are read from /proc during each;
5. prints the table, writes ``bench/results/<stamp>-<db>.json`` and ``.png``.

Sizes default to the issue's (1M patrons, 500k items, 1M past requests); ``--quick`` is a small
preset for a first look.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from .ceiling import Ceiling, callable_for, payload
from .dataset import Layout
from .driver import drive
from .load import load_all, password_hash
from .ops import ORDER, Tokens, build_ops, channels_for, prime, staff_login
from .patches import sqlite_analyze
from .report import print_table, verdicts, write_chart, write_json
from .system import SERVICES, ProcMonitor, System, read_proc, read_procs

RESULTS = Path(__file__).parent / "results"
STATE = "bench-library.json"
QUICK = {"patrons": 20_000, "items": 10_000, "requests": 20_000, "duration": 5.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description="bibliodesk benchmark")
    p.add_argument("--patrons", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=500_000)
    p.add_argument("--requests", type=int, default=1_000_000, help="past inbox requests")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per operation")
    p.add_argument(
        "--warmup", type=float, default=None, help="seconds not measured (default 10%% of duration)"
    )
    p.add_argument(
        "--ceiling-duration", type=float, default=None, help="seconds per ceiling run (default duration/2)"
    )
    p.add_argument("--clients", type=int, default=16)
    p.add_argument(
        "--topology",
        choices=("up", "serve"),
        default="up",
        help="'up': all five services in one process (the embedded default); "
        "'serve': one process per service, as compose runs them",
    )
    p.add_argument("--db", default="sqlite", help="'sqlite' (embedded) or a postgresql:// URL")
    p.add_argument("--quick", action="store_true", help="small library, 5 s per operation")
    p.add_argument("--ops", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON and PNG")
    p.add_argument("--data", type=Path, default=None, help="data folder (default: a temporary one, removed)")
    p.add_argument("--keep", action="store_true", help="keep the data folder / PostgreSQL schemas")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="measure again on the library kept in --data (no load; continues the consumable rows)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--argon2-memory-kib", type=int, default=65536, help="the server's argon2id memory cost")
    p.add_argument("--argon2-time-cost", type=int, default=3, help="the server's argon2id time cost")
    p.add_argument("--profile", default="", help="sample the server's threads during this operation")
    p.add_argument("--patch", default="", help="apply proposed fixes to the server (bench/patches.py)")
    p.add_argument(
        "--settle-timeout",
        type=float,
        default=60.0,
        help="before each operation, wait (at most this long) until the server is idle again",
    )
    p.add_argument("--idle-settle", type=float, default=5.0, help="seconds to wait before reading idle RSS")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if f"--{key}" not in (argv or sys.argv):
                setattr(args, key, value)
    unknown = [o for o in args.ops.split(",") + ([args.profile] if args.profile else []) if o not in ORDER]
    if unknown:
        p.error(f"unknown operation(s) {unknown}; known: {', '.join(ORDER)}")
    from .patches import DATA_PATCHES, PATCHES

    bad = [x for x in args.patch.split(",") if x and x not in PATCHES and x not in DATA_PATCHES]
    if bad:
        p.error(f"unknown patch(es) {bad}; known: {', '.join(sorted({*PATCHES, *DATA_PATCHES}))}")
    if args.reuse:
        if args.data is None or not (args.data / STATE).exists():
            p.error(f"--reuse needs --data DIR holding a library kept with --keep ({STATE})")
        args.keep = True
    if args.warmup is None:
        args.warmup = min(2.0, args.duration * 0.1)
    if args.ceiling_duration is None:
        args.ceiling_duration = max(1.0, args.duration / 2)
    return args


def hash_cost(memory_kib: int, time_cost: int) -> float:
    """Milliseconds for one argon2id verify with the server's parameters (median of 5)."""
    import argon2

    from .dataset import LOGIN_PASSWORD

    hasher = argon2.PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=argon2.Type.ID
    )
    stored = hasher.hash(LOGIN_PASSWORD)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        hasher.verify(stored, LOGIN_PASSWORD)
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs)


async def settle(
    pid: int | list[int], timeout: float, idle_cores: float = 0.15, window: float = 0.5
) -> float:
    """Waits until the process uses less than ``idle_cores`` over ``window`` seconds (at most
    ``timeout``); returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        before = read_procs(pid).cpu_seconds
        await asyncio.sleep(window)
        if (read_procs(pid).cpu_seconds - before) / window < idle_cores:
            break
    return round(time.perf_counter() - t0, 1)


async def idle_rss(system: System, seconds: float) -> float:
    await asyncio.sleep(seconds)
    return read_procs(system.pids).rss_bytes / 2**20


def anon_mb(system: System) -> float:
    return round(read_procs(system.pids).anon_bytes / 2**20, 1)


async def bench(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    temp = args.data is None
    home = Path(tempfile.mkdtemp(prefix="bibliodesk-bench-")) if temp else args.data
    env = {
        "BIBLIODESK_PATRONS_ARGON2_MEMORY_KIB": str(args.argon2_memory_kib),
        "BIBLIODESK_PATRONS_ARGON2_TIME_COST": str(args.argon2_time_cost),
    }
    system = System(home, args.db, extra_env=env, topology=args.topology)
    ceiling = Ceiling()
    state: dict[str, Any] = {}
    if args.reuse:
        state = json.loads((home / STATE).read_text())
        args.patrons, args.items, args.requests = state["patrons"], state["items"], state["requests"]
        args.seed, args.db = state["seed"], state["db"]
        system = System(
            home, args.db, extra_env=env, admin_password=state["admin_password"], topology=args.topology
        )
    loaded_at = datetime.fromisoformat(state["now"]) if state else datetime.now(UTC)
    layout = Layout(args.patrons, args.items, args.requests, args.seed, loaded_at)
    layout.check()
    used: dict[str, int] = state.get("used", {})

    def save_state() -> None:
        if args.keep:
            state.update(
                patrons=args.patrons, items=args.items, requests=args.requests, seed=args.seed, db=args.db,
                now=loaded_at.isoformat(), admin_password=system.admin_password, used=used,
            )  # fmt: skip
            (home / STATE).write_text(json.dumps(state, indent=2, default=str))

    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "db": "postgresql" if system.is_pg else "sqlite",
        "clients": args.clients,
        "topology": args.topology,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "ceiling_duration_s": args.ceiling_duration,
        "sizes": {
            "patrons": args.patrons,
            "items": args.items,
            "past_requests": args.requests,
            "pool_per_consumable_op": layout.pool,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    latencies: dict[str, list[float]] = {}
    channels: list[dict[str, Any]] = []
    try:
        if args.reuse:
            # measured at load time, with the topology of that run (five processes weigh more)
            empty = state.get("rss_mb_empty_by_topology", {}).get(args.topology)
            rss_empty = float(empty) if empty is not None else None
            results["load"] = state["load"]
            console.print(f"reusing the library in {home} (used rows so far: {used})")
        else:
            if system.is_pg:
                system.reset_pg()
            console.rule("1. first start: migrations")
            await system.start()
            rss_empty = await idle_rss(system, args.idle_settle)
            system.stop()
            console.print(f"idle RSS, empty library: {rss_empty:.0f} MB")

            console.rule("2. bulk load")
            urls = {n: system.database_url(n) for n in ("patrons", "reservations", "requests")}
            schemas = {n: system.schema(n) for n in urls}
            pw_hash = password_hash(args.argon2_memory_kib, args.argon2_time_cost)
            results["load"] = load_all(layout, urls, schemas, console, pw_hash)
            console.print(f"loaded {results['load']['rows_total']:,} rows in {results['load']['seconds']} s")
            state.update(load=results["load"], rss_mb_empty_by_topology={args.topology: rss_empty})
            save_state()

        console.rule("3. start with the library")
        if args.profile:
            system.profile_out = home / "profile.txt"
        system.patches = args.patch
        if "sqlite-analyze" in args.patch.split(",") and not system.is_pg:
            sqlite_analyze([str(home / f"{n}.db") for n in ("patrons", "requests", "reservations")])
        results["patches"] = [p for p in args.patch.split(",") if p]
        t0 = time.perf_counter()
        await system.start()
        results["startup_s"] = round(time.perf_counter() - t0, 1)
        rss_loaded = await idle_rss(system, args.idle_settle)
        results["idle"] = {
            "rss_mb_empty": None if rss_empty is None else round(rss_empty, 1),
            "rss_mb_loaded": round(rss_loaded, 1),
            "anon_mb_loaded": anon_mb(system),
            "target_mb": 250,
            # the target is for `up` (five services in one process); `serve` reports the sum
            "ok": max(rss_loaded, rss_empty or 0) < 250 if args.topology == "up" else None,
        }
        console.print(f"idle RSS with the library: {rss_loaded:.0f} MB")
        token = await staff_login(system.address("patrons"), system.admin_password)
        tokens = Tokens(home, token)
        run_id = datetime.now(UTC).strftime("%H%M%S")
        ops = build_ops(layout, tokens, run_id, used)
        ceiling.start()
        addresses = {n: system.address(n) for n in SERVICES if n in ("patrons", "requests", "reservations")}
        results["priming_failures"] = await prime(addresses, token, layout)
        addresses["ceiling"] = ceiling.address
        channels = channels_for(addresses, args.clients)

        console.rule("4. operations")
        out_ops = []
        for name in args.ops.split(","):
            op = ops[name]
            # background work set off by the previous operation (notices through notify, relays)
            # must not be billed to this one: wait until the server is idle again
            settled = await settle(system.pids, args.settle_timeout)
            console.print(
                f"[bold]{name}[/bold] ({op.feature}, {op.title}): {args.clients} clients × {args.duration:g}s"
            )
            if name == args.profile:
                system.signal_all(signal.SIGUSR1)
            mon = ProcMonitor(system.pids, names=list(system.processes) if len(system.pids) > 1 else None)
            client0 = read_proc(os.getpid()).cpu_seconds
            mon.start()

            async def call_op(c: int, n: int, op: Any = op) -> Any:
                return await op.call(channels[c], n)

            measured = await drive(call_op, clients=args.clients, duration=args.duration, warmup=args.warmup)
            server = await mon.stop()
            if name == args.profile and system.profile_out is not None:
                system.signal_all(signal.SIGUSR2)
                await asyncio.sleep(1.5)
                target = (
                    args.results / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{results['db']}-profile-{name}.txt"
                )
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("w") as out:  # one report per server process
                    for process in system.processes:
                        report = system.profile_path(process)
                        if report is not None and report.exists():
                            out.write(f"### process: {process}\n{report.read_text()}\n")
                results["profile"] = str(target)
                console.print(f"  profile: {target}")
            client_cpu = read_proc(os.getpid()).cpu_seconds - client0
            if measured.throughput > 0:  # what one call costs the server, on average
                server["cpu_ms_per_call"] = round(server["cpu_cores"] / measured.throughput * 1000, 2)
            row: dict[str, Any] = {
                "settle_s": settled,
                "name": name,
                "feature": op.feature,
                "kind": op.kind,
                "title": op.title,
                "service": op.service,
                **measured.summary(),
                "server": server,
                "client_cpu_seconds": round(client_cpu, 2),
            }
            latencies[name] = measured.latencies_ms
            # the ceiling, with the same clients and messages of the same size
            req_size, resp_size = op.sizes()
            body = payload(req_size, resp_size)
            # the same metadata size (log-in is the one call without a token)
            fake = "Bearer " + ("x" * op.token_size if op.token_size else token)
            md: tuple[tuple[str, str], ...] = () if name == "login" else (("authorization", fake),)

            async def call_ceiling(c: int, n: int, body: bytes = body, md: Any = md) -> Any:
                return await callable_for(channels[c]["ceiling"])(body, metadata=md, timeout=30)

            # the server may still be working off what the operation set off (notices after
            # check-ins): the ceiling must not share the machine with that
            row["ceiling_settle_s"] = await settle(system.pids, args.settle_timeout)
            cmon = ProcMonitor(ceiling.pid)
            cmon.start()
            cm = await drive(call_ceiling, clients=args.clients, duration=args.ceiling_duration, warmup=0.5)
            cserver = await cmon.stop()
            if cm.throughput > 0:
                cserver["cpu_ms_per_call"] = round(cserver["cpu_cores"] / cm.throughput * 1000, 3)
            row["ceiling"] = {
                **cm.summary(),
                "request_bytes": req_size,
                "response_bytes": resp_size,
                "server": cserver,
            }
            row["ratio_to_ceiling"] = round(measured.throughput / cm.throughput, 3) if cm.throughput else None
            row["targets"] = verdicts(row)
            latencies[f"ceiling ({name})"] = cm.latencies_ms
            out_ops.append(row)
            errors = f", {row['errors']} errors {row['errors_by_code']}" if row["errors"] else ""
            console.print(
                f"  {row['throughput_per_s']:.0f}/s p50 {row['p50_ms']:.1f} "
                f"p99 {row['p99_ms']:.1f} ms{errors}; "
                f"ceiling {row['ceiling']['throughput_per_s']:.0f}/s → ratio {row['ratio_to_ceiling']}"
            )
            for sample in row["error_samples"]:
                console.print(f"    [red]{sample}[/red]")
        results["operations"] = out_ops
        if "login" in args.ops.split(","):
            verify_ms = hash_cost(args.argon2_memory_kib, args.argon2_time_cost)
            login = next(o for o in out_ops if o["name"] == "login")
            results["password_hash"] = {
                "algorithm": "argon2id",
                "memory_kib": args.argon2_memory_kib,
                "time_cost": args.argon2_time_cost,
                "verify_ms": round(verify_ms, 1),
                "max_logins_per_s_per_core": round(1000 / verify_ms, 1),
                "login_p50_minus_hash_ms": round(login["p50_ms"] - verify_ms, 1),
            }
        results["server_vm_hwm_mb"] = round(read_procs(system.pids).hwm_bytes / 2**20, 1)
        return {"results": results, "latencies": latencies}
    finally:
        save_state()
        for chans in channels:
            for ch in chans.values():
                await ch.close()
        ceiling.stop()
        system.stop()
        if not args.keep:
            if system.is_pg:
                system.drop_pg()
            if temp:
                shutil.rmtree(home, ignore_errors=True)
        else:
            console.print(f"data kept in {home}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=180)
    out = asyncio.run(bench(args, console))
    results = out["results"]
    print_table(results, console)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = args.results / f"{stamp}-{results['db']}"
    write_json(results, base.with_suffix(".json"))
    write_chart(results, out["latencies"], base.with_suffix(".png"))
    console.print(f"results: {base.with_suffix('.json')}  chart: {base.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
