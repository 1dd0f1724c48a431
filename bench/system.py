"""The system under test, run as child processes: ``bibliodesk up`` (all five services in one
process, the embedded default) or, with ``topology="serve"``, one ``bibliodesk serve <service>``
process per service, as the compose deployment runs them.

The bench never imports the services into its own process: the server's CPU time and memory are
read from ``/proc/<pid>`` of the child, so what is measured is the server alone. Data lives in a
temporary folder (SQLite files) or in one PostgreSQL schema per service (``bench_<service>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICES = ("patrons", "requests", "reservations", "notify", "device_gateway")
#: Branches of the generated library (pickup and desk branches).
BRANCHES = ("CEN", "NORD", "SUD", "EST", "OVEST")
ADMIN_PASSWORD = "Qx7-lantern-orbit-" + secrets.token_hex(4)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (so the bench never collides with a running stack)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def pg_sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` → ``postgresql+psycopg://…`` (the driver the services use)."""
    if url.startswith("postgresql+psycopg://"):
        return url
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    raise ValueError(f"--db must be 'sqlite' or a postgresql:// URL, got {url!r}")


def pg_libpq_url(url: str) -> str:
    return "postgresql://" + pg_sqlalchemy_url(url)[len("postgresql+psycopg://") :]


@dataclass
class ProcSample:
    """CPU seconds (user+system) and resident memory of a process, read from /proc."""

    cpu_seconds: float
    rss_bytes: int
    hwm_bytes: int
    #: RSS split: private memory (heap, SQLite page caches) vs. file pages (mmap, code): the
    #: latter are shared with the OS page cache and reclaimable
    anon_bytes: int = 0
    file_bytes: int = 0


def read_proc(pid: int) -> ProcSample:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0]) * 1024
    return ProcSample(
        cpu,
        values.get("VmRSS", 0),
        values.get("VmHWM", 0),
        values.get("RssAnon", 0),
        values.get("RssFile", 0),
    )


def read_procs(pids: int | list[int]) -> ProcSample:
    """The sum over processes (the five ``serve`` processes count as one server)."""
    samples = [read_proc(pid) for pid in ([pids] if isinstance(pids, int) else pids)]
    return ProcSample(
        sum(x.cpu_seconds for x in samples),
        sum(x.rss_bytes for x in samples),
        sum(x.hwm_bytes for x in samples),
        sum(x.anon_bytes for x in samples),
        sum(x.file_bytes for x in samples),
    )


class ProcMonitor:
    """Samples the server's RSS while an operation runs (peak RSS during that operation); with
    several processes, the peak of their sum."""

    def __init__(self, pid: int | list[int], interval: float = 0.1, names: list[str] | None = None) -> None:
        self.pid = pid
        #: with several processes: their names, to report the CPU of each
        self.names = names
        self._each: list[float] = []
        self.interval = interval
        self.peak_rss = 0
        self.peak_anon = 0
        self._task: asyncio.Task[None] | None = None
        self.start_sample: ProcSample | None = None
        self.end_sample: ProcSample | None = None
        self.t0 = self.t1 = 0.0

    async def _run(self) -> None:
        while True:
            sample = read_procs(self.pid)
            self.peak_rss = max(self.peak_rss, sample.rss_bytes)
            self.peak_anon = max(self.peak_anon, sample.anon_bytes)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self.start_sample = read_procs(self.pid)
        if self.names and isinstance(self.pid, list):
            self._each = [read_proc(p).cpu_seconds for p in self.pid]
        self.peak_rss = self.start_sample.rss_bytes
        self.t0 = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> dict[str, float]:
        assert self._task is not None and self.start_sample is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.t1 = time.perf_counter()
        self.end_sample = read_procs(self.pid)
        self.peak_rss = max(self.peak_rss, self.end_sample.rss_bytes)
        cpu = self.end_sample.cpu_seconds - self.start_sample.cpu_seconds
        wall = self.t1 - self.t0
        each = {}
        if self.names and isinstance(self.pid, list) and wall > 0:
            each = {
                "cpu_cores_by_process": {
                    name: round((read_proc(p).cpu_seconds - before) / wall, 3)
                    for name, p, before in zip(self.names, self.pid, self._each, strict=True)
                }
            }
        return {
            **each,
            "cpu_seconds": round(cpu, 3),
            "cpu_cores": round(cpu / wall, 3) if wall > 0 else 0.0,
            "peak_rss_mb": round(self.peak_rss / 2**20, 1),
            "peak_anon_mb": round(max(self.peak_anon, self.end_sample.anon_bytes) / 2**20, 1),
        }


@dataclass
class System:
    """``bibliodesk up`` (or one ``bibliodesk serve`` per service) in child processes, with the
    bench's settings."""

    home: Path
    db: str = "sqlite"  # "sqlite" or a postgresql:// URL
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    #: "up": one process for the five services; "serve": one process per service (compose)
    topology: str = "up"
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_path: Path | None = None
    #: when set, run under bench.sampler writing its report there (SIGUSR1 resets, SIGUSR2 writes)
    profile_out: Path | None = None
    #: proposed fixes to apply in the server process (bench/patches.py), comma-separated
    patches: str = ""
    admin_password: str = ADMIN_PASSWORD

    def __post_init__(self) -> None:
        if not self.ports:
            self.ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = self.home / "server.log"

    @property
    def is_pg(self) -> bool:
        return self.db != "sqlite"

    def schema(self, service: str) -> str:
        return f"bench_{service}"

    def database_url(self, service: str) -> str:
        """The SQLAlchemy URL of a service's database (as the service sees it)."""
        if self.is_pg:
            return pg_sqlalchemy_url(self.db)
        return f"sqlite:///{self.home / (service + '.db')}"

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIBLIODESK_")}
        env.update(
            {
                "BIBLIODESK_HOME": str(self.home),
                "BIBLIODESK_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password,
                "BIBLIODESK_LOG_LEVEL": "WARNING",
                "BIBLIODESK_BRANCHES": ",".join(BRANCHES),
                "BIBLIODESK_REQUESTS_BRANCHES": ",".join(BRANCHES),
                "BIBLIODESK_NOTIFY_MAIL_FOLDER": str(self.home / "mail"),
            }
        )
        if self.topology == "serve":  # `up` makes this file itself; separate processes share it
            secret = self.home / "service-secret"
            if not secret.exists():
                secret.write_text(secrets.token_urlsafe(32))
                secret.chmod(0o600)
            env["BIBLIODESK_SERVICE_SECRET_FILE"] = str(secret)
        for name in SERVICES:
            key = name.upper()
            env[f"BIBLIODESK_{key}_LISTEN"] = self.address(name)
            env[f"BIBLIODESK_{key}_ADDRESS"] = self.address(name)
            env[f"BIBLIODESK_{key}_DATABASE_URL"] = self.database_url(name)
            if self.is_pg:
                env[f"BIBLIODESK_{key}_DB_SCHEMA"] = self.schema(name)
        if self.profile_out is not None or self.patches:
            env["BENCH_PATCHES"] = self.patches
            root = str(Path(__file__).resolve().parent.parent)
            env["PYTHONPATH"] = (
                root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
            )
        env.update(self.extra_env)
        return env

    def reset_pg(self) -> None:
        """Fresh, empty schemas ``bench_<service>`` (dropped first)."""
        import psycopg

        with psycopg.connect(pg_libpq_url(self.db), autocommit=True) as conn:
            for name in SERVICES:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema(name)}" CASCADE')
                conn.execute(f'CREATE SCHEMA "{self.schema(name)}"')

    def drop_pg(self) -> None:
        import psycopg

        with psycopg.connect(pg_libpq_url(self.db), autocommit=True) as conn:
            for name in SERVICES:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema(name)}" CASCADE')

    def profile_path(self, process: str) -> Path | None:
        """Where the sampler of one server process writes its report."""
        if self.profile_out is None:
            return None
        if self.topology == "up":
            return self.profile_out
        return self.profile_out.with_name(f"{self.profile_out.stem}-{process}{self.profile_out.suffix}")

    def command(self, process: str = "up") -> list[str]:
        """The command line of one server process: ``up``, or a service name for ``serve``."""
        args = ["up"] if process == "up" else ["serve", process]
        if self.profile_out is not None or self.patches:
            return [sys.executable, "-m", "bench.sampler", str(self.profile_path(process) or "-"), *args]
        script = Path(sys.executable).parent / "bibliodesk"
        if script.exists():
            return [str(script), *args]
        return [
            sys.executable,
            "-c",
            "import sys; from bibliodesk.cli.main import main; sys.exit(main())",
            *args,
        ]

    @property
    def processes(self) -> tuple[str, ...]:
        return ("up",) if self.topology == "up" else SERVICES

    async def start(self, timeout: float = 120.0) -> None:
        assert self.log_path is not None
        env = self.env()
        for process in self.processes:
            log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
            self.procs[process] = subprocess.Popen(
                self.command(process), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(self.home)
            )
            log.close()
        await self.wait_serving(timeout)

    async def wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(SERVICES)
        while pending:
            for process, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"bibliodesk {process} exited with {proc.returncode}:\n{self.log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"services not SERVING after {timeout:.0f}s: {sorted(pending)}\n{self.log_tail()}"
                )
            for name in list(pending):
                async with grpc.aio.insecure_channel(self.address(name)) as channel:
                    try:
                        reply = await health_pb2_grpc.HealthStub(channel).Check(
                            health_pb2.HealthCheckRequest(), timeout=1.0
                        )
                        if reply.status == health_pb2.HealthCheckResponse.SERVING:
                            pending.discard(name)
                    except grpc.aio.AioRpcError:
                        pass
            if pending:
                await asyncio.sleep(0.3)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def pids(self) -> list[int]:
        assert self.procs, "not started"
        return [proc.pid for proc in self.procs.values()]

    def signal_all(self, signum: int) -> None:
        for pid in self.pids:
            os.kill(pid, signum)

    def stop(self, timeout: float = 30.0) -> None:
        running = [proc for proc in self.procs.values() if proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs = {}
