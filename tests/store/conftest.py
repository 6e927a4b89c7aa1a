"""Backends for the store tests: every ``db_url`` test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``HANMADI_TEST_POSTGRES_URL`` (``.ci/run`` sets it). Each test gets its own fresh database,
created and dropped here, so runs in parallel with other suites never see each other's rows. Outside CI the
PostgreSQL half skips when the variable is unset; in CI (``CI`` set) it must run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hanmadi.store import repository
from hanmadi.store.records import CallEnd, CallStart, TurnRecord

PG_ENV = "HANMADI_TEST_POSTGRES_URL"
T0 = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)


async def _admin(url: URL) -> asyncpg.Connection:
    return await asyncpg.connect(
        user=url.username, password=url.password, host=url.host, port=url.port or 5432, database=url.database
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """A URL to an empty database (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'hanmadi.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: in CI the PostgreSQL store tests must run (see .ci/run)")
        pytest.skip(f"no PostgreSQL: set {PG_ENV}=postgresql+asyncpg://user:pass@host:5432/db to run these")
    url = make_url(base)
    name = f"hanmadi_t_{uuid.uuid4().hex[:12]}"
    conn = await _admin(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        await _drop(url, name)


async def _drop(url: URL, name: str) -> None:
    """Drop a test database. FORCE cannot end a backend still authenticating (its role is not known yet, so
    PostgreSQL refuses: "must be a member of the role whose process is being terminated"), as a store test's
    reconnecting writer can leave behind; such a backend is gone a moment later, so try again."""
    conn = await _admin(url)
    try:
        for attempt in range(50):
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except asyncpg.exceptions.InsufficientPrivilegeError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database's engine."""
    await repository.migrate(db_url)
    eng = repository.create_engine_for(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def start(sid: str, at: datetime = T0, providers: dict[str, str] | None = None) -> CallStart:
    return CallStart(
        call_sid=sid,
        stream_sid=f"MZ{sid}",
        from_number="+821012345678",
        to_number="+82215881234",
        started_at=at,
        providers=providers or {"stt": "vosk", "llm": "gemma", "tts": "espeak"},
    )


def turn(sid: str, index: int, **kw: Any) -> TurnRecord:
    began = kw.pop("started_at", T0 + timedelta(seconds=10 * index))
    fields: dict[str, Any] = {
        "call_sid": sid,
        "index": index,
        "started_at": began,
        "ended_at": began + timedelta(seconds=5),
        "heard_text": f"안녕하세요 {index}",
        "generated_text": "네, 무엇을 도와드릴까요? 말씀해 주세요.",
        "spoken_text": "네, 무엇을 도와드릴까요?",
        "barge_in": False,
        "dtmf": "",
        "first_audio_s": 0.5,
        "voice_to_voice_s": 0.8,
        "total_s": 2.0,
        "metrics": {"sentences": 2, "skipped": 0},
        "events": [
            {
                "t": 0.0,
                "kind": "pipeline_start",
                "index": None,
                "text": "realtime",
                "duration_s": None,
                "audio_s": None,
                "reason": None,
            },
            {
                "t": 0.2,
                "kind": "sentence",
                "index": 0,
                "text": "네,",
                "duration_s": None,
                "audio_s": None,
                "reason": None,
            },
            {"t": 0.45, "kind": "tts_done", "index": 0, "text": "", "duration_s": 0.25, "audio_s": 0.6, "reason": None},
        ],
    }
    fields.update(kw)
    return TurnRecord(**fields)


def end(sid: str, at: datetime = T0 + timedelta(minutes=1), **kw: Any) -> CallEnd:
    return CallEnd(
        call_sid=sid, ended_at=at, status=kw.pop("status", "completed"), end_reason=kw.pop("end_reason", "hangup"), **kw
    )


@pytest.fixture
def factories() -> tuple[Callable[..., CallStart], Callable[..., TurnRecord], Callable[..., CallEnd]]:
    """(start, turn, end) record factories."""
    return start, turn, end
