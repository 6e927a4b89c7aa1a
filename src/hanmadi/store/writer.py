"""The Recorder: records go on a queue; one writer task commits them, so the audio path never waits on the DB.

Design:
- ``call_started``, ``turn_finished`` and ``call_ended`` are plain (non-async) methods that only append to an
  in-memory queue. They never block and never raise.
- One writer task takes records in order and commits each in its own transaction: a turn is committed as soon
  as it ends, so a crash loses at most the turn in progress (and whatever was still queued, normally nothing).
- A failed write is logged with its reason, counted in ``hanmadi_store_errors_total{op=…}`` and retried with
  exponential backoff (``max_attempts`` in all, about 3 s by default); then it is dropped (``op="dropped"``).
  A record that can never succeed (a turn for a call whose start was lost) is dropped at once. The writer never
  dies of a failed write.
- The queue is bounded by ``max_queue`` records (default 20 000 — minutes of a full server's traffic with the
  database down; a record is a few kilobytes). Beyond that, new records are dropped with a log line and
  ``op="queue_full"``: losing records beats growing without bound or stalling calls.
- The writer also refreshes this process's heartbeat in ``instances`` every ``heartbeat_s`` and marks calls of
  servers whose heartbeat went stale as interrupted (several processes can share one PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hanmadi.metrics import STORE_ERRORS
from hanmadi.store import repository
from hanmadi.store.records import CallEnd, CallStart, TurnRecord

log = logging.getLogger(__name__)

Record = CallStart | TurnRecord | CallEnd


class _Stop:
    """Queue sentinel: the writer finishes after everything queued before it."""


_STOP: Final = _Stop()
_QueueItem = Record | asyncio.Future[None] | _Stop


def _op(record: Record) -> str:
    match record:
        case CallStart():
            return "insert_call"
        case TurnRecord():
            return "upsert_turn"
        case CallEnd():
            return "finish_call"


class Recorder:
    """Writes call records to the database at ``url`` without ever blocking its callers.

    ``await start()`` once (migrates the schema, marks calls a crashed server left active, starts the writer),
    ``await stop()`` at shutdown (drains the queue within ``drain_timeout_s``). Readers (the API) use
    ``session()``.
    """

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = 20_000,
        max_attempts: int = 5,
        retry_base_s: float = 0.1,
        retry_max_s: float = 2.0,
        heartbeat_s: float = 15.0,
        stale_after_s: float = 60.0,
        drain_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.max_queue = max_queue
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.drain_timeout_s = drain_timeout_s
        self.instance_id = repository.new_instance_id()
        # Unbounded asyncio queue; the bound is enforced on records only, so stop/flush markers always fit.
        self._queue: asyncio.Queue[_QueueItem] = asyncio.Queue()
        self._records_queued = 0
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._dropped = 0

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the engine, migrate to the newest schema, mark interrupted calls, start the writer task."""
        if self._task is not None:
            raise RuntimeError("Recorder already started")
        await repository.migrate(self.url)
        self._engine = repository.create_engine_for(self.url)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
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
        self._task = asyncio.create_task(self._run(), name="hanmadi-store-writer")

    async def stop(self, timeout_s: float | None = None) -> None:
        """Write what is queued (for at most ``timeout_s``, default ``drain_timeout_s``); close the engine."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            self._queue.put_nowait(_STOP)
            try:
                async with asyncio.timeout(self.drain_timeout_s if timeout_s is None else timeout_s):
                    await task
            except TimeoutError:
                lost = self._records_queued
                log.error("store: drain timed out; %d queued record(s) not written", lost)
                STORE_ERRORS.labels(op="drain_timeout").inc(max(lost, 1))
        if self._sessions is not None:
            try:
                async with self._sessions() as session, session.begin():
                    await repository.forget_instance(session, self.instance_id)
            except Exception as exc:  # a down database must not stop the shutdown
                log.warning("store: could not unregister instance: %s", exc)
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = self._sessions = None

    async def flush(self) -> None:
        """Wait until every record queued before this call has been written (or dropped)."""
        task = self._task
        if task is None or task.done():
            raise RuntimeError("Recorder is not running")
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(marker)
        await asyncio.wait({marker, task}, return_when=asyncio.FIRST_COMPLETED)
        if not marker.done():
            raise RuntimeError("store writer stopped before the flush completed")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read session for the API (commit yourself if you write)."""
        if self._sessions is None:
            raise RuntimeError("Recorder is not started")
        async with self._sessions() as session:
            yield session

    @property
    def pending(self) -> int:
        """Records queued and not yet written."""
        return self._records_queued

    @property
    def dropped(self) -> int:
        """Records dropped since start (queue full, closed, or failed after all retries)."""
        return self._dropped

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
        elif self._records_queued >= self.max_queue:
            self._drop(record, "queue_full", f"{self._records_queued} records waiting")
        else:
            self._records_queued += 1
            self._queue.put_nowait(record)

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
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat_s
        while True:
            if loop.time() >= next_beat:
                await self._beat()
                next_beat = loop.time() + self.heartbeat_s
            try:
                async with asyncio.timeout(max(0.0, next_beat - loop.time())):
                    item = await self._queue.get()
            except TimeoutError:
                continue
            if isinstance(item, _Stop):
                return
            if isinstance(item, asyncio.Future):
                if not item.done():
                    item.set_result(None)
                continue
            try:
                await self._write(item)
            finally:
                self._records_queued -= 1

    async def _write(self, record: Record) -> None:
        assert self._sessions is not None
        op = _op(record)
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self._sessions() as session, session.begin():
                    match record:
                        case CallStart():
                            await repository.insert_call(session, record, instance_id=self.instance_id)
                        case TurnRecord():
                            await repository.upsert_turn(session, record)
                        case CallEnd():
                            await repository.finish_call(session, record)
                return
            except repository.UnknownCallError as exc:
                STORE_ERRORS.labels(op=op).inc()
                self._drop(record, "dropped", str(exc))
                return
            except Exception as exc:  # any database failure: count, log, retry — the writer must survive it
                STORE_ERRORS.labels(op=op).inc()
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                if attempt == self.max_attempts:
                    self._drop(record, "dropped", f"{reason} (after {attempt} attempts)")
                    return
                delay = min(self.retry_max_s, self.retry_base_s * 2 ** (attempt - 1))
                log.warning(
                    "store: %s for call %s failed (attempt %d/%d), retrying in %.2fs: %s",
                    op,
                    record.call_sid,
                    attempt,
                    self.max_attempts,
                    delay,
                    reason,
                )
                await asyncio.sleep(delay)

    async def _beat(self) -> None:
        assert self._sessions is not None
        try:
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
            log.warning("store: heartbeat failed: %s", exc)
