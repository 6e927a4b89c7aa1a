"""Repository functions on SQLite and PostgreSQL: migrations, writes, reads, summary, interrupted calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hanmadi.store import repository
from hanmadi.store.models import Base, Call, Instance, TurnEventRow
from hanmadi.store.records import CallEnd, CallStart, TurnRecord

Sessions = async_sessionmaker[AsyncSession]
Factories = tuple[Callable[..., CallStart], Callable[..., TurnRecord], Callable[..., CallEnd]]
T0 = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)


async def _write(sessions: Sessions, fn: Any, *args: Any, **kw: Any) -> Any:
    async with sessions() as s, s.begin():
        return await fn(s, *args, **kw)


async def _seed(sessions: Sessions, factories: Factories, sid: str, turns: int = 2, **kw: Any) -> None:
    start, turn, _ = factories
    await _write(sessions, repository.insert_call, start(sid, **kw))
    for i in range(turns):
        await _write(sessions, repository.upsert_turn, turn(sid, i))


async def test_migrate_is_idempotent_concurrent_and_matches_models(db_url: str) -> None:
    # Three "processes" starting at once, then a fourth later: all succeed, the schema is at head.
    await asyncio.gather(*(repository.migrate(db_url) for _ in range(3)))
    await repository.migrate(db_url)
    engine = repository.create_engine_for(db_url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()

            def diff(sync: Connection) -> list[Any]:
                ctx = MigrationContext.configure(sync, opts={"compare_type": False})
                return list(compare_metadata(ctx, Base.metadata))

            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert version == [repository.head_revision()]
    assert differences == []


async def test_insert_upsert_finish_get(sessions: Sessions, factories: Factories) -> None:
    start, turn, end = factories
    await _write(sessions, repository.insert_call, start("CA1"))
    await _write(sessions, repository.insert_call, start("CA1"))  # a retried insert is a no-op
    await _write(sessions, repository.upsert_turn, turn("CA1", 1, barge_in=True, dtmf="12#"))
    await _write(sessions, repository.upsert_turn, turn("CA1", 0, first_audio_s=float("nan")))
    # Replacing turn 1: new text, fewer events.
    replaced = turn(
        "CA1",
        1,
        spoken_text="네,",
        barge_in=True,
        dtmf="12#",
        events=[{"t": 0.1, "kind": "cancelled", "reason": "barge_in"}],
    )
    await _write(sessions, repository.upsert_turn, replaced)
    await _write(sessions, repository.finish_call, end("CA1", recording_path="/tmp/CA1.wav"))

    async with sessions() as s:
        detail = await repository.get_call(s, "CA1")
        assert await repository.get_call(s, "CA404") is None
    assert detail is not None
    call = detail.call
    assert (call.from_masked, call.to_masked) == ("+8210****5678", "+8221***1234")
    assert call.status == "completed" and call.end_reason == "hangup" and call.turn_count == 2
    assert call.started_at == T0 and call.started_at.tzinfo is not None
    assert call.duration_s == 60.0 and call.recording_path == "/tmp/CA1.wav"
    assert call.providers == {"stt": "vosk", "llm": "gemma", "tts": "espeak"}
    assert call.barge_ins == 1
    assert [t.index for t in detail.turns] == [0, 1]
    t0, t1 = detail.turns
    assert t0.first_audio_s is None  # NaN is not a latency
    assert t0.metrics == {"sentences": 2, "skipped": 0}
    assert [(e.seq, e.kind, e.index) for e in t0.events] == [
        (0, "pipeline_start", None),
        (1, "sentence", 0),
        (2, "tts_done", 0),
    ]
    assert t0.events[2].duration_s == 0.25 and t0.events[2].audio_s == 0.6
    assert t1.spoken_text == "네," and t1.barge_in and t1.dtmf == "12#"
    assert [(e.kind, e.reason) for e in t1.events] == [("cancelled", "barge_in")]


async def test_unknown_call_is_a_typed_error(sessions: Sessions, factories: Factories) -> None:
    _, turn, end = factories
    with pytest.raises(repository.UnknownCallError):
        await _write(sessions, repository.upsert_turn, turn("CA-none", 0))
    with pytest.raises(repository.UnknownCallError):
        await _write(sessions, repository.finish_call, end("CA-none"))


async def test_list_filters_and_pagination(sessions: Sessions, factories: Factories) -> None:
    start, turn, end = factories
    for i in range(7):
        await _write(sessions, repository.insert_call, start(f"CA{i}", at=T0 + timedelta(hours=i)))
    await _write(sessions, repository.upsert_turn, turn("CA3", 0, heard_text="환불 요청합니다 100%"))
    await _write(sessions, repository.finish_call, end("CA2", status="failed", end_reason="error"))
    await _write(sessions, repository.finish_call, end("CA4"))

    async with sessions() as s:
        page, total = await repository.list_calls(s, limit=3, offset=0)
        assert total == 7 and [c.call_sid for c in page] == ["CA6", "CA5", "CA4"]
        page, total = await repository.list_calls(s, limit=3, offset=6)
        assert total == 7 and [c.call_sid for c in page] == ["CA0"]
        page, total = await repository.list_calls(s, status="active")
        assert total == 5 and "CA2" not in {c.call_sid for c in page}
        page, total = await repository.list_calls(s, status="failed")
        assert [c.call_sid for c in page] == ["CA2"] and page[0].end_reason == "error"
        page, total = await repository.list_calls(s, since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=4))
        assert [c.call_sid for c in page] == ["CA3", "CA2"]
        page, _ = await repository.list_calls(s, q="환불")
        assert [c.call_sid for c in page] == ["CA3"]
        page, _ = await repository.list_calls(s, q="100%")
        assert [c.call_sid for c in page] == ["CA3"]
        page, _ = await repository.list_calls(s, q="0%")  # % is literal, not a wildcard
        assert [c.call_sid for c in page] == ["CA3"]
        page, _ = await repository.list_calls(s, q="ca5")  # call sid, case-insensitively
        assert [c.call_sid for c in page] == ["CA5"]
        page, total = await repository.list_calls(s, q="no such words")
        assert (page, total) == ([], 0)


async def test_delete_cascades(sessions: Sessions, factories: Factories) -> None:
    await _seed(sessions, factories, "CA1")
    await _seed(sessions, factories, "CA2")
    deleted = await _write(sessions, repository.delete_call, "CA1")
    assert deleted is not None and deleted.call_sid == "CA1" and deleted.turn_count == 2
    assert await _write(sessions, repository.delete_call, "CA1") is None
    async with sessions() as s:
        assert await repository.get_call(s, "CA1") is None
        events = await s.scalar(select(func.count()).select_from(TurnEventRow))
        assert events == 6  # only CA2's three events per turn remain
        detail = await repository.get_call(s, "CA2")
        assert detail is not None and len(detail.turns) == 2


async def test_latency_summary_percentiles(sessions: Sessions, factories: Factories) -> None:
    start, turn, _ = factories
    fast = {"stt": "deepgram", "llm": "openai", "tts": "elevenlabs"}
    await _write(sessions, repository.insert_call, start("CA-local"))
    await _write(sessions, repository.insert_call, start("CA-cloud", providers=fast))
    for i in range(1, 11):  # local: first audio 0.1 … 1.0 s, voice-to-voice +0.3 s
        t = turn("CA-local", i, first_audio_s=i / 10, voice_to_voice_s=i / 10 + 0.3)
        await _write(sessions, repository.upsert_turn, t)
    for i in range(3):
        t = turn("CA-cloud", i, first_audio_s=0.2, voice_to_voice_s=None)
        await _write(sessions, repository.upsert_turn, t)
    async with sessions() as s:
        summary = await repository.latency_summary(s)
        small = await repository.latency_summary(s, window=3)
    assert summary["turns"] == 13
    first = summary["first_audio_s"]
    assert first["count"] == 13
    # 13 values: 0.1…1.0 plus three 0.2 → sorted rank 6 (p50) is 0.4; p95 at rank 11.4 → 0.9 + 0.4·0.1
    assert first["p50"] == pytest.approx(0.4)
    assert first["p95"] == pytest.approx(0.94)
    assert summary["voice_to_voice_s"]["count"] == 10
    assert summary["voice_to_voice_s"]["p50"] == pytest.approx(0.85)
    local, cloud = summary["by_providers"]
    assert local["providers"] == {"stt": "vosk", "llm": "gemma", "tts": "espeak"} and local["turns"] == 10
    assert local["first_audio_s"]["p50"] == pytest.approx(0.55)
    assert local["first_audio_s"]["p95"] == pytest.approx(0.955)
    assert cloud["providers"] == fast and cloud["turns"] == 3
    assert cloud["voice_to_voice_s"] == {"count": 0, "p50": None, "p95": None}
    assert small["turns"] == 3 and small["window"] == 3


async def test_percentile_matches_linear_interpolation() -> None:
    assert repository.percentile([], 50) is None
    assert repository.percentile([2.0], 95) == 2.0
    assert repository.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert repository.percentile([float(i) for i in range(101)], 95) == 95.0


async def test_mark_interrupted_calls(sessions: Sessions, factories: Factories) -> None:
    start, turn, end = factories
    now = datetime.now(UTC)
    async with sessions() as s, s.begin():
        # A crashed server on this host (its pid is ours: same process, another instance), a silent one elsewhere,
        # and a live peer on another host (several servers share one PostgreSQL).
        s.add(
            Instance(
                id="crashed",
                host=repository.socket.gethostname(),
                pid=repository.os.getpid(),
                started_at=now,
                seen_at=now,
            )
        )
        s.add(Instance(id="silent", host="elsewhere", pid=1, started_at=now, seen_at=now - timedelta(minutes=5)))
        s.add(Instance(id="peer", host="elsewhere", pid=2, started_at=now, seen_at=now))
        await repository.insert_call(s, start("CA-crashed"), instance_id="crashed")
        await repository.insert_call(s, start("CA-silent"), instance_id="silent")
        await repository.insert_call(s, start("CA-peer"), instance_id="peer")
        await repository.insert_call(s, start("CA-orphan"))
        await repository.insert_call(s, start("CA-done"), instance_id="crashed")
    await _write(sessions, repository.upsert_turn, turn("CA-crashed", 0))
    await _write(sessions, repository.upsert_turn, turn("CA-crashed", 1))
    await _write(sessions, repository.finish_call, end("CA-done"))

    marked = await _write(sessions, repository.mark_interrupted_calls, instance_id="me")
    assert marked == 3
    assert await _write(sessions, repository.mark_interrupted_calls, instance_id="me") == 0
    async with sessions() as s:
        calls = {c.call_sid: c for c in (await s.scalars(select(Call))).all()}
        instances = set((await s.scalars(select(Instance.id))).all())
        crashed = await repository.get_call(s, "CA-crashed")
    for sid in ("CA-crashed", "CA-silent", "CA-orphan"):
        assert (calls[sid].status, calls[sid].end_reason) == ("failed", "server_restart"), sid
    assert calls["CA-peer"].status == "active"
    assert (calls["CA-done"].status, calls["CA-done"].end_reason) == ("completed", "hangup")
    assert instances == {"peer"}
    # Nothing recorded is lost; the call ends when its last recorded turn ended.
    assert crashed is not None and len(crashed.turns) == 2
    assert crashed.call.ended_at == crashed.turns[1].ended_at


async def test_heartbeat_re_registers_a_removed_instance(sessions: Sessions) -> None:
    await _write(sessions, repository.heartbeat, "me")
    async with sessions() as s:
        assert (await s.scalars(select(Instance.id))).all() == ["me"]


async def test_processes_creating_one_new_sqlite_file_at_once_all_migrate(tmp_path: Path) -> None:
    # Switching a new file to WAL needs it to itself, and SQLite answers "locked" at once (no busy wait) while a
    # second starter holds it: that start must not fail (it did for 36 of 40 fresh files before).
    for attempt in range(10):
        url = f"sqlite+aiosqlite:///{tmp_path / f'fresh{attempt}.db'}"
        await asyncio.gather(*(repository.migrate(url) for _ in range(3)))
