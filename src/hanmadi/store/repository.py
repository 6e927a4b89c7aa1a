"""Repository functions over an ``AsyncSession``: the only place that speaks SQL.

Functions never commit: the caller owns the transaction (the writer commits each record on its own; the API
commits a delete). ``create_engine_for`` and ``migrate`` set up SQLite (WAL) or PostgreSQL (asyncpg) alike.
"""

from __future__ import annotations

import math
import os
import socket
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from hanmadi.store.models import Call, Instance, RedeemedStreamToken, Turn, TurnEventRow
from hanmadi.store.records import (
    INTERRUPTED_REASON,
    INTERRUPTED_STATUS,
    CallDetail,
    CallEnd,
    CallStart,
    CallStatus,
    CallSummary,
    LatencySummary,
    Percentiles,
    ProviderSetSummary,
    TurnDetail,
    TurnEvent,
    TurnRecord,
    mask_number,
)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 10_000
SUMMARY_WINDOW = 10_000
# pg_advisory_xact_lock key ("hanmadi" in ASCII): serialises migrations of processes starting at once.
_MIGRATION_LOCK_KEY = 0x68616E6D616469


class UnknownCallError(LookupError):
    """A turn or an end was recorded for a call the store has no start for."""

    def __init__(self, call_sid: str) -> None:
        super().__init__(f"unknown call {call_sid!r}")
        self.call_sid = call_sid


class CallConflictError(LookupError):
    """A start was recorded for a CallSid that another stream already owns (a replayed webhook or stream)."""

    def __init__(self, call_sid: str) -> None:
        super().__init__(f"call {call_sid!r} already recorded by another stream")
        self.call_sid = call_sid


# --- engine and migrations ----------------------------------------------------------------------------------


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout first: switching to WAL needs a lock another process may hold.
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode")
    row = cursor.fetchone()
    if row is None or str(row[0]).lower() != "wal":  # WAL is kept in the file: usually set once, by its creator
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except Exception as exc:
            # Switching needs the file to itself and SQLite answers "locked" at once (no busy wait) while another
            # connection — a second process migrating the new file — holds it: that connection or the next one
            # switches; this one works in the file's current mode.
            if "locked" not in str(exc):
                raise
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine_for(url: str) -> AsyncEngine:
    """An async engine for ``url``: SQLite (aiosqlite) with WAL, or PostgreSQL (asyncpg) with pre-ping."""
    sa_url = make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        if sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(sa_url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(sa_url, pool_pre_ping=True)


def _alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade_head(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


async def migrate(url: str) -> None:
    """Bring the schema to the newest Alembic revision. Idempotent; safe when several processes start at once.

    Everything runs in one transaction that first takes a database-wide lock (PostgreSQL: an advisory
    transaction lock; SQLite: ``BEGIN IMMEDIATE``), so a second process waits, then finds the schema current.
    """
    engine = create_engine_for(url)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif engine.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            await conn.run_sync(_upgrade_head)
            await conn.commit()
    finally:
        await engine.dispose()


def head_revision() -> str:
    """The newest migration revision shipped with this version of hanmadi."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


# --- writes -------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: non-finite floats → None (PostgreSQL JSON rejects NaN), unknown objects → str."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# The writes of every call and turn, built once: a statement built per record (``.values(**row)``) spends more
# CPU coercing its values than the database spends storing them. Parameters are bound at execution.
_CALLS: Final = cast(Table, Call.__table__)
_TURNS: Final = cast(Table, Turn.__table__)
_EVENTS: Final = cast(Table, TurnEventRow.__table__)


def _insert_new(table: Table, key: list[str]) -> dict[str, Any]:
    """``INSERT … ON CONFLICT (key) DO NOTHING RETURNING id`` for each database: spelled alike by SQLite and
    PostgreSQL, but each dialect builds its own insert."""
    return {
        "sqlite": sqlite.insert(table).on_conflict_do_nothing(index_elements=key).returning(table.c.id),
        "postgresql": postgresql.insert(table).on_conflict_do_nothing(index_elements=key).returning(table.c.id),
    }


_INSERT_CALL: Final = _insert_new(_CALLS, ["call_sid"])
_INSERT_TURN: Final = _insert_new(_TURNS, ["call_id", "index"])
_COUNT_TURN: Final = (
    update(_CALLS)
    .where(_CALLS.c.call_sid == bindparam("b_call_sid"))
    .values(turn_count=_CALLS.c.turn_count + 1)
    .returning(_CALLS.c.id)
)
_REPLACE_TURN: Final = (
    update(_TURNS)
    .where(_TURNS.c.call_id == bindparam("b_call_id"), _TURNS.c.index == bindparam("b_index"))
    .returning(_TURNS.c.id)
)
_END_CALL: Final = update(_CALLS).where(_CALLS.c.call_sid == bindparam("b_call_sid")).returning(_CALLS.c.id)
_INSERT_EVENTS: Final = insert(_EVENTS)


def _dialect(session: AsyncSession) -> str:
    return "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"


async def insert_call(session: AsyncSession, start: CallStart, *, instance_id: str | None = None) -> None:
    """Record an answered call (status ``active``), numbers masked.

    Inserting the same start again (same stream) is a no-op, so a replayed journal is harmless; a start for a
    CallSid another stream already recorded raises ``CallConflictError``: a call's record is never taken over.
    One statement when the call is new (each statement is a round trip to the database's thread or server).
    """
    row = {
        "call_sid": start.call_sid,
        "stream_sid": start.stream_sid,
        "from_masked": mask_number(start.from_number),
        "to_masked": mask_number(start.to_number),
        "started_at": start.started_at,
        "status": "active",
        "providers": _jsonable(dict(start.providers)),
        "turn_count": 0,
        "instance_id": instance_id,
        "direction": start.direction,
    }
    if await session.scalar(_INSERT_CALL[_dialect(session)], row) is not None:
        return
    owner = await session.scalar(select(Call.stream_sid).where(Call.call_sid == start.call_sid))
    if owner != start.stream_sid:
        raise CallConflictError(start.call_sid)


def _event_rows(turn_id: int, events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for seq, ev in enumerate(events):
        index = ev.get("index")
        rows.append(
            {
                "turn_id": turn_id,
                "seq": seq,
                "t": float(ev.get("t") or 0.0),
                "kind": str(ev.get("kind", ""))[:32],
                "sentence_index": int(index) if isinstance(index, int) else None,
                "text": str(ev.get("text") or ""),
                "duration_s": _finite(ev.get("duration_s")),
                "audio_s": _finite(ev.get("audio_s")),
                "reason": str(ev["reason"])[:64] if ev.get("reason") is not None else None,
            }
        )
    return rows


async def upsert_turn(session: AsyncSession, turn: TurnRecord) -> None:
    """Insert a turn with its events, or replace them when (call, index) is already stored.

    A new turn is three statements: count it on its call (which proves the call is stored), insert it, insert its
    events. A turn stored before (a replayed journal) is replaced and the count recomputed.
    """
    call_id = await session.scalar(_COUNT_TURN, {"b_call_sid": turn.call_sid})
    if call_id is None:
        raise UnknownCallError(turn.call_sid)
    values: dict[str, Any] = {
        "started_at": turn.started_at,
        "ended_at": turn.ended_at,
        "heard_text": turn.heard_text,
        "generated_text": turn.generated_text,
        "spoken_text": turn.spoken_text,
        "barge_in": turn.barge_in,
        "dtmf": turn.dtmf[:64],
        "first_audio_s": _finite(turn.first_audio_s),
        "voice_to_voice_s": _finite(turn.voice_to_voice_s),
        "total_s": _finite(turn.total_s),
        "metrics": _jsonable(turn.metrics),
        "tool_calls": _jsonable(turn.tool_calls) if turn.tool_calls else None,
    }
    turn_id = await session.scalar(_INSERT_TURN[_dialect(session)], {"call_id": call_id, "index": turn.index, **values})
    if turn_id is None:  # stored before: replace it and its events, and count the call's turns again
        turn_id = await session.scalar(_REPLACE_TURN, {"b_call_id": call_id, "b_index": turn.index, **values})
        await session.execute(delete(TurnEventRow).where(TurnEventRow.turn_id == turn_id))
        turns = select(func.count()).where(Turn.call_id == call_id).scalar_subquery()
        await session.execute(update(Call).where(Call.id == call_id).values(turn_count=turns))
    rows = _event_rows(turn_id, turn.events)
    if rows:
        await session.execute(_INSERT_EVENTS, rows)


async def finish_call(session: AsyncSession, end: CallEnd) -> None:
    """Record a call's end: status, reason, end time, recording (if any)."""
    values: dict[str, Any] = {
        "b_call_sid": end.call_sid,
        "ended_at": end.ended_at,
        "status": end.status,
        "end_reason": end.end_reason[:32],
    }
    if end.recording_path is not None:
        values["recording_path"] = end.recording_path
    if end.transfer_to is not None:
        values["transfer_to"] = mask_number(end.transfer_to)
    if end.answered_by is not None:
        values["answered_by"] = end.answered_by[:32]
    if await session.scalar(_END_CALL, values) is None:
        raise UnknownCallError(end.call_sid)


async def delete_call(session: AsyncSession, call_sid: str) -> CallSummary | None:
    """Delete a call with its turns and events; returns what was deleted (None if unknown)."""
    summaries = await _summaries(session, await _calls_where(session, Call.call_sid == call_sid))
    if not summaries:
        return None
    await session.execute(delete(Call).where(Call.call_sid == call_sid))
    return summaries[0]


async def redeem_stream_token(session: AsyncSession, nonce: str, call_sid: str, expires_at: datetime) -> bool:
    """Record the one use of a stream token: True the first time, False if any process redeemed it already.

    The nonce is the primary key, so two processes racing on one token cannot both insert it; expired rows are
    deleted on the way (a token past its expiry is refused before it gets here).
    """
    now = datetime.now(UTC)
    await session.execute(delete(RedeemedStreamToken).where(RedeemedStreamToken.expires_at < now))
    try:
        await session.execute(insert(RedeemedStreamToken).values(nonce=nonce, call_sid=call_sid, expires_at=expires_at))
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


async def call_exists(session: AsyncSession, call_sid: str) -> bool:
    """Whether a call with this CallSid was ever recorded (active or ended)."""
    return await session.scalar(select(Call.id).where(Call.call_sid == call_sid)) is not None


async def get_recording_path(session: AsyncSession, call_sid: str) -> str | None:
    """The call's recording path, or None (unknown call or no recording)."""
    return await session.scalar(select(Call.recording_path).where(Call.call_sid == call_sid))


# --- instances: telling a live server's calls from a crashed one's ------------------------------------------


def new_instance_id() -> str:
    """An id for this server process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def register_instance(session: AsyncSession, instance_id: str, *, now: datetime | None = None) -> None:
    """Announce a running server (its calls are live while its heartbeat is fresh)."""
    now = now or datetime.now(UTC)
    session.add(Instance(id=instance_id, host=socket.gethostname(), pid=os.getpid(), started_at=now, seen_at=now))
    await session.flush()


async def heartbeat(session: AsyncSession, instance_id: str) -> None:
    """Refresh this server's heartbeat (registering it again if a peer took it for dead and removed it)."""
    result = await session.execute(update(Instance).where(Instance.id == instance_id).values(seen_at=datetime.now(UTC)))
    if not getattr(result, "rowcount", 0):
        await register_instance(session, instance_id)


async def forget_instance(session: AsyncSession, instance_id: str) -> None:
    """Remove this server from the live set (clean shutdown)."""
    await session.execute(delete(Instance).where(Instance.id == instance_id))


async def mark_interrupted_calls(
    session: AsyncSession,
    *,
    instance_id: str | None = None,
    stale_after_s: float = 60.0,
    check_local_pids: bool = True,
    now: datetime | None = None,
) -> int:
    """Calls a crashed server left ``active`` → ``failed`` / ``server_restart``; returns how many.

    A server is gone when its heartbeat is older than ``stale_after_s``, or (``check_local_pids``, done at
    start-up) when it ran on this host and its pid is no longer alive or is this very process (a restarted
    container reuses the pid) — so a restart needn't wait for the heartbeat to go stale. Calls of live servers
    (other processes sharing a PostgreSQL) are left alone.
    Turns already recorded are kept; ``ended_at`` becomes the end of the last recorded turn.
    """
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=stale_after_s)
    host, pid = socket.gethostname(), os.getpid()
    live: list[str] = [instance_id] if instance_id else []
    dead: list[str] = []
    for inst in (await session.scalars(select(Instance))).all():
        if inst.id == instance_id:
            continue
        local_gone = check_local_pids and inst.host == host and (inst.pid == pid or not _pid_alive(inst.pid))
        (dead if inst.seen_at < cutoff or local_gone else live).append(inst.id)
    last_turn_end = select(func.max(Turn.ended_at)).where(Turn.call_id == Call.id).scalar_subquery()
    orphan = or_(Call.instance_id.is_(None), Call.instance_id.not_in(live)) if live else true()
    result = await session.execute(
        update(Call)
        .where(Call.status == "active", orphan)
        .values(
            status=INTERRUPTED_STATUS,
            end_reason=INTERRUPTED_REASON,
            ended_at=func.coalesce(last_turn_end, Call.started_at),
        )
        .execution_options(synchronize_session=False)
    )
    if dead:
        await session.execute(delete(Instance).where(Instance.id.in_(dead)))
    return int(getattr(result, "rowcount", 0) or 0)


# --- reads --------------------------------------------------------------------------------------------------


async def _calls_where(session: AsyncSession, *where: Any) -> Sequence[Call]:
    return (await session.scalars(select(Call).where(*where))).all()


async def _summaries(session: AsyncSession, calls: Sequence[Call]) -> list[CallSummary]:
    ids = [c.id for c in calls]
    stats: dict[int, tuple[float | None, float | None, int]] = {}
    if ids:
        rows = await session.execute(
            select(
                Turn.call_id,
                func.avg(Turn.first_audio_s),
                func.avg(Turn.voice_to_voice_s),
                func.count().filter(Turn.barge_in.is_(True)),
            )
            .where(Turn.call_id.in_(ids))
            .group_by(Turn.call_id)
        )
        for call_id, first, v2v, barge_ins in rows:
            stats[call_id] = (
                float(first) if first is not None else None,
                float(v2v) if v2v is not None else None,
                int(barge_ins or 0),
            )
    out = []
    for c in calls:
        first, v2v, barge_ins = stats.get(c.id, (None, None, 0))
        status: CallStatus = c.status  # type: ignore[assignment]
        out.append(
            CallSummary(
                call_sid=c.call_sid,
                stream_sid=c.stream_sid,
                from_masked=c.from_masked,
                to_masked=c.to_masked,
                started_at=c.started_at,
                ended_at=c.ended_at,
                status=status,
                end_reason=c.end_reason,
                providers={str(k): str(v) for k, v in (c.providers or {}).items()},
                turn_count=c.turn_count,
                recording_path=c.recording_path,
                mean_first_audio_s=first,
                mean_voice_to_voice_s=v2v,
                barge_ins=barge_ins,
                direction=c.direction,
                answered_by=c.answered_by,
                transfer_to=c.transfer_to,
            )
        )
    return out


def _like(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_calls(
    session: AsyncSession,
    *,
    limit: int = 50,
    offset: int = 0,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: str | None = None,
) -> tuple[list[CallSummary], int]:
    """Calls, newest first, and how many match in all.

    ``since`` ≤ started_at < ``until``; ``q`` searches (case-insensitively) the call sid and every turn's
    heard, generated and spoken text.
    """
    where: list[Any] = []
    if status:
        where.append(Call.status == status)
    if since is not None:
        where.append(Call.started_at >= since)
    if until is not None:
        where.append(Call.started_at < until)
    if q:
        pattern = _like(q)
        in_turns = exists().where(
            Turn.call_id == Call.id,
            or_(
                Turn.heard_text.ilike(pattern, escape="\\"),
                Turn.generated_text.ilike(pattern, escape="\\"),
                Turn.spoken_text.ilike(pattern, escape="\\"),
            ),
        )
        where.append(or_(Call.call_sid.ilike(pattern, escape="\\"), in_turns))
    condition = and_(true(), *where)
    total = await session.scalar(select(func.count()).select_from(Call).where(condition)) or 0
    page = (
        await session.scalars(
            select(Call).where(condition).order_by(Call.started_at.desc(), Call.id.desc()).limit(limit).offset(offset)
        )
    ).all()
    return await _summaries(session, page), int(total)


async def get_call(session: AsyncSession, call_sid: str) -> CallDetail | None:
    """One call with its turns (by index) and each turn's events (by seq); None if unknown."""
    calls = await _calls_where(session, Call.call_sid == call_sid)
    if not calls:
        return None
    (summary,) = await _summaries(session, calls)
    turns = (await session.scalars(select(Turn).where(Turn.call_id == calls[0].id).order_by(Turn.index))).all()
    events: dict[int, list[TurnEvent]] = defaultdict(list)
    if turns:
        rows = await session.scalars(
            select(TurnEventRow)
            .where(TurnEventRow.turn_id.in_([t.id for t in turns]))
            .order_by(TurnEventRow.turn_id, TurnEventRow.seq)
        )
        for ev in rows:
            events[ev.turn_id].append(
                TurnEvent(
                    seq=ev.seq,
                    t=ev.t,
                    kind=ev.kind,
                    index=ev.sentence_index,
                    text=ev.text,
                    duration_s=ev.duration_s,
                    audio_s=ev.audio_s,
                    reason=ev.reason,
                )
            )
    details = [
        TurnDetail(
            index=t.index,
            started_at=t.started_at,
            ended_at=t.ended_at,
            heard_text=t.heard_text,
            generated_text=t.generated_text,
            spoken_text=t.spoken_text,
            barge_in=t.barge_in,
            dtmf=t.dtmf,
            first_audio_s=t.first_audio_s,
            voice_to_voice_s=t.voice_to_voice_s,
            total_s=t.total_s,
            metrics=dict(t.metrics or {}),
            events=events.get(t.id, []),
            tool_calls=list(t.tool_calls or []),
        )
        for t in turns
    ]
    return CallDetail(call=summary, turns=details)


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0–100), linear interpolation between ranks (numpy's default); None if empty."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def _percentiles(values: list[float]) -> Percentiles:
    values.sort()
    return {"count": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95)}


async def latency_summary(session: AsyncSession, *, window: int = SUMMARY_WINDOW) -> LatencySummary:
    """p50/p95 of first response and voice-to-voice over the newest ``window`` turns, overall and by providers."""
    rows = await session.execute(
        select(Turn.first_audio_s, Turn.voice_to_voice_s, Call.providers)
        .join(Call, Call.id == Turn.call_id)
        .order_by(Turn.started_at.desc(), Turn.id.desc())
        .limit(window)
    )
    first_all: list[float] = []
    v2v_all: list[float] = []
    groups: dict[tuple[str, str, str], tuple[list[float], list[float], list[int]]] = {}
    for first, v2v, providers in rows:
        p = providers or {}
        key = (str(p.get("stt", "")), str(p.get("llm", "")), str(p.get("tts", "")))
        g_first, g_v2v, g_count = groups.setdefault(key, ([], [], [0]))
        g_count[0] += 1
        if first is not None:
            first_all.append(first)
            g_first.append(first)
        if v2v is not None:
            v2v_all.append(v2v)
            g_v2v.append(v2v)
    by_providers: list[ProviderSetSummary] = [
        {
            "providers": {"stt": stt, "llm": llm, "tts": tts},
            "turns": count[0],
            "first_audio_s": _percentiles(g_first),
            "voice_to_voice_s": _percentiles(g_v2v),
        }
        for (stt, llm, tts), (g_first, g_v2v, count) in groups.items()
    ]
    by_providers.sort(key=lambda s: (-s["turns"], sorted(s["providers"].items())))
    return {
        "window": window,
        "turns": sum(s["turns"] for s in by_providers),
        "first_audio_s": _percentiles(first_all),
        "voice_to_voice_s": _percentiles(v2v_all),
        "by_providers": by_providers,
    }
