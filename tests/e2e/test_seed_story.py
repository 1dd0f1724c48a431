"""The whole seed story across five separate ``bibliodesk serve`` processes, a real SMTP server,
on SQLite and on PostgreSQL; then SIGTERM: every process stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, text

from bibliodesk.runtime.settings import SERVICES, load_settings
from bibliodesk.runtime.testing import pg_url
from tests.smtp_sink import free_port, start_sink
from tests.stack import scenario

pytestmark = pytest.mark.slow


async def _wait_healthy(
    env: dict[str, str], procs: list[subprocess.Popen[bytes]], timeout: float = 90
) -> None:
    settings = load_settings(env)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = set(SERVICES)
    while loop.time() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"a service exited early with {proc.returncode}"
        for name in list(pending):
            async with grpc.aio.insecure_channel(settings.service(name).address) as channel:
                try:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                except grpc.aio.AioRpcError:
                    continue
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    pending.discard(name)
        if not pending:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"services did not become healthy: {sorted(pending)}")


async def test_seed_story_across_processes(tmp_path: Path, db_backend: str) -> None:
    mail_dir = tmp_path / "mail"
    sink = start_sink(mail_dir)
    password = f"Adm1n-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIBLIODESK_")}
    env.update(
        {
            "BIBLIODESK_HOME": str(tmp_path / "home"),
            "BIBLIODESK_SERVICE_SECRET": uuid.uuid4().hex,
            "BIBLIODESK_BOOTSTRAP_ADMIN_PASSWORD": password,
            "BIBLIODESK_SMTP_HOST": "127.0.0.1",
            "BIBLIODESK_SMTP_PORT": str(sink.port),
            "BIBLIODESK_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    schemas = []
    for name in SERVICES:
        port = free_port()
        env[f"BIBLIODESK_{name.upper()}_LISTEN"] = f"127.0.0.1:{port}"
        env[f"BIBLIODESK_{name.upper()}_ADDRESS"] = f"127.0.0.1:{port}"
        if db_backend == "postgresql":
            schema = f"e2e_{uuid.uuid4().hex[:10]}_{name}"
            schemas.append(schema)
            env[f"BIBLIODESK_{name.upper()}_DATABASE_URL"] = pg_url()
            env[f"BIBLIODESK_{name.upper()}_DB_SCHEMA"] = schema
    engine = create_engine(pg_url()) if schemas else None
    if engine is not None:
        with engine.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bibliodesk.cli.main", "serve", name],
            env=env,
            stdout=open(logs / f"{name}.out", "wb"),  # noqa: SIM115 (the child owns it)
            stderr=open(logs / f"{name}.err", "wb"),  # noqa: SIM115
        )
        for name in SERVICES
    ]
    try:
        await _wait_healthy(env, procs)
        settings = load_settings(env)
        secrets = await scenario.run(settings, "admin", password, scenario.Mailbox(mail_dir))
    except BaseException:
        for name in SERVICES:
            sys.stderr.write(f"--- {name} log (tail) ---\n")
            sys.stderr.write((logs / f"{name}.err").read_text(errors="replace")[-3000:])
        raise
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc in procs]
        sink.stop()
        if engine is not None:
            with engine.begin() as conn:
                for schema in schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()
    assert codes == [0] * len(SERVICES), f"exit codes after SIGTERM: {codes}"
    for name in SERVICES:  # no password ever reaches a log
        log_text = (logs / f"{name}.err").read_text(errors="replace") + (logs / f"{name}.out").read_text(
            errors="replace"
        )
        assert not [s for s in secrets if s in log_text], name
