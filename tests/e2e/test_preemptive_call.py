"""Preemptive generation over a real call: kept when the final transcript confirms the partial, dropped otherwise."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from e2e_support import AUTH_TOKEN, e2e_settings, free_port, voice
from test_calls import stored_call

from hanmadi import metrics
from hanmadi.loopback import serve_in_thread
from hanmadi.providers.base import STT, Transcript
from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedTTS
from hanmadi.server import Providers
from hanmadi.telephony.caller import CallerConfig, place_call

pytestmark = pytest.mark.e2e


def preemptive_count(outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("hanmadi_preemptive_total", {"outcome": outcome}) or 0.0


class RevisingSTTStream:
    """A recognizer that changes its mind at the end of the turn, as real ones do: partial "예약 확인해", final
    "예약 확인해 주세요" (the caller said more than the partial caught)."""

    async def push(self, pcm: bytes) -> list[Transcript]:
        return [Transcript("예약 확인해", is_final=False)]

    async def finalize(self) -> Transcript:
        return Transcript("예약 확인해 주세요", is_final=True)

    async def aclose(self) -> None:
        return None


class RevisingSTT:
    name = "revising"

    async def open(self, sample_rate: int = 8000) -> RevisingSTTStream:
        return RevisingSTTStream()


@pytest.mark.parametrize("expected", ["hit", "miss"])
async def test_preemptive_answer_is_used_only_when_the_final_words_match(tmp_path: Path, expected: str) -> None:
    port = free_port()
    settings = e2e_settings(tmp_path, port, preemptive_generation=True, endpointing_ms=500, preemptive_pause_ms=200)
    stt: STT = SimulatedSTT(lambda turn: "예약 확인해 주세요") if expected == "hit" else RevisingSTT()
    providers = Providers(stt=stt, llm=ScriptedLLM(), tts=SimulatedTTS())
    speech_s = 1.6
    before = preemptive_count(expected)
    with serve_in_thread(settings, port=port, providers=providers) as url:
        result = await place_call(
            CallerConfig(url=url, utterances=[voice(speech_s)], auth_token=AUTH_TOKEN, turns=1, greeting_timeout_s=10)
        )
        await asyncio.sleep(0.3)
        call = await stored_call(settings.database_url, result.call_sid)
    assert result.turns[0].first_audio_ms is not None  # answered either way
    turn = next(t for t in call.turns if t.index == 1)
    assert turn.heard_text == "예약 확인해 주세요"
    assert turn.metrics["preemptive"] is (expected == "hit")
    assert preemptive_count(expected) == before + 1
