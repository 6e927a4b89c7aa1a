"""The real-time hybrid response path: LLM text → sentences → parallel TTS → in-order delivery to a sink.

One :class:`Reply` is one turn's answer. It owns every task it starts (a TaskGroup inside one driver task), so
:meth:`Reply.cancel` — barge-in, hang-up — ends them all before it returns. The building blocks (listen to the LLM,
admit a TTS job into the window, synthesize, send what is ready) are combined by a strategy from
:mod:`hanmadi.engine.strategies`; the default, ``realtime``, is the seed's design.

Ordering follows the seed: finished audio waits in ``completed_audio[index]`` and a single sender releases it
strictly by ``next_send_index`` — whatever is ready at the head goes out at once, then every consecutive ready
sentence. The single sender plays the seed's send lock: sends never overlap, and TTS jobs never wait on a send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar

from hanmadi.engine.reorder import ReorderBuffer
from hanmadi.engine.strategies import get_strategy
from hanmadi.engine.timeline import Timeline, TimelineEvent, TurnMetrics, compute_metrics
from hanmadi.providers.base import TTS, AudioChunk, ProviderError
from hanmadi.text.segmenter import SentenceSegmenter

log = logging.getLogger(__name__)

T = TypeVar("T")

SentenceStatus = Literal["sent", "skipped", "cancelled", "pending"]


class Sink(Protocol):
    """Where a reply's audio goes (the call's outbound audio). The engine knows nothing of Twilio."""

    async def send_audio(self, index: int, chunk: AudioChunk) -> None:
        """Send one chunk of sentence ``index``; chunks arrive in order."""
        ...

    async def send_mark(self, index: int) -> None:
        """Sentence ``index`` has been sent completely (called after its last chunk)."""
        ...


@dataclass(frozen=True)
class EngineConfig:
    """The engine's knobs (see :class:`hanmadi.config.Settings` for what each one means; the call layer builds
    this from the settings, the engine never sees them)."""

    strategy: str = "realtime"
    max_parallel_tts: int = 4
    max_buffered_audio_s: float = 30.0
    tts_timeout_s: float = 5.0
    tts_retries: int = 1
    first_clause_split: bool = True
    first_clause_min_chars: int = 25
    max_sentence_chars: int = 120
    lang: str = "ko"
    fallback_text: str = ""
    # written sentence → the text its TTS job is given (hanmadi.text.speaker: numbers, dates, … in words); the
    # timeline, the reports' ``text`` and the agent's history keep the written sentence. None: the written text.
    speakable: Callable[[str], str] | None = None
    # how long a sentence whose end is certain (…요. / ?) may wait for the rest of its closing run (?!, ...) from
    # the LLM's next chunk. 0: the run is kept when that chunk is already there, never waited for (first audio)
    closing_run_wait_s: float = 0.0


@dataclass
class SentenceReport:
    """What became of one sentence: ``audio_s`` produced by TTS, ``sent_audio_s`` handed to the sink."""

    index: int
    text: str
    status: SentenceStatus = "pending"
    audio_s: float = 0.0
    sent_audio_s: float = 0.0
    spoken: str = ""  # what the TTS was given (speakable text); "" until its TTS job starts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "index": self.index,
            "text": self.text,
            "spoken": self.spoken,
            "status": self.status,
            "audio_s": round(self.audio_s, 3),
            "sent_audio_s": round(self.sent_audio_s, 3),
        }


@dataclass
class TurnReport:
    """One turn's outcome: every sentence, the metrics, the timeline, and whether it was cut short."""

    sentences: list[SentenceReport]
    metrics: TurnMetrics
    events: list[TimelineEvent] = field(default_factory=list)
    cancelled: bool = False
    llm_error: str = ""

    @property
    def spoken_text(self) -> str:
        """The text of the sentences actually sent, in order."""
        return " ".join(s.text for s in self.sentences if s.status == "sent")

    @property
    def speech_text(self) -> str:
        """What the TTS was given for the sentences the caller heard (all or part of), in order."""
        return " ".join(s.spoken or s.text for s in self.sentences if s.status == "sent" or s.sent_audio_s > 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "sentences": [s.to_dict() for s in self.sentences],
            "metrics": self.metrics.to_dict(),
            "events": [e.to_dict() for e in self.events],
            "cancelled": self.cancelled,
            "llm_error": self.llm_error,
            "spoken_text": self.spoken_text,
            "speech_text": self.speech_text,
        }


class _TTSSlot(contextlib.AbstractContextManager[None]):
    """One place in the parallel-TTS window; leaving the ``with`` block frees it (once)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._release is not None:
            self._release()
            self._release = None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ProviderError):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


async def _anext(it: AsyncIterator[T]) -> T:
    return await anext(it)


async def _aclose(it: object) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


@contextlib.asynccontextmanager
async def _closing(it: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    try:
        yield it
    finally:
        await _aclose(it)


class Reply:
    """One turn's spoken answer: drives LLM chunks through the segmenter, TTS and the sink with a strategy."""

    def __init__(self, tts: TTS, sink: Sink, config: EngineConfig, timeline: Timeline) -> None:
        self.tts = tts
        self.sink = sink
        self.config = config
        self.timeline = timeline
        self._strategy = get_strategy(config.strategy)
        self._segmenter = SentenceSegmenter(
            lang=config.lang,
            max_chars=config.max_sentence_chars,
            first_clause_split=config.first_clause_split,
            first_clause_min_chars=config.first_clause_min_chars,
        )
        self._sentences: list[SentenceReport] = []
        self._buffer = ReorderBuffer()
        self._window: asyncio.Semaphore | None = None  # the parallel-TTS window, made on first use (in the loop)
        self._send_started: set[int] = set()
        self._llm_error = ""
        self._main: asyncio.Task[TurnReport] | None = None
        self._chunks: AsyncIterator[str] | None = None
        self._report: TurnReport | None = None
        self._cancel_requested = False
        self._cancel_reason = ""

    # --- the turn ----------------------------------------------------------------------------------------

    async def run(self, chunks: AsyncIterator[str]) -> TurnReport:
        """Speak the answer streamed in ``chunks``; return when every sentence is sent or skipped.

        After :meth:`cancel`, returns the cancelled report. If the task awaiting this is cancelled, every task
        of the reply is finished before the cancellation propagates.
        """
        if self._main is not None:
            raise RuntimeError("a Reply runs once")
        if self._report is not None:  # cancelled before it started
            await _aclose(chunks)
            return self._report
        self._chunks = chunks
        self._main = asyncio.create_task(self._drive(chunks), name="hanmadi-reply")
        try:
            return await self._main
        except asyncio.CancelledError:
            report = await self._cancelled_report()
            me = asyncio.current_task()
            if self._cancel_requested and (me is None or me.cancelling() == 0):
                return report
            raise

    async def cancel(self, reason: str = "barge_in") -> TurnReport:
        """Stop now (barge-in, hang-up): end the LLM stream and every TTS job, drop unsent audio.

        Returns what was sent so far (text and audio seconds per sentence). No task of the reply is alive when
        this returns. Cancelling a finished reply returns its report unchanged. Call it from outside the reply
        (e.g. the task reading the caller's audio), not from the sink the reply is awaiting.
        """
        if self._report is not None:
            return self._report
        self._cancel_requested = True
        self._cancel_reason = reason
        if self._main is not None:
            self._main.cancel()
            await asyncio.wait([self._main])
        return await self._cancelled_report()

    async def _cancelled_report(self) -> TurnReport:
        # the driver builds the report as it unwinds, unless it was cancelled before its first step
        if self._report is None:
            self._cancel_reason = self._cancel_reason or "cancelled"
            self._report = self._build_report(cancelled=True)
            if self._chunks is not None:
                await _aclose(self._chunks)
        return self._report

    @property
    def report(self) -> TurnReport | None:
        """The final report, once the reply is over."""
        return self._report

    async def _drive(self, chunks: AsyncIterator[str]) -> TurnReport:
        self.timeline.emit("turn_start", text=self.config.strategy)
        try:
            await self._strategy(self, chunks)
        except asyncio.CancelledError:
            self._cancel_reason = self._cancel_reason or "cancelled"
            self._report = self._build_report(cancelled=True)
            raise
        except Exception as exc:
            # a sink failure (the call is gone): record the cut, surface the error itself
            self._cancel_reason = "error"
            self._report = self._build_report(cancelled=True)
            if isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
                raise exc.exceptions[0] from None
            raise
        finally:
            await _aclose(chunks)
        self._report = self._build_report(cancelled=False)
        return self._report

    def _build_report(self, cancelled: bool) -> TurnReport:
        sent = sum(s.sent_audio_s for s in self._sentences)
        if cancelled:
            for s in self._sentences:
                if s.status == "pending":
                    s.status = "cancelled"
            self.timeline.emit("cancel", reason=self._cancel_reason, audio_s=sent)
        else:
            self.timeline.emit("done", audio_s=sent)
        events = list(self.timeline.events)
        return TurnReport(
            sentences=list(self._sentences),
            metrics=compute_metrics(events),
            events=events,
            cancelled=cancelled,
            llm_error=self._llm_error,
        )

    # --- building blocks for the strategies -------------------------------------------------------------

    @property
    def sentence_count(self) -> int:
        """Sentences generated so far."""
        return len(self._sentences)

    async def listen(self, chunks: AsyncIterator[str], on_sentence: Callable[[int], None] | None = None) -> int:
        """Consume the LLM stream through the segmenter; call ``on_sentence(index)`` as each sentence completes.

        An LLM failure mid-answer is recorded (event, metric, ``llm_error``); the incomplete tail is dropped and
        the configured fallback is added as one more sentence. Returns the number of sentences.
        """
        it = aiter(chunks)
        try:
            while True:
                try:
                    chunk = await self._next_chunk(it, on_sentence)
                except StopAsyncIteration:
                    rest = self._segmenter.flush()
                    for k, text in enumerate(rest):
                        self._add_sentence(text, k == len(rest) - 1, on_sentence)
                    break
                except Exception as exc:
                    self._llm_failed(exc)
                    if self.config.fallback_text:
                        self._add_sentence(self.config.fallback_text, True, on_sentence)
                    break
                for text in self._segmenter.push(chunk):
                    self._add_sentence(text, False, on_sentence)
        finally:
            await _aclose(it)
        await self._buffer.close(len(self._sentences))
        return len(self._sentences)

    async def _next_chunk(self, it: AsyncIterator[str], on_sentence: Callable[[int], None] | None) -> str:
        """The LLM's next chunk. A sentence whose certain end waits for its closing run goes out on its own unless
        the next chunk comes within ``closing_run_wait_s`` — never held hostage to a slow token or a tool call."""
        if not self._segmenter.holds_end:
            return await anext(it)
        nxt = asyncio.create_task(_anext(it), name="hanmadi-llm-next")
        try:
            done, _ = await asyncio.wait({nxt}, timeout=self.config.closing_run_wait_s)
            if not done:
                for text in self._segmenter.confirm_end():
                    self._add_sentence(text, False, on_sentence)
            return await nxt
        finally:
            if not nxt.done():
                nxt.cancel()
                await asyncio.wait({nxt})
            if not nxt.cancelled():
                nxt.exception()  # read: an end or error that no one awaits (we were cancelled) is not "unretrieved"

    def _llm_failed(self, exc: Exception) -> None:
        reason = _reason(exc)
        self._llm_error = reason
        self.timeline.emit("llm_error", reason=reason, text=str(exc))

    def _add_sentence(self, text: str, final: bool, on_sentence: Callable[[int], None] | None) -> None:
        text = text.strip()
        if not text:
            return
        index = len(self._sentences)
        self._sentences.append(SentenceReport(index, text))
        self.timeline.emit("sentence", index=index, text=text, final=final)
        if on_sentence is not None:
            on_sentence(index)

    async def admit(self) -> contextlib.AbstractContextManager[None]:
        """Wait for room for one more TTS job: a free place in the window (``max_parallel_tts``) and less than
        ``max_buffered_audio_s`` of finished audio waiting. Pass the returned slot to :meth:`synthesize`."""
        if self._window is None:
            self._window = asyncio.Semaphore(self.config.max_parallel_tts)
        await self._window.acquire()
        try:
            await self._buffer.wait_for_space(self.config.max_buffered_audio_s)
        except BaseException:
            self._window.release()
            raise
        return _TTSSlot(self._window.release)

    async def synthesize(self, index: int, slot: contextlib.AbstractContextManager[None]) -> None:
        """One sentence's TTS job: timeout per attempt (between chunks when streaming), retries, then skip.

        Chunks go to the reorder buffer as they arrive. A stream that fails after delivering audio is not
        retried (the caller may already have heard the start): it is cut and skipped.
        """
        with slot:
            sentence = self._sentences[index]
            sentence.spoken = self._speech_text(sentence.text)
            timeout = self.config.tts_timeout_s
            loop = asyncio.get_running_loop()
            self.timeline.emit("tts_start", index=index)
            started = loop.time()
            reason = ""
            for attempt in range(self.config.tts_retries + 1):
                delivered = 0
                try:
                    async with asyncio.timeout(timeout) as deadline:
                        async with _closing(self.tts.synthesize(sentence.spoken)) as audio:
                            async for chunk in audio:
                                delivered += 1
                                sentence.audio_s += chunk.duration_s
                                await self._buffer.put(index, chunk)
                                deadline.reschedule(loop.time() + timeout)
                except Exception as exc:
                    reason = _reason(exc)
                    if delivered or attempt == self.config.tts_retries:
                        break
                    self.timeline.emit("tts_retry", index=index, reason=reason)
                else:
                    elapsed = loop.time() - started
                    self.timeline.emit("tts_done", index=index, duration_s=elapsed, audio_s=sentence.audio_s)
                    await self._buffer.finish(index)
                    return
            sentence.status = "skipped"
            await self._buffer.fail(index)
            self.timeline.emit("skip", index=index, text=sentence.text, reason=reason)

    def _speech_text(self, text: str) -> str:
        """The words the TTS is given for a written sentence (microseconds; a failing rule never costs the
        sentence: its written text is spoken instead)."""
        make_speakable = self.config.speakable
        if make_speakable is None:
            return text
        try:
            return make_speakable(text) or text
        except Exception:
            log.exception("speakable text failed for %r; the TTS gets the written sentence", text)
            return text

    async def send_available(self) -> None:
        """Send whatever is ready at the head of the reorder buffer, then every consecutive ready sentence."""
        while (item := await self._buffer.take()) is not None:
            index, chunk, state = item
            sentence = self._sentences[index]
            if chunk is not None:
                self._start_sending(index)
                await self.sink.send_audio(index, chunk)
                sentence.sent_audio_s += chunk.duration_s
                self.timeline.emit("chunk_sent", index=index, audio_s=chunk.duration_s)
            elif state == "done":
                self._start_sending(index)
                await self.sink.send_mark(index)
                sentence.status = "sent"
                self.timeline.emit("send_done", index=index, audio_s=sentence.sent_audio_s)
            elif sentence.sent_audio_s > 0:
                # a stream cut after its start went out: close it for the caller, never resend
                await self.sink.send_mark(index)

    def _start_sending(self, index: int) -> None:
        if index not in self._send_started:
            self._send_started.add(index)
            self.timeline.emit("send_start", index=index)

    async def send_all(self) -> None:
        """Keep sending in order until every sentence of the answer is sent or skipped."""
        while True:
            await self.send_available()
            if self._buffer.complete:
                return
            await self._buffer.wait_ready()
