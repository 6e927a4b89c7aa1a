"""Helpers for the fault tests: loopback settings, caller speech, reading records, running ``hanmadi serve``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy.ext.asyncio import async_sessionmaker

from hanmadi.config import Settings
from hanmadi.store.records import CallDetail
from hanmadi.store.repository import create_engine_for, get_call

AUTH_TOKEN = "faults-auth-token-0123456789abcdef"
ADMIN_TOKEN = "faults-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fault_settings(tmp_path: Path, port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "stt": "simulated",
        "llm": "simulated",
        "tts": "simulated",
        "twilio_auth_token": AUTH_TOKEN,
        "public_url": f"http://127.0.0.1:{port}",
        "port": port,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}",
        "admin_token": ADMIN_TOKEN,
        "drain_timeout_s": 2.0,
        "endpointing_ms": 300,
        "min_speech_ms": 100,
        "barge_in_min_speech_ms": 200,
        "first_clause_split": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def voice(seconds: float) -> bytes:
    """Caller speech the VAD hears: a vowel-like harmonic signal, 8 kHz PCM16."""
    t = np.arange(int(8000 * seconds)) / 8000
    sig = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate([140, 280, 420, 700, 1100]))
    return bytes((sig * 6000).astype("<i2").tobytes())


async def stored_call(database_url: str, call_sid: str) -> CallDetail | None:
    """The call as the store has it, read with a fresh engine (as another process would)."""
    engine = create_engine_for(database_url)
    try:
        async with async_sessionmaker(engine)() as session:
            return await get_call(session, call_sid)
    finally:
        await engine.dispose()


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """``hanmadi serve`` as a child process on 127.0.0.1:``port``; returns once /healthz answers."""
    full_env = {**os.environ, **env, "HANMADI_HOST": "127.0.0.1", "HANMADI_PORT": str(port)}
    hanmadi = Path(sys.executable).with_name("hanmadi")
    with log.open("ab") as out:
        process = subprocess.Popen([str(hanmadi), "serve", "--log-level", "INFO"], env=full_env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hanmadi serve exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"hanmadi serve did not answer /healthz:\n{log.read_text()[-3000:]}")


def server_env(tmp_path: Path, port: int, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``hanmadi serve`` child with simulated providers."""
    return {
        "HANMADI_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "HANMADI_ADMIN_TOKEN": ADMIN_TOKEN,
        "HANMADI_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HANMADI_STT": "simulated",
        "HANMADI_LLM": "simulated",
        "HANMADI_TTS": "simulated",
        "HANMADI_DATABASE_URL": database_url,
        "HANMADI_ENDPOINTING_MS": "300",
        "HANMADI_MIN_SPEECH_MS": "100",
        "HANMADI_BARGE_IN_MIN_SPEECH_MS": "200",
        "HANMADI_RECORDINGS_DIR": str(tmp_path / "recordings"),
        **extra,
    }
