"""The Recorder: non-blocking enqueue, one writer, per-record commits, retries, crash safety, drain."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from hanmadi.metrics import REGISTRY
from hanmadi.store import repository
from hanmadi.store.records import CallEnd, CallStart, TurnRecord
from hanmadi.store.writer import Recorder

Factories = tuple[Callable[..., CallStart], Callable[..., TurnRecord], Callable[..., CallEnd]]


def _errors(op: str) -> float:
    return REGISTRY.get_sample_value("hanmadi_store_errors_total", {"op": op}) or 0.0


@asynccontextmanager
async def running(url: str, **kw: Any) -> AsyncIterator[Recorder]:
    recorder = Recorder(url, **kw)
    await recorder.start()
    try:
        yield recorder
    finally:
        await recorder.stop()


@asynccontextmanager
async def write_lock(url: str) -> AsyncIterator[None]:
    """Hold the database's write lock from another connection, as a slow or busy database would."""
    sa_url = make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(sa_url.database), isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("COMMIT")
            conn.close()
    else:
        pg = await asyncpg.connect(
            user=sa_url.username,
            password=sa_url.password,
            host=sa_url.host,
            port=sa_url.port or 5432,
            database=sa_url.database,
        )
        tx = pg.transaction()
        await tx.start()
        await pg.execute("LOCK TABLE calls, turns IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            await tx.rollback()
            await pg.close()


async def test_records_are_written_in_order(db_url: str, factories: Factories) -> None:
    start, turn, end = factories
    async with running(db_url) as recorder:
        recorder.call_started(start("CA1"))
        recorder.turn_finished(turn("CA1", 0))
        recorder.turn_finished(turn("CA1", 1))
        recorder.call_ended(end("CA1"))
        await recorder.flush()
        assert recorder.pending == 0
        async with recorder.session() as s:
            detail = await repository.get_call(s, "CA1")
    assert detail is not None and detail.call.status == "completed"
    assert [t.index for t in detail.turns] == [0, 1] and detail.call.turn_count == 2
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "hanmadi-store-writer"]


async def test_enqueue_never_waits_for_a_locked_database(db_url: str, factories: Factories) -> None:
    start, turn, end = factories
    async with running(db_url) as recorder:
        async with write_lock(db_url):
            for c in range(10):
                recorder.call_started(start(f"CA{c}"))
                for i in range(5):
                    recorder.turn_finished(turn(f"CA{c}", i))
                recorder.call_ended(end(f"CA{c}"))
            # all 70 records were taken at once while not one could be written: enqueueing never awaits the database
            assert recorder.pending >= 69

            async def other_work() -> int:
                done = 0
                for _ in range(100):
                    await asyncio.sleep(0)
                    done += 1
                return done

            # the event loop stays free while the writer waits on the lock: other work runs to its end meanwhile
            assert await asyncio.create_task(other_work()) == 100
            assert recorder.pending >= 69  # the database really was blocked all along
        await recorder.flush()
        async with recorder.session() as s:
            _, total = await repository.list_calls(s, status="completed")
            detail = await repository.get_call(s, "CA9")
    assert total == 10 and detail is not None and len(detail.turns) == 5


async def test_failed_writes_are_retried_until_they_succeed_logged_and_counted(
    db_url: str, factories: Factories, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database failure is retried until it passes (never dropped); a turn of an unknown call is refused at once."""
    start, turn, _ = factories
    real = repository.upsert_turn
    failures = {"CA1": 2, "CA2": 12}

    async def flaky(session: Any, record: TurnRecord) -> None:
        if failures.get(record.call_sid, 0) > 0:
            failures[record.call_sid] -= 1
            raise OperationalError("INSERT INTO turns", {}, Exception("database is down"))
        await real(session, record)

    waits: list[int] = []

    async def no_wait(attempt: int) -> None:
        waits.append(attempt)

    monkeypatch.setattr(repository, "upsert_turn", flaky)
    before, rejected_before = _errors("upsert_turn"), _errors("unknown_call")
    caplog.set_level(logging.WARNING, logger="hanmadi.store.writer")
    async with running(db_url, max_attempts=3, retry_wait=no_wait) as recorder:
        recorder.call_started(start("CA1"))
        recorder.call_started(start("CA2"))
        recorder.turn_finished(turn("CA1", 0))  # fails twice, then succeeds
        recorder.turn_finished(turn("CA2", 0))  # fails 12 times (more than max_attempts): still written
        recorder.turn_finished(turn("CA-unknown", 0))  # can never succeed: refused at once
        recorder.call_started(start("CA3"))  # the writer carries on
        await recorder.flush()
        async with recorder.session() as s:
            ok = await repository.get_call(s, "CA1")
            late = await repository.get_call(s, "CA2")
            after = await repository.get_call(s, "CA3")
        assert recorder.dropped == 0 and recorder.rejected == 1
    assert ok is not None and len(ok.turns) == 1
    assert late is not None and len(late.turns) == 1
    assert after is not None
    assert waits == [1, 2, *range(1, 13)]
    assert _errors("upsert_turn") - before == 2 + 12
    assert _errors("unknown_call") - rejected_before == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("upsert_turn for call CA1 failed (attempt 1)" in m and "database is down" in m for m in messages)
    assert any("upsert_turn for call CA-unknown refused for good" in m for m in messages)


_CRASHING_SERVER = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, {tests!r})
    from conftest import start, turn
    from hanmadi.store.writer import Recorder

    async def main():
        recorder = Recorder({url!r})
        await recorder.start()
        recorder.call_started(start("CA-crash"))
        recorder.turn_finished(turn("CA-crash", 0))
        recorder.turn_finished(turn("CA-crash", 1))
        await recorder.flush()
        print("written", flush=True)
        recorder.turn_finished(turn("CA-crash", 2))  # the turn in progress when the process dies
        os.kill(os.getpid(), 9)  # a crash: no stop(), no clean-up of any kind

    asyncio.run(main())
    """
)


async def test_a_crash_loses_nothing_committed(db_url: str) -> None:
    code = _CRASHING_SERVER.format(url=db_url, tests=os.path.dirname(__file__))
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -9 and "written" in proc.stdout, proc.stderr
    async with running(db_url) as recorder:  # the restarted server
        async with recorder.session() as s:
            detail = await repository.get_call(s, "CA-crash")
    assert detail is not None
    assert [t.index for t in detail.turns][:2] == [0, 1]  # turn 2 may or may not have made it
    assert (detail.call.status, detail.call.end_reason) == ("failed", "server_restart")
    assert detail.call.ended_at == detail.turns[-1].ended_at


async def test_stop_drains_the_queue_then_refuses(db_url: str, factories: Factories) -> None:
    start, turn, end = factories
    recorder = Recorder(db_url)
    await recorder.start()
    recorder.call_started(start("CA1"))
    for i in range(30):
        recorder.turn_finished(turn("CA1", i))
    recorder.call_ended(end("CA1"))
    await recorder.stop()
    closed_before = _errors("closed")
    recorder.call_started(start("CA2"))
    assert _errors("closed") - closed_before == 1
    async with running(db_url) as reader:
        async with reader.session() as s:
            detail = await repository.get_call(s, "CA1")
            assert await repository.get_call(s, "CA2") is None
    assert detail is not None and detail.call.turn_count == 30 and detail.call.status == "completed"


async def test_without_a_journal_a_full_queue_drops_new_records_but_never_a_start(factories: Factories) -> None:
    start, turn, _ = factories
    recorder = Recorder("sqlite+aiosqlite:///unused.db", max_queue=3)
    before = _errors("queue_full")
    for i in range(5):
        recorder.turn_finished(turn("CA0", i))
    recorder.call_started(start("CA9"))  # a start record is kept past the bound
    assert recorder.pending == 4 and recorder.dropped == 2
    assert _errors("queue_full") - before == 2
    with pytest.raises(RuntimeError):
        await recorder.flush()
