"""What intake will make of a payload, told before `premium-support publish` sends it.

Ticket ids are deterministic (the channel and the source's own id), so the publisher
can print the id the ticket will get and the next command (`sla explain`) can use it.
Intake's own pure handlers do the work here, without a broker and without the accounts
file: no ticket id depends on who the submitter is.
"""

from __future__ import annotations

from services.intake.accounts import AccountsDirectory
from services.intake.handlers import IntakeHandlers
from services.runtime.errors import PermanentError
from services.runtime.messages import Inbound
from services.upstream import INBOUND_EXCHANGE


def intake_outcome(channel: str, body: bytes, content_type: str) -> str:
    """`ticket T-...` for the ticket(s) the message opens or updates, or
    `intake will dead-letter it (<reason>)` for a message it can never accept."""
    inbound = Inbound(
        body=body,
        routing_key=f"inbound.{channel}",
        exchange=INBOUND_EXCHANGE,
        content_type=content_type,
    )
    handle = IntakeHandlers(AccountsDirectory([])).routes()[inbound.routing_key]
    try:
        outgoing = handle(inbound)
    except PermanentError as exc:
        return f"intake will dead-letter it ({exc.reason})"
    tickets = dict.fromkeys(str(out.log["ticket_id"]) for out in outgoing)
    return f"ticket {', '.join(tickets)}" if tickets else "no ticket"
