"""A record survives the database being away: journal, retries in order, replay after a crash, vanished SQLite,
a real PostgreSQL outage, and one stream per CallSid. Retries are driven by events, never by the clock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from hanmadi.metrics import REGISTRY
from hanmadi.store import repository, writer
from hanmadi.store.journal import Entry, decode, encode
from hanmadi.store.records import CallEnd, CallStart, TurnRecord
from hanmadi.store.writer import Recorder

Factories = tuple[Callable[..., CallStart], Callable[..., TurnRecord], Callable[..., CallEnd]]


def _metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class Outage:
    """Makes every write fail like a database that is down, until ``end()``; retries wait on events."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        self.failed = asyncio.Event()  # a write failed and the writer waits to retry
        self.back = asyncio.Event()
        self.attempts = 0
        for name in ("insert_call", "upsert_turn", "finish_call"):
            real = getattr(repository, name)
            monkeypatch.setattr(repository, name, self._wrap(real))

    def _wrap(self, real: Any) -> Any:
        async def write(session: Any, record: Any, **kw: Any) -> None:
            if self.down:
                raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
            await real(session, record, **kw)

        return write

    def begin(self) -> None:
        self.down = True
        self.back.clear()

    def end(self) -> None:
        self.down = False
        self.back.set()

    async def retry_wait(self, attempt: int) -> None:
        self.attempts += 1
        self.failed.set()
        await self.back.wait()


@asynccontextmanager
async def recorder_for(url: str, journal: Path, **kw: Any) -> AsyncIterator[Recorder]:
    recorder = Recorder(url, journal_dir=journal, **kw)
    await recorder.start()
    try:
        yield recorder
    finally:
        await recorder.stop()


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate`` holds (the spill runs in a thread); bounded by the test timeout."""
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 (the state changes in a worker thread, no event to wait on)
            await asyncio.sleep(0.005)


def journal_lines(directory: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in directory.glob("journal-*.jsonl"))


async def test_an_outage_loses_no_record_not_even_a_call_that_started_during_it(
    db_url: str, factories: Factories, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    start, turn, end = factories
    outage = Outage(monkeypatch)
    journal = tmp_path / "journal"
    async with recorder_for(db_url, journal, retry_wait=outage.retry_wait) as recorder:
        recorder.call_started(start("CA-before"))
        recorder.turn_finished(turn("CA-before", 0))
        await recorder.flush()
        assert recorder.health() == {"store": "ok", "store_pending": 0}
        outage.begin()
        recorder.turn_finished(turn("CA-before", 1))
        recorder.call_started(start("CA-during"))  # the call that used to vanish entirely
        for i in range(3):
            recorder.turn_finished(turn("CA-during", i))
        recorder.call_ended(end("CA-during"))
        recorder.turn_finished(turn("CA-before", 2))
        recorder.call_ended(end("CA-before"))
        await outage.failed.wait()
        assert recorder.degraded and recorder.health()["store"] == "degraded"
        assert _metric("hanmadi_store_degraded") == 1
        await until(lambda: journal_lines(journal) == 8)  # everything waiting is on disk
        assert recorder.pending == 8 and recorder.dropped == 0
        outage.end()
        await recorder.flush()
        assert not recorder.degraded and recorder.pending == 0
        assert _metric("hanmadi_store_degraded") == 0
        assert journal_lines(journal) == 0  # emptied once written
        async with recorder.session() as s:
            before = await repository.get_call(s, "CA-before")
            during = await repository.get_call(s, "CA-during")
    assert before is not None and [t.index for t in before.turns] == [0, 1, 2]
    assert during is not None and [t.index for t in during.turns] == [0, 1, 2]
    assert before.call.status == during.call.status == "completed"


async def test_memory_is_bounded_records_past_it_go_to_the_journal_in_order(
    db_url: str, factories: Factories, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    start, turn, end = factories
    outage = Outage(monkeypatch)
    journal = tmp_path / "journal"
    async with recorder_for(db_url, journal, retry_wait=outage.retry_wait, max_queue=4) as recorder:
        outage.begin()
        recorder.call_started(start("CA1"))
        await outage.failed.wait()
        for i in range(30):
            recorder.turn_finished(turn("CA1", i, heard_text=f"turn {i}"))
        recorder.call_ended(end("CA1"))
        await until(lambda: recorder.pending == 32 and journal_lines(journal) == 32)
        assert recorder.dropped == 0
        outage.end()
        await recorder.flush()
        async with recorder.session() as s:
            detail = await repository.get_call(s, "CA1")
    assert detail is not None and detail.call.status == "completed"
    assert [t.heard_text for t in detail.turns] == [f"turn {i}" for i in range(30)]


async def test_a_journal_at_its_cap_keeps_what_it_holds_takes_no_more_and_takes_records_again_once_written(
    db_url: str, factories: Factories, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    start, turn, end = factories
    monkeypatch.setattr(writer, "JOURNAL_RETRY_S", 0.0)  # a full journal is tried again at every chance
    outage = Outage(monkeypatch)
    journal = tmp_path / "journal"
    turns = [turn("CA1", i, heard_text=f"turn {i}") for i in range(35)]

    def size(record: Any) -> int:
        return len(encode(Entry(record, recorder.instance_id)))

    full_before = _metric("hanmadi_store_errors_total", {"op": "journal_full"})
    async with recorder_for(db_url, journal, retry_wait=outage.retry_wait, max_queue=4) as recorder:
        # room for the start and ten turns, not for an eleventh
        recorder.journal_max_bytes = size(start("CA1")) + sum(size(t) for t in turns[:11]) - 1
        outage.begin()
        recorder.call_started(start("CA1"))
        await outage.failed.wait()
        for t in turns[:30]:  # accepted while the journal had room: none of these is lost
            recorder.turn_finished(t)
        await until(lambda: journal_lines(journal) == 11)
        assert _metric("hanmadi_store_errors_total", {"op": "journal_full"}) > full_before
        assert recorder.pending == 31 and recorder.dropped == 0
        for t in turns[30:]:  # the journal is full and memory past its bound: dropped and counted
            recorder.turn_finished(t)
        recorder.call_ended(end("CA1"))
        assert recorder.dropped == 6 and journal_lines(journal) == 11  # what the journal holds stays
        outage.end()
        await recorder.flush()
        assert journal_lines(journal) == 0 and recorder.pending == 0
        async with recorder.session() as s:
            detail = await repository.get_call(s, "CA1")
        assert detail is not None and [t.heard_text for t in detail.turns] == [f"turn {i}" for i in range(30)]
        assert detail.call.status == "active"  # its end was dropped (a restart marks it server_restart)

        # written out, the journal has room again: the next outage's records go to disk, none dropped
        outage.failed.clear()
        outage.begin()
        recorder.call_started(start("CA2"))
        await outage.failed.wait()
        recorder.turn_finished(turn("CA2", 0))
        recorder.call_ended(end("CA2"))
        await until(lambda: journal_lines(journal) == 3)
        assert recorder.dropped == 6
        outage.end()
        await recorder.flush()
        async with recorder.session() as s:
            second = await repository.get_call(s, "CA2")
    assert second is not None and second.call.status == "completed" and len(second.turns) == 1


_CRASH_DURING_OUTAGE = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, {tests!r})
    from conftest import start, turn
    from sqlalchemy.exc import OperationalError
    from hanmadi.store import repository
    from hanmadi.store.writer import Recorder

    real = repository.upsert_turn
    async def down(session, record):
        raise OperationalError("INSERT", {{}}, ConnectionRefusedError("connection refused"))

    async def main():
        never = asyncio.Event()
        async def wait(attempt):
            await never.wait()
        recorder = Recorder({url!r}, journal_dir={journal!r}, retry_wait=wait)
        await recorder.start()
        recorder.call_started(start("CA-crash"))
        await recorder.flush()
        repository.upsert_turn = down  # the database goes away
        recorder.turn_finished(turn("CA-crash", 0))
        recorder.turn_finished(turn("CA-crash", 1))
        while not (recorder.degraded and recorder.pending == 2 and os.path.getsize(recorder._journal.path) > 0):
            await asyncio.sleep(0.01)
        print("journaled", flush=True)
        os.kill(os.getpid(), 9)  # a crash in the middle of the outage

    asyncio.run(main())
    """
)


async def test_a_journal_left_by_a_crash_is_replayed_at_start_up(db_url: str, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    code = _CRASH_DURING_OUTAGE.format(url=db_url, tests=os.path.dirname(__file__), journal=str(journal))
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -9 and "journaled" in proc.stdout, proc.stderr
    assert journal_lines(journal) == 2
    async with recorder_for(db_url, journal) as recorder:  # the restarted server, database back
        await recorder.flush()
        async with recorder.session() as s:
            detail = await repository.get_call(s, "CA-crash")
    assert detail is not None and [t.index for t in detail.turns] == [0, 1]
    assert journal_lines(journal) == 0 and not list(journal.glob("journal-*.jsonl"))


async def test_a_vanished_sqlite_directory_is_detected_not_written_into_the_void(
    factories: Factories, tmp_path: Path
) -> None:
    start, turn, end = factories
    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data / 'calls.db'}"
    failed = asyncio.Event()
    back = asyncio.Event()

    async def retry_wait(attempt: int) -> None:
        failed.set()
        await back.wait()

    async with recorder_for(url, tmp_path / "journal", retry_wait=retry_wait) as recorder:
        recorder.call_started(start("CA1"))
        recorder.turn_finished(turn("CA1", 0))
        await recorder.flush()
        shutil.move(data, tmp_path / "moved-away")  # the directory disappears mid-call
        recorder.turn_finished(turn("CA1", 1))
        recorder.call_ended(end("CA1"))
        await failed.wait()
        assert recorder.health()["store"] == "degraded"
        assert not data.exists()  # nothing recreated it to write into
        shutil.move(tmp_path / "moved-away", data)  # the operator puts it back
        back.set()
        await recorder.flush()
        assert not recorder.degraded
        async with recorder.session() as s:
            detail = await repository.get_call(s, "CA1")
    assert detail is not None and [t.index for t in detail.turns] == [0, 1]
    assert detail.call.status == "completed"


async def test_a_start_for_a_callsid_another_stream_owns_is_refused_with_its_later_records(
    db_url: str, factories: Factories, tmp_path: Path
) -> None:
    start, turn, end = factories
    journal = tmp_path / "journal"
    conflicts = _metric("hanmadi_store_errors_total", {"op": "conflict"})
    async with recorder_for(db_url, journal) as recorder:
        recorder.call_started(start("CA1"))
        recorder.turn_finished(turn("CA1", 0, heard_text="first call"))
        recorder.turn_finished(turn("CA1", 1, heard_text="first call"))
        recorder.call_ended(end("CA1"))
        replay = start("CA1")
        recorder.call_started(CallStart(**{**_fields(replay), "stream_sid": "MZ-replayed"}))
        recorder.turn_finished(turn("CA1", 0, heard_text="REPLAYED"))
        recorder.call_ended(end("CA1", status="failed", end_reason="caller_stop"))
        await recorder.flush()
        assert recorder.rejected == 3
        async with recorder.session() as s:
            detail = await repository.get_call(s, "CA1")
    assert detail is not None and [t.heard_text for t in detail.turns] == ["first call", "first call"]
    assert (detail.call.stream_sid, detail.call.status) == ("MZCA1", "completed")
    assert _metric("hanmadi_store_errors_total", {"op": "conflict"}) - conflicts == 3
    rejected = (journal / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 3 and all("another stream" in line for line in rejected)


async def test_a_record_the_database_refuses_for_good_is_kept_aside_and_the_writer_goes_on(
    db_url: str, factories: Factories, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    start, turn, _ = factories
    real = repository.upsert_turn

    async def poison(session: Any, record: TurnRecord) -> None:
        if record.heard_text == "poison":
            raise IntegrityError("INSERT INTO turns", {}, Exception("violates a constraint"))
        await real(session, record)

    async def no_wait(attempt: int) -> None:
        return None

    monkeypatch.setattr(repository, "upsert_turn", poison)
    journal = tmp_path / "journal"
    async with recorder_for(db_url, journal, retry_wait=no_wait, max_attempts=3) as recorder:
        recorder.call_started(start("CA1"))
        recorder.turn_finished(turn("CA1", 0, heard_text="poison"))
        recorder.turn_finished(turn("CA1", 1))
        await recorder.flush()
        async with recorder.session() as s:
            detail = await repository.get_call(s, "CA1")
    assert detail is not None and [t.index for t in detail.turns] == [1]
    (line,) = (journal / "rejected.jsonl").read_text().splitlines()
    assert "after 3 attempts" in line and "poison" in line


def test_journal_lines_round_trip_every_record(factories: Factories) -> None:
    start, turn, end = factories
    for record in (start("CA1"), turn("CA1", 3), end("CA1")):
        entry = Entry(record, "host:1:abcd")
        line = encode(entry)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode(line) == entry


def _fields(record: CallStart) -> dict[str, Any]:
    return {name: getattr(record, name) for name in CallStart.__slots__}


# --- a real PostgreSQL outage: the recorder talks to it through a port we close and open again -------------------


class Gate:
    """A TCP relay on 127.0.0.1 to PostgreSQL: ``close()`` refuses and cuts every connection, ``open()`` restores."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.pipes.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self.pipes.discard(task)
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()  # one side hung up: hang up the other (asyncpg waits for the server's EOF on close)

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(pipe(reader, up_writer))
                tg.create_task(pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
            self.pipes.discard(task)


async def test_a_real_postgresql_outage_on_a_closed_port_loses_nothing(
    db_url: str, factories: Factories, tmp_path: Path
) -> None:
    url = make_url(db_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("a network outage is a PostgreSQL matter (SQLite: the vanished-directory test)")
    start, turn, end = factories
    gate = Gate(url.host or "127.0.0.1", url.port or 5432)
    await gate.open()
    through_gate = url.set(host="127.0.0.1", port=gate.port).render_as_string(hide_password=False)
    failures = asyncio.Event()

    async def retry_wait(attempt: int) -> None:
        failures.set()
        await asyncio.sleep(0.05)  # keep knocking on the closed port until it opens

    async with recorder_for(through_gate, tmp_path / "journal", retry_wait=retry_wait) as recorder:
        recorder.call_started(start("CA-pg1"))
        recorder.turn_finished(turn("CA-pg1", 0))
        await recorder.flush()
        await gate.close()  # PostgreSQL is unreachable: connection refused, pooled connections cut
        recorder.turn_finished(turn("CA-pg1", 1))
        recorder.call_started(start("CA-pg2"))  # a call starting during the outage
        recorder.turn_finished(turn("CA-pg2", 0))
        recorder.call_ended(end("CA-pg2"))
        recorder.call_ended(end("CA-pg1"))
        await failures.wait()
        assert recorder.degraded
        await gate.open()  # back, on the same port
        await recorder.flush()
        assert not recorder.degraded and recorder.dropped == 0 and recorder.rejected == 0
        async with recorder.session() as s:
            one = await repository.get_call(s, "CA-pg1")
            two = await repository.get_call(s, "CA-pg2")
    await gate.close()
    assert one is not None and [t.index for t in one.turns] == [0, 1] and one.call.status == "completed"
    assert two is not None and [t.index for t in two.turns] == [0] and two.call.status == "completed"
