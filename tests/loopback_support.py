"""Shared helpers for tests that run a real server on loopback: settings, caller speech, signatures, records."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker
from twilio.request_validator import RequestValidator

from hanmadi.bench.load.generator import caller_voice
from hanmadi.config import Settings
from hanmadi.store.records import CallDetail
from hanmadi.store.repository import create_engine_for, get_call


def loopback_settings(tmp_path: Path, port: int, **overrides: object) -> Settings:
    """A server on 127.0.0.1:``port`` with simulated providers, quick turn taking and a SQLite file in ``tmp_path``."""
    values: dict[str, object] = {
        "stt": "simulated",
        "llm": "simulated",
        "tts": "simulated",
        "public_url": f"http://127.0.0.1:{port}",
        "port": port,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}",
        "store_journal": tmp_path / "store-journal",
        "drain_timeout_s": 2.0,
        "endpointing_ms": 300,
        "min_speech_ms": 100,
        "barge_in_min_speech_ms": 200,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def voice(seconds: float) -> bytes:
    """Caller speech the VAD hears: a vowel-like harmonic signal, 8 kHz PCM16 (the load generator's own)."""
    return caller_voice(seconds)


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio computes it."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


async def read_call(database_url: str, call_sid: str) -> CallDetail | None:
    """The call as the store has it, read with a fresh engine (as another process would)."""
    engine = create_engine_for(database_url)
    try:
        async with async_sessionmaker(engine)() as session:
            return await get_call(session, call_sid)
    finally:
        await engine.dispose()
