"""The benchmarked operations: each builds its next request from the generated layout and calls
the real service through the generated stub, like a desk client or a web front end would.

Consumable operations (advance, check-in, check-out) take the next unused row of their pool;
when the pool is used up the operation stops early and is reported ``exhausted``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from bibliodesk.patrons.v1 import identity_pb2, identity_pb2_grpc, patrons_pb2, patrons_pb2_grpc
from bibliodesk.requests.v1 import requests_pb2, requests_pb2_grpc
from bibliodesk.reservations.v1 import reservations_pb2, reservations_pb2_grpc
from bibliodesk.runtime import auth

from .dataset import LOGIN_PASSWORD, Layout, _mix

CALL_TIMEOUT = 30.0


class Exhausted(Exception):
    """The operation's pool of prepared rows is used up."""


@dataclass
class Op:
    """One benchmarked operation."""

    name: str
    feature: str
    kind: str  # "read" | "write"
    service: str
    title: str
    #: (client channels by service, sequence number) → awaitable response; raises Exhausted.
    call: Callable[[dict[str, grpc.aio.Channel], int], Awaitable[Message]]
    #: sizes seen (serialized request, response), for the empty-handler ceiling
    request_sizes: list[int] = field(default_factory=list)
    response_sizes: list[int] = field(default_factory=list)
    #: the bearer token sent (so the ceiling's calls carry metadata of the same size)
    token_size: int = 0

    def sizes(self) -> tuple[int, int]:
        def mean(xs: list[int]) -> int:
            return round(sum(xs) / len(xs)) if xs else 64

        return mean(self.request_sizes), mean(self.response_sizes)


class Tokens:
    """Access tokens: a real staff log-in, and patron tokens minted with the library's signing key
    (as the patrons service does after a log-in; the log-in itself is measured by ``login``)."""

    def __init__(self, home: Path, staff_token: str) -> None:
        self.staff = staff_token
        key = auth.load_or_create_private_key(home / "keys" / "token-signing.pem")
        self.signer = auth.TokenSigner(key)
        self._patrons: dict[str, str] = {}

    def patron(self, patron_id: str, name: str) -> str:
        token = self._patrons.get(patron_id)
        if token is None:
            token, _ = self.signer.mint(
                subject=patron_id, kind=auth.PATRON, now=datetime.now(UTC), ttl=timedelta(hours=2), name=name
            )
            self._patrons[patron_id] = token
        return token


def _md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _record(op: Op, request: Message, response: Message) -> Message:
    if len(op.request_sizes) < 200:
        op.request_sizes.append(request.ByteSize())
        op.response_sizes.append(response.ByteSize())
    return response


def build_ops(layout: Layout, tokens: Tokens, run_id: str, used: dict[str, int]) -> dict[str, Op]:
    """``used``: rows of each consumable pool already used by earlier runs on the same data; it
    is updated as the operations take rows."""
    staff = _md(tokens.staff)

    def take(name: str) -> int:
        k = used.get(name, 0)
        if k >= layout.pool:
            raise Exhausted
        used[name] = k + 1
        return k

    ops: dict[str, Op] = {}

    # R1: a logged-in web patron asks for a copy on the shelf.
    async def submit(ch: dict[str, grpc.aio.Channel], _: int) -> Message:
        n = used.get("submit", 0)  # continues across runs on the same library (--reuse)
        used["submit"] = n + 1
        i = layout.submitter(n)
        surname, given = layout.patron_name(i)
        token = tokens.patron(layout.patron_id(i), f"{surname} {given}")
        request = requests_pb2.SubmitReservationRequestRequest(
            request_id=f"bench-{run_id}-r1-{n}",
            item_barcode=layout.item_barcode(layout.shelf_item(n)),
            note="Passo sabato mattina" if n % 5 == 0 else "",
        )
        stub = requests_pb2_grpc.RequestInboxServiceStub(ch["requests"])
        response = await stub.SubmitReservationRequest(request, metadata=_md(token), timeout=CALL_TIMEOUT)
        ops["submit"].token_size = len(token)
        return _record(ops["submit"], request, response)

    ops["submit"] = Op("submit", "R1", "write", "requests", "web request submission", submit)

    # R2/R3: the desk opens today's inbox, active requests only, first page.
    async def inbox(ch: dict[str, grpc.aio.Channel], n: int) -> Message:
        request = requests_pb2.ListReservationRequestsRequest(made_today=True, active_only=True)
        stub = requests_pb2_grpc.RequestInboxServiceStub(ch["requests"])
        response = await stub.ListReservationRequests(request, metadata=staff, timeout=CALL_TIMEOUT)
        return _record(ops["inbox"], request, response)

    ops["inbox"] = Op("inbox", "R2/R3", "read", "requests", "inbox: today, active, first page", inbox)

    # R5: advance a pending request (RICHIESTA) into a real reservation.
    async def advance(ch: dict[str, grpc.aio.Channel], n: int) -> Message:
        k = take("advance")
        request = requests_pb2.AdvanceReservationRequestRequest(
            request_id=f"bench-{run_id}-r5-{k}",
            reservation_request_id=layout.r5_request(k),
            mode=requests_pb2.ADVANCE_MODE_RESERVE,
        )
        stub = requests_pb2_grpc.RequestInboxServiceStub(ch["requests"])
        response = await stub.AdvanceReservationRequest(request, metadata=staff, timeout=CALL_TIMEOUT)
        return _record(ops["advance"], request, response)

    ops["advance"] = Op("advance", "R5", "write", "requests", "advance a request (reserve)", advance)

    # V4: the borrower returns an item somebody queued for; it becomes READY for the first in line.
    async def check_in(ch: dict[str, grpc.aio.Channel], n: int) -> Message:
        k = take("check_in")
        request = reservations_pb2.CheckInRequest(
            request_id=f"bench-{run_id}-v4-{k}", item_barcode=layout.v4_item(k), branch=layout.item_branch(k)
        )
        stub = reservations_pb2_grpc.CirculationServiceStub(ch["reservations"])
        response = await stub.CheckIn(request, metadata=staff, timeout=CALL_TIMEOUT)
        return _record(ops["check_in"], request, response)

    ops["check_in"] = Op(
        "check_in", "V4", "write", "reservations", "desk check-in, item has a queue", check_in
    )

    # V6: the patron is at the desk: check out the item set aside for them.
    async def check_out(ch: dict[str, grpc.aio.Channel], n: int) -> Message:
        k = take("check_out")
        barcode, patron_id = layout.v6_item(k)
        request = reservations_pb2.CheckOutRequest(
            request_id=f"bench-{run_id}-v6-{k}",
            item_barcode=barcode,
            patron_id=patron_id,
            branch=layout.item_branch(layout.pool + k),
        )
        stub = reservations_pb2_grpc.CirculationServiceStub(ch["reservations"])
        response = await stub.CheckOut(request, metadata=staff, timeout=CALL_TIMEOUT)
        return _record(ops["check_out"], request, response)

    ops["check_out"] = Op(
        "check_out", "V6", "write", "reservations", "check-out of a reserved item", check_out
    )

    # P2: the desk looks for a person by name (common surnames have thousands of namesakes).
    async def search(ch: dict[str, grpc.aio.Channel], n: int) -> Message:
        # the person at the desk is a random patron: common surnames come up as often as they are
        h = _mix(n, 99)
        surname, given_name = layout.patron_name(h % layout.patrons)
        given = ""
        if h % 4 == 1:
            surname = surname[:4]
        elif h % 4 == 2:
            given = given_name[:3]
        request = patrons_pb2.SearchPatronsRequest(surname=surname, given_name=given)
        stub = patrons_pb2_grpc.PatronServiceStub(ch["patrons"])
        response = await stub.SearchPatrons(request, metadata=staff, timeout=CALL_TIMEOUT)
        return _record(ops["search"], request, response)

    ops["search"] = Op("search", "P2", "read", "patrons", "patron search by name", search)

    # P6: a web patron logs in with their own credentials (argon2id verification).
    async def login(ch: dict[str, grpc.aio.Channel], n: int) -> Message:
        request = identity_pb2.LogInRequest(
            username=layout.login_username(n % layout.logins), password=LOGIN_PASSWORD
        )
        stub = identity_pb2_grpc.IdentityServiceStub(ch["patrons"])
        response = await stub.LogIn(request, timeout=CALL_TIMEOUT)
        return _record(ops["login"], request, response)

    ops["login"] = Op("login", "P6", "write", "patrons", "patron log-in", login)
    return ops


ORDER = ("submit", "inbox", "advance", "check_in", "check_out", "search", "login")


async def staff_login(address: str, password: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await identity_pb2_grpc.IdentityServiceStub(channel).LogIn(
            identity_pb2.LogInRequest(username="admin", password=password), timeout=60
        )
    return str(reply.access_token)


async def prime(addresses: dict[str, str], staff_token: str, layout: Layout, timeout: float = 45.0) -> int:
    """One authenticated call along each path the operations take, before anything is measured,
    so every service has fetched the token keys (see FINDINGS.md: the first concurrent calls after
    a start race the key fetch and fail UNAUTHENTICATED). Returns the failed attempts."""
    import asyncio
    import time

    md = _md(staff_token)
    failures = 0
    deadline = time.monotonic() + timeout
    steps: list[tuple[str, Callable[[grpc.aio.Channel], Awaitable[Any]]]] = [
        (
            "requests",
            lambda ch: requests_pb2_grpc.RequestInboxServiceStub(ch).ListReservationRequests(
                requests_pb2.ListReservationRequestsRequest(page_size=1), metadata=md, timeout=10
            ),
        ),
        (
            "requests",
            lambda ch: requests_pb2_grpc.RequestInboxServiceStub(ch).ListReservationRequests(
                requests_pb2.ListReservationRequestsRequest(patron_id=layout.patron_id(4 * layout.pool)),
                metadata=md,
                timeout=10,
            ),
        ),
        (
            "reservations",
            lambda ch: reservations_pb2_grpc.CirculationServiceStub(ch).GetItemAvailability(
                reservations_pb2.GetItemAvailabilityRequest(item_barcodes=[layout.item_barcode(0)]),
                metadata=md,
                timeout=10,
            ),
        ),
        (
            "patrons",
            lambda ch: patrons_pb2_grpc.PatronServiceStub(ch).SearchPatrons(
                patrons_pb2.SearchPatronsRequest(surname="rossi", page_size=1), metadata=md, timeout=10
            ),
        ),
    ]
    for service, step in steps:
        async with grpc.aio.insecure_channel(addresses[service]) as channel:
            while True:
                try:
                    await step(channel)
                    break
                except grpc.aio.AioRpcError:
                    failures += 1
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(1.0)
    return failures


def channels_for(addresses: dict[str, str], clients: int) -> list[dict[str, grpc.aio.Channel]]:
    """One channel per client and service: 16 clients are 16 HTTP/2 connections per service."""
    options: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
    return [
        {name: grpc.aio.insecure_channel(address, options=options) for name, address in addresses.items()}
        for _ in range(clients)
    ]
