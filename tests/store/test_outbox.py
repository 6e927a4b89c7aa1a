"""The webhook outbox: events commit with their records, delivery survives a receiver outage and a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from actions_support import WEBHOOK_SECRET, ActionServers
from hanmadi import metrics
from hanmadi.signing import verify_body
from hanmadi.store import outbox
from hanmadi.store.models import WebhookOutboxRow
from hanmadi.store.writer import Recorder
from store.conftest import end, start, turn

TOOL = {"id": "c1", "name": "book_table", "arguments": {"people": 2}, "status": "ok", "duration_s": 0.4}


@pytest.fixture(autouse=True)
def _reset(servers: ActionServers) -> None:
    servers.hooks.clear()
    servers.hooks_down = False


@pytest.fixture
async def recorder(db_url: str) -> AsyncIterator[Recorder]:
    rec = Recorder(db_url)
    rec.in_transaction = outbox.record_events
    await rec.start()
    yield rec
    await rec.stop()


def dispatcher(rec: Recorder, servers: ActionServers, **kw: float) -> outbox.WebhookDispatcher:
    options = {"backoff_base_s": 0.0, "max_attempts": 5, **kw}
    return outbox.WebhookDispatcher(rec.session, servers.base + "/hooks", WEBHOOK_SECRET, **options)  # type: ignore[arg-type]


async def record_call(rec: Recorder, sid: str, **end_fields: object) -> None:
    rec.call_started(start(sid))
    rec.turn_finished(turn(sid, 0, tool_calls=[TOOL]))
    rec.call_ended(end(sid, **end_fields))
    await rec.flush()


async def rows(rec: Recorder) -> list[WebhookOutboxRow]:
    async with rec.session() as session:
        return list((await session.scalars(select(WebhookOutboxRow).order_by(WebhookOutboxRow.id))).all())


async def test_events_are_written_with_their_records_once(recorder: Recorder) -> None:
    await record_call(recorder, "CA1", end_reason="transferred", transfer_to="+8221234567")
    recorder.call_started(start("CA1"))  # a replayed start (journal) queues nothing new
    await recorder.flush()
    written = await rows(recorder)
    assert [(r.event, r.status, r.attempts) for r in written] == [
        ("call.started", "pending", 0),
        ("call.transferred", "pending", 0),
        ("call.ended", "pending", 0),
    ]
    assert len({r.delivery_id for r in written}) == 3
    ended = written[2].payload
    assert ended["end_reason"] == "transferred" and ended["transfer_to"] == "+822***4567"
    assert ended["from"] == "+8210****5678"  # numbers are masked in the database, so in the outbox too
    (t,) = ended["turns"]
    assert (t["heard_text"], t["spoken_text"], t["tool_calls"]) == ("안녕하세요 0", "네, 무엇을 도와드릴까요?", [TOOL])
    assert ended["metrics"]["mean_first_audio_s"] == 0.5


async def test_delivery_is_signed_and_marked(recorder: Recorder, servers: ActionServers) -> None:
    await record_call(recorder, "CA2")
    sender = dispatcher(recorder, servers)
    try:
        assert await sender.deliver_due() == 2
        assert await sender.deliver_due() == 0
    finally:
        await sender.aclose()
    started, ended = servers.hooks
    assert started.headers["x-hanmadi-event"] == "call.started"
    assert ended.headers["x-hanmadi-event"] == "call.ended"
    assert verify_body(WEBHOOK_SECRET, ended.body, ended.headers["x-hanmadi-signature"])
    assert json.loads(ended.body)["call_sid"] == "CA2"
    written = await rows(recorder)
    assert [r.status for r in written] == ["delivered", "delivered"]
    assert [r.delivery_id for r in written] == [h.headers["x-hanmadi-delivery"] for h in servers.hooks]


async def test_receiver_outage_then_recovery_loses_nothing(recorder: Recorder, servers: ActionServers) -> None:
    await record_call(recorder, "CA3")
    servers.hooks_down = True
    retries = metrics.WEBHOOK_DELIVERIES.labels(outcome="retry")
    before = retries._value.get()
    sender = dispatcher(recorder, servers, backoff_base_s=60.0)
    try:
        assert await sender.deliver_due() == 2
        assert await sender.deliver_due() == 0  # not due again before the backoff
        pending = await rows(recorder)
        assert [(r.status, r.attempts, r.last_error) for r in pending] == [("pending", 1, "HTTP 503")] * 2
        assert all(r.next_attempt_at > datetime.now(UTC) + timedelta(seconds=50) for r in pending)
        assert retries._value.get() == before + 2
        servers.hooks_down = False
        async with recorder.session() as session, session.begin():  # the backoff has passed
            await session.execute(update(WebhookOutboxRow).values(next_attempt_at=datetime.now(UTC)))
        assert await sender.deliver_due() == 2
    finally:
        await sender.aclose()
    assert [h.headers["x-hanmadi-event"] for h in servers.hooks] == ["call.started", "call.ended"]
    assert [r.status for r in await rows(recorder)] == ["delivered", "delivered"]


async def test_pending_deliveries_survive_a_restart(db_url: str, servers: ActionServers) -> None:
    first = Recorder(db_url)
    first.in_transaction = outbox.record_events
    await first.start()
    await record_call(first, "CA4")
    await first.stop()  # the server goes away with both events undelivered

    second = Recorder(db_url)
    await second.start()
    sender = dispatcher(second, servers)
    try:
        assert await sender.deliver_due() == 2
    finally:
        await sender.aclose()
        await second.stop()
    assert [json.loads(h.body)["call_sid"] for h in servers.hooks] == ["CA4", "CA4"]


async def test_after_max_attempts_failed_visible_and_retryable(recorder: Recorder, servers: ActionServers) -> None:
    await record_call(recorder, "CA5")
    servers.hooks_down = True
    sender = dispatcher(recorder, servers, max_attempts=2)
    try:
        await sender.deliver_due()
        await sender.deliver_due()
        async with recorder.session() as session:
            failed = await outbox.list_deliveries(session, "failed")
            assert await outbox.delivery_counts(session) == {"pending": 0, "delivered": 0, "failed": 2}
        assert [(d.event, d.attempts, d.last_error) for d in failed] == [
            ("call.started", 2, "HTTP 503"),
            ("call.ended", 2, "HTTP 503"),
        ]
        servers.hooks_down = False
        async with recorder.session() as session, session.begin():
            assert await outbox.retry_delivery(session, failed[1].delivery_id)
            assert not await outbox.retry_delivery(session, "no-such-id")
        assert await sender.deliver_due() == 1
    finally:
        await sender.aclose()
    assert [h.headers["x-hanmadi-event"] for h in servers.hooks] == ["call.ended"]


async def test_two_dispatchers_do_not_send_the_same_row_twice(recorder: Recorder, servers: ActionServers) -> None:
    await record_call(recorder, "CA6")
    a, b = dispatcher(recorder, servers), dispatcher(recorder, servers)
    try:
        async with recorder.session() as session:
            due = (await session.execute(select(WebhookOutboxRow.id, WebhookOutboxRow.next_attempt_at))).all()
        claimed = [await a._claim(*due[0]), await b._claim(*due[0])]
        assert claimed[0] is not None and claimed[1] is None
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_call_its_server_never_ended_still_gets_call_ended(recorder: Recorder) -> None:
    from hanmadi.store.models import Call

    recorder.call_started(start("CA7"))
    recorder.call_started(start("CA8"))
    await recorder.flush()
    async with recorder.session() as session, session.begin():  # what the store does to a dead server's calls
        await session.execute(
            update(Call)
            .where(Call.call_sid == "CA7")
            .values(ended_at=datetime.now(UTC), status="failed", end_reason="server_restart")
        )
    async with recorder.session() as session, session.begin():
        assert await outbox.backfill_ended(session) == 1
    async with recorder.session() as session, session.begin():
        assert await outbox.backfill_ended(session) == 0  # once
    ended = [r for r in await rows(recorder) if r.event == "call.ended"]
    assert [(r.call_sid, r.payload["end_reason"]) for r in ended] == [("CA7", "server_restart")]
