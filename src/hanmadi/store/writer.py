"""The Recorder: records go on a queue; one writer task commits them, so the audio path never waits on the DB.

Design:
- ``call_started``, ``turn_finished`` and ``call_ended`` are plain (non-async) methods that only append to an
  in-memory queue. They never block and never raise.
- One writer task takes records in order and commits each in its own transaction: a turn is committed as soon
  as it ends.
- **A record survives the database being away.** A write that fails for a reason that can pass (connection
  refused or lost, database locked, pool timeout, the SQLite file gone) is retried until it succeeds — with
  exponential backoff up to ``retry_max_s``, in order, never skipping a record, so a call that starts during
  an outage keeps its start and every turn. Meanwhile the store is *degraded* (``/healthz``: ``"store":
  "degraded"``, ``hanmadi_store_degraded`` 1) and the records waiting go to the on-disk journal
  (``store/journal.py``, ``HANMADI_STORE_JOURNAL``): a crash during an outage loses nothing queued before the
  last spill, and a restarted server replays the journal first. Memory is bounded: beyond ``max_queue`` records
  they are spilled to the journal even while the database answers (slowly) — memory then holds at most
  ``max_queue`` plus what arrives during one append to disk.
- A record the database refuses for good (an integrity or data error, retried ``max_attempts`` times; a turn of
  an unknown call; a start for a CallSid another stream owns) is not written and not lost either: it goes to
  ``rejected.jsonl`` beside the journal, with a log line and ``hanmadi_store_errors_total{op="rejected"}``.
  After a refused start, that stream's later records are refused too: a record is never overwritten by another
  stream.
- Without a journal directory (tests, tools) the bound is enforced by dropping new records past ``max_queue``
  (never a start record), ``op="queue_full"``.
- **The journal is bounded too** (``journal_max_bytes``, ``HANMADI_STORE_JOURNAL_MAX_MB``): an outage longer than
  the disk allows must not fill the disk the server and its logs live on. A journal at its cap, or one the disk
  refuses (``ENOSPC``, read-only), takes no more records (``op="journal_full"`` / ``"journal_error"``, one log line
  per episode): new records then wait in memory up to ``max_queue`` and past it are dropped and counted; what the
  journal already holds is kept and written once the database is back. The journal is tried again every
  ``JOURNAL_RETRY_S`` and takes records again as soon as it has room (it is emptied when written out).
- A SQLite database file that disappears (its directory deleted) is noticed before each write: nothing is written
  into the unlinked file; the store stays degraded until the file is back (or a restart creates a fresh one and
  replays the journal).
- A heartbeat task refreshes this process's row in ``instances`` every ``heartbeat_s`` and marks calls of
  servers whose heartbeat went stale as interrupted (several processes can share one PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hanmadi import metrics
from hanmadi.metrics import STORE_ERRORS
from hanmadi.store import repository
from hanmadi.store.journal import Entry, Journal, JournalError, decode, encode
from hanmadi.store.records import CallEnd, CallStart, TurnRecord

log = logging.getLogger(__name__)

Record = CallStart | TurnRecord | CallEnd
RetryWait = Callable[[int], Awaitable[None]]

_READ_AHEAD: Final = 256
# How often a journal that took no more records (full, or refused by the disk) is tried again.
JOURNAL_RETRY_S: Final = 5.0
_FOREIGN_REMEMBERED: Final = 10_000


class DatabaseGone(ConnectionError):
    """The SQLite database file is no longer where the store opened it."""


def _op(record: Record) -> str:
    match record:
        case CallStart():
            return "insert_call"
        case TurnRecord():
            return "upsert_turn"
        case CallEnd():
            return "finish_call"


def _transient(exc: BaseException) -> bool:
    """A failure that can pass by itself (the database down, unreachable, locked, restarting, its file gone)."""
    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - asyncpg ships with hanmadi
        return False
    return isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError | asyncpg.InterfaceError)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _sqlite_file(url: str) -> Path | None:
    sa_url = make_url(url)
    if sa_url.get_backend_name() != "sqlite" or not sa_url.database or sa_url.database == ":memory:":
        return None
    return Path(sa_url.database).resolve()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("store: the writer crashed; records are no longer written", exc_info=task.exception())


class Recorder:
    """Writes call records to the database at ``url`` without ever blocking its callers.

    ``await start()`` once (migrates the schema, adopts and replays journals a crashed server left, marks calls
    it left active, starts the writer), ``await stop()`` at shutdown (writes what is queued within
    ``drain_timeout_s``; what is left stays in the journal). Readers (the API) use ``session()``.
    ``retry_wait(attempt)`` waits before retry ``attempt`` (default: exponential backoff); tests inject events.
    """

    def __init__(
        self,
        url: str,
        *,
        journal_dir: Path | str | None = None,
        max_queue: int = 20_000,
        max_attempts: int = 5,
        retry_base_s: float = 0.1,
        retry_max_s: float = 5.0,
        retry_wait: RetryWait | None = None,
        heartbeat_s: float = 15.0,
        stale_after_s: float = 60.0,
        drain_timeout_s: float = 10.0,
        journal_max_bytes: int | None = None,
    ) -> None:
        self.url = url
        self.journal_dir = Path(journal_dir) if journal_dir is not None else None
        self.journal_max_bytes = journal_max_bytes
        self.max_queue = max_queue
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.retry_wait = retry_wait or self._backoff
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.drain_timeout_s = drain_timeout_s
        self.instance_id = repository.new_instance_id()
        # called inside each record's transaction (the webhook outbox: an event commits with its record, or not at all)
        self.in_transaction: Callable[[AsyncSession, Record], Awaitable[None]] | None = None
        self._memory: deque[Record] = deque()
        self._journal: Journal | None = None
        self._journal_unread = 0
        self._journal_head: deque[tuple[Entry | None, bytes, int]] = deque()  # (entry or unreadable, line, end)
        self._journal_lock = asyncio.Lock()
        self._journal_usable = False
        self._journal_bytes = 0  # the journal file's size
        self._journal_retry_at = 0.0  # an unusable journal is tried again from then (time.monotonic())
        self._enqueued = 0  # records accepted since start, in order
        self._memory_popped = 0
        self._done = 0  # of those, written or rejected (always the oldest first)
        self._progress = asyncio.Condition()
        self._wake = asyncio.Event()
        self._spill_needed = asyncio.Event()
        self._failing_since: float | None = None
        self._foreign: OrderedDict[str, None] = OrderedDict()  # CallSids whose start another stream owns
        self._sqlite = _sqlite_file(url)
        self._sqlite_id: tuple[int, int] | None = None
        self._gone_logged = False
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._dropped = 0
        self._rejected = 0

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate, open the journal (adopting orphans), mark interrupted calls, start the writer and heartbeat."""
        if self._task is not None:
            raise RuntimeError("Recorder already started")
        await repository.migrate(self.url)
        self._engine = repository.create_engine_for(self.url)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        if self._sqlite is not None:
            self._sqlite_id = _identity(self._sqlite)
        if self.journal_dir is not None:
            self._journal = Journal(self.journal_dir, self.instance_id)
            self._journal_unread = await asyncio.to_thread(self._journal.open)
            self._journal_bytes = await asyncio.to_thread(self._journal.size)
            self._journal_usable = True
            self._enqueued += self._journal_unread  # a flush waits for them too
            if self._journal_unread:
                log.warning("store: replaying %d journaled record(s) before any new one", self._journal_unread)
        async with self._sessions() as session, session.begin():
            interrupted = await repository.mark_interrupted_calls(
                session, instance_id=self.instance_id, stale_after_s=self.stale_after_s
            )
            await repository.register_instance(session, self.instance_id)
        if interrupted:
            log.warning(
                "store: %d call(s) left active by a stopped server marked failed (server_restart)",
                interrupted,
            )
        self._update_gauges()
        self._task = asyncio.create_task(self._run(), name="hanmadi-store-writer")
        self._task.add_done_callback(_log_crash)

    async def stop(self, timeout_s: float | None = None) -> None:
        """Write what is queued (for at most ``timeout_s``, default ``drain_timeout_s``); close the engine.

        What could not be written in time stays in the journal (when there is one) for the next start.
        """
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            try:
                async with asyncio.timeout(self.drain_timeout_s if timeout_s is None else timeout_s):
                    await self._wait_done(self._enqueued, task)
            except (TimeoutError, RuntimeError):
                pass
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            left = self.pending
            if left:
                if self._journal is not None and await self._spill():
                    log.warning("store: %d record(s) not yet written stay in the journal for the next start", left)
                else:
                    log.error("store: drain timed out; %d queued record(s) not written", left)
                    STORE_ERRORS.labels(op="drain_timeout").inc(left)
        if self._sessions is not None:
            try:
                async with self._sessions() as session, session.begin():
                    await repository.forget_instance(session, self.instance_id)
            except Exception as exc:  # a down database must not stop the shutdown
                log.warning("store: could not unregister instance: %s", exc)
        if self._engine is not None:
            await self._engine.dispose()
        if self._journal is not None:
            await asyncio.to_thread(self._journal.close)
            self._journal = None
        self._engine = self._sessions = None

    async def flush(self) -> None:
        """Wait until every record queued before this call has been written (or rejected)."""
        task = self._task
        if task is None or task.done():
            raise RuntimeError("Recorder is not running")
        await self._wait_done(self._enqueued, task)

    async def _wait_done(self, target: int, task: asyncio.Task[None]) -> None:
        """Until ``target`` records are done; RuntimeError if the writer stops first."""
        if self._done >= target:
            return

        async def until() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: self._done >= target)

        waiter = asyncio.create_task(until())
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        if self._done < target:
            raise RuntimeError("store writer stopped before the flush completed")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read session for the API (commit yourself if you write)."""
        if self._sessions is None:
            raise RuntimeError("Recorder is not started")
        async with self._sessions() as session:
            yield session

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        return self._task is not None and not self._task.done()

    @property
    def pending(self) -> int:
        """Records not yet written: in memory and in the journal."""
        return len(self._memory) + self._journal_unread

    @property
    def dropped(self) -> int:
        """Records dropped since start (recorder closed, or memory full without a journal)."""
        return self._dropped

    @property
    def rejected(self) -> int:
        """Records the database refused for good (kept in ``rejected.jsonl`` when there is a journal)."""
        return self._rejected

    @property
    def degraded(self) -> bool:
        """Writes are failing, or records wait in the journal: the database is behind."""
        return self._failing_since is not None or self._journal_unread > 0

    def health(self) -> dict[str, object]:
        """What ``/healthz`` says of the store."""
        return {"store": "degraded" if self.degraded else "ok", "store_pending": self.pending}

    # --- the audio path's side: never blocks ----------------------------------------------------------------

    def call_started(self, start: CallStart) -> None:
        """Queue a call's start."""
        self._enqueue(start)

    def turn_finished(self, turn: TurnRecord) -> None:
        """Queue a finished turn (committed on its own as soon as the writer reaches it)."""
        self._enqueue(turn)

    def call_ended(self, end: CallEnd) -> None:
        """Queue a call's end."""
        self._enqueue(end)

    def _enqueue(self, record: Record) -> None:
        if self._closed:
            self._drop(record, "closed", "recorder stopped")
            return
        # With a journal, memory holds max_queue records plus what arrives during one append to disk.
        if not self._journal_usable and len(self._memory) >= self.max_queue and not isinstance(record, CallStart):
            self._drop(record, "queue_full", f"{len(self._memory)} records waiting in memory")
            self._want_spill()  # a journal that had no room may have some now
            return
        self._memory.append(record)
        self._enqueued += 1
        self._wake.set()
        if self._failing_since is not None or len(self._memory) > self.max_queue:
            self._want_spill()
        metrics.STORE_PENDING.set(self.pending)

    def _want_spill(self) -> None:
        """Records should go to the journal: now if it takes them, else once its retry is due."""
        if self._journal is not None and (self._journal_usable or time.monotonic() >= self._journal_retry_at):
            self._spill_needed.set()

    def _drop(self, record: Record, op: str, reason: str) -> None:
        self._dropped += 1
        STORE_ERRORS.labels(op=op).inc()
        # One line per 100 drops: a dead database must not flood the log.
        if self._dropped % 100 == 1:
            log.error(
                "store: dropped %s for call %s: %s (%d dropped so far)",
                _op(record),
                record.call_sid,
                reason,
                self._dropped,
            )

    # --- the writer task ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._heartbeat(), name="hanmadi-store-heartbeat")
            tg.create_task(self._spiller(), name="hanmadi-store-spiller")
            await self._writer()

    async def _writer(self) -> None:
        while True:
            entry, line = await self._oldest()
            if entry is not None:
                await self._write(entry, line)
            else:
                self._reject_line(line, "unreadable journal line")
            await self._consume_oldest()

    async def _oldest(self) -> tuple[Entry | None, bytes]:
        """The oldest record not yet written (the journal's head, else memory's), waiting for one if none."""
        while True:
            if self._journal_unread:
                async with self._journal_lock:
                    await self._fill_journal_head()
                    if self._journal_head:
                        entry, line, _ = self._journal_head[0]
                        return entry, line
            if self._memory:
                return Entry(self._memory[0], self.instance_id), b""
            self._wake.clear()
            await self._wake.wait()

    async def _fill_journal_head(self) -> None:
        journal = self._journal
        if self._journal_head or journal is None:
            return
        try:
            lines = await asyncio.to_thread(journal.read, _READ_AHEAD)
        except OSError as exc:
            lost = self._journal_unread
            log.error("store: the journal %s cannot be read (%s): %d record(s) lost", journal.path, exc, lost)
            STORE_ERRORS.labels(op="journal_lost").inc(self._journal_unread)
            self._journal_unread = 0
            return
        if not lines:  # the file holds fewer lines than counted (cut short behind our back)
            log.error("store: the journal %s ended early: %d record(s) lost", journal.path, self._journal_unread)
            STORE_ERRORS.labels(op="journal_lost").inc(self._journal_unread)
            self._journal_unread = 0
            return
        for line, end in lines:
            try:
                self._journal_head.append((decode(line), line, end))
            except JournalError:
                self._journal_head.append((None, line, end))

    async def _consume_oldest(self) -> None:
        """The oldest record was written (or rejected): take it off the journal or memory, whichever holds it."""
        if self._journal_unread:
            async with self._journal_lock:
                await self._fill_journal_head()
                if self._journal_head:
                    _, _, end = self._journal_head.popleft()
                    assert self._journal is not None
                    self._journal.read_offset = end
                    self._journal_unread -= 1
                    if not self._journal_unread:
                        self._journal_head.clear()
                        try:
                            await asyncio.to_thread(self._journal.empty)
                            self._journal_bytes = 0
                            metrics.STORE_JOURNAL_BYTES.set(0)
                        except OSError as exc:
                            log.warning("store: could not empty the journal: %s", exc)
                        log.info("store: journal written out; the database is up to date")
        elif self._memory:
            self._memory.popleft()
            self._memory_popped += 1
        async with self._progress:
            self._done += 1
            self._progress.notify_all()
        self._update_gauges()

    async def _write(self, entry: Entry, line: bytes) -> None:
        assert self._sessions is not None
        record = entry.record
        op = _op(record)
        if record.call_sid in self._foreign:
            self._reject(entry, line, "conflict", f"call {record.call_sid} belongs to another stream")
            return
        attempt = 0
        permanent_failures = 0
        while True:
            attempt += 1
            try:
                await self._check_database()
                async with self._sessions() as session, session.begin():
                    match record:
                        case CallStart():
                            await repository.insert_call(session, record, instance_id=entry.instance_id)
                        case TurnRecord():
                            await repository.upsert_turn(session, record)
                        case CallEnd():
                            await repository.finish_call(session, record)
                    if self.in_transaction is not None:
                        await self.in_transaction(session, record)
                self._recovered()
                return
            except repository.CallConflictError as exc:
                self._foreign[record.call_sid] = None
                while len(self._foreign) > _FOREIGN_REMEMBERED:
                    self._foreign.popitem(last=False)
                self._recovered()
                self._reject(entry, line, "conflict", str(exc))
                return
            except repository.UnknownCallError as exc:
                self._recovered()
                self._reject(entry, line, "unknown_call", str(exc))
                return
            except Exception as exc:  # any database failure: count, log, retry — the writer must survive it
                STORE_ERRORS.labels(op=op).inc()
                reason = _reason(exc)
                if _transient(exc):
                    self._failing(reason)
                else:
                    permanent_failures += 1
                    if permanent_failures >= self.max_attempts:
                        self._reject(entry, line, "rejected", f"{reason} (after {permanent_failures} attempts)")
                        return
                log.warning(
                    "store: %s for call %s failed (attempt %d%s), retrying: %s",
                    op,
                    record.call_sid,
                    attempt,
                    "" if _transient(exc) else f"/{self.max_attempts}",
                    reason,
                )
                await self.retry_wait(attempt)

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(min(self.retry_max_s, self.retry_base_s * 2 ** min(attempt - 1, 20)))

    async def _check_database(self) -> None:
        """For a SQLite file: refuse to write when the file is gone; migrate a file put back in its place."""
        if self._sqlite is None:
            return
        identity = _identity(self._sqlite)
        if identity is None:
            if not self._gone_logged:
                self._gone_logged = True
                log.error("store: the SQLite database %s is gone; records wait in the journal", self._sqlite)
            raise DatabaseGone(f"SQLite database {self._sqlite} is gone")
        if identity != self._sqlite_id:
            assert self._engine is not None
            log.warning("store: the SQLite database %s was replaced; migrating it before writing", self._sqlite)
            await self._engine.dispose()  # connections still point at the old (unlinked) file
            await repository.migrate(self.url)
            self._sqlite_id = identity
            self._gone_logged = False

    def _failing(self, reason: str) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error(
                "store: the database is not answering (%s); records are kept%s and retried until it is back",
                reason,
                " in the journal" if self._journal_usable else " in memory",
            )
            self._update_gauges()
        self._want_spill()

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.warning(
                "store: the database answers again after %.1f s; %d record(s) to catch up",
                time.monotonic() - self._failing_since,
                self.pending,
            )
            self._failing_since = None
            self._update_gauges()

    def _reject(self, entry: Entry, line: bytes, op: str, reason: str) -> None:
        self._rejected += 1
        STORE_ERRORS.labels(op=op).inc()
        record = entry.record
        kept = ""
        if self._journal is not None:
            try:
                self._journal.reject(line or encode(entry), reason)
                kept = f"; kept in {self._journal.rejected_path}"
            except OSError as exc:
                kept = f"; could not be kept: {exc}"
        log.error("store: %s for call %s refused for good: %s%s", _op(record), record.call_sid, reason, kept)

    def _reject_line(self, line: bytes, reason: str) -> None:
        self._rejected += 1
        STORE_ERRORS.labels(op="rejected").inc()
        if self._journal is not None:
            with contextlib.suppress(OSError):
                self._journal.reject(line, reason)
        log.error("store: %s (%d bytes) skipped", reason, len(line))

    # --- the journal ------------------------------------------------------------------------------------------

    async def _spiller(self) -> None:
        while True:
            await self._spill_needed.wait()
            self._spill_needed.clear()
            await self._spill()

    async def _spill(self) -> bool:
        """Move the records in memory to the end of the journal (they are newer than all it holds), oldest first, as
        many as its cap leaves room for; False when it took none."""
        journal = self._journal
        if journal is None or not self._memory:
            return journal is not None
        async with self._journal_lock:
            records = list(self._memory)
            lines = [encode(Entry(record, self.instance_id)) for record in records]
            room = None if self.journal_max_bytes is None else self.journal_max_bytes - self._journal_bytes
            took_all = True
            if room is not None:
                fits = 0
                for line in lines:
                    if len(line) > room:
                        break
                    room -= len(line)
                    fits += 1
                if fits < len(lines):
                    took_all = False
                    self._journal_refuses(
                        "journal_full", f"{self._journal_bytes} bytes held, the cap is {self.journal_max_bytes}"
                    )
                    if not fits:
                        return False
                    records, lines = records[:fits], lines[:fits]
            popped_before = self._memory_popped
            try:
                size = await asyncio.to_thread(journal.append, lines)
            except OSError as exc:
                self._journal_refuses("journal_error", str(exc))
                return False
            if took_all:  # it has room (again)
                if not self._journal_usable:
                    log.warning("store: the journal %s takes records again", journal.path)
                self._journal_usable = True
            self._journal_bytes = size
            # While the append ran, the writer may have written the oldest few of these from memory (it does so
            # only while the journal is empty, so the new lines start at the read offset): skip them on disk.
            written = min(self._memory_popped - popped_before, len(records))
            for _ in range(len(records) - written):
                self._memory.popleft()
            journal.read_offset += sum(len(line) for line in lines[:written])
            self._journal_unread += len(records) - written
            if not self._journal_unread:  # all of them were written meanwhile
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(journal.empty)
                    self._journal_bytes = 0
            metrics.STORE_JOURNAL_BYTES.set(self._journal_bytes)
        self._update_gauges()
        return True

    def _journal_refuses(self, op: str, reason: str) -> None:
        """The journal takes no more records for now: counted each time, logged once per episode."""
        assert self._journal is not None
        STORE_ERRORS.labels(op=op).inc()
        if self._journal_usable:
            log.error(
                "store: the journal %s takes no more records (%s); new records wait in memory, up to %d, "
                "then are dropped until it has room",
                self._journal.path,
                reason,
                self.max_queue,
            )
        self._journal_usable = False
        self._journal_retry_at = time.monotonic() + JOURNAL_RETRY_S

    # --- heartbeat ----------------------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await self._beat()

    async def _beat(self) -> None:
        assert self._sessions is not None
        try:
            await self._check_database()
            async with self._sessions() as session, session.begin():
                await repository.heartbeat(session, self.instance_id)
                interrupted = await repository.mark_interrupted_calls(
                    session,
                    instance_id=self.instance_id,
                    stale_after_s=self.stale_after_s,
                    check_local_pids=False,
                )
            if interrupted:
                log.warning("store: %d call(s) of a silent server marked failed (server_restart)", interrupted)
        except Exception as exc:  # the heartbeat is best-effort; the next one retries
            STORE_ERRORS.labels(op="heartbeat").inc()
            log.warning("store: heartbeat failed: %s", _reason(exc))

    def _update_gauges(self) -> None:
        metrics.STORE_DEGRADED.set(1 if self.degraded else 0)
        metrics.STORE_PENDING.set(self.pending)
