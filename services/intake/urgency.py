"""Which raw requests may be page-worthy, decided from the bytes before any parsing.

The consume loop handles these first within its read-ahead window
(services.runtime.arrivals), so a request marked business-critical is not handled after
a burst of chats queued before it. Severity itself is decided only by the normaliser
from the parsed request: a false positive here costs nothing but a place in line, a
false negative only the old arrival order.

Page-worthy: a request marked business-critical by its submitter (the chat widget's,
the support form's or the IVR's `business_critical: true`, an email's
`X-Business-Critical` header), a reclassification to business-critical and an
acknowledgement (which stops the reminders).
"""

from __future__ import annotations

import re

from services.runtime.messages import Inbound

_MARKED_JSON = re.compile(rb'"business_critical"\s*:\s*true')
_HELPDESK = re.compile(rb'"(?:business_critical|acknowledged)"')
_MARKED_MIME = re.compile(rb"^x-business-critical[ \t]*:[ \t]*(?:yes|true|1)\b", re.I | re.M)
MIME_HEADER_SCAN = 64 * 1024  # headers come first; an attachment is never scanned


def may_page(inbound: Inbound) -> bool:
    body = inbound.body
    if inbound.routing_key == "inbound.helpdesk":
        return _HELPDESK.search(body) is not None
    if (inbound.content_type or "").startswith("message/rfc822"):
        head = body[:MIME_HEADER_SCAN]
        end = head.find(b"\r\n\r\n")
        if end < 0:
            end = head.find(b"\n\n")
        return _MARKED_MIME.search(head if end < 0 else head[:end]) is not None
    return _MARKED_JSON.search(body) is not None
