"""Carrying out outcomes: the one place that deletes, dead-letters, retries and releases.

Everything here follows from "nothing is lost": a message is deleted only after its handler
succeeded or its copy is safely in the DLQ (DLQ first, then delete; a failed DLQ send is a
retry, never a delete). Deletes and visibility changes are batched (`batcher.Batcher`) and
retried while their receipts can still be valid (until each message's `visible_until`).
The outcome counters and per-message logs are kept here too, with ids, kid, reason and
latency only: never bodies or plaintext.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any, assert_never

from sealq.aws.errors import error_code
from sealq.aws.fifo import is_fifo_url
from sealq.aws.limits import fits
from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_KEY_ID
from sealq.worker.batcher import SQS_ERRORS, Batcher
from sealq.worker.leases import InFlight, Leases, extended
from sealq.worker.logs import event
from sealq.worker.outcomes import (
    DeadLetter,
    Delete,
    Outcome,
    Release,
    RetryAfter,
    Rules,
    dead_letter_attributes,
)
from sealq.worker.payloads import PayloadStore
from sealq.worker.stats import KidLabels, Stats

log = logging.getLogger("sealq.worker")

MAX_LOGGED_CLIENT_ID = 128


class Settler:
    """Applies outcome values; owns the delete and visibility batchers."""

    def __init__(
        self,
        sqs: Any,
        *,
        queue_url: str,
        dlq_url: str,
        rules: Rules,
        leases: Leases,
        stats: Stats,
        kid_label: KidLabels,
        payloads: PayloadStore | None = None,
    ) -> None:
        self._sqs = sqs
        self._dlq_url = dlq_url
        self._dlq_fifo = is_fifo_url(dlq_url)
        self._rules = rules
        self._leases = leases
        self._stats = stats
        self._kid_label = kid_label
        self._payloads = payloads
        self._deleter = Batcher(
            "DeleteMessageBatch",
            lambda entries: sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries),
        )
        self._visibility = Batcher(
            "ChangeMessageVisibilityBatch",
            lambda entries: sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries),
        )

    async def settle(self, item: InFlight, outcome: Outcome) -> bool:
        """Carry out `outcome`; only a dead-letter waits here (for the DLQ to take the copy).
        True if the message leaves the queue (a FIFO group may go on: `groups`)."""
        match outcome:
            case Delete():
                self.handled(item)
                return True
            case RetryAfter():
                self.retry(item, outcome)
            case DeadLetter():
                return await self._dead_letter(item, outcome)
            case Release():
                self.release(item)
            case _:
                assert_never(outcome)
        return False

    def retry(self, item: InFlight, outcome: RetryAfter) -> None:
        self._stats.retried += 1
        event(
            log,
            logging.INFO,
            "retry later",
            message_id=item.message_id,
            why=outcome.why,
            error=outcome.detail or None,
            attempt=item.receive_count,
            retry_in_s=outcome.seconds,
        )
        self._set_visibility(item, outcome.seconds)

    def release(self, item: InFlight) -> None:
        """Hand an unfinished message straight back to SQS (shutdown). Once only: a message
        held by `leases.HandBacks` can be handed back again by its cancelled consumer."""
        if item.settling:
            return
        self._stats.released += 1
        self._set_visibility(item, 0)

    def extend(self, item: InFlight, seconds: int) -> None:
        """Heartbeat: keep a running message invisible; not an outcome, so nothing finishes.
        Retried until the visibility SQS already granted lapses; `visible_until` moves only
        when SQS grants the extension (`leases.extended`)."""
        self._visibility.submit(
            {"ReceiptHandle": item.receipt, "VisibilityTimeout": seconds},
            partial(extended, item, time.monotonic(), seconds),
            item.visible_until,
        )

    async def close(self) -> None:
        """Send every queued delete and visibility change and wait for their answers."""
        await self._deleter.close()
        await self._visibility.close()
        if self._payloads is not None:
            await self._payloads.close()

    def handled(self, item: InFlight) -> None:
        """Its handler succeeded: delete it (`settle` with `Delete`, without a coroutine)."""
        self._stats.handled += 1
        if log.isEnabledFor(logging.DEBUG):  # per message: skip building the fields when off
            event(
                log,
                logging.DEBUG,
                "handled",
                message_id=item.message_id,
                kid=item.attributes.get(ATTR_KEY_ID),
                client_id=item.attributes.get(ATTR_CLIENT_ID),
                latency_ms=round((time.monotonic() - item.received_at) * 1000, 1),
            )
        self._delete(item, handled=True)

    async def _dead_letter(self, item: InFlight, outcome: DeadLetter) -> bool:
        reason = outcome.reason
        kid = self._kid_label(item.attributes.get(ATTR_KEY_ID, ""))
        attributes = dead_letter_attributes(
            item.raw_attributes, reason, outcome.detail, body_bytes=len(item.body.encode())
        )
        if not fits(item.body, attributes):
            self._unfit(item)
            return False
        # A FIFO DLQ keeps the group (its order, and `dlq redrive` puts it back); the source
        # message id as deduplication id makes a second copy (delete failed, redelivered) a no-op.
        fifo = {"MessageGroupId": item.group_id or item.message_id, "MessageDeduplicationId": item.message_id}
        try:
            await self._sqs.send_message(
                QueueUrl=self._dlq_url,
                MessageBody=item.body,
                MessageAttributes=attributes,
                **(fifo if self._dlq_fifo else {}),
            )
        except SQS_ERRORS as exc:
            self.retry(item, self._rules.dead_letter_unsent(error_code(exc), item.receive_count))
            return False
        self._stats.dead_lettered[(reason.value, kid)] += 1
        event(
            log,
            logging.WARNING,
            "dead-lettered",
            message_id=item.message_id,
            kid=kid,
            client_id=(item.attributes.get(ATTR_CLIENT_ID) or "")[:MAX_LOGGED_CLIENT_ID] or None,
            reason=reason.value,
        )
        self._delete(item)
        return True

    def _unfit(self, item: InFlight) -> None:
        """No DLQ copy can hold it, even with the reason alone: SQS would refuse every try."""
        self._stats.dead_letter_unfit += 1
        outcome = self._rules.dead_letter_unfit()
        event(
            log,
            logging.ERROR,
            "too large for a dead-letter copy; left to the queue's redrive policy",
            message_id=item.message_id,
            retry_in_s=outcome.seconds,
        )
        self._set_visibility(item, outcome.seconds)

    def _delete(self, item: InFlight, *, handled: bool = False) -> None:
        item.settling = True
        done = partial(self._deleted, item, handled)
        self._deleter.submit({"ReceiptHandle": item.receipt}, done, item.visible_until)

    def _deleted(self, item: InFlight, handled: bool, ok: bool) -> None:
        if ok and handled and item.payload is not None and self._payloads is not None:
            self._payloads.discard(item.payload)  # after SQS's delete: never one without it
        if not ok:
            self._stats.ack_failures += 1
            event(
                log, logging.WARNING, "delete failed; SQS will deliver it again", message_id=item.message_id
            )
        self._leases.finish(item)

    def _set_visibility(self, item: InFlight, seconds: int) -> None:
        item.settling = True
        self._visibility.submit(
            {"ReceiptHandle": item.receipt, "VisibilityTimeout": seconds},
            lambda ok: self._leases.finish(item),
            item.visible_until,
        )
