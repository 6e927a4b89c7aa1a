"""Helpers for the e2e tests: settings for a loopback server, caller speech, Twilio signatures."""

from __future__ import annotations

from pathlib import Path

from hanmadi.config import Settings
from hanmadi.net import free_port
from loopback_support import loopback_settings, twilio_signature, voice

AUTH_TOKEN = "e2e-auth-token-0123456789abcdef"
E2E_ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"

__all__ = ["AUTH_TOKEN", "E2E_ADMIN_TOKEN", "e2e_settings", "free_port", "sign", "voice"]


def e2e_settings(tmp_path: Path, port: int, **overrides: object) -> Settings:
    """A loopback server with the e2e auth and admin tokens."""
    return loopback_settings(
        tmp_path, port, **{"twilio_auth_token": AUTH_TOKEN, "admin_token": E2E_ADMIN_TOKEN, **overrides}
    )


def sign(url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio computes it, with the e2e auth token."""
    return twilio_signature(AUTH_TOKEN, url, params)
