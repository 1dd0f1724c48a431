"""The runtime's promises on each of the five real services: health, reflection, authentication,
roles and bad input naming the field."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bibliodesk.device_gateway.v1 import device_gateway_pb2 as dg
from bibliodesk.device_gateway.v1 import device_gateway_pb2_grpc as dg_grpc
from bibliodesk.notify.v1 import notify_pb2 as nt
from bibliodesk.notify.v1 import notify_pb2_grpc as nt_grpc
from bibliodesk.patrons.v1 import patrons_pb2 as pt
from bibliodesk.patrons.v1 import patrons_pb2_grpc as pt_grpc
from bibliodesk.requests.v1 import requests_pb2 as rq
from bibliodesk.requests.v1 import requests_pb2_grpc as rq_grpc
from bibliodesk.reservations.v1 import reservations_pb2 as rs
from bibliodesk.reservations.v1 import reservations_pb2_grpc as rs_grpc
from bibliodesk.runtime.settings import SERVICES
from tests.helpers import error_fields, error_reason

# service → (stub class, method, a request with its required id left empty, that field's name)
PROBES = {
    "patrons": (pt_grpc.PatronServiceStub, "GetPatron", pt.GetPatronRequest(), "patron_id"),
    "requests": (
        rq_grpc.RequestInboxServiceStub,
        "GetReservationRequest",
        rq.GetReservationRequestRequest(),
        "reservation_request_id",
    ),
    "reservations": (
        rs_grpc.ReservationServiceStub,
        "GetReservation",
        rs.GetReservationRequest(),
        "reservation_id",
    ),
    "notify": (nt_grpc.NotifyServiceStub, "GetMessage", nt.GetMessageRequest(), "id"),
    "device_gateway": (dg_grpc.DeviceGatewayServiceStub, "ReadTags", dg.ReadTagsRequest(), "station_id"),
}


@pytest.fixture
async def everything(stack_factory):
    return await stack_factory(*SERVICES)


async def test_every_service_is_healthy_and_reflects_its_contract(everything):
    for name in SERVICES:
        channel = everything.channel(name)
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name

        async def ask():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        async for answer in stub.ServerReflectionInfo(ask()):
            listed = {s.name for s in answer.list_services_response.service}
            break
        own = {s for s in listed if s.startswith(f"bibliodesk.{name}.v1.")}
        assert own, f"{name} reflects none of its services: {listed}"
        for service in own:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service)
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_no_token_is_unauthenticated_everywhere(everything):
    for name, (stub_class, method, request, _field) in PROBES.items():
        stub = stub_class(everything.channel(name))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(stub, method)(request)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, name


async def test_bad_input_names_the_field_everywhere(everything):
    staff = everything.token(kind="staff", roles=("admin",))
    for name, (stub_class, method, request, field) in PROBES.items():
        stub = stub_class(everything.channel(name, staff))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(stub, method)(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, err.value)
        assert field in error_fields(err.value), (name, error_fields(err.value))


async def test_patron_token_cannot_reach_staff_operations(everything):
    patron = everything.token(kind="patron", subject="00000000-0000-0000-0000-000000000001")
    staff_only = {
        "patrons": (pt_grpc.PatronServiceStub, "SearchPatrons", pt.SearchPatronsRequest(surname="rossi")),
        "requests": (
            rq_grpc.RequestInboxServiceStub,
            "AdvanceReservationRequest",
            rq.AdvanceReservationRequestRequest(
                request_id="r1",
                reservation_request_id="00000000-0000-0000-0000-000000000002",
                mode=rq.ADVANCE_MODE_RESERVE,
            ),
        ),
        "reservations": (
            rs_grpc.ReservationServiceStub,
            "ListItemsToSetAside",
            rs.ListItemsToSetAsideRequest(),
        ),
        "notify": (nt_grpc.NotifyServiceStub, "ListTemplates", nt.ListTemplatesRequest()),
        "device_gateway": (dg_grpc.DeviceGatewayServiceStub, "ListStations", dg.ListStationsRequest()),
    }
    for name, (stub_class, method, request) in staff_only.items():
        stub = stub_class(everything.channel(name, patron))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(stub, method)(request)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, (name, err.value)


async def test_an_ended_session_stops_working_in_every_service(stack_factory):
    import json

    from bibliodesk.patrons.v1 import identity_pb2, identity_pb2_grpc

    stack = await stack_factory("patrons", "reservations", env={"BIBLIODESK_SESSION_CHECK_SECONDS": "0"})
    admin = json.loads((stack.home / "admin-credentials.json").read_text())
    identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("patrons"))
    login = await identity.LogIn(
        identity_pb2.LogInRequest(username=admin["username"], password=admin["password"])
    )
    reservations = rs_grpc.ReservationServiceStub(stack.channel("reservations", login.access_token))
    await reservations.ListItemsToSetAside(rs.ListItemsToSetAsideRequest())
    await identity_pb2_grpc.IdentityServiceStub(stack.channel("patrons", login.access_token)).LogOut(
        identity_pb2.LogOutRequest()
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await reservations.ListItemsToSetAside(rs.ListItemsToSetAsideRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(err.value) == "SESSION_ENDED"
