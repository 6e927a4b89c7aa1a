"""Helpers for the fault tests: loopback settings, caller speech, reading records, running ``hanmadi serve``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hanmadi.config import Settings
from hanmadi.net import free_port
from hanmadi.store.records import CallDetail
from loopback_support import loopback_settings, read_call, voice

AUTH_TOKEN = "faults-auth-token-0123456789abcdef"
ADMIN_TOKEN = "faults-admin-token-0123456789"

__all__ = ["ADMIN_TOKEN", "AUTH_TOKEN", "fault_settings", "free_port", "start_server", "stored_call", "voice"]


def fault_settings(tmp_path: Path, port: int, **overrides: object) -> Settings:
    """A loopback server with the fault tests' tokens (first-clause split off: sentence boundaries are scripted)."""
    values: dict[str, object] = {
        "twilio_auth_token": AUTH_TOKEN,
        "admin_token": ADMIN_TOKEN,
        "first_clause_split": False,
        **overrides,
    }
    return loopback_settings(tmp_path, port, **values)


async def stored_call(database_url: str, call_sid: str) -> CallDetail | None:
    """The call as the store has it, read with a fresh engine (as another process would)."""
    return await read_call(database_url, call_sid)


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
