"""Simulated providers: a scripted streaming LLM, a latency-profile TTS and STT, and sinks with a send latency.

These are real implementations of the interfaces in :mod:`hanmadi.providers.base`, used by tests, the strategies
bench and the load generator — the way httpx ships ``MockTransport``. Times are seconds on the monotonic clock;
audio is real 8 kHz PCM16 (a quiet, syllable-modulated tone) so the telephony path can encode it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence

import numpy as np

from hanmadi.providers.base import AudioChunk, Message, ProviderError, ToolCall, ToolSpec, Transcript

SAMPLE_RATE = 8000

TextSeconds = Callable[[str], float | None] | Mapping[str, float] | float | None
# One model round with tools: text chunks and tool calls at their times (seconds since the round's stream started).
ToolRound = Sequence[tuple[float, str | ToolCall]]


def default_tts_latency(text: str) -> float:
    """A plausible cloud-TTS latency: 0.15 s plus 20 ms per character."""
    return 0.15 + 0.02 * len(text)


def default_audio_s(text: str) -> float:
    """Spoken length of Korean text: about 0.12 s per (non-space) character."""
    return 0.12 * max(1, len(text.replace(" ", "")))


def _resolve(spec: TextSeconds, text: str, default: Callable[[str], float] | None) -> float | None:
    if spec is None:
        return default(text) if default else None
    if isinstance(spec, int | float):
        return float(spec)
    if isinstance(spec, Mapping):
        if text in spec:
            return float(spec[text])
        return default(text) if default else None
    value = spec(text)
    if value is None:
        return default(text) if default else None
    return float(value)


# The audio is a pure function of its arguments; under load the same few sentences are synthesized thousands of times.
@functools.lru_cache(maxsize=256)
def speech_like_pcm(text: str, seconds: float, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Real PCM16 samples of ``seconds``: a quiet voiced tone modulated at a syllable rate, deterministic per text."""
    n = max(0, round(seconds * sample_rate))
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    f0 = 140.0 + 80.0 * rng.random()
    voiced = np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(2 * np.pi * 2 * f0 * t) + 0.25 * np.sin(2 * np.pi * 3 * f0 * t)
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4.0 * t))  # ~4 syllables a second
    signal = 2000.0 * envelope * voiced + 150.0 * rng.standard_normal(n)
    return np.clip(signal, -32768, 32767).astype("<i2").tobytes()


class ScriptedLLM:
    """A streaming LLM that releases text chunks at scripted times (seconds since the stream started).

    Without a script it answers the last user message with a short canned Korean reply, streamed token by token.
    ``fail_after_s`` makes the stream die with :class:`ProviderError` at that time, before it ends normally.

    With tools (:meth:`stream_with_tools`), ``tool_rounds`` scripts the model's rounds of one turn: round *n* is
    played when the conversation since the caller's last words holds *n* assistant messages with tool calls (so
    round 0 answers the caller, round 1 the first tool results…). Past the scripted rounds, or without them, the
    answer is the plain script. ``tool_requests`` keeps every conversation it was asked to continue with tools.
    """

    def __init__(
        self,
        name: str = "simulated",
        script: Sequence[tuple[float, str]] | None = None,
        *,
        fail_after_s: float | None = None,
        first_token_s: float = 0.2,
        token_s: float = 0.04,
        tool_rounds: Sequence[ToolRound] = (),
    ) -> None:
        self.name = name
        self.script = list(script) if script is not None else None
        self.fail_after_s = fail_after_s
        self.first_token_s = first_token_s
        self.token_s = token_s
        self.tool_rounds = [list(r) for r in tool_rounds]
        self.tool_requests: list[tuple[list[Message], list[ToolSpec]]] = []

    @classmethod
    def from_sentences(
        cls,
        sentences: Sequence[tuple[float, str]],
        *,
        name: str = "simulated",
        token_chars: int = 3,
        fail_after_s: float | None = None,
    ) -> ScriptedLLM:
        """Build from ``(emit_s, sentence)`` pairs: each sentence streams in small tokens that end at ``emit_s``.

        Tokens of sentence *i* are spread evenly between the previous sentence's ``emit_s`` and its own; a space
        joins sentences, at the start of the next sentence's first token.
        """
        script: list[tuple[float, str]] = []
        prev = 0.0
        for i, (emit_s, sentence) in enumerate(sentences):
            text = sentence if i == 0 else " " + sentence
            tokens = [text[k : k + token_chars] for k in range(0, len(text), token_chars)] or [""]
            if i > 0 and tokens[0] == " " and len(tokens) > 1:
                tokens = [tokens[0] + tokens[1], *tokens[2:]]
            span = max(0.0, emit_s - prev)
            for k, token in enumerate(tokens):
                script.append((prev + span * (k + 1) / len(tokens), token))
            prev = max(prev, emit_s)
        return cls(name, script, fail_after_s=fail_after_s)

    def canned_reply(self, messages: Sequence[Message]) -> str:
        """The reply used without a script: a polite echo of the caller's last words."""
        said = next((m.content.strip() for m in reversed(messages) if m.role == "user" and m.content.strip()), "")
        if not said:
            return "안녕하세요, 무엇을 도와드릴까요?"
        return f"네, '{said}'라고 말씀하셨네요. 더 도와드릴 일이 있을까요?"

    def _default_script(self, messages: Sequence[Message]) -> list[tuple[float, str]]:
        text = self.canned_reply(messages)
        tokens = [text[k : k + 2] for k in range(0, len(text), 2)]
        return [(self.first_token_s + k * self.token_s, tok) for k, tok in enumerate(tokens)]

    async def stream_with_tools(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[str | ToolCall]:
        """Play the tool round the conversation is at (see the class docstring); text-only past the rounds."""
        self.tool_requests.append((list(messages), list(tools)))
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        round_index = sum(1 for m in messages[last_user + 1 :] if m.role == "assistant" and m.tool_calls)
        if round_index < len(self.tool_rounds):
            started = time.monotonic()
            for at_s, item in self.tool_rounds[round_index]:
                await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
                yield item
            return
        async for chunk in self.stream(messages):
            yield chunk

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        """Yield the scripted chunks at their times; raise ``ProviderError`` at ``fail_after_s`` if set."""
        started = time.monotonic()
        script = self.script if self.script is not None else self._default_script(messages)
        for at_s, chunk in script:
            if self.fail_after_s is not None and at_s > self.fail_after_s:
                await asyncio.sleep(max(0.0, started + self.fail_after_s - time.monotonic()))
                raise ProviderError(self.name, "stream_broken", f"simulated failure at {self.fail_after_s:.2f}s")
            await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
            yield chunk
        if self.fail_after_s is not None:
            await asyncio.sleep(max(0.0, started + self.fail_after_s - time.monotonic()))
            raise ProviderError(self.name, "stream_broken", f"simulated failure at {self.fail_after_s:.2f}s")

    async def warm_up(self) -> None:
        """Nothing to load before the first call."""

    async def aclose(self) -> None:
        """Nothing to release."""


class SimulatedTTS:
    """A TTS with a latency profile, real 8 kHz PCM16 audio of a chosen length, streaming and failure injection.

    ``latency``/``audio_s``/``ttfb_s`` are each a number, a ``{text: seconds}`` mapping or a callable of the text.
    Without ``ttfb_s`` the whole sentence comes as one chunk after ``latency``; with it, the first of
    ``stream_chunks`` chunks comes after ``ttfb_s`` and the rest spread over the remaining latency. A text in
    ``fail_texts`` (or the n-th call in ``fail_calls``, counting from 0) raises ``ProviderError`` at the end of its
    latency — after ``fail_after_chunks`` chunks when streaming; one in ``stall_texts``/``stall_calls`` never answers.
    ``in_flight``/``max_in_flight`` count concurrent synthesis calls.
    """

    def __init__(
        self,
        name: str = "simulated",
        latency: TextSeconds = None,
        audio_s: TextSeconds = None,
        ttfb_s: TextSeconds = None,
        *,
        stream_chunks: int = 4,
        fail_texts: Collection[str] = (),
        fail_calls: Collection[int] = (),
        fail_after_chunks: int = 0,
        stall_texts: Collection[str] = (),
        stall_calls: Collection[int] = (),
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        self.name = name
        self.latency = latency
        self.audio_s = audio_s
        self.ttfb_s = ttfb_s
        self.stream_chunks = max(1, stream_chunks)
        self.fail_texts = set(fail_texts)
        self.fail_calls = set(fail_calls)
        self.fail_after_chunks = fail_after_chunks
        self.stall_texts = set(stall_texts)
        self.stall_calls = set(stall_calls)
        self.sample_rate = sample_rate
        self.calls: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def latency_for(self, text: str) -> float:
        """Seconds from the request to the last chunk."""
        value = _resolve(self.latency, text, default_tts_latency)
        return default_tts_latency(text) if value is None else value

    def audio_s_for(self, text: str) -> float:
        """Seconds of audio produced for ``text``."""
        value = _resolve(self.audio_s, text, default_audio_s)
        return default_audio_s(text) if value is None else value

    def ttfb_for(self, text: str) -> float | None:
        """Seconds to the first chunk when streaming, or None for a one-chunk TTS."""
        return _resolve(self.ttfb_s, text, None)

    def _chunks(self, text: str, parts: int) -> list[AudioChunk]:
        pcm = speech_like_pcm(text, self.audio_s_for(text), self.sample_rate)
        samples = len(pcm) // 2
        bounds = [round(samples * k / parts) * 2 for k in range(parts + 1)]
        return [AudioChunk(pcm[a:b], self.sample_rate) for a, b in itertools.pairwise(bounds)]

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """Yield ``text``'s audio on the configured schedule (see the class docstring)."""
        call = len(self.calls)
        self.calls.append(text)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            started = time.monotonic()
            if text in self.stall_texts or call in self.stall_calls:
                await asyncio.Event().wait()  # never answers; the caller's timeout ends it
            latency = self.latency_for(text)
            ttfb = self.ttfb_for(text)
            fails = text in self.fail_texts or call in self.fail_calls
            parts = self.stream_chunks if ttfb is not None else 1
            chunks = self._chunks(text, parts)
            first = min(ttfb, latency) if ttfb is not None else latency
            times = [first + (latency - first) * k / max(1, parts - 1) for k in range(parts)] if parts > 1 else [first]
            for k, (at_s, chunk) in enumerate(zip(times, chunks, strict=True)):
                if fails and k >= self.fail_after_chunks:
                    await asyncio.sleep(max(0.0, started + latency - time.monotonic()))
                    raise ProviderError(self.name, "http_500", "simulated failure")
                await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
                yield chunk
        finally:
            self.in_flight -= 1

    async def warm_up(self) -> None:
        """Nothing to load before the first call."""

    async def aclose(self) -> None:
        """Nothing to release."""


class SimulatedSTTStream:
    """One call's simulated recognizer: reveals the turn's scripted text word by word as audio is pushed."""

    def __init__(self, stt: SimulatedSTT, sample_rate: int) -> None:
        self._stt = stt
        self.sample_rate = sample_rate
        self.turn = 0
        self._audio_s = 0.0  # stream time, like a real recogniser's: it runs on across turns
        self._turn_start_s = 0.0
        self._words_shown = 0
        self.closed = False

    def _text(self) -> str:
        return self._stt.transcript_for(self.turn)

    async def push(self, pcm: bytes) -> list[Transcript]:
        """Feed PCM16 audio; a partial result appears every ``partial_every_s`` seconds of audio."""
        self._audio_s += len(pcm) / 2 / self.sample_rate
        words = self._text().split()
        due = min(len(words), int((self._audio_s - self._turn_start_s) / self._stt.partial_every_s))
        if due <= self._words_shown:
            return []
        self._words_shown = due
        return [Transcript(" ".join(words[:due]), is_final=False, audio_s=self._audio_s)]

    async def finalize(self) -> Transcript:
        """The turn's full scripted text; the next call starts the next turn."""
        result = Transcript(self._text(), is_final=True, audio_s=self._audio_s)
        self.turn += 1
        self._turn_start_s = self._audio_s
        self._words_shown = 0
        return result

    async def aclose(self) -> None:
        """Nothing to release; marks the stream closed."""
        self.closed = True


_DEFAULT_LINES = ("안녕하세요, 예약 좀 변경하고 싶어요.", "내일 오후 세 시로 가능할까요?", "네, 감사합니다.")


def _default_transcript(turn: int) -> str:
    return _DEFAULT_LINES[turn % len(_DEFAULT_LINES)]


class SimulatedSTT:
    """A speech-to-text service whose transcripts are scripted per turn (a list consumed in order, or a callable).

    Without a script it cycles through a few short Korean caller lines, so a simulated call can go on.
    """

    def __init__(
        self,
        transcripts: Sequence[str] | Callable[[int], str] | None = None,
        *,
        name: str = "simulated",
        partial_every_s: float = 0.4,
    ) -> None:
        self.name = name
        self.transcripts = transcripts if transcripts is not None else _default_transcript
        self.partial_every_s = partial_every_s

    def transcript_for(self, turn: int) -> str:
        """The caller's words in turn ``turn`` (empty once a scripted list runs out)."""
        if callable(self.transcripts):
            return self.transcripts(turn)
        return self.transcripts[turn] if turn < len(self.transcripts) else ""

    async def open(self, sample_rate: int = SAMPLE_RATE) -> SimulatedSTTStream:
        """Start a recognizer for one call."""
        return SimulatedSTTStream(self, sample_rate)

    async def warm_up(self) -> None:
        """Nothing to load before the first call."""

    async def aclose(self) -> None:
        """Nothing to release."""


class ListSink:
    """An engine sink that records what it is sent: ``chunks`` as ``(index, chunk)`` and ``marks`` in order."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, AudioChunk]] = []
        self.marks: list[int] = []
        self._sending = 0
        self.max_concurrent_sends = 0

    async def send_audio(self, index: int, chunk: AudioChunk) -> None:
        """Record one chunk of sentence ``index``."""
        self._sending += 1
        self.max_concurrent_sends = max(self.max_concurrent_sends, self._sending)
        try:
            await self._deliver(index, chunk)
            self.chunks.append((index, chunk))
        finally:
            self._sending -= 1

    async def _deliver(self, index: int, chunk: AudioChunk) -> None:
        await asyncio.sleep(0)

    async def send_mark(self, index: int) -> None:
        """Record the end of sentence ``index``."""
        self.marks.append(index)

    @property
    def order(self) -> list[int]:
        """Sentence indexes in the order their last chunk was marked."""
        return list(self.marks)

    def chunk_order(self) -> list[int]:
        """Sentence index of every chunk, in arrival order."""
        return [index for index, _ in self.chunks]

    def audio_s(self, index: int | None = None) -> float:
        """Seconds of audio received (for one sentence, or in all)."""
        return sum(c.duration_s for i, c in self.chunks if index is None or i == index)


class TimedSink(ListSink):
    """A :class:`ListSink` with a send latency: ``send_s`` once per sentence, paid on its first chunk.

    That models the seed's measurement (encode + websocket send ≈ 0.07 s a sentence) and, with a streaming TTS,
    makes the first chunk of a sentence reach the caller ``send_s`` after it is handed over.
    """

    def __init__(self, send_s: float = 0.0) -> None:
        super().__init__()
        self.send_s = send_s
        self._started: set[int] = set()

    async def _deliver(self, index: int, chunk: AudioChunk) -> None:
        if index not in self._started:
            self._started.add(index)
            await asyncio.sleep(self.send_s)
        else:
            await asyncio.sleep(0)
