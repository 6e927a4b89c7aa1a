"""Helpers for the e2e tests: settings for a loopback server, caller speech, Twilio signatures."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
from twilio.request_validator import RequestValidator

from hanmadi.config import Settings

AUTH_TOKEN = "e2e-auth-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def e2e_settings(tmp_path: Path, port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "stt": "simulated",
        "llm": "simulated",
        "tts": "simulated",
        "twilio_auth_token": AUTH_TOKEN,
        "public_url": f"http://127.0.0.1:{port}",
        "port": port,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}",
        "admin_token": "admin-e2e",
        "drain_timeout_s": 2.0,
        "endpointing_ms": 300,
        "min_speech_ms": 100,
        "barge_in_min_speech_ms": 200,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def voice(seconds: float) -> bytes:
    """Caller speech the VAD hears: a vowel-like harmonic signal, 8 kHz PCM16."""
    t = np.arange(int(8000 * seconds)) / 8000
    sig = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate([140, 280, 420, 700, 1100]))
    return bytes((sig * 6000).astype("<i2").tobytes())


def sign(url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio computes it."""
    return str(RequestValidator(AUTH_TOKEN).compute_signature(url, params))
