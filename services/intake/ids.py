"""Deterministic ticket ids: the channel and the source's own id, nothing else."""

from __future__ import annotations

import hashlib

from schemas.ticket import Channel


def ticket_id(channel: Channel, source_id: str) -> str:
    digest = hashlib.sha256(f"{channel}:{source_id.strip()}".encode()).hexdigest()
    return f"T-{channel}-{digest[:16]}"


def thread_root(message_id: str, in_reply_to: str | None, references: list[str]) -> str:
    """The root Message-ID of an email thread: first of References, else In-Reply-To."""
    refs = [r.strip() for r in references if r.strip()]
    if refs:
        return refs[0]
    if in_reply_to and in_reply_to.strip():
        return in_reply_to.strip()
    return message_id.strip()
