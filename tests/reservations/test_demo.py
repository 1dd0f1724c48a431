"""The demo library loads, and shows what the walkthrough talks about."""

from __future__ import annotations

from typing import Any

from bibliodesk.reservations.v1 import reservations_pb2 as pb

from .conftest import ENV, circulation_stub


async def test_demo_has_items_on_the_shelf_on_loan_and_a_queue(stack_factory: Any) -> None:
    stack = await stack_factory("reservations", env=ENV)
    await stack.host.load_demo()  # type: ignore[union-attr]
    await stack.host.load_demo()  # a second start adds nothing  # type: ignore[union-attr]
    channel = stack.channel("reservations", stack.token(kind="staff", roles=("operator",)))
    circulation = circulation_stub(channel)
    items = (await circulation.ListItems(pb.ListItemsRequest(page_size=200))).items
    states = [i.state for i in items]
    assert len(items) == 15
    assert states.count(pb.ITEM_STATE_ON_LOAN) == 4 and states.count(pb.ITEM_STATE_SET_ASIDE) == 1
    situation = await circulation.GetItemSituation(pb.GetItemSituationRequest(item_barcode="BD0006"))
    assert situation.overdue and situation.item.borrower_card_barcode == "DEMO-CARD-0002"
    assert [r.queue_position for r in situation.queue] == [1, 2]
