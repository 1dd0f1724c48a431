from __future__ import annotations

from bibliodesk.patrons.v1 import identity_pb2 as ipb
from bibliodesk.patrons.v1 import identity_pb2_grpc
from tests.patrons.support import ADMIN_PASSWORD, start


async def test_admin_logs_in(stack_factory) -> None:
    stack = await start(stack_factory)
    ident = identity_pb2_grpc.IdentityServiceStub(stack.channel("patrons"))
    reply = await ident.LogIn(ipb.LogInRequest(username="admin", password=ADMIN_PASSWORD))
    assert reply.access_token and reply.principal.roles == ["admin"]
