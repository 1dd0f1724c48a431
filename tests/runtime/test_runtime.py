"""The shared runtime through real gRPC calls on a probe service: auth, errors, idempotency,
outbox, health, reflection, graceful shutdown — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from google.protobuf import struct_pb2, wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import select

from bibliodesk.runtime.clock import ManualClock
from bibliodesk.runtime.outbox import enqueue
from tests.helpers import error_domain, error_fields, error_reason
from tests.runtime.fixture_service.module import SERVICE, make_module

S = wrappers_pb2.StringValue


def call(channel: grpc.aio.Channel, method: str, request, response_type=S):
    return channel.unary_unary(
        f"/{SERVICE}/{method}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString,
    )(request, timeout=10)


@pytest.fixture
async def probe(stack_factory):
    return await stack_factory(
        "requests", modules={"requests": make_module("requests")}, clock=ManualClock(), background=False
    )


async def test_health_and_reflection(probe):
    channel = probe.channel("requests")
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for answer in stub.ServerReflectionInfo(ask()):
        names = {s.name for s in answer.list_services_response.service}
        assert SERVICE in names and "grpc.health.v1.Health" in names
        break


async def test_public_method_needs_no_token_but_sees_one(probe):
    assert (await call(probe.channel("requests"), "Ping", S(value="x"))).value == "pong x -"
    token = probe.token(kind="patron", subject="p-1")
    assert (await call(probe.channel("requests", token), "Ping", S(value="x"))).value == "pong x p-1"


async def test_no_token_is_unauthenticated(probe):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(probe.channel("requests"), "WhoAmI", S())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(err.value) == "UNAUTHENTICATED"


async def test_forged_and_expired_tokens_are_refused(probe):
    from datetime import timedelta

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bibliodesk.runtime.auth import TokenSigner

    forged, _ = TokenSigner(Ed25519PrivateKey.generate()).mint(
        subject="admin", kind="staff", now=probe.clock.now(), ttl=timedelta(hours=1), roles=("admin",)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(probe.channel("requests", forged), "WhoAmI", S())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    expired = probe.token(ttl=timedelta(seconds=-3600))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(probe.channel("requests", expired), "WhoAmI", S())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(err.value) == "TOKEN_EXPIRED"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(probe.channel("requests", "not-a-jwt"), "WhoAmI", S())
    assert error_reason(err.value) == "TOKEN_MALFORMED"


async def test_wrong_role_is_permission_denied(probe):
    operator = probe.token(kind="staff", roles=("operator",))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(probe.channel("requests", operator), "AdminOnly", S())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    admin = probe.token(kind="staff", roles=("admin",))
    assert (await call(probe.channel("requests", admin), "AdminOnly", S())).value == "ok"
    patron = probe.token(kind="patron", subject="p-9")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(probe.channel("requests", patron), "AdminOnly", S())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_temporary_credentials_reach_nothing_else(probe):
    token = probe.token(kind="patron", subject="p-2", must_change_credentials=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(probe.channel("requests", token), "WhoAmI", S())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(err.value) == "CREDENTIALS_CHANGE_REQUIRED"


async def test_bad_input_names_the_field(probe):
    token = probe.token()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(probe.channel("requests", token), "Validate", S(value=""))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_fields(err.value) == ["value"]
    assert error_domain(err.value) == "bibliodesk.requests"


async def test_unexpected_error_is_internal_without_internals(probe):
    token = probe.token()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(probe.channel("requests", token), "Boom", S())
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in (err.value.details() or "")
    assert "request id" in (err.value.details() or "")


async def test_request_id_is_echoed(probe):
    channel = probe.channel("requests", probe.token())
    rpc = channel.unary_unary(
        f"/{SERVICE}/WhoAmI", request_serializer=S.SerializeToString, response_deserializer=S.FromString
    )
    call_ = rpc(S(), metadata=(("x-request-id", "abc-123"),))
    await call_
    assert ("x-request-id", "abc-123") in list(await call_.initial_metadata())


async def test_streaming_errors_are_mapped(probe):
    channel = probe.channel("requests", probe.token())
    rpc = channel.unary_stream(
        f"/{SERVICE}/Stream", request_serializer=S.SerializeToString, response_deserializer=S.FromString
    )
    got = [m.value async for m in rpc(S(value="a"))]
    assert got == ["a-0", "a-1", "a-2"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in rpc(S(value="fail")):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_fields(err.value) == ["value"]


def note(text: str, request_id: str = "") -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update({"text": text, "request_id": request_id})
    return s


async def test_idempotent_write_returns_first_answer(probe):
    channel = probe.channel("requests", probe.token())
    first = await call(channel, "AddNote", note("hello", "r-1"), struct_pb2.Struct)
    again = await call(channel, "AddNote", note("hello", "r-1"), struct_pb2.Struct)
    assert first == again
    assert (await call(channel, "CountNotes", S())).value == "1"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(channel, "AddNote", note("other text", "r-1"), struct_pb2.Struct)
    assert error_reason(err.value) == "REQUEST_ID_REUSED"


async def test_concurrent_retries_write_once(probe):
    channel = probe.channel("requests", probe.token())
    results = await asyncio.gather(
        *(call(channel, "AddNote", note("same", "r-conc"), struct_pb2.Struct) for _ in range(10)),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, struct_pb2.Struct)]
    assert ok and all(r == ok[0] for r in ok)
    assert (await call(channel, "CountNotes", S())).value == "1"


async def test_outbox_retries_until_delivered_once_and_wipes_secrets(probe):
    rt = probe.runtime("requests")
    rt.state["fail_times"] = 2
    channel = probe.channel("requests", probe.token())
    await call(channel, "AddNote", note("x", "r-2"), struct_pb2.Struct)
    for _ in range(3):
        await rt.relay.run_once()
        rt.clock.advance(seconds=600)  # past any backoff
    await rt.relay.drain()
    assert len(rt.state["delivered"]) == 1
    rows = rt.db.read_sync(lambda s: s.execute(select(rt.outbox)).mappings().all())
    assert len(rows) == 1 and rows[0]["attempts"] == 2 and rows[0]["delivered_at"] is not None
    assert json.loads(rows[0]["payload"])["secret_code"] == "[redacted]"


async def test_outbox_key_is_recorded_once_even_by_concurrent_writers(probe):
    rt = probe.runtime("requests")

    def add(session, key):
        return enqueue(session, rt.outbox, "probe.deliver", key, {"n": 1}, now=rt.clock.now())

    assert rt.db.write_sync(add, "k-1") is True
    assert rt.db.write_sync(add, "k-1") is False  # the same effect, already recorded
    assert rt.db.write_sync(lambda s: (add(s, "k-2"), add(s, "k-2"))) == (True, False)  # same transaction
    results = await asyncio.gather(*(rt.db.write(add, "k-3") for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    keys = rt.db.read_sync(lambda s: [r.key for r in s.execute(select(rt.outbox.c.key))])
    assert sorted(keys) == ["k-1", "k-2", "k-3"]


async def test_relay_killed_mid_delivery_redelivers_under_same_key(probe):
    rt = probe.runtime("requests")
    rt.state["hang"] = asyncio.Event()
    channel = probe.channel("requests", probe.token())
    await call(channel, "AddNote", note("y", "r-3"), struct_pb2.Struct)
    task = asyncio.create_task(rt.relay.run_once())
    await asyncio.sleep(0.3)
    task.cancel()  # the relay dies while the peer is handling the row
    await asyncio.gather(task, return_exceptions=True)
    rt.state["hang"] = None
    await rt.relay.drain()
    assert rt.state["delivered"] == []  # still leased to the dead relay
    rt.clock.advance(seconds=61)  # the lease expires
    await rt.relay.drain()
    await rt.relay.drain()
    assert len(rt.state["delivered"]) == 1
    assert rt.state["delivered"][0].startswith("note:")


async def test_graceful_stop_lets_in_flight_call_finish(probe):
    channel = probe.channel("requests", probe.token())
    in_flight = asyncio.ensure_future(call(channel, "Slow", S(value="0.8")))
    await asyncio.sleep(0.2)
    host = probe.host
    stopping = asyncio.create_task(host.stop(grace=5))
    await asyncio.sleep(0.1)
    health = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    except grpc.aio.AioRpcError as exc:  # already refusing new calls: also fine
        assert exc.code() == grpc.StatusCode.UNAVAILABLE
    assert (await in_flight).value == "done"
    await stopping
    probe.host = None


async def test_data_survives_restart(probe):
    channel = probe.channel("requests", probe.token())
    await call(channel, "AddNote", note("kept", "r-4"), struct_pb2.Struct)
    await probe.restart()
    channel = probe.channel("requests", probe.token())
    assert (await call(channel, "CountNotes", S())).value == "1"


def test_metrics_text_has_one_type_line_per_family():
    from bibliodesk.runtime.metrics import Metrics

    metrics = Metrics()
    metrics.gauge('queue{status="a"}', lambda: 1.0)
    metrics.gauge('queue{status="b"}', lambda: 2.0)
    metrics.observe_rpc("svc", "/x.Y/Z", "OK", 0.003)
    text = metrics.render()
    assert text.count("# TYPE queue gauge") == 1
    assert 'queue{status="a"} 1.0' in text and 'queue{status="b"} 2.0' in text
    assert 'bibliodesk_rpc_total{service="svc",method="/x.Y/Z",code="OK"} 1' in text
    assert 'bibliodesk_rpc_duration_seconds_bucket{service="svc",method="/x.Y/Z",le="0.005"} 1' in text


def test_database_password_from_a_file_completes_the_url(tmp_path):
    from bibliodesk.runtime.settings import load_settings

    secret = tmp_path / "pw"
    secret.write_text("s3cr@t/pw\n")
    settings = load_settings(
        {
            "BIBLIODESK_HOME": str(tmp_path),
            "BIBLIODESK_PATRONS_DATABASE_URL": "postgresql+psycopg://patrons@db:5432/patrons",
            "BIBLIODESK_PATRONS_DATABASE_PASSWORD_FILE": str(secret),
        }
    )
    from sqlalchemy.engine import make_url

    url = make_url(settings.service("patrons").database_url)
    assert url.password == "s3cr@t/pw" and url.username == "patrons" and url.host == "db"
    assert settings.service("requests").database_url == f"sqlite:///{tmp_path / 'requests.db'}"


async def test_token_checks_are_cached_but_expiry_still_holds():
    from datetime import timedelta

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bibliodesk.runtime.auth import TokenSigner, TokenVerifier
    from bibliodesk.runtime.errors import Unauthenticated

    clock = ManualClock()
    signer = TokenSigner(Ed25519PrivateKey.generate())
    fetches = []

    async def fetch():
        fetches.append(1)
        await asyncio.sleep(0.05)
        return {signer.kid: signer.public_key}

    verifier = TokenVerifier(fetch_keys=fetch, now=clock.now)
    token, _ = signer.mint(subject="s1", kind="staff", now=clock.now(), ttl=timedelta(minutes=10))
    # Ten calls racing on an unknown key: one fetch, every call verified.
    principals = await asyncio.gather(*(verifier.verify(token) for _ in range(10)))
    assert {p.subject for p in principals} == {"s1"} and len(fetches) == 1
    clock.advance(minutes=11)
    with pytest.raises(Unauthenticated):
        await verifier.verify(token)  # cached, but expired


async def test_sqlite_planner_statistics_are_kept_at_start(probe):
    if probe.backend != "sqlite":
        pytest.skip("PostgreSQL's autovacuum analyzes")
    channel = probe.channel("requests", probe.token())
    for i in range(3):
        await call(channel, "AddNote", note(f"n{i}", f"r-stat-{i}"), struct_pb2.Struct)
    await probe.restart()
    from sqlalchemy import text

    rows = probe.runtime("requests").db.read_sync(
        lambda s: s.execute(text("SELECT tbl FROM sqlite_stat1")).all()
    )
    assert "notes" in {r.tbl for r in rows}
