"""The reservations service as a runtime module."""

from __future__ import annotations

from pathlib import Path

from bibliodesk.reservations.v1 import reservations_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2_grpc as pb_grpc
from bibliodesk.runtime.service import ServiceModule, ServiceRuntime

from .app.use_cases import NOTICE_TOPIC
from .store import tables


async def setup(rt: ServiceRuntime) -> None:
    from .api import CirculationServicer, Reservations, ReservationServicer

    core = Reservations(rt)
    rt.add_service(
        pb_grpc.add_ReservationServiceServicer_to_server,
        ReservationServicer(core),
        pb.DESCRIPTOR.services_by_name["ReservationService"].full_name,
    )
    rt.add_service(
        pb_grpc.add_CirculationServiceServicer_to_server,
        CirculationServicer(core),
        pb.DESCRIPTOR.services_by_name["CirculationService"].full_name,
    )
    rt.relay.register(NOTICE_TOPIC, core.deliver_notice)
    rt.background(core.expiry_sweeper)
    core.register_metrics()
    rt.state["app"] = core


async def load_demo(rt: ServiceRuntime) -> None:
    from .demo import load_demo as load

    await load(rt)


MODULE = ServiceModule(
    name="reservations",
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "store" / "migrations",
    setup=setup,
    public_methods=set(),
    load_demo=load_demo,
)
