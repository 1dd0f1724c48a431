"""The gRPC servicer: thin. Proto in, desk use case, proto out; records in one transaction."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from bibliodesk.device_gateway.v1 import device_gateway_pb2 as pb
from bibliodesk.device_gateway.v1 import device_gateway_pb2_grpc as pb_grpc
from bibliodesk.runtime import auth
from bibliodesk.runtime.errors import InvalidArgument, Violations
from bibliodesk.runtime.idempotency import fingerprint, idempotent
from bibliodesk.runtime.service import ServiceRuntime
from bibliodesk.runtime.types import new_id
from services.device_gateway.app.desk import CHECK_IN, CHECK_OUT, Desk, SecurityOutcome
from services.device_gateway.app.feed import DeviceStatus, StationEvent
from services.device_gateway.config import RFID, SCANNER, DeviceConfig, StationConfig
from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.barcode import Symbology
from services.device_gateway.hardware.events import BarcodeRead, TagChange, TagSeen
from services.device_gateway.hardware.rfid import TagReading
from services.device_gateway.hardware.transport import DeviceHealth
from services.device_gateway.store import tables

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DeviceGatewayService"].full_name

_SYMBOLOGIES = {
    Symbology.UNKNOWN: pb.SYMBOLOGY_UNSPECIFIED,
    Symbology.CODE39: pb.SYMBOLOGY_CODE39,
    Symbology.CODE128: pb.SYMBOLOGY_CODE128,
    Symbology.EAN13: pb.SYMBOLOGY_EAN13,
    Symbology.EAN8: pb.SYMBOLOGY_EAN8,
    Symbology.CODABAR: pb.SYMBOLOGY_CODABAR,
    Symbology.INTERLEAVED_2_OF_5: pb.SYMBOLOGY_INTERLEAVED_2_OF_5,
    Symbology.QR: pb.SYMBOLOGY_QR,
    Symbology.DATA_MATRIX: pb.SYMBOLOGY_DATA_MATRIX,
}
_KINDS = {SCANNER: pb.DEVICE_KIND_BARCODE_SCANNER, RFID: pb.DEVICE_KIND_RFID_READER}
_ACTIONS = {pb.SECURITY_ACTION_CHECK_OUT: CHECK_OUT, pb.SECURITY_ACTION_CHECK_IN: CHECK_IN}


def _ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _page(items: list[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    """Offset paging over a small configured list; the token is opaque to clients."""
    if page_size < 0 or page_size > 200:
        raise InvalidArgument(field="page_size", description="must be 1..200 (0 = default 50)")
    size = page_size or 50
    try:
        start = int(base64.urlsafe_b64decode(page_token.encode()).decode()) if page_token else 0
    except ValueError:
        raise InvalidArgument(field="page_token", description="is not a token from a previous page") from None
    chunk = items[start : start + size]
    more = start + size < len(items)
    return chunk, base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else ""


def health_pb(health: DeviceHealth) -> pb.DeviceHealth:
    message = pb.DeviceHealth(
        connected=health.connected,
        frames_read=health.frames_read,
        frames_rejected=health.frames_rejected,
        reconnects=health.reconnects,
        last_error=health.last_error,
    )
    if health.last_seen is not None:
        message.last_seen.CopyFrom(_ts(datetime.fromtimestamp(health.last_seen, UTC)))
    return message


def content_pb(decoded: iso28560.DecodedTag) -> pb.TagContent:
    data = decoded.data
    return pb.TagContent(
        primary_id=data.primary_id,
        usage=int(data.usage) + 1,  # type: ignore[arg-type]
        parts_in_set=data.parts_in_set,
        part_number=data.part_number,
        country=data.country,
        isil=data.isil,
        reversed_blocks=decoded.reversed_blocks,
        swapped_nibbles=decoded.swapped_nibbles,
    )


class DeviceGatewayServicer(pb_grpc.DeviceGatewayServiceServicer):
    def __init__(self, rt: ServiceRuntime, desk: Desk) -> None:
        self.rt = rt
        self.desk = desk

    # conversions -----------------------------------------------------------------------------
    def _device_pb(self, station: StationConfig, device: DeviceConfig) -> pb.Device:
        driver = self.desk.drivers.get(device.device_id)
        return pb.Device(
            device_id=device.device_id,
            station_id=station.station_id,
            kind=_KINDS[device.kind],
            driver=device.driver,
            url=device.port.url,
            health=health_pb(driver.health.snapshot() if driver else DeviceHealth()),
            emulated=device.emulated,
        )

    def _tag_pb(self, reading: TagReading) -> pb.Tag:
        tag = pb.Tag(uid=reading.uid, content_error=reading.content_error)
        if reading.content is not None:
            tag.content.CopyFrom(content_pb(reading.content))
        if reading.afi is not None:
            tag.afi = reading.afi
            tag.secured = reading.afi == self.desk.config.security.afi_secured
        return tag

    def _event_pb(self, feed_id: str, item: StationEvent) -> pb.WatchStationResponse:
        response = pb.WatchStationResponse(stream_id=feed_id, sequence=item.sequence, time=_ts(item.at))
        event = item.event
        if isinstance(event, BarcodeRead):
            response.barcode_read.CopyFrom(
                pb.BarcodeRead(
                    device_id=event.device_id,
                    symbology=_SYMBOLOGIES[event.scan.symbology],
                    value=event.scan.value,
                    raw=event.scan.raw,
                    aim_id=event.scan.aim_id,
                )
            )
        elif isinstance(event, TagSeen):
            change = pb.TAG_CHANGE_ENTERED if event.change is TagChange.ENTERED else pb.TAG_CHANGE_LEFT
            reading = TagReading(event.uid, event.content, event.content_error, event.afi)
            response.tag.CopyFrom(
                pb.TagEvent(device_id=event.device_id, change=change, tag=self._tag_pb(reading))
            )
        elif isinstance(event, DeviceStatus):
            response.device_status.CopyFrom(
                pb.DeviceStatusEvent(
                    device_id=event.device_id, connected=event.connected, detail=event.detail
                )
            )
        return response

    # RPCs ------------------------------------------------------------------------------------
    async def ListStations(self, request: pb.ListStationsRequest, context: Any) -> pb.ListStationsResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        stations = [
            s for s in self.desk.stations.values() if not request.branch or s.branch == request.branch
        ]
        chunk, token = _page(
            sorted(stations, key=lambda s: s.station_id), request.page_size, request.page_token
        )
        return pb.ListStationsResponse(
            stations=[
                pb.Station(
                    station_id=s.station_id,
                    display_name=s.name,
                    branch=s.branch,
                    devices=[self._device_pb(s, d) for d in s.devices],
                )
                for s in chunk
            ],
            next_page_token=token,
        )

    async def ListDevices(self, request: pb.ListDevicesRequest, context: Any) -> pb.ListDevicesResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        stations = (
            [self.desk.station(request.station_id)]
            if request.station_id
            else list(self.desk.stations.values())
        )
        pairs = sorted(((s, d) for s in stations for d in s.devices), key=lambda p: p[1].device_id)
        chunk, token = _page(pairs, request.page_size, request.page_token)
        return pb.ListDevicesResponse(
            devices=[self._device_pb(s, d) for s, d in chunk], next_page_token=token
        )

    async def WatchStation(
        self, request: pb.WatchStationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchStationResponse]:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        feed = self.desk.feed(request.station_id)
        subscription = feed.subscribe(request.after_sequence, request.stream_id)
        first = True

        def flagged(response: pb.WatchStationResponse) -> pb.WatchStationResponse:
            nonlocal first
            if first:  # the stream's first message says whether the resume was lossless
                response.events_missed = subscription.events_missed
                response.restarted = subscription.restarted
                first = False
            return response

        try:
            # The current state of every device first: a screen knows the desk at once, and the
            # client knows its subscription is live.
            station = self.desk.station(request.station_id)
            for device in station.devices:
                driver = self.desk.drivers.get(device.device_id)
                health = driver.health.snapshot() if driver else DeviceHealth()
                yield flagged(
                    pb.WatchStationResponse(
                        stream_id=feed.stream_id,
                        sequence=feed.sequence,
                        time=_ts(self.rt.clock.now()),
                        device_status=pb.DeviceStatusEvent(
                            device_id=device.device_id, connected=health.connected, detail=health.last_error
                        ),
                    )
                )
            for item in subscription.replay:
                yield flagged(self._event_pb(feed.stream_id, item))
            while True:
                item = await subscription.queue.get()
                yield flagged(self._event_pb(feed.stream_id, item))
        finally:
            feed.unsubscribe(subscription.queue)

    async def ReadTags(self, request: pb.ReadTagsRequest, context: Any) -> pb.ReadTagsResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        readings = await self.desk.read_tags(request.station_id, fresh=request.fresh)
        sets = iso28560.set_status([r.content.data for r in readings if r.content])
        return pb.ReadTagsResponse(
            tags=[self._tag_pb(r) for r in readings],
            item_sets=[
                pb.ItemSet(
                    primary_id=s.primary_id,
                    parts_in_set=s.parts_in_set,
                    present_parts=list(s.present),
                    missing_parts=list(s.missing),
                    complete=s.complete,
                )
                for s in sets
            ],
        )

    async def EncodePatronCard(
        self, request: pb.EncodePatronCardRequest, context: Any
    ) -> pb.EncodePatronCardResponse:
        principal = auth.require_kind(auth.STAFF, auth.SERVICE)
        v = Violations()
        v.required("request_id", request.request_id)
        v.required("station_id", request.station_id)
        v.required("patron_barcode", request.patron_barcode)
        v.raise_if_any()
        method = "EncodePatronCard"
        # The pad is one physical place: encodings at one station run one at a time, and a retry
        # of a finished request is answered from the record without touching the card again.
        async with self.desk.station_lock(request.station_id):
            stored = await self.rt.db.read(_stored_answer, method, request, pb.EncodePatronCardResponse)
            if stored is not None:
                return stored
            result = await self.desk.encode_patron_card(
                request.station_id, request.patron_barcode, overwrite=request.overwrite
            )
            now = self.rt.clock.now()
            device = self.desk.station(request.station_id).device(RFID)
            response = pb.EncodePatronCardResponse(
                tag_uid=result.uid,
                attempts=result.attempts,
                encoded_at=_ts(now),
                content=content_pb(iso28560.decode(result.data)),
            )

            def record(session: Session) -> pb.EncodePatronCardResponse:
                def produce() -> pb.EncodePatronCardResponse:
                    session.execute(
                        insert(tables.card_encodings).values(
                            id=new_id(),
                            request_id=request.request_id,
                            station_id=request.station_id,
                            device_id=device.device_id if device else "",
                            patron_barcode=request.patron_barcode,
                            patron_id=request.patron_id,
                            tag_uid=result.uid,
                            attempts=result.attempts,
                            encoded_at=now,
                            encoded_by=principal.subject,
                        )
                    )
                    return response

                return idempotent(
                    session,
                    self.rt.idempotency,
                    method,
                    request,
                    produce,
                    pb.EncodePatronCardResponse,
                    now=now,
                )

            return await self.rt.db.write(record)

    async def SetItemSecurity(
        self, request: pb.SetItemSecurityRequest, context: Any
    ) -> pb.SetItemSecurityResponse:
        principal = auth.require_kind(auth.STAFF, auth.SERVICE)
        v = Violations()
        v.required("station_id", request.station_id)
        v.check(request.action in _ACTIONS, "action", "must be CHECK_OUT or CHECK_IN", "REQUIRED")
        v.raise_if_any()
        method = "SetItemSecurity"
        async with self.desk.station_lock(request.station_id):
            stored = await self.rt.db.read(_stored_answer, method, request, pb.SetItemSecurityResponse)
            if stored is not None:
                return stored
            action = _ACTIONS[request.action]
            outcomes = await self.desk.set_item_security(
                request.station_id,
                action,
                list(request.tag_uids),
                allow_incomplete=request.allow_incomplete_sets,
                lock_afi=request.lock_afi,
            )
            now = self.rt.clock.now()
            response = pb.SetItemSecurityResponse(
                results=[
                    pb.TagSecurityResult(uid=o.uid, afi=o.afi, eas=o.eas, error_reason=o.error_reason)
                    for o in outcomes
                ],
                all_succeeded=all(not o.error_reason for o in outcomes),
            )

            def record(session: Session) -> pb.SetItemSecurityResponse:
                def produce() -> pb.SetItemSecurityResponse:
                    _record_security(session, request, action, outcomes, now, principal.subject)
                    return response

                return idempotent(
                    session,
                    self.rt.idempotency,
                    method,
                    request,
                    produce,
                    pb.SetItemSecurityResponse,
                    now=now,
                )

            return await self.rt.db.write(record)


def _record_security(
    session: Session,
    request: pb.SetItemSecurityRequest,
    action: str,
    outcomes: list[SecurityOutcome],
    now: datetime,
    by: str,
) -> None:
    for o in outcomes:
        session.execute(
            insert(tables.security_changes).values(
                id=new_id(),
                request_id=request.request_id,
                station_id=request.station_id,
                action=action,
                tag_uid=o.uid,
                primary_id=o.primary_id,
                afi=o.afi,
                eas=o.eas,
                afi_locked=o.afi_locked,
                error_reason=o.error_reason,
                changed_at=now,
                changed_by=by,
            )
        )


def _stored_answer(session: Session, method: str, request: Any, response_type: Any) -> Any:
    """The first answer to this request_id, or None; a different request under it is refused."""
    if not request.request_id:
        return None
    table = tables.idempotency_keys
    row = session.execute(
        select(table.c.fingerprint, table.c.response).where(table.c.key == f"{method}:{request.request_id}")
    ).first()
    if row is None:
        return None
    if row.fingerprint != fingerprint(request):
        raise InvalidArgument(
            field="request_id",
            description="was already used for a different request",
            reason="REQUEST_ID_REUSED",
        )
    return response_type.FromString(row.response)
