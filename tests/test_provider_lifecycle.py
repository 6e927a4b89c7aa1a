"""The server warms every provider up before the first call and closes each once at shutdown (``Lifecycle``); one
that fails to close does not keep the others open, and a custom provider without the hooks is left alone."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hanmadi.net import free_port
from hanmadi.providers.base import AudioChunk, Lifecycle
from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedTTS
from hanmadi.server import Providers, create_app
from loopback_support import loopback_settings


class Counted:
    """Records the lifecycle calls it gets (mixed in before a simulated provider)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def warm_up(self) -> None:
        self.calls.append("warm_up")

    async def aclose(self) -> None:
        self.calls.append("aclose")


class CountedSTT(Counted, SimulatedSTT):
    pass


class FailingCloseLLM(Counted, ScriptedLLM):
    async def aclose(self) -> None:
        await super().aclose()
        raise RuntimeError("pool already gone")


class BareTTS:
    """A custom TTS with neither hook."""

    name = "bare"

    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        return SimulatedTTS().synthesize(text)


async def test_providers_are_warmed_up_then_each_closed_once_even_when_one_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stt, llm, tts = CountedSTT(), FailingCloseLLM(), BareTTS()
    assert not isinstance(tts, Lifecycle)
    settings = loopback_settings(tmp_path, free_port(), twilio_auth_token="t" * 32)
    app = create_app(settings, providers=Providers(stt=stt, llm=llm, tts=tts), use_recorder=False)
    caplog.set_level(logging.WARNING, logger="hanmadi.server")
    async with app.router.lifespan_context(app):
        assert (stt.calls, llm.calls) == (["warm_up"], ["warm_up"])  # before the first call
    assert (stt.calls, llm.calls) == (["warm_up", "aclose"], ["warm_up", "aclose"])
    assert any("FailingCloseLLM did not close cleanly: pool already gone" in r.getMessage() for r in caplog.records)
