"""Updates that overtake their ticket.opened: parked, applied when it arrives, then gone."""

from __future__ import annotations

import pytest

from schemas.events import TicketOpened, TicketResponded
from services.common.store_engine import engine_for
from services.sla_timer.policy import load_policy
from services.sla_timer.service import SlaTimer
from services.sla_timer.store import ClockStore, early, outbox
from tests.integration.test_retention import (
    M10,
    NOW,
    TID,
    critical_ticket,
    event_inbound,
    keys,
)


@pytest.mark.parametrize("same_batch", [False, True])
def test_a_parked_update_is_applied_and_removed_when_its_ticket_opens(
    store_url: str, same_batch: bool
) -> None:
    store = ClockStore(engine_for(store_url))
    store.migrate()
    opened = event_inbound(TicketOpened(ticket=critical_ticket(NOW)), NOW)
    responded = event_inbound(TicketResponded(ticket_id=TID, at=NOW + M10, agent="sam"), NOW)
    timer = SlaTimer(store, load_policy(None), clock=lambda: NOW + M10)
    if same_batch:
        assert timer.handle_batch([responded, opened]) == [[], []]
    else:
        timer.handle(responded)
        assert len(keys(store.engine, early.c.event_id)) == 1  # parked
        timer.handle(opened)
    assert keys(store.engine, early.c.event_id) == set()
    assert keys(store.engine, outbox.c.routing_key) == {
        "sla.scheduled.business_critical",
        "sla.met.business_critical",
    }
    store.engine.dispose()
