"""The webhook outbox: call events for ``HANMADI_WEBHOOK_URL``, delivered at least once.

Writing: :func:`record_events` runs inside the transaction that writes a call record (the Recorder's
``in_transaction`` hook), so ``call.started`` commits with the call's row and ``call.ended`` (and
``call.transferred``) with its end — an event exists exactly when its record does. Writing is idempotent per call
and event: a record written twice (a replayed journal) does not queue the event twice.

Delivering: :class:`WebhookDispatcher` is a background task that POSTs due rows, each a JSON body signed
``X-Hanmadi-Signature: sha256=<hex HMAC-SHA256>``, with ``X-Hanmadi-Event`` and the row's unique
``X-Hanmadi-Delivery`` id. A 2xx answer marks it delivered; anything else retries with exponential backoff
(1 s, 2 s, 4 s … capped at 5 min) until ``max_attempts``, then it is ``failed`` (visible in ``/api/webhooks``, and
retried on demand). Rows live in the database, so a receiver that is down, or a ``kill -9`` of the server, loses
nothing: the next dispatcher (after a restart, or in another process) picks them up. Several processes may share
one database: a row is claimed (its next attempt moved past the request's timeout) before it is sent. A delivery
that succeeded but whose "delivered" mark was lost is sent again — receivers drop duplicates by delivery id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hanmadi import metrics
from hanmadi.signing import SIGNATURE_HEADER, sign_body
from hanmadi.store import repository
from hanmadi.store.models import Call, WebhookOutboxRow
from hanmadi.store.records import CallDetail, CallEnd, CallStart, TurnRecord

log = logging.getLogger("hanmadi.webhooks")

EVENTS = ("call.started", "call.transferred", "call.ended")
STATUSES = ("pending", "delivered", "failed")
EVENT_HEADER = "X-Hanmadi-Event"
DELIVERY_HEADER = "X-Hanmadi-Delivery"

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


# --- writing (inside the record's transaction) ---------------------------------------------------------------


async def _enqueue(session: AsyncSession, event: str, call_sid: str, payload: dict[str, Any]) -> None:
    exists = await session.scalar(
        select(WebhookOutboxRow.id).where(WebhookOutboxRow.call_sid == call_sid, WebhookOutboxRow.event == event)
    )
    if exists is not None:
        return
    now = datetime.now(UTC)
    session.add(
        WebhookOutboxRow(
            delivery_id=uuid.uuid4().hex,
            event=event,
            call_sid=call_sid,
            payload={"event": event, **payload},
            status="pending",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
    )
    await session.flush()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _call_payload(detail: CallDetail) -> dict[str, Any]:
    call = detail.call
    return {
        "call_sid": call.call_sid,
        "direction": call.direction,
        "from": call.from_masked,
        "to": call.to_masked,
        "started_at": _iso(call.started_at),
    }


def ended_payload(detail: CallDetail) -> dict[str, Any]:
    """``call.ended``: the call, its end, every turn (heard and spoken text, tool calls) and latency figures."""
    call = detail.call
    return {
        **_call_payload(detail),
        "ended_at": _iso(call.ended_at),
        "duration_s": None if call.duration_s is None else round(call.duration_s, 3),
        "status": call.status,
        "end_reason": call.end_reason,
        "transfer_to": call.transfer_to,
        "answered_by": call.answered_by,
        "turns": [
            {
                "index": t.index,
                "heard_text": t.heard_text,
                "spoken_text": t.spoken_text,
                "generated_text": t.generated_text,
                "barge_in": t.barge_in,
                "dtmf": t.dtmf,
                "first_audio_s": t.first_audio_s,
                "voice_to_voice_s": t.voice_to_voice_s,
                "tool_calls": t.tool_calls,
            }
            for t in detail.turns
        ],
        "metrics": {
            "turns": call.turn_count,
            "mean_first_audio_s": call.mean_first_audio_s,
            "mean_voice_to_voice_s": call.mean_voice_to_voice_s,
            "barge_ins": call.barge_ins,
        },
    }


async def record_events(session: AsyncSession, record: CallStart | TurnRecord | CallEnd) -> None:
    """Queue the webhook events ``record`` causes, in its transaction (the Recorder's ``in_transaction`` hook)."""
    if isinstance(record, TurnRecord):
        return
    detail = await repository.get_call(session, record.call_sid)
    if detail is None:
        return
    if isinstance(record, CallStart):
        await _enqueue(session, "call.started", record.call_sid, _call_payload(detail))
        return
    if detail.call.end_reason == "transferred":
        transferred = {**_call_payload(detail), "transfer_to": detail.call.transfer_to, "at": _iso(record.ended_at)}
        await _enqueue(session, "call.transferred", record.call_sid, transferred)
    await _enqueue(session, "call.ended", record.call_sid, ended_payload(detail))


async def backfill_ended(session: AsyncSession) -> int:
    """Queue ``call.ended`` for calls that ended without one: a call whose server died (``kill -9``, power loss) is
    closed by the store as ``server_restart`` with no end record — its receiver still hears that it ended. Only
    calls whose ``call.started`` went through the outbox (webhooks were on) are concerned. Returns how many."""
    started = select(WebhookOutboxRow.call_sid).where(WebhookOutboxRow.event == "call.started")
    ended = select(WebhookOutboxRow.call_sid).where(WebhookOutboxRow.event == "call.ended")
    sids = (
        await session.scalars(
            select(Call.call_sid).where(
                Call.ended_at.is_not(None), Call.call_sid.in_(started), Call.call_sid.not_in(ended)
            )
        )
    ).all()
    for sid in sids:
        detail = await repository.get_call(session, sid)
        if detail is not None:
            await _enqueue(session, "call.ended", sid, ended_payload(detail))
    return len(sids)


# --- reading (the API) -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row as the API shows it."""

    delivery_id: str
    event: str
    call_sid: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None


async def list_deliveries(session: AsyncSession, status: str | None = None, limit: int = 100) -> list[Delivery]:
    """Deliveries, oldest first (``status``: pending, failed, delivered, or all)."""
    query = select(WebhookOutboxRow).order_by(WebhookOutboxRow.id).limit(limit)
    if status:
        query = query.where(WebhookOutboxRow.status == status)
    rows = (await session.scalars(query)).all()
    return [
        Delivery(
            r.delivery_id,
            r.event,
            r.call_sid,
            r.status,
            r.attempts,
            r.created_at,
            r.next_attempt_at,
            r.delivered_at,
            r.last_error,
        )
        for r in rows
    ]


async def delivery_counts(session: AsyncSession) -> dict[str, int]:
    """How many deliveries are pending, delivered, failed."""
    rows = await session.execute(select(WebhookOutboxRow.status, func.count()).group_by(WebhookOutboxRow.status))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({str(status): int(n) for status, n in rows})
    return counts


async def retry_delivery(session: AsyncSession, delivery_id: str) -> bool:
    """Make a failed delivery pending again, due now; False if there is no such failed delivery."""
    result = await session.execute(
        update(WebhookOutboxRow)
        .where(WebhookOutboxRow.delivery_id == delivery_id, WebhookOutboxRow.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=datetime.now(UTC))
    )
    return bool(getattr(result, "rowcount", 0))


# --- delivering ------------------------------------------------------------------------------------------------


class WebhookDispatcher:
    """Delivers the outbox to ``url``: run :meth:`run` as a background task (it never returns by itself)."""

    def __init__(
        self,
        sessions: SessionFactory,
        url: str,
        secret: str,
        *,
        poll_s: float = 1.0,
        timeout_s: float = 10.0,
        max_attempts: int = 15,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        batch: int = 20,
        backfill_s: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.sessions = sessions
        self.url = url
        self.secret = secret
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.batch = batch
        self.backfill_s = backfill_s
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look at the outbox now (a record that queues events was just written)."""
        self._wake.set()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self) -> None:
        """Deliver due rows forever; a database or network failure is logged and the loop goes on. Every
        ``backfill_s`` (and first) it also queues the ``call.ended`` of calls a dead server could not end."""
        loop = asyncio.get_running_loop()
        next_backfill = loop.time()
        while True:
            try:
                if loop.time() >= next_backfill:
                    next_backfill = loop.time() + self.backfill_s
                    async with self.sessions() as session, session.begin():
                        if found := await backfill_ended(session):
                            log.warning("webhooks: call.ended queued for %d call(s) a stopped server left", found)
                sent = await self.deliver_due()
            except Exception as exc:  # the database is down: try again at the next poll
                metrics.STORE_ERRORS.labels(op="webhook_outbox").inc()
                log.warning("webhooks: outbox not readable: %s", str(exc).splitlines()[0][:200] if str(exc) else exc)
                sent = 0
            if sent:
                continue  # there may be more due right away
            self._wake.clear()
            try:
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def deliver_due(self) -> int:
        """One pass: claim and send every due row (up to ``batch``); return how many were attempted."""
        now = datetime.now(UTC)
        async with self.sessions() as session:
            due = (
                await session.execute(
                    select(WebhookOutboxRow.id, WebhookOutboxRow.next_attempt_at)
                    .where(WebhookOutboxRow.status == "pending", WebhookOutboxRow.next_attempt_at <= now)
                    .order_by(WebhookOutboxRow.id)
                    .limit(self.batch)
                )
            ).all()
        attempted = 0
        for row_id, seen_next in due:
            row = await self._claim(row_id, seen_next)
            if row is None:
                continue  # another process took it
            attempted += 1
            error = await self._send(row)
            await self._settle(row, error)
        return attempted

    async def _claim(self, row_id: int, seen_next: datetime) -> WebhookOutboxRow | None:
        lease = datetime.now(UTC) + timedelta(seconds=self.timeout_s + 5)
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(WebhookOutboxRow)
                .where(
                    WebhookOutboxRow.id == row_id,
                    WebhookOutboxRow.status == "pending",
                    WebhookOutboxRow.next_attempt_at == seen_next,
                )
                .values(next_attempt_at=lease)
            )
            if not getattr(result, "rowcount", 0):
                return None
            return await session.get(WebhookOutboxRow, row_id)

    async def _send(self, row: WebhookOutboxRow) -> str | None:
        """POST one delivery; None when the receiver took it, else the reason."""
        body = json.dumps(row.payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "hanmadi-webhooks",
            SIGNATURE_HEADER: sign_body(self.secret, body),
            EVENT_HEADER: row.event,
            DELIVERY_HEADER: row.delivery_id,
        }
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.post(self.url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return "timeout"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def _settle(self, row: WebhookOutboxRow, error: str | None) -> None:
        now = datetime.now(UTC)
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts}
        if error is None:
            values.update(status="delivered", delivered_at=now, last_error=None, next_attempt_at=now)
            metrics.WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()
            log.info("webhooks: %s for call %s delivered (%s)", row.event, row.call_sid, row.delivery_id)
        elif attempts >= self.max_attempts:
            values.update(status="failed", last_error=error, next_attempt_at=now)
            metrics.WEBHOOK_DELIVERIES.labels(outcome="failed").inc()
            log.error("webhooks: %s for call %s failed after %d attempts: %s", row.event, row.call_sid, attempts, error)
        else:
            delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts - 1))
            values.update(last_error=error, next_attempt_at=now + timedelta(seconds=delay))
            metrics.WEBHOOK_DELIVERIES.labels(outcome="retry").inc()
            log.warning(
                "webhooks: %s for call %s not delivered (%s), attempt %d, next in %.0f s",
                row.event,
                row.call_sid,
                error,
                attempts,
                delay,
            )
        async with self.sessions() as session, session.begin():
            await session.execute(update(WebhookOutboxRow).where(WebhookOutboxRow.id == row.id).values(**values))
