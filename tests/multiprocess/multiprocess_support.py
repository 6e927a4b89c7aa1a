"""Several ``hanmadi serve`` processes on loopback sharing one PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hanmadi.net import free_port
from loopback_support import voice

AUTH_TOKEN = "multi-auth-token-0123456789abcdef"
ADMIN_TOKEN = "multi-admin-token-0123456789"
PG_ENV = "HANMADI_TEST_POSTGRES_URL"

__all__ = ["ADMIN_TOKEN", "AUTH_TOKEN", "PG_ENV", "free_port", "launch", "voice", "wait_healthy"]


def launch(database_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start ``hanmadi serve`` on 127.0.0.1:``port`` (simulated providers); does not wait for it."""
    env = {
        **os.environ,
        "HANMADI_HOST": "127.0.0.1",
        "HANMADI_PORT": str(port),
        "HANMADI_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "HANMADI_ADMIN_TOKEN": ADMIN_TOKEN,
        "HANMADI_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HANMADI_STT": "simulated",
        "HANMADI_LLM": "simulated",
        "HANMADI_TTS": "simulated",
        "HANMADI_DATABASE_URL": database_url,
        "HANMADI_GREETING": "네.",
        "HANMADI_ENDPOINTING_MS": "300",
        "HANMADI_MIN_SPEECH_MS": "100",
        "HANMADI_BARGE_IN_MIN_SPEECH_MS": "200",
        "HANMADI_DRAIN_TIMEOUT_S": "5",
    }
    hanmadi = Path(sys.executable).with_name("hanmadi")
    with log.open("ab") as out:
        return subprocess.Popen([str(hanmadi), "serve"], env=env, stdout=out, stderr=out)


def wait_healthy(process: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hanmadi serve exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"hanmadi serve did not answer /healthz:\n{log.read_text()[-3000:]}")
