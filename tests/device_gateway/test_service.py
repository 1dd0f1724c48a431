"""DeviceGatewayService on a real in-process gRPC server, driving emulated devices over ptys
and TCP exactly as it would drive real ones."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from bibliodesk.device_gateway.v1 import device_gateway_pb2 as pb
from bibliodesk.device_gateway.v1 import device_gateway_pb2_grpc as pb_grpc
from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.barcode import Symbology
from services.device_gateway.hardware.emulators.base import PtyEndpoint, TcpEndpoint
from services.device_gateway.hardware.emulators.rfid import EmulatedTag, RfidPadEmulator
from services.device_gateway.hardware.emulators.scanner import ScannerEmulator
from services.device_gateway.store import tables
from tests.helpers import error_reason

CARD = "E004015000000A01"
BOOK = "E004015000000B01"
BOOK_PART2 = "E004015000000B02"


class Desk:
    def __init__(self, scanner: ScannerEmulator, pad: RfidPadEmulator) -> None:
        self.scanner, self.pad = scanner, pad

    def env(self, **extra: str) -> dict[str, str]:
        stations = {
            "stations": [
                {
                    "id": "desk1",
                    "name": "Front desk",
                    "branch": "CEN",
                    "devices": [
                        {
                            "id": "desk1-scanner",
                            "kind": "scanner",
                            "url": self.scanner.url,
                            "luhn_lengths": [14],
                        },
                        {"id": "desk1-pad", "kind": "rfid", "driver": self.pad.protocol, "url": self.pad.url},
                    ],
                },
                {"id": "desk2", "name": "Children's desk", "branch": "NORD", "devices": []},
            ]
        }
        env = {
            "BIBLIODESK_DEVICE_GATEWAY_STATIONS": json.dumps(stations),
            "BIBLIODESK_DEVICE_GATEWAY_POLL_SECONDS": "0.02",
            "BIBLIODESK_DEVICE_GATEWAY_COUNTRY": "IT",
            "BIBLIODESK_DEVICE_GATEWAY_ISIL": "IT-RM0001",
        }
        env.update({f"BIBLIODESK_DEVICE_GATEWAY_{k.upper()}": v for k, v in extra.items()})
        return env


@pytest.fixture
def pad_protocol() -> str:
    return "3m810"


@pytest.fixture
def desk(tmp_path: Path, pad_protocol: str) -> Iterator[Desk]:
    # The scanner on a pty opened by path, the pad through socket:// (both transports in play).
    scanner = ScannerEmulator(PtyEndpoint(str(tmp_path / "scanner")))
    pad = RfidPadEmulator(TcpEndpoint(), protocol=pad_protocol)
    scanner.start()
    pad.start()
    yield Desk(scanner, pad)
    scanner.stop()
    pad.stop()


async def _gateway(
    stack_factory: Any, desk: Desk, **extra: str
) -> tuple[Any, pb_grpc.DeviceGatewayServiceStub]:
    stack = await stack_factory("device_gateway", env=desk.env(**extra))
    stub = pb_grpc.DeviceGatewayServiceStub(stack.channel("device_gateway", stack.token(kind="staff")))
    await _until_connected(stub)
    return stack, stub


async def _until_connected(stub: pb_grpc.DeviceGatewayServiceStub) -> None:
    for _ in range(1000):
        devices = (await stub.ListDevices(pb.ListDevicesRequest(station_id="desk1"))).devices
        if all(
            d.health.connected and d.health.frames_read
            for d in devices
            if d.kind == pb.DEVICE_KIND_RFID_READER
        ) and all(d.health.connected for d in devices):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("devices did not connect")


async def _next(stream: AsyncIterator[pb.WatchStationResponse], kind: str) -> pb.WatchStationResponse:
    """The next event of a kind (device status events may come in between)."""
    while True:
        response = await asyncio.wait_for(stream.__anext__(), 10)
        if response.WhichOneof("event") == kind:
            return response


async def test_stations_and_devices_with_health(stack_factory: Any, desk: Desk) -> None:
    _, stub = await _gateway(stack_factory, desk)
    stations = (await stub.ListStations(pb.ListStationsRequest())).stations
    assert [s.station_id for s in stations] == ["desk1", "desk2"]
    assert {d.device_id: d.kind for d in stations[0].devices} == {
        "desk1-scanner": pb.DEVICE_KIND_BARCODE_SCANNER,
        "desk1-pad": pb.DEVICE_KIND_RFID_READER,
    }
    only_nord = await stub.ListStations(pb.ListStationsRequest(branch="NORD"))
    assert [s.station_id for s in only_nord.stations] == ["desk2"]
    first = await stub.ListStations(pb.ListStationsRequest(page_size=1))
    second = await stub.ListStations(pb.ListStationsRequest(page_size=1, page_token=first.next_page_token))
    assert [s.station_id for s in second.stations] == ["desk2"] and not second.next_page_token
    pad = next(d for d in stations[0].devices if d.device_id == "desk1-pad")
    assert pad.health.connected and pad.health.last_seen.seconds > 0 and pad.url == desk.pad.url
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListDevices(pb.ListDevicesRequest(station_id="nowhere"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and error_reason(err.value) == "STATION_NOT_FOUND"


async def test_watch_station_streams_validated_scans_and_tags_and_resumes(
    stack_factory: Any, desk: Desk
) -> None:
    _, stub = await _gateway(stack_factory, desk)
    call = stub.WatchStation(pb.WatchStationRequest(station_id="desk1"))
    stream = call.__aiter__()
    await _next(stream, "device_status")  # the stream opens with the devices' state: it is live
    desk.scanner.send_raw(b"]F0A31234000012345B\r")  # fails the site's Luhn rule: never an event
    desk.scanner.scan("31234000012342", Symbology.CODABAR)
    read = await _next(stream, "barcode_read")
    assert (read.barcode_read.symbology, read.barcode_read.value) == (pb.SYMBOLOGY_CODABAR, "31234000012342")
    content = iso28560.LibraryTagData(primary_id="3065000123", country="IT", isil="IT-RM0001")
    desk.pad.place(EmulatedTag.with_content(BOOK, content, afi=0x07))
    entered = await _next(stream, "tag")
    assert entered.tag.change == pb.TAG_CHANGE_ENTERED and entered.tag.tag.uid == BOOK
    assert entered.tag.tag.content.primary_id == "3065000123"
    assert entered.tag.tag.content.usage == pb.USAGE_TYPE_CIRCULATING and entered.tag.tag.secured
    call.cancel()

    # A client that saw only the barcode read resumes after it and gets the tag event again.
    resumed = stub.WatchStation(
        pb.WatchStationRequest(station_id="desk1", after_sequence=read.sequence, stream_id=read.stream_id)
    ).__aiter__()
    again = await _next(resumed, "tag")
    assert again.sequence == entered.sequence and again.tag.tag.uid == BOOK
    desk.pad.remove(BOOK)
    left = await _next(resumed, "tag")
    assert left.tag.change == pb.TAG_CHANGE_LEFT and left.sequence > entered.sequence
    # A stream id from an earlier gateway run replays everything still buffered.
    old = stub.WatchStation(
        pb.WatchStationRequest(station_id="desk1", after_sequence=99, stream_id="old")
    ).__aiter__()
    assert (await asyncio.wait_for(old.__anext__(), 10)).restarted  # the first message says so
    await _next(old, "device_status")  # the rest of the snapshot
    assert (await asyncio.wait_for(old.__anext__(), 10)).sequence == 1  # then everything buffered


async def test_unplugged_pad_is_reported_and_comes_back(stack_factory: Any, desk: Desk) -> None:
    _, stub = await _gateway(stack_factory, desk)
    stream = stub.WatchStation(pb.WatchStationRequest(station_id="desk1")).__aiter__()
    await _next(stream, "device_status")
    desk.pad.stop()  # unplugged
    while True:
        status = await _next(stream, "device_status")
        if status.device_status.device_id == "desk1-pad" and not status.device_status.connected:
            break
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ReadTags(pb.ReadTagsRequest(station_id="desk1", fresh=True))
    assert (err.value.code(), error_reason(err.value)) == (grpc.StatusCode.UNAVAILABLE, "DEVICE_UNAVAILABLE")
    desk.pad.place(EmulatedTag.blank(CARD))
    desk.pad.start()  # plugged back in
    entered = await _next(stream, "tag")
    assert (entered.tag.change, entered.tag.tag.uid) == (pb.TAG_CHANGE_ENTERED, CARD)
    devices = (await stub.ListDevices(pb.ListDevicesRequest(station_id="desk1"))).devices
    assert next(d for d in devices if d.device_id == "desk1-pad").health.reconnects >= 1


async def test_encode_patron_card_is_verified_recorded_and_idempotent(stack_factory: Any, desk: Desk) -> None:
    stack, stub = await _gateway(stack_factory, desk)
    desk.pad.place(EmulatedTag.blank(CARD))
    request = pb.EncodePatronCardRequest(
        request_id="enroll-1", station_id="desk1", patron_barcode="23000012345678", patron_id="p-1"
    )
    response = await stub.EncodePatronCard(request)
    assert response.tag_uid == CARD and response.attempts == 1
    assert response.content.usage == pb.USAGE_TYPE_PATRON_CARD and response.content.isil == "IT-RM0001"
    written = iso28560.decode(bytes(desk.pad.tag(CARD).memory)).data
    assert written == iso28560.LibraryTagData.patron_card("23000012345678", "IT", "IT-RM0001")
    writes = desk.pad.commands.count(0x04)
    assert await stub.EncodePatronCard(request) == response  # the retry answers from the record
    assert desk.pad.commands.count(0x04) == writes  # ...without writing the card again
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.EncodePatronCard(
            pb.EncodePatronCardRequest(request_id="enroll-1", station_id="desk1", patron_barcode="OTHER")
        )
    assert error_reason(err.value) == "REQUEST_ID_REUSED"
    count = await stack.runtime("device_gateway").db.read(
        lambda s: s.execute(select(func.count()).select_from(tables.card_encodings)).scalar_one()
    )
    assert count == 1


@pytest.mark.parametrize("pad_protocol", ["feig"])
async def test_encoding_on_a_feig_reader(stack_factory: Any, desk: Desk) -> None:
    _, stub = await _gateway(stack_factory, desk)
    desk.pad.place(EmulatedTag.blank(CARD))
    desk.pad.set_corrupt_writes(1)
    response = await stub.EncodePatronCard(
        pb.EncodePatronCardRequest(request_id="feig-1", station_id="desk1", patron_barcode="23000012345678")
    )
    assert (response.tag_uid, response.attempts) == (CARD, 2)
    tags = await stub.ReadTags(pb.ReadTagsRequest(station_id="desk1", fresh=True))
    assert [t.content.usage for t in tags.tags] == [pb.USAGE_TYPE_PATRON_CARD]


async def test_encode_failure_is_clear_and_records_nothing(stack_factory: Any, desk: Desk) -> None:
    stack, stub = await _gateway(stack_factory, desk, encode_attempts="2")
    desk.pad.place(EmulatedTag.blank(CARD))
    desk.pad.set_corrupt_writes(5)
    request = pb.EncodePatronCardRequest(request_id="enroll-2", station_id="desk1", patron_barcode="P2")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.EncodePatronCard(request)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(err.value) == "WRITE_VERIFY_FAILED"
    assert desk.pad.corrupt_writes == 3  # two attempts
    count = await stack.runtime("device_gateway").db.read(
        lambda s: s.execute(select(func.count()).select_from(tables.card_encodings)).scalar_one()
    )
    assert count == 0
    desk.pad.set_corrupt_writes(0)
    assert (await stub.EncodePatronCard(request)).tag_uid == CARD  # the same request_id may try again
    desk.pad.place(EmulatedTag.blank(BOOK))
    for barcode, reason, code in [
        ("P3", "MULTIPLE_TAGS", grpc.StatusCode.FAILED_PRECONDITION),
        ("X" * 17, "INVALID_PATRON_BARCODE", grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.EncodePatronCard(
                pb.EncodePatronCardRequest(
                    request_id=f"r-{barcode}", station_id="desk1", patron_barcode=barcode
                )
            )
        assert (err.value.code(), error_reason(err.value)) == (code, reason)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.EncodePatronCard(
            pb.EncodePatronCardRequest(request_id="r", station_id="desk2", patron_barcode="P")
        )
    assert error_reason(err.value) == "NO_RFID_READER"


async def test_item_security_at_check_out_and_check_in(stack_factory: Any, desk: Desk) -> None:
    _, stub = await _gateway(stack_factory, desk, afi_secured="0xD7", afi_unsecured="0xDA")
    two_parts = [iso28560.LibraryTagData(primary_id="CD-BOX", parts_in_set=2, part_number=n) for n in (1, 2)]
    desk.pad.place(EmulatedTag.with_content(BOOK, two_parts[0], afi=0xD7))
    desk.pad.place(
        EmulatedTag.blank(CARD)
    )  # a blank tag is treated as an item; a patron card would be skipped
    desk.pad.remove(CARD)
    check_out = pb.SetItemSecurityRequest(
        request_id="out-1", station_id="desk1", action=pb.SECURITY_ACTION_CHECK_OUT
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SetItemSecurity(check_out)
    assert error_reason(err.value) == "SET_INCOMPLETE"
    assert desk.pad.tag(BOOK).afi == 0xD7  # nothing changed
    desk.pad.place(EmulatedTag.with_content(BOOK_PART2, two_parts[1], afi=0xD7))
    tags = await stub.ReadTags(pb.ReadTagsRequest(station_id="desk1", fresh=True))
    assert [s.complete for s in tags.item_sets] == [True] and all(t.secured for t in tags.tags)
    result = await stub.SetItemSecurity(check_out)
    assert result.all_succeeded and {r.uid for r in result.results} == {BOOK, BOOK_PART2}
    assert desk.pad.tag(BOOK).afi == 0xDA and not desk.pad.tag(BOOK).eas
    # What the polling sees, updated: once its next poll lists the second tag (placed just now),
    # both show the AFI just written, never an older reading.
    for _ in range(500):
        seen = await stub.ReadTags(pb.ReadTagsRequest(station_id="desk1"))
        if {t.uid for t in seen.tags} == {BOOK, BOOK_PART2}:
            break
        await asyncio.sleep(0.01)
    assert {t.uid: t.afi for t in seen.tags} == {BOOK: 0xDA, BOOK_PART2: 0xDA}
    check_in = pb.SetItemSecurityRequest(
        request_id="in-1", station_id="desk1", action=pb.SECURITY_ACTION_CHECK_IN, tag_uids=[BOOK.lower()]
    )
    result = await stub.SetItemSecurity(check_in)
    assert [r.afi for r in result.results] == [0xD7] and desk.pad.tag(BOOK).eas
    assert desk.pad.tag(BOOK_PART2).afi == 0xDA
    locked = pb.SetItemSecurityRequest(
        request_id="in-2", station_id="desk1", action=pb.SECURITY_ACTION_CHECK_IN, lock_afi=True
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SetItemSecurity(locked)
    assert (err.value.code(), error_reason(err.value)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "LOCKS_DISABLED",
    )
    assert 0x0D not in desk.pad.commands
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SetItemSecurity(pb.SetItemSecurityRequest(request_id="x", station_id="desk1"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_patrons_cannot_use_the_desk(stack_factory: Any, desk: Desk) -> None:
    stack = await stack_factory("device_gateway", env=desk.env())
    patron = pb_grpc.DeviceGatewayServiceStub(stack.channel("device_gateway", stack.token(kind="patron")))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await patron.ListStations(pb.ListStationsRequest())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    anonymous = pb_grpc.DeviceGatewayServiceStub(stack.channel("device_gateway"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await anonymous.ListStations(pb.ListStationsRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _demo_command(stack: Any, line: str) -> str:
    path = stack.runtime("device_gateway").state["demo"].control_path
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(line.encode() + b"\n")
    reply = await reader.read()
    writer.close()
    return reply.decode()


async def test_demo_desk_works_out_of_the_box(stack_factory: Any) -> None:
    stack = await stack_factory(
        "device_gateway", demo=True, env={"BIBLIODESK_DEVICE_GATEWAY_POLL_SECONDS": "0.02"}
    )
    stub = pb_grpc.DeviceGatewayServiceStub(stack.channel("device_gateway", stack.token(kind="staff")))
    stations = (await stub.ListStations(pb.ListStationsRequest())).stations
    assert [s.station_id for s in stations] == ["demo-desk"]
    assert all(d.emulated for d in stations[0].devices)
    stream = stub.WatchStation(pb.WatchStationRequest(station_id="demo-desk")).__aiter__()
    await _next(stream, "device_status")
    for _ in range(1000):
        devices = (await stub.ListDevices(pb.ListDevicesRequest(station_id="demo-desk"))).devices
        if all(d.health.connected for d in devices):
            break
        await asyncio.sleep(0.01)
    # The operator drives the emulated devices through the control socket (`devices demo ...`).
    assert "scanned" in await _demo_command(stack, "scanner ean13 978880466823")
    assert (await _next(stream, "barcode_read")).barcode_read.value == "9788804668237"
    # A blank card waits on the pad: enrollment (P4) can encode it at once.
    encoded = await stub.EncodePatronCard(
        pb.EncodePatronCardRequest(request_id="demo-1", station_id="demo-desk", patron_barcode="DEMO0001")
    )
    assert encoded.tag_uid == "E0040150A1B2C301"
    assert "placed blank card" in await _demo_command(stack, "rfid new-card")
    assert "usage" in await _demo_command(stack, "printer on")
