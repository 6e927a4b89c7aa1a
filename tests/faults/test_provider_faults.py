"""Provider faults in whole calls over real sockets: the call always goes on.

TTS errors and timeouts on random sentences are skipped with the order kept; an LLM stream that dies mid-answer
is followed by the spoken fallback; an STT that fails once (or a Deepgram connection that drops) loses no turn.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from faults_support import AUTH_TOKEN, fault_settings, stored_call, voice

from hanmadi.loopback import serve_in_thread
from hanmadi.net import free_port
from hanmadi.providers.base import Message, ProviderError, Transcript
from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedSTTStream, SimulatedTTS
from hanmadi.server import Providers
from hanmadi.store.records import CallDetail
from hanmadi.telephony import twilio as tw
from hanmadi.telephony.caller import CallerConfig, CallResult, place_call

pytestmark = pytest.mark.e2e

SENTENCES = [f"{n} 번째 안내 문장입니다." for n in ("첫", "두", "세", "네", "다섯", "여섯")]


async def call_and_record(
    tmp_path: Path, providers: Providers, turns: int, answer_timeout_s: float = 8, **overrides: object
) -> tuple[CallResult, CallDetail]:
    port = free_port()
    settings = fault_settings(tmp_path, port, greeting="네.", **overrides)
    with serve_in_thread(settings, port=port, providers=providers) as url:
        result = await place_call(
            CallerConfig(
                url=url, utterances=[voice(1.0)], auth_token=AUTH_TOKEN, turns=turns, answer_timeout_s=answer_timeout_s
            )
        )
    # the server stopped: every record is written
    detail = await stored_call(settings.database_url, result.call_sid)
    assert detail is not None
    return result, detail


def marks_of(result: CallResult, turn: int) -> list[int]:
    """Sentence indexes of the marks the caller got for the server's ``turn``, in arrival order."""
    parsed = [tw.parse_mark_name(m.name) for m in result.marks]
    return [p[1] for p in parsed if p is not None and p[0] == turn]


async def test_tts_errors_and_timeouts_on_random_sentences_are_skipped_in_order(tmp_path: Path) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    failing = set(rng.sample(range(len(SENTENCES)), 2))
    stalling = {rng.choice([i for i in range(len(SENTENCES)) if i not in failing])}
    tts = SimulatedTTS(
        latency=lambda text: rng.uniform(0.05, 0.4),
        audio_s=0.3,
        fail_texts={SENTENCES[i] for i in failing},
        stall_texts={SENTENCES[i] for i in stalling},
    )
    llm = ScriptedLLM.from_sentences([(0.1 * (i + 1), s) for i, s in enumerate(SENTENCES)])
    providers = Providers(stt=SimulatedSTT(), llm=llm, tts=tts)
    result, detail = await call_and_record(tmp_path, providers, turns=2, tts_timeout_s=0.5, tts_retries=1)

    skipped = sorted(failing | stalling)
    kept = [i for i in range(len(SENTENCES)) if i not in skipped]
    why = f"seed {seed}: failing {sorted(failing)}, stalling {sorted(stalling)}"
    for server_turn in (1, 2):  # the greeting is turn 0
        turn = next(t for t in detail.turns if t.index == server_turn)
        assert turn.metrics["skipped"] == skipped, why
        assert turn.metrics["order"] == kept, why
        assert turn.spoken_text == " ".join(SENTENCES[i] for i in kept), why
        assert marks_of(result, server_turn) == kept, why  # what reached the caller, in order
    assert [t.timed_out for t in result.turns] == [False, False]
    assert detail.call.status == "completed"


class PerTurnLLM:
    """The n-th reply streams from the n-th LLM (the last one again after that)."""

    name = "simulated"

    def __init__(self, llms: Sequence[ScriptedLLM]) -> None:
        self.llms = list(llms)
        self.replies = 0

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        llm = self.llms[min(self.replies, len(self.llms) - 1)]
        self.replies += 1
        return llm.stream(messages)


async def test_llm_stream_dying_mid_answer_speaks_the_fallback_and_the_call_goes_on(tmp_path: Path) -> None:
    broken = ScriptedLLM.from_sentences(
        [(0.2, "네, 확인해 보겠습니다."), (0.8, "예약하신 날짜는 다음 주")], fail_after_s=0.5
    )
    llm = PerTurnLLM([broken, ScriptedLLM()])
    providers = Providers(stt=SimulatedSTT(), llm=llm, tts=SimulatedTTS(audio_s=0.4))
    result, detail = await call_and_record(tmp_path, providers, turns=2)

    fallback = fault_settings(tmp_path, 1).llm_fallback
    first, second = (next(t for t in detail.turns if t.index == i) for i in (1, 2))
    assert first.generated_text == f"네, 확인해 보겠습니다. {fallback}"  # the broken tail is never spoken
    assert first.spoken_text == first.generated_text
    assert "llm_error" in {e.kind for e in first.events}
    assert "말씀하셨네요" in second.spoken_text  # the next turn is answered normally
    assert [t.timed_out for t in result.turns] == [False, False]
    assert all(t.reply_audio_s > 0.5 for t in result.turns)
    assert detail.call.status == "completed"


class FlakySTT:
    """A simulated STT whose stream fails once on the first pushed speech frame and once in a chosen finalize."""

    name = "simulated"

    def __init__(self, fail_finalize: int) -> None:
        self.inner = SimulatedSTT()
        self.fail_finalize = fail_finalize
        self.failures: list[str] = []

    async def open(self, sample_rate: int = 8000) -> FlakyStream:
        return FlakyStream(self, await self.inner.open(sample_rate))


class FlakyStream:
    def __init__(self, stt: FlakySTT, inner: SimulatedSTTStream) -> None:
        self.stt, self.inner = stt, inner
        self.finalized = 0

    async def push(self, pcm: bytes) -> list[Transcript]:
        loud = len(pcm) >= 2 and float(np.abs(np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2")).mean()) > 1000
        if loud and "push" not in self.stt.failures:
            self.stt.failures.append("push")
            raise ProviderError("simulated", "connect", "connection lost while pushing")
        return await self.inner.push(pcm)

    async def finalize(self) -> Transcript:
        self.finalized += 1
        if self.finalized == self.stt.fail_finalize:
            self.stt.failures.append("finalize")
            raise ProviderError("simulated", "timeout", "no final transcript")
        return await self.inner.finalize()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_stt_failing_once_mid_turn_loses_no_turn_and_a_failed_finalize_loses_only_its_own(
    tmp_path: Path,
) -> None:
    stt = FlakySTT(fail_finalize=2)
    providers = Providers(stt=stt, llm=ScriptedLLM(), tts=SimulatedTTS(audio_s=0.4))
    result, detail = await call_and_record(tmp_path, providers, turns=3, answer_timeout_s=3)

    assert stt.failures == ["push", "finalize"]
    # turn 1 survived the failed push; turn 2's transcript was lost (no reply); turn 3 was answered
    assert [t.timed_out for t in result.turns] == [False, True, False]
    heard = [t.heard_text for t in sorted(detail.turns, key=lambda t: t.index) if t.index > 0]
    assert heard == ["안녕하세요, 예약 좀 변경하고 싶어요.", "내일 오후 세 시로 가능할까요?"]
    assert detail.call.status == "completed"


async def test_deepgram_connection_dropping_mid_call_reconnects_and_the_turn_survives(tmp_path: Path) -> None:
    from vendor_servers import DEEPGRAM_KEY, VendorServers

    from hanmadi.providers.deepgram import DeepgramSTT

    vendors = VendorServers()
    vendors.start()
    try:
        vendors.control.dg_mode = "drop_once"
        vendors.control.dg_drop_after_bytes = 16000 * 2  # 2 s of 8 kHz PCM16: about mid first utterance
        stt = DeepgramSTT(DEEPGRAM_KEY, vendors.ws_url, timeout_s=5)
        providers = Providers(stt=stt, llm=ScriptedLLM(), tts=SimulatedTTS(audio_s=0.4))
        result, detail = await call_and_record(tmp_path, providers, turns=1)
        assert vendors.control.dg_dropped == 1
        assert len(vendors.control.requests) == 2  # one reconnect, in the same call
    finally:
        vendors.stop()
    assert [t.timed_out for t in result.turns] == [False]
    turns = [t for t in detail.turns if t.index > 0]
    assert len(turns) == 1 and all(t.heard_text and "말씀하셨네요" in t.spoken_text for t in turns)
