"""Updates that overtake their ticket.opened: parked, applied when it arrives, then gone."""

from __future__ import annotations

import pytest

from schemas.events import (
    EventData,
    TicketOpened,
    TicketPaused,
    TicketResponded,
    TicketUpdated,
    make_event,
)
from services.common.store_engine import engine_for
from services.runtime.messages import Inbound, Outgoing
from services.sla_timer.clock import Clock
from services.sla_timer.policy import load_policy, parse_policy
from services.sla_timer.service import SlaTimer
from services.sla_timer.store import ClockStore, early, outbox
from tests.conftest import ROOT
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


def test_a_reply_and_a_follow_up_that_overtake_their_ticket_start_the_next_reply_round(
    store_url: str,
) -> None:
    # A reply (+10), the customer's follow-up (+20) and a wait on the customer that
    # began before both (+5) all come before the ticket: applied in the order they
    # happened, the follow-up ends the wait and starts a next-reply round at +20.
    store = ClockStore(engine_for(store_url))
    store.migrate()
    policy = parse_policy((ROOT / "tests/fixtures/policy-metrics.yaml").read_text())
    timer = SlaTimer(store, policy, clock=lambda: NOW + M10)
    follow_up = TicketUpdated(ticket_id=TID, channel="email", at=NOW + 2 * M10, text="and?")
    # A follow-up with nothing parked before it is not kept: alone it changes no clock.
    timer.handle(inbound(follow_up.model_copy(update={"text": "first"}), "f0"))
    assert keys(store.engine, early.c.event_id) == set()
    timer.handle(inbound(TicketResponded(ticket_id=TID, at=NOW + M10, agent="sam"), "r"))
    timer.handle(inbound(follow_up, "f"))
    timer.handle(inbound(TicketPaused(ticket_id=TID, at=NOW + M10 / 2), "p"))
    assert len(keys(store.engine, early.c.event_id)) == 3
    timer.handle(inbound(TicketOpened(ticket=critical_ticket(NOW)), "o"))
    clocks = {c["metric"]: Clock.model_validate(c) for c in store.get_all(TID)}
    reply = clocks["next_reply"]
    assert (reply.state, reply.round, reply.started_at) == ("running", 1, NOW + 2 * M10)
    assert not reply.paused and not clocks["resolution"].paused
    assert keys(store.engine, early.c.event_id) == set()
    store.engine.dispose()


def inbound(data: EventData, cause: str) -> Inbound:
    event = make_event(data, service="test", subject=TID, cause=cause, correlation_id="c", now=NOW)
    out = Outgoing.event(event)
    return Inbound(out.body, event.routing_key, "support.events", out.content_type)
