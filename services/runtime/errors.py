"""Failure classes the consume loop decides on.

The core raises these; the edges translate library errors (py-amqp, socket, SMTP,
HTTP) into them, so the ack decision lives in one place (`consumer.settle`).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every classified failure. `reason` is a short machine-readable code."""

    reason = "error"

    def __init__(self, detail: str, *, reason: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class PermanentError(PipelineError):
    """The message can never succeed: dead-letter it at once."""

    reason = "permanent"


class TransientError(PipelineError):
    """Might succeed later (broker hiccup, downstream timeout): retry with backoff."""

    reason = "transient"


class ConfirmUnknown(TransientError):
    """A publish whose confirm did not arrive in time.

    NOTE: unknown is not failed. The broker may still hold the message; resending can
    duplicate it, which deterministic event ids make harmless downstream.
    """

    reason = "confirm_timeout"


class PublishRejected(TransientError):
    """The broker nacked a publish, or returned a mandatory one as unroutable."""

    reason = "publish_rejected"


class ConnectionLost(TransientError):
    """The broker connection dropped; the loop reconnects."""

    reason = "connection_lost"
