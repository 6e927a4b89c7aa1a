"""Helpers for the security tests: a loopback server whose secrets are recognisable, and a catch-all log capture."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hanmadi.config import Settings
from hanmadi.net import free_port
from loopback_support import loopback_settings, voice

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

__all__ = ["ADMIN_TOKEN", "AUTH_TOKEN", "SECRETS", "free_port", "secure_settings", "voice"]


def secure_settings(tmp_path: Path, port: int, **overrides: object) -> Settings:
    """A loopback server configured with every recognisable secret."""
    return loopback_settings(tmp_path, port, **{**SECRETS, "greeting": "네.", **overrides})


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
