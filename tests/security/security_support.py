"""Helpers for the security tests: a loopback server whose secrets are recognisable, and a catch-all log capture."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hanmadi.config import Settings

SECRETS = {
    "twilio_auth_token": "SECRET-twilio-auth-7f3a9c",
    "admin_token": "SECRET-admin-token-51bd0e",
    "openai_api_key": "SECRET-openai-key-c0ffee",
    "deepgram_api_key": "SECRET-deepgram-key-d00d",
    "elevenlabs_api_key": "SECRET-elevenlabs-key-beef",
    "google_api_key": "SECRET-google-key-f00d",
    "clova_client_secret": "SECRET-clova-secret-abba",
}
AUTH_TOKEN = SECRETS["twilio_auth_token"]
ADMIN_TOKEN = SECRETS["admin_token"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def secure_settings(tmp_path: Path, port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {
        **SECRETS,
        "stt": "simulated",
        "llm": "simulated",
        "tts": "simulated",
        "public_url": f"http://127.0.0.1:{port}",
        "port": port,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}",
        "drain_timeout_s": 2.0,
        "endpointing_ms": 300,
        "min_speech_ms": 100,
        "barge_in_min_speech_ms": 200,
        "greeting": "네.",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def voice(seconds: float) -> bytes:
    """Caller speech the VAD hears: a vowel-like harmonic signal, 8 kHz PCM16."""
    t = np.arange(int(8000 * seconds)) / 8000
    sig = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate([140, 280, 420, 700, 1100]))
    return bytes((sig * 6000).astype("<i2").tobytes())


class Everything(logging.Handler):
    """Every record, formatted with its arguments and any traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def all_logs() -> Iterator[Everything]:
    """Capture ALL logs at DEBUG: the root logger and the loggers that do not propagate (uvicorn's)."""
    handler = Everything()
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "hanmadi")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
