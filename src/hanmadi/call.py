"""CallSession: one phone call's lifetime — greeting, turns, barge-in, what the caller heard, records.

Data path, top to bottom: the server hands every parsed Media Streams event to ``CallSession.on_event`` (sync,
cheap). Media frames are decoded and run through the turn detector inline; the PCM goes to the STT worker task.
When the caller stops speaking, the worker finalizes the transcript and starts a reply: the engine streams the LLM
answer sentence by sentence into TTS and out through ``TwilioSink``. Marks echoed by Twilio tell what was heard.
Every task belongs to the session's TaskGroup; leaving ``async with CallSession(...)`` cancels them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol

from hanmadi import metrics
from hanmadi.agent import Agent
from hanmadi.config import Settings
from hanmadi.engine.scheduler import EngineConfig, Reply, TurnReport
from hanmadi.engine.timeline import Timeline, TimelineEvent, format_event
from hanmadi.preemptive import PreemptiveAnswer, same_words
from hanmadi.providers.base import LLM, STT, TTS, AudioChunk, Message, STTStream, stall_guard
from hanmadi.store.recording import CallRecording, recording_path
from hanmadi.store.records import CallEnd, CallStart, TurnRecord
from hanmadi.store.writer import Recorder
from hanmadi.telephony import audio
from hanmadi.telephony import twilio as tw
from hanmadi.turn import SpeechStarted, SpeechStopped, TurnDetector, is_backchannel

log = logging.getLogger("hanmadi.call")

# A caller who keeps talking this long over our audio barges in even if STT has produced no partial yet.
_BARGE_IN_WITHOUT_TEXT_MS = 600
# How long a cancelled reply may take to hand back its report before its task is cancelled outright.
_REPLY_SETTLE_S = 1.0


class Transport(Protocol):
    """Where outbound Media Streams messages go (the WebSocket)."""

    async def send_text(self, data: str) -> None: ...


@dataclass
class _Sentence:
    index: int
    text: str = ""
    audio_s: float = 0.0
    play_start: float | None = None  # monotonic, on our model of Twilio's playback clock
    play_end: float = 0.0
    played: bool = False  # mark echoed before any clear
    heard_s: float = 0.0


@dataclass
class _Turn:
    index: int
    user: Message | None
    heard_text: str
    started_at: datetime
    t_detect: float
    endpointing_s: float
    dtmf: str = ""
    sentences: dict[int, _Sentence] = field(default_factory=dict)
    report: TurnReport | None = None
    preemptive: bool = False  # answered from an LLM stream started at the caller's pause
    barge_in: bool = False
    cleared_at: float | None = None
    recorded: bool = False

    def pending_marks(self) -> bool:
        """Audio of this turn is still queued at Twilio (sent, mark not echoed, not cleared)."""
        if self.cleared_at is not None:
            return False
        return any(s.play_start is not None and not s.played for s in self.sentences.values())

    def heard_reply(self) -> str:
        """The reply as the caller heard it: whole sentences played, the interrupted one cut where it stopped."""
        parts: list[str] = []
        for s in sorted(self.sentences.values(), key=lambda s: s.index):
            if s.played or (s.audio_s > 0 and s.heard_s >= s.audio_s - 0.02):
                parts.append(s.text)
            elif s.heard_s > 0 and s.audio_s > 0:
                cut = round(len(s.text) * s.heard_s / s.audio_s)
                if cut > 0:
                    parts.append(s.text[:cut] + "…")
                break
            else:
                break
        return " ".join(parts)


class TwilioSink:
    """The engine's Sink for one turn: audio -> mu-law media messages, marks named after turn and sentence."""

    def __init__(self, session: CallSession, turn: _Turn) -> None:
        self._session = session
        self._turn = turn

    async def send_audio(self, index: int, chunk: AudioChunk) -> None:
        ulaw = audio.pcm_to_telephone(chunk.pcm, chunk.sample_rate)
        self._session.account_playback(self._turn, index, len(ulaw) / audio.SAMPLE_RATE, chunk)
        for message in tw.media_messages(self._session.stream_sid, ulaw):
            await self._session.send(message)

    async def send_mark(self, index: int) -> None:
        await self._session.send(tw.mark_message(self._session.stream_sid, tw.mark_name(self._turn.index, index)))


class CallSession:
    """One call. Use as ``async with CallSession(...) as call:`` and feed it ``call.on_event(event)``."""

    def __init__(
        self,
        *,
        settings: Settings,
        stt: STT,
        llm: LLM,
        tts: TTS,
        transport: Transport,
        start: tw.Start,
        recorder: Recorder | None = None,
        softphone: bool = False,
        from_number: str = "",
        to_number: str = "",
    ) -> None:
        self.settings = settings
        self.stt, self.llm, self.tts = stt, llm, tts
        self.transport = transport
        self.call_sid = start.call_sid
        self.stream_sid = start.stream_sid
        self.recorder = recorder
        self.softphone = softphone
        self.from_number = from_number or start.custom_parameters.get("from", "")
        self.to_number = to_number or start.custom_parameters.get("to", "")
        self.engine_config = EngineConfig.from_settings(settings)
        self.agent = Agent(settings.system_prompt, settings.max_history_turns)
        self.detector = TurnDetector(
            aggressiveness=settings.vad_aggressiveness,
            endpointing_ms=settings.endpointing_ms,
            min_speech_ms=settings.min_speech_ms,
        )
        self.media_clock = tw.MediaClock()
        self.end_reason = "hangup"
        self.turns: list[_Turn] = []
        self.dtmf_log: list[str] = []
        self.recording = (
            CallRecording(recording_path(settings.recordings_dir, self.call_sid)) if settings.record_audio else None
        )
        self._audio_q: asyncio.Queue[bytes | tuple[float, float] | None] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._reply: Reply | None = None
        self._reply_task: asyncio.Task[None] | None = None
        self._partial = ""
        self._preempt: PreemptiveAnswer | None = None
        self._preempt_task: asyncio.Task[None] | None = None
        self._barged_this_utterance = False
        self._started_mono = time.monotonic()
        self._tg = asyncio.TaskGroup()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stt_stream: STTStream | None = None
        self._closed = asyncio.Event()

    # --- lifetime ---------------------------------------------------------------------------------------

    async def __aenter__(self) -> CallSession:
        metrics.ACTIVE_CALLS.inc()
        self._stt_stream = await self.stt.open(audio.SAMPLE_RATE)
        await self._tg.__aenter__()
        self._spawn(self._audio_worker(), "stt")
        self._spawn(self._speak_greeting(), "greeting")
        if self.recorder:
            self.recorder.call_started(
                CallStart(
                    call_sid=self.call_sid,
                    stream_sid=self.stream_sid,
                    from_number=self.from_number,
                    to_number=self.to_number,
                    started_at=datetime.now(UTC),
                    providers={"stt": self.stt.name, "llm": self.llm.name, "tts": self.tts.name},
                )
            )
        log.info("call %s started (stream %s)", self.call_sid, self.stream_sid)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and not issubclass(exc_type, asyncio.CancelledError):
            self.end_reason = "error"
        try:
            await self._cancel_reply()
            self._audio_q.put_nowait(None)
            # The worker and any reply are cancelled: a call that ended has nothing left to say.
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(BaseException):
                await self._tg.__aexit__(None, None, None)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        if self._stt_stream is not None:
            with contextlib.suppress(Exception):
                await self._stt_stream.aclose()
        now = time.monotonic()
        for turn in self.turns:
            if turn.cleared_at is None and turn.pending_marks():
                self._settle_heard(turn, now)
            self._record_turn(turn)
        recording_path: str | None = None
        if self.recording is not None:
            try:
                recording_path = str(await self.recording.close())
            except OSError as exc:
                log.warning("call %s: recording not saved: %s", self.call_sid, exc)
        if self.recorder:
            self.recorder.call_ended(
                CallEnd(
                    call_sid=self.call_sid,
                    ended_at=datetime.now(UTC),
                    status="completed" if self.end_reason in ("hangup", "caller_stop") else "failed",
                    end_reason=self.end_reason,
                    recording_path=recording_path,
                )
            )
        metrics.ACTIVE_CALLS.dec()
        metrics.CALLS_ENDED.labels(reason=self.end_reason).inc()
        log.info("call %s ended: %s (%d turns)", self.call_sid, self.end_reason, len(self.turns))
        self._closed.set()

    # --- inbound events (called by the server for every parsed message; must stay cheap) --------------------

    def on_event(self, event: tw.InboundEvent) -> None:
        """Handle one inbound Media Streams event."""
        if isinstance(event, tw.Media):
            self.on_media(event)
        elif isinstance(event, tw.Mark):
            self.on_mark(event.name)
        elif isinstance(event, tw.Dtmf):
            self.on_dtmf(event.digit)
        elif isinstance(event, tw.Stop):
            self.end_reason = "caller_stop"

    def on_media(self, event: tw.Media) -> None:
        gap_ms = self.media_clock.gap_ms(event.timestamp_ms)
        if gap_ms > 0:
            # packet loss: the caller's audio has a hole; keep stream time honest with silence
            filler = audio.ulaw_to_pcm_bytes(audio.silence_ulaw(gap_ms / 1000))
            self._audio_q.put_nowait(filler)
            self._on_turn_event(self.detector.feed_silence(gap_ms))
        pcm = audio.ulaw_to_pcm_bytes(event.payload)
        if self.recording is not None:
            self.recording.add_caller(pcm, time.monotonic() - self._started_mono)
        self._audio_q.put_nowait(pcm)
        self._on_turn_event(self.detector.feed(pcm))
        if self.detector.speaking or self.detector.speech_ms:
            self._check_barge_in()
            if self.settings.preemptive_generation:
                self._check_preemptive()

    def on_mark(self, name: str) -> None:
        parsed = tw.parse_mark_name(name)
        if parsed is None:
            return
        turn_index, index = parsed
        turn = next((t for t in reversed(self.turns) if t.index == turn_index), None)
        if turn is None or index not in turn.sentences:
            return
        sentence = turn.sentences[index]
        if turn.cleared_at is None:
            sentence.played = True
            sentence.heard_s = sentence.audio_s
        if not turn.pending_marks() and turn.report is not None:
            self._record_turn(turn)

    def on_dtmf(self, digit: str) -> None:
        log.info("call %s: DTMF %s", self.call_sid, digit)
        self.dtmf_log.append(digit)
        self.agent.note_dtmf(digit)

    # --- turn taking -----------------------------------------------------------------------------------

    def _on_turn_event(self, event: SpeechStarted | SpeechStopped | None) -> None:
        # (the partial transcript is reset when the STT finalizes a turn, not here: it may already be ahead of the VAD)
        if isinstance(event, SpeechStopped):
            t_detect = time.monotonic()
            endpointing_s = (self.detector_now_ms() - event.end_ms) / 1000
            self._audio_q.put_nowait((t_detect, endpointing_s))
            self._barged_this_utterance = False

    def detector_now_ms(self) -> int:
        return self.detector.now_ms

    def bot_speaking(self) -> bool:
        """Our audio is being generated or is still queued at Twilio (marks not echoed)."""
        if self._reply_task is not None and not self._reply_task.done():
            return True
        return bool(self.turns) and self.turns[-1].pending_marks()

    def _check_barge_in(self) -> None:
        if self._barged_this_utterance or not self.bot_speaking():
            return
        speech_ms = self.detector.speech_ms
        if speech_ms < self.settings.barge_in_min_speech_ms:
            return
        if self._partial:
            if is_backchannel(self._partial, self.settings.backchannels):
                return
        elif speech_ms < self.settings.barge_in_min_speech_ms + _BARGE_IN_WITHOUT_TEXT_MS:
            return  # no words yet: could be a backchannel, wait a little
        self._barged_this_utterance = True
        self._spawn(self.barge_in(self.turns[-1]), "barge-in")

    def _check_preemptive(self) -> None:
        """At a pause, start answering the partial transcript; when the caller resumes, drop that answer."""
        silence_ms = self.detector.silence_ms
        if self._preempt is not None:
            if silence_ms == 0:
                self._drop_preempt("resumed")
            return
        if (
            silence_ms >= self.settings.preemptive_pause_ms
            and self.detector.speaking
            and self._partial
            and not self.bot_speaking()
            and not self.agent.has_pending_events
        ):
            text = self._partial
            messages = self.agent.messages_for(Message("user", text))
            self._preempt = PreemptiveAnswer(text, self.llm.stream(messages))
            self._preempt_task = self._spawn(self._preempt.pump(), "preemptive")
            log.info("call %s: preemptive answer started on %r", self.call_sid, text)

    def _drop_preempt(self, outcome: str) -> None:
        if self._preempt_task is not None:
            self._preempt_task.cancel()
        self._preempt = self._preempt_task = None
        metrics.PREEMPTIVE.labels(outcome=outcome).inc()

    def _take_preempt(self, text: str) -> PreemptiveAnswer | None:
        """The preemptive answer if the caller's final words confirm it (it is then the turn's LLM stream)."""
        preempt = self._preempt
        if preempt is None:
            return None
        if not same_words(preempt.text, text) or self.agent.has_pending_events:
            self._drop_preempt("miss")
            return None
        self._preempt = self._preempt_task = None
        metrics.PREEMPTIVE.labels(outcome="hit").inc()
        return preempt

    async def barge_in(self, turn: _Turn) -> None:
        """The caller talks over ``turn``: clear Twilio's buffer, stop the reply, keep only what was heard.

        Bound to the turn it was decided for and idempotent: a decision that arrives late (the caller's words
        already started the next turn) or twice does nothing, so it can never cut the next reply.
        """
        if turn.barge_in or not self.turns or turn is not self.turns[-1]:
            return
        turn.barge_in = True
        self._settle_heard(turn, time.monotonic())
        metrics.BARGE_INS.inc()
        log.info("call %s: barge-in during turn %d", self.call_sid, turn.index)
        await self.send(tw.clear_message(self.stream_sid))
        await self._cancel_reply()

    def _settle_heard(self, turn: _Turn, now: float) -> None:
        turn.cleared_at = now
        for s in turn.sentences.values():
            if not s.played and s.play_start is not None:
                s.heard_s = max(0.0, min(s.audio_s, now - s.play_start))

    async def _audio_worker(self) -> None:
        """Feeds the STT in order; at each end of speech, finalizes and answers."""
        assert self._stt_stream is not None
        stream = self._stt_stream
        while True:
            item = await self._audio_q.get()
            if item is None:
                return
            if isinstance(item, bytes):
                try:
                    for result in await stream.push(item):
                        if result.text:
                            self._partial = result.text
                except Exception as exc:  # a provider fault must not end the call
                    self._provider_error(self.stt.name, exc)
                continue
            t_detect, endpointing_s = item
            try:
                transcript = await stream.finalize()
            except Exception as exc:
                self._provider_error(self.stt.name, exc)
                continue
            text = transcript.text.strip()
            self._partial = ""
            if not text:
                log.info("call %s: speech without words, no turn", self.call_sid)
                continue
            if self.bot_speaking():
                if is_backchannel(text, self.settings.backchannels):
                    log.info("call %s: backchannel %r while speaking, ignored", self.call_sid, text)
                    continue
                await self.barge_in(self.turns[-1])
            await self._cancel_reply()
            self._start_turn(text, t_detect, endpointing_s)

    def _provider_error(self, provider: str, exc: Exception) -> None:
        reason = getattr(exc, "reason", type(exc).__name__)
        metrics.PROVIDER_ERRORS.labels(provider=provider, reason=reason).inc()
        log.warning("call %s: %s failed: %s", self.call_sid, provider, exc)

    # --- replies ---------------------------------------------------------------------------------------

    async def _speak_greeting(self) -> None:
        if not self.settings.greeting:
            return
        turn = self._new_turn(None, "", time.monotonic(), 0.0)
        await self._run_reply(turn, _once(self.settings.greeting))

    def _start_turn(self, text: str, t_detect: float, endpointing_s: float) -> None:
        preempt = self._take_preempt(text)
        user = self.agent.user_message(text)
        turn = self._new_turn(user, text, t_detect, endpointing_s)
        if self.softphone:
            self.side_event({"event": "hanmadi.transcript", "role": "caller", "text": user.content})
        if preempt is not None:
            turn.preemptive = True
            stream = preempt.replay()
        else:
            stream = self.llm.stream(self.agent.messages_for(user))
        stream = stall_guard(stream, self.settings.llm_timeout_s, self.llm.name)
        self._reply_task = self._spawn(self._run_reply(turn, stream), "reply")

    def _new_turn(self, user: Message | None, heard: str, t_detect: float, endpointing_s: float) -> _Turn:
        turn = _Turn(
            index=len(self.turns),
            user=user,
            heard_text=heard,
            started_at=datetime.now(UTC),
            t_detect=t_detect,
            endpointing_s=endpointing_s,
            dtmf="".join(self.dtmf_log),
        )
        self.dtmf_log.clear()
        self.turns.append(turn)
        return turn

    async def _run_reply(self, turn: _Turn, chunks: AsyncIterator[str]) -> None:
        listeners = [self._timeline_listener(turn)]
        timeline = Timeline(t0=turn.t_detect, lang=self.settings.log_lang, logger=log, listeners=listeners)
        reply = Reply(self.tts, TwilioSink(self, turn), self.engine_config, timeline)
        self._reply = reply
        try:
            report = await reply.run(chunks)
        except Exception:
            # a bug or fault in this reply ends this reply only; the call goes on listening
            log.exception("call %s: turn %d failed", self.call_sid, turn.index)
            return
        finally:
            if self._reply is reply:
                self._reply = None
        self._finish_reply(turn, report)

    def _finish_reply(self, turn: _Turn, report: TurnReport) -> None:
        turn.report = report
        for s in report.sentences:
            sentence = turn.sentences.get(s.index)
            if sentence is not None:
                sentence.text = s.text
        first = report.metrics.first_audio_s
        if first is not None and turn.user is not None:  # the engine itself observes FIRST_RESPONSE
            metrics.VOICE_TO_VOICE.observe(first + turn.endpointing_s)
        heard = turn.heard_reply() if (turn.barge_in or report.cancelled) else report.spoken_text
        self.agent.remember(turn.user, heard)
        if self.softphone and report.spoken_text:
            self.side_event({"event": "hanmadi.transcript", "role": "agent", "text": report.spoken_text})
        if not turn.pending_marks():
            self._record_turn(turn)

    async def _cancel_reply(self) -> None:
        reply, task = self._reply, self._reply_task
        if reply is not None:
            await reply.cancel()
        if task is not None and not task.done():
            # After cancel() the engine's run() returns the cancelled report by itself; letting the task finish
            # records what the caller heard of this turn. Only a task that does not finish is cancelled outright.
            _, pending = await asyncio.wait({task}, timeout=_REPLY_SETTLE_S)
            if pending:
                task.cancel()
                await asyncio.wait({task})
        self._reply_task = None

    def account_playback(self, turn: _Turn, index: int, duration_s: float, chunk: AudioChunk) -> None:
        """Model Twilio's playback: audio plays from when it arrives or when earlier audio ends."""
        now = time.monotonic()
        sentence = turn.sentences.setdefault(index, _Sentence(index))
        last_end = max((s.play_end for t in self.turns for s in t.sentences.values()), default=0.0)
        start = max(now, last_end)
        if sentence.play_start is None:
            sentence.play_start = start
        sentence.play_end = start + duration_s
        sentence.audio_s += duration_s
        if self.recording is not None:
            self.recording.add_bot(
                audio.ulaw_to_pcm_bytes(audio.pcm_to_telephone(chunk.pcm, chunk.sample_rate)),
                start - self._started_mono,
            )

    def _timeline_listener(self, turn: _Turn) -> Callable[[TimelineEvent], None]:
        def listener(event: TimelineEvent) -> None:
            if event.kind == "sentence" and event.index is not None:
                turn.sentences.setdefault(event.index, _Sentence(event.index)).text = event.text
            if self.softphone and event.kind != "chunk_sent":
                line = format_event(event, self.settings.log_lang)
                self.side_event(
                    {"event": "hanmadi.timeline", "turn": turn.index, "line": line, "data": event.to_dict()}
                )

        return listener

    def _record_turn(self, turn: _Turn) -> None:
        if turn.recorded or turn.report is None or self.recorder is None:
            return
        turn.recorded = True
        report = turn.report
        first = report.metrics.first_audio_s
        heard = turn.heard_reply() if (turn.barge_in or report.cancelled) else report.spoken_text
        self.recorder.turn_finished(
            TurnRecord(
                call_sid=self.call_sid,
                index=turn.index,
                started_at=turn.started_at,
                ended_at=datetime.now(UTC),
                heard_text=turn.heard_text,
                generated_text=" ".join(s.text for s in report.sentences),
                spoken_text=heard,
                barge_in=turn.barge_in,
                dtmf=turn.dtmf,
                first_audio_s=first,
                voice_to_voice_s=(first + turn.endpointing_s) if first is not None and turn.user else None,
                total_s=report.metrics.total_s,
                metrics={**report.metrics.to_dict(), "preemptive": turn.preemptive},
                events=_stored_events(report.events),
            )
        )

    # --- outbound ----------------------------------------------------------------------------------------

    async def send(self, message: str) -> None:
        async with self._send_lock:
            await self.transport.send_text(message)

    def side_event(self, payload: dict[str, Any]) -> None:
        """Softphone-only extra events (live timeline, transcript); Twilio never sees these."""
        self._spawn(self.send(json.dumps(payload, ensure_ascii=False)), "side-event")

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """Start a task owned by this call: cancelled when the call ends, never outliving it."""
        task = self._tg.create_task(coro, name=f"{what}:{self.call_sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait_closed(self) -> None:
        await self._closed.wait()


async def _once(text: str) -> AsyncIterator[str]:
    yield text


def _stored_events(events: list[TimelineEvent]) -> list[dict[str, Any]]:
    """The timeline to keep: every event but per-chunk sends, of which only each sentence's first is kept."""
    kept: list[dict[str, Any]] = []
    first_chunk_seen: set[int | None] = set()
    for event in events:
        if event.kind == "chunk_sent":
            if event.index in first_chunk_seen:
                continue
            first_chunk_seen.add(event.index)
        kept.append(event.to_dict())
    return kept
