"""P4 / D2: the operator enrolls a patron and encodes the RFID card on the desk pad (device gateway
driving an emulated 3M 810 pad over TCP, the same bytes a real pad speaks)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import grpc
import pytest

from bibliodesk.device_gateway.v1 import device_gateway_pb2 as dg
from bibliodesk.device_gateway.v1 import device_gateway_pb2_grpc as dg_grpc
from bibliodesk.patrons.v1 import patrons_pb2 as pb
from services.device_gateway.hardware import iso28560
from services.device_gateway.hardware.emulators.base import TcpEndpoint
from services.device_gateway.hardware.emulators.rfid import EmulatedTag, RfidPadEmulator
from tests.helpers import error_reason
from tests.patrons.support import admin, adult_category, operator, pre_register, rid, start

CARD_UID = "E004015000000C01"


@pytest.fixture
def pad() -> Iterator[RfidPadEmulator]:
    emulator = RfidPadEmulator(TcpEndpoint())
    emulator.start()
    yield emulator
    emulator.stop()


def gateway_env(pad: RfidPadEmulator) -> dict[str, str]:
    stations = {
        "stations": [
            {
                "id": "desk1",
                "name": "Front desk",
                "branch": "CEN",
                "devices": [{"id": "desk1-pad", "kind": "rfid", "driver": "3m810", "url": pad.url}],
            }
        ]
    }
    return {
        "BIBLIODESK_DEVICE_GATEWAY_STATIONS": json.dumps(stations),
        "BIBLIODESK_DEVICE_GATEWAY_POLL_SECONDS": "0.02",
        "BIBLIODESK_DEVICE_GATEWAY_COUNTRY": "IT",
        "BIBLIODESK_DEVICE_GATEWAY_ISIL": "IT-RM0001",
    }


async def test_p4_enrollment_encodes_the_rfid_card_at_the_desk(stack_factory, pad: RfidPadEmulator) -> None:
    stack = await start(stack_factory, "device_gateway", env=gateway_env(pad))
    gateway = dg_grpc.DeviceGatewayServiceStub(stack.channel("device_gateway", stack.token(kind="staff")))
    for _ in range(1000):
        devices = (await gateway.ListDevices(dg.ListDevicesRequest(station_id="desk1"))).devices
        if devices and all(d.health.connected and d.health.frames_read for d in devices):
            break
        await asyncio.sleep(0.01)
    desk = await operator(stack)
    await adult_category(await admin(stack))
    patron_id = await pre_register(stack)
    got = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=patron_id))).patron
    # An incomplete record is refused before the card is touched.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.EnrollPatron(
            pb.EnrollPatronRequest(
                request_id=rid(),
                patron_id=patron_id,
                etag=got.etag,
                category_code="ADULT",
                encode_at_station_id="desk1",
            )
        )
    assert error_reason(err.value) == "ENROLLMENT_INCOMPLETE"
    got = (
        await desk.patrons.UpdatePatron(
            pb.UpdatePatronRequest(
                request_id=rid(),
                etag=got.etag,
                patron=pb.Patron(
                    id=patron_id,
                    document_type=pb.DOCUMENT_TYPE_IDENTITY_CARD,
                    document_number="CA1",
                    nationality="IT",
                ),
                update_mask={"paths": ["document_type", "document_number", "nationality"]},
            )
        )
    ).patron
    # No card on the pad: a clear refusal, nothing recorded.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.EnrollPatron(
            pb.EnrollPatronRequest(
                request_id=rid(),
                patron_id=patron_id,
                etag=got.etag,
                category_code="ADULT",
                encode_at_station_id="desk1",
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(err.value) == "CARD_ENCODING_FAILED"
    pad.place(EmulatedTag.blank(CARD_UID))
    request = pb.EnrollPatronRequest(
        request_id=rid(),
        patron_id=patron_id,
        etag=got.etag,
        category_code="ADULT",
        encode_at_station_id="desk1",
    )
    enrolled = (await desk.patrons.EnrollPatron(request)).patron
    assert enrolled.status == pb.PATRON_STATUS_ENROLLED and enrolled.rfid_uid == CARD_UID
    assert (await desk.patrons.EnrollPatron(request)).patron == enrolled  # a retry changes nothing
    # The card on the pad now carries the patron's barcode, and the desk finds the patron by it.
    written = iso28560.decode(bytes(pad.tag(CARD_UID).memory))
    assert written.data.primary_id == enrolled.card_barcode and int(written.data.usage) == 8
    found = await desk.patrons.LookUpPatronByCard(pb.LookUpPatronByCardRequest(rfid_uid=CARD_UID))
    assert found.patron.id == patron_id
