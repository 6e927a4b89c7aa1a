"""Korean end-of-turn inside a whole call: the STT's partials reach the turn detector, and the turn records its rule.

In memory (list transport, simulated providers, real voice frames through the real VAD); the recogniser is scripted
in stream time, like a streaming vendor whose partial for a word arrives as soon as its audio has been heard. Frames
go in one at a time, each once the STT worker has taken every block handed over (``HANMADI_STT_BLOCK_MS``, 100 ms by
default), as they do in a call that keeps up.
"""

from __future__ import annotations

from call_harness import CallHarness, until

from hanmadi.providers.base import Transcript
from loopback_support import voice


def korean_call(stt: TimedSTT) -> CallHarness:
    return CallHarness(stt=stt, endpointing_ms=500, endpointing_final_ms=250, endpointing_connective_ms=900)


class TimedSTT:
    """Partials scripted by stream time: ``(from_s, text)`` — from ``from_s`` on, the words heard are ``text``."""

    name = "timed"

    def __init__(self, script: list[tuple[float, str]]) -> None:
        self.script = script
        self.streams: list[TimedStream] = []

    async def open(self, sample_rate: int = 8000) -> TimedStream:
        stream = TimedStream(self.script, sample_rate)
        self.streams.append(stream)
        return stream


class TimedStream:
    def __init__(self, script: list[tuple[float, str]], sample_rate: int) -> None:
        self.script = script
        self.rate = sample_rate
        self.audio_s = 0.0
        self.turn_text_from = ""  # the words of earlier turns, already finalized

    def _words(self) -> str:
        text = ""
        for from_s, words in self.script:
            if self.audio_s >= from_s:
                text = words
        return text

    async def push(self, pcm: bytes) -> list[Transcript]:
        self.audio_s += len(pcm) / 2 / self.rate
        words = self._words()
        if not words or words == self.turn_text_from:
            return []
        return [Transcript(words, is_final=False, audio_s=self.audio_s)]

    async def finalize(self) -> Transcript:
        words = self._words()
        self.turn_text_from = words
        return Transcript(words, is_final=True, audio_s=self.audio_s)

    async def aclose(self) -> None:
        pass


async def paced(h: CallHarness, stt: TimedSTT, pcm: bytes) -> None:
    """Feed ``pcm`` frame by frame, each once the STT has heard every block handed over (the call keeping up)."""
    for i in range(0, len(pcm), 320):
        h.frames(pcm[i : i + 320])
        await until(lambda: h.call.stt_feed.queued == 0, "the STT heard what it was handed")


async def say(h: CallHarness, stt: TimedSTT, seconds: float, pause_s: float = 1.0) -> None:
    await paced(h, stt, voice(seconds) + bytes(int(16000 * pause_s)))


async def test_a_question_ends_the_turn_after_the_shorter_silence() -> None:
    stt = TimedSTT([(0.1, "주차는 가능한가요")])
    async with korean_call(stt) as h:
        await say(h, stt, 0.6)
        (turn,) = h.call.turns
        assert turn.heard_text == "주차는 가능한가요"
        assert (turn.end_rule, turn.endpointing_s) == ("final", 0.26)  # 250 ms, on the 20 ms frame grid


async def test_without_an_ending_the_default_silence_ends_the_turn() -> None:
    stt = TimedSTT([(0.1, "내일 저녁 일곱 시")])
    async with korean_call(stt) as h:
        await say(h, stt, 0.6)
        (turn,) = h.call.turns
        assert (turn.end_rule, turn.endpointing_s) == ("default", 0.5)


async def test_a_connective_holds_the_turn_through_a_pause_the_default_would_cut() -> None:
    stt = TimedSTT([(0.1, "내일 가려고 하는데"), (1.5, "내일 가려고 하는데 주차 돼요")])
    async with korean_call(stt) as h:
        # a pause longer than HANMADI_ENDPOINTING_MS, shorter than the connective's wait
        await say(h, stt, 0.6, pause_s=0.7)
        assert h.call.turns == []  # the caller is mid-sentence: no turn yet
        await say(h, stt, 0.6)
        (turn,) = h.call.turns
        assert (turn.heard_text, turn.end_rule) == ("내일 가려고 하는데 주차 돼요", "final")
