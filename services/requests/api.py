"""The gRPC servicer of the inbox: thin, proto in → application service → proto out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from bibliodesk.requests.v1 import requests_pb2 as pb
from bibliodesk.requests.v1 import requests_pb2_grpc as pb_grpc

from .app.inbox import Inbox


class RequestInboxServicer(pb_grpc.RequestInboxServiceServicer):
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def SubmitReservationRequest(
        self, request: pb.SubmitReservationRequestRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitReservationRequestResponse:
        return await self.inbox.submit(request)

    async def GetReservationRequest(
        self, request: pb.GetReservationRequestRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReservationRequestResponse:
        return await self.inbox.get(request)

    async def ListReservationRequests(
        self, request: pb.ListReservationRequestsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReservationRequestsResponse:
        return await self.inbox.list(request)

    async def WatchInbox(
        self, request: pb.WatchInboxRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchInboxResponse]:
        async for event in self.inbox.watch(request):
            yield event

    async def WithdrawReservationRequest(
        self, request: pb.WithdrawReservationRequestRequest, context: grpc.aio.ServicerContext
    ) -> pb.WithdrawReservationRequestResponse:
        return await self.inbox.withdraw(request)

    async def AdvanceReservationRequest(
        self, request: pb.AdvanceReservationRequestRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdvanceReservationRequestResponse:
        return await self.inbox.advance(request)

    async def CutReservationRequest(
        self, request: pb.CutReservationRequestRequest, context: grpc.aio.ServicerContext
    ) -> pb.CutReservationRequestResponse:
        return await self.inbox.cut(request)

    async def SendRequestNotice(
        self, request: pb.SendRequestNoticeRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendRequestNoticeResponse:
        return await self.inbox.send_notice(request)
