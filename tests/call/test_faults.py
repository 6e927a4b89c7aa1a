"""Provider faults inside a call: one layer retries, each failure is counted once (reproducer p5)."""

from __future__ import annotations

import httpx
from call_harness import AnswersLLM, CallHarness

from hanmadi.metrics import REGISTRY
from hanmadi.providers.elevenlabs import ElevenLabsTTS
from hanmadi.providers.simulated import SimulatedSTT


def errors(provider: str, reason: str) -> float:
    return REGISTRY.get_sample_value("hanmadi_provider_errors_total", {"provider": provider, "reason": reason}) or 0


async def test_a_failing_sentence_is_retried_once_and_each_failure_counted_once() -> None:
    """p5: the vendor retried and counted, then the engine retried and counted again: 4 requests, +4."""
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(500, text="boom")

    tts = ElevenLabsTTS("key", "voice", client=httpx.AsyncClient(transport=httpx.MockTransport(answer)))
    before = errors("elevenlabs", "http_5xx")
    skipped = REGISTRY.get_sample_value("hanmadi_sentences_skipped_total", {"reason": "http_5xx"}) or 0
    async with CallHarness(
        stt=SimulatedSTT(["안녕하세요"]), llm=AnswersLLM("안녕하세요."), tts=tts, tts_retries=1
    ) as h:
        turn = await h.say()
        await h.reply_done(turn)
        report = h.call.turns[turn].report
        assert report is not None and [s.status for s in report.sentences] == ["skipped"]
    assert len(requests) == 2  # the first attempt and the engine's one retry
    assert errors("elevenlabs", "http_5xx") == before + 2  # one count per failed request
    assert REGISTRY.get_sample_value("hanmadi_sentences_skipped_total", {"reason": "http_5xx"}) == skipped + 1
