"""The plain HTML pages the person sees (pure; every value is escaped)."""

from __future__ import annotations

import html

from services.common.ack_token import AckClaim

_STYLE = "font-family:sans-serif;max-width:40em;margin:3em auto"


def page(title: str, text: str, extra: str = "") -> bytes:
    e = html.escape
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="robots" content="noindex">'
        f'<title>{e(title)}</title></head><body style="{_STYLE}">'
        f"<h1>{e(title)}</h1><p>{e(text)}</p>{extra}</body></html>\n"
    )
    return body.encode()


def confirm(claim: AckClaim, token: str) -> bytes:
    """The GET answer: what would be acknowledged, and the button that does it (a link
    scanner that follows the GET acknowledges nothing)."""
    e = html.escape
    form = (
        '<form method="post" action="ack">'
        f'<input type="hidden" name="t" value="{e(token)}">'
        '<button type="submit">Acknowledge</button></form>'
    )
    text = f"Acknowledge ticket {claim.ticket_id} as {claim.person}?"
    return page("Acknowledge this page", text, form)


def acknowledged(claim: AckClaim) -> bytes:
    text = f"Ticket {claim.ticket_id} is acknowledged by {claim.person}; reminders stop."
    return page("Acknowledged", text)


def already(claim: AckClaim) -> bytes:
    text = f"This page of ticket {claim.ticket_id} was acknowledged already; nothing was sent."
    return page("Already acknowledged", text)


def expired(claim: AckClaim | None) -> bytes:
    about = f" for ticket {claim.ticket_id}" if claim else ""
    text = f"This acknowledge link{about} has expired. Acknowledge in the helpdesk instead."
    return page("Link expired", text)


def refused() -> bytes:
    return page("Unknown link", "This acknowledge link is not valid. Nothing was acknowledged.")


def unavailable() -> bytes:
    text = "The acknowledgement could not be sent just now. Please try again in a minute."
    return page("Not acknowledged", text)
