"""The requests service plugged into the runtime: the inbox of web reservation requests (R1–R7).

Settings (environment, besides the runtime's):
- ``BIBLIODESK_REQUESTS_BRANCHES``: comma-separated pickup branch codes; when set, a request for
  another branch is refused (INVALID_ARGUMENT pickup_branch). Empty: any branch.
- ``BIBLIODESK_REQUESTS_ADVANCE_GRACE_SECONDS`` (30): an advance still in flight after this long is
  completed by the recovery task, which runs every ``BIBLIODESK_REQUESTS_RECOVERY_INTERVAL_SECONDS`` (15).
- ``BIBLIODESK_REQUESTS_PEER_TIMEOUT_SECONDS`` (10): the deadline of each call to patrons,
  reservations and notify.
- ``BIBLIODESK_REQUESTS_WATCH_POLL_SECONDS`` (1): how often a live inbox looks for changes made by
  other replicas (changes made by this process wake it at once).
"""

from __future__ import annotations

import functools
from pathlib import Path

from bibliodesk.requests.v1 import requests_pb2 as pb
from bibliodesk.requests.v1 import requests_pb2_grpc as pb_grpc
from bibliodesk.runtime.service import ServiceModule, ServiceRuntime

from .api import RequestInboxServicer
from .app.inbox import Inbox
from .app.use_cases import NOTIFY_TOPIC
from .demo import load_demo
from .domain.model import RequestStatus
from .store import repository, tables


async def setup(rt: ServiceRuntime) -> None:
    inbox = Inbox(rt)
    rt.add_service(
        pb_grpc.add_RequestInboxServiceServicer_to_server,
        RequestInboxServicer(inbox),
        pb.DESCRIPTOR.services_by_name["RequestInboxService"].full_name,
    )
    rt.relay.register(NOTIFY_TOPIC, inbox.deliver_notice)
    rt.background(inbox.recovery_loop)
    rt.state["app"] = inbox
    # What the desk has still to handle, and advances in flight (stuck ones mean reservations is down).
    for status in (RequestStatus.PENDING, RequestStatus.ADVANCING):
        rt.metrics.gauge(
            f'bibliodesk_inbox_requests{{status="{status.value.lower()}"}}',
            functools.partial(_count, rt, status),
        )


def _count(rt: ServiceRuntime, status: RequestStatus) -> float:
    return float(rt.db.read_sync(repository.count_by_status, status))


MODULE = ServiceModule(
    name="requests",
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "store" / "migrations",
    setup=setup,
    load_demo=load_demo,
)
