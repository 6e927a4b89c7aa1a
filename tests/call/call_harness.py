"""An in-memory call: a real CallSession over a list transport, simulated providers and a clock the test moves.

No socket, no sleeps: the test speaks by feeding Media Streams events (real voice frames through the real VAD),
plays Twilio by echoing marks (``play``), moves the playback clock with ``clock.advance``, and waits for
behaviour with :func:`until` (it yields to the event loop; it never measures time). A whole call runs in
milliseconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any

from hanmadi.call import CallSession
from hanmadi.config import Settings
from hanmadi.providers.base import LLM, STT, TTS, Message
from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedSTTStream, SimulatedTTS
from hanmadi.store.records import CallEnd, CallStart, TurnRecord
from hanmadi.store.writer import Recorder
from hanmadi.telephony import audio
from hanmadi.telephony import twilio as tw
from loopback_support import voice

STREAM_SID = "MZtest"


def call_settings(**overrides: object) -> Settings:
    """Simulated providers, no greeting, quick turn taking, nothing read from the environment's .env file."""
    values: dict[str, object] = {
        "stt": "simulated",
        "llm": "simulated",
        "tts": "simulated",
        "dev": True,
        "greeting": "",
        "endpointing_ms": 300,
        "endpointing_final_ms": 300,
        "endpointing_connective_ms": 300,
        "min_speech_ms": 100,
        "barge_in_min_speech_ms": 200,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def start_event(call_sid: str = "CAtest") -> tw.Start:
    return tw.Start(STREAM_SID, call_sid, "ACtest", {}, tw.MediaFormat("audio/x-mulaw", 8000, 1), ("inbound",))


class ListRecorder:
    """The Recorder's three calls, kept in a list (the store is tested on its own)."""

    def __init__(self) -> None:
        self.starts: list[CallStart] = []
        self.turns: list[TurnRecord] = []
        self.ends: list[CallEnd] = []

    def call_started(self, start: CallStart) -> None:
        self.starts.append(start)

    def turn_finished(self, turn: TurnRecord) -> None:
        self.turns.append(turn)

    def call_ended(self, end: CallEnd) -> None:
        self.ends.append(end)


class FakeClock:
    """The call's monotonic clock, moved only by the test."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ListTransport:
    """The WebSocket, as a list of the JSON messages sent. ``hold(kind)`` makes sends of that event wait (a socket
    slow to take it) until ``release(kind)``; ``on_send`` sees each message as it is appended."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.on_send: Callable[[dict[str, Any]], None] | None = None
        self._gates: dict[str, asyncio.Event] = {}
        self.waiting: set[str] = set()
        self.drain = False  # like a real socket: each send writes, then yields while it drains

    def hold(self, kind: str) -> None:
        self._gates[kind] = asyncio.Event()

    def release(self, kind: str) -> None:
        self._gates.pop(kind).set()

    async def send_text(self, data: str) -> None:
        message = json.loads(data)
        gate = self._gates.get(message["event"])
        if gate is not None:
            self.waiting.add(message["event"])
            await gate.wait()
            self.waiting.discard(message["event"])
        self.sent.append(message)
        if self.on_send is not None:
            self.on_send(message)
        if self.drain:
            await asyncio.sleep(0)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def kinds(self) -> list[str]:
        """``media`` / ``clear`` / ``mark:t1s0`` … in the order sent."""
        return [m["event"] if m["event"] != "mark" else "mark:" + m["mark"]["name"] for m in self.sent]

    def marks(self) -> list[str]:
        return [m["mark"]["name"] for m in self.sent if m["event"] == "mark"]

    def media_bytes(self) -> int:
        return sum(len(tw.parse_message(json.dumps(m)).payload) for m in self.sent if m["event"] == "media")  # type: ignore[union-attr]


async def until(predicate: Callable[[], bool], what: str = "condition", turns: int = 20000) -> None:
    """Yield to the event loop until ``predicate()`` holds (fails after ``turns`` loop turns, not after a time)."""
    for _ in range(turns):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


class AnswersLLM:
    """An LLM that answers each turn with the next of ``answers`` at once (the last one repeats)."""

    name = "answers"

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        yield answer


class CallHarness:
    """``async with CallHarness(...) as h:`` — ``h.call`` is the live CallSession."""

    def __init__(
        self,
        *,
        stt: STT | None = None,
        llm: LLM | None = None,
        tts: TTS | None = None,
        recorder: Recorder | None = None,
        call_sid: str = "CAtest",
        **settings: object,
    ) -> None:
        self.settings = call_settings(**settings)
        self.stt = stt or SimulatedSTT()
        self.llm = llm or ScriptedLLM(first_token_s=0.0, token_s=0.0)
        self.tts = tts or SimulatedTTS(latency=0.0)
        self.transport = ListTransport()
        self.clock = FakeClock()
        self.call = CallSession(
            settings=self.settings,
            stt=self.stt,
            llm=self.llm,
            tts=self.tts,
            transport=self.transport,
            start=start_event(call_sid),
            recorder=recorder,
            clock=self.clock,
        )
        self._chunk = 0
        self._echoed = 0

    async def __aenter__(self) -> CallHarness:
        await self.call.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.call.__aexit__(exc_type, exc, tb)

    # --- the caller's side ------------------------------------------------------------------------------

    def frames(self, pcm: bytes) -> None:
        """Feed PCM16 8 kHz audio as 20 ms media events."""
        ulaw = audio.pcm_bytes_to_ulaw(pcm)
        for frame in audio.frames(ulaw):
            self._chunk += 1
            self.call.on_event(tw.Media(STREAM_SID, "inbound", self._chunk, (self._chunk - 1) * 20, frame))

    def speak(self, seconds: float = 0.6) -> None:
        """The caller talks for ``seconds`` (voice the VAD hears) — the words are the STT's script."""
        self.frames(voice(seconds))

    def pause(self, seconds: float = 0.5) -> None:
        self.frames(bytes(int(8000 * seconds) * 2))

    async def say(self, seconds: float = 0.6) -> int:
        """The caller says one utterance and stops; returns the index of the turn it starts."""
        turns = len(self.call.turns)
        self.speak(seconds)
        self.pause(0.5)
        await until(lambda: len(self.call.turns) > turns, "a turn started")
        return len(self.call.turns) - 1

    def finalized(self) -> int:
        """How many utterances the STT worker has finalized (the simulated STT's turn counter)."""
        stream = self.call._stt_stream
        assert isinstance(stream, SimulatedSTTStream)
        return stream.turn

    # --- Twilio's side ------------------------------------------------------------------------------------

    def play(self) -> None:
        """Twilio played everything sent so far: echo every mark not yet echoed."""
        marks = self.transport.marks()
        for name in marks[self._echoed :]:
            self.call.on_event(tw.Mark(STREAM_SID, name))
        self._echoed = len(marks)

    async def reply_done(self, turn: int) -> None:
        """Wait until ``turn``'s reply has ended (its report is in)."""
        await until(lambda: self.call.turns[turn].report is not None, f"turn {turn} done")
