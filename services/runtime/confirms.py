"""The confirmed publisher's confirm bookkeeping: what is unconfirmed, and each outcome.

Publishes are numbered as RabbitMQ numbers them in confirm mode (1, 2, ... on a new
channel). A basic.ack or basic.nack settles one publish or, `multiple`, every one up to
its tag; a basic.return of a mandatory message marks its publish failed before its ack
comes. Outcomes wait in `_results` until the caller takes them; `expire` gives up on
those whose confirm never came.
"""

from __future__ import annotations

from typing import Any

from services.runtime.errors import ConfirmUnknown, PipelineError, PublishRejected


class ConfirmLedger:
    """ConfirmedPublisher's bookkeeping half (the publisher sets these in __init__)."""

    _confirm_timeout_s: float

    def _reset(self) -> None:
        self._next_seq = 1
        # in publish (= sequence) order, so a multiple confirm takes from the front
        self._unconfirmed: dict[int, None] = {}
        self._results: dict[int, PipelineError | None] = {}
        self._returned: dict[int, PipelineError] = {}
        self._seq_by_id: dict[str, int] = {}
        self._id_by_seq: dict[int, str] = {}

    def is_done(self, seq: int) -> bool:
        return seq in self._results

    def take(self, seq: int) -> PipelineError | None:
        """The outcome of a finished publish: None when confirmed, else the failure."""
        return self._results.pop(seq)

    def expire(self, seqs: list[int]) -> None:
        """Give up waiting: these publishes end as 'unknown', which is not 'failed'."""
        for seq in seqs:
            if seq in self._unconfirmed:
                del self._unconfirmed[seq]
                self._forget_id(seq)
                self._results[seq] = ConfirmUnknown(f"no confirm within {self._confirm_timeout_s}s")

    # -- broker callbacks ----------------------------------------------------------
    def _settle(self, delivery_tag: int, multiple: bool) -> list[int]:
        if not multiple:  # a late confirm for an expired publish is ignored
            if delivery_tag not in self._unconfirmed:
                return []
            del self._unconfirmed[delivery_tag]
            return [delivery_tag]
        done = []
        for seq in self._unconfirmed:
            if seq > delivery_tag:
                break
            done.append(seq)
        for seq in done:
            del self._unconfirmed[seq]
        return done

    def _forget_id(self, seq: int) -> None:
        message_id = self._id_by_seq.pop(seq, None)
        if message_id is not None:
            self._seq_by_id.pop(message_id, None)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        for seq in self._settle(delivery_tag, multiple):
            self._forget_id(seq)
            self._results[seq] = self._returned.pop(seq, None)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        for seq in self._settle(delivery_tag, multiple):
            self._forget_id(seq)
            self._returned.pop(seq, None)
            self._results[seq] = PublishRejected("broker nacked the publish")

    def _on_return(self, exc: Any, exchange: str, routing_key: str, message: Any) -> None:
        # NOTE: a mandatory message with no route comes back as basic.return *before*
        # its basic.ack; the ack alone would look like success.
        headers = message.properties.get("application_headers") or {}
        seq = self._seq_by_id.get(str(headers.get("x-publish-token", "")))
        if seq is not None:
            self._returned[seq] = PublishRejected(
                f"unroutable: {exchange or '(default)'} / {routing_key}: {exc}"
            )
