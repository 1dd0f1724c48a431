"""The device gateway as a runtime module: stations from settings (see ``config.py``), drivers
started with the server and stopped with it; ``up --demo`` adds a desk on emulated devices."""

from __future__ import annotations

import logging
from pathlib import Path

from bibliodesk.runtime.service import ServiceModule, ServiceRuntime
from services.device_gateway.config import load_gateway_config
from services.device_gateway.store import tables

log = logging.getLogger(__name__)


async def setup(rt: ServiceRuntime) -> None:
    from bibliodesk.device_gateway.v1 import device_gateway_pb2_grpc as pb_grpc

    from .api import SERVICE_NAME, DeviceGatewayServicer
    from .app.desk import Desk
    from .demo import start_demo_desk

    config = load_gateway_config(rt.settings.get)
    desk = Desk(config, now=rt.clock.now)
    demo = None
    if rt.demo or config.demo:
        demo = start_demo_desk(Path(rt.settings.home) / "devices")
        try:
            await demo.serve_control()
        except OSError as exc:  # e.g. a data folder path too long for a Unix socket
            log.warning("demo desk control socket unavailable: %s", exc)
        desk.add_station(demo.station)
        log.info(
            "demo desk: scanner at %s, RFID pad at %s; drive them with `bibliodesk devices demo ...`",
            demo.scanner.url,
            demo.pad.url,
        )
    desk.start()
    log.info("device gateway: %d station(s), %d device(s)", len(desk.stations), len(desk.drivers))

    async def stop() -> None:
        await desk.stop()
        if demo is not None:
            await demo.stop()

    rt.on_stop(stop)
    rt.add_service(
        pb_grpc.add_DeviceGatewayServiceServicer_to_server, DeviceGatewayServicer(rt, desk), SERVICE_NAME
    )
    rt.state.update(desk=desk, demo=demo)


MODULE = ServiceModule(
    name="device_gateway",
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "store" / "migrations",
    setup=setup,
)
