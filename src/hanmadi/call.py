"""CallSession: one phone call's lifetime — it composes the rooms below, it does not do their work.

Data path, top to bottom: the server hands every parsed Media Streams event to ``CallSession.on_event`` (sync,
cheap). Media frames are decoded and run through the turn detector (``turn``) inline; the PCM goes to the STT
worker task. When the caller stops speaking, the worker finalizes the transcript and starts a reply: the engine
(``engine``) streams the LLM answer sentence by sentence into TTS and out through the Twilio sink
(``telephony.sink``). What the caller heard comes from one model of Twilio's playback buffer
(``telephony.playback``), which marks confirm and a ``clear`` truncates. Preemptive answers live in ``preemptive``,
reply metrics in ``reply_metrics``, a turn's stored form in ``CallTurn.record`` (built by ``store.records``).
When a silent caller is due a prompt is ``idle``'s to say; when a barge-in is due, ``turn.barge_in_due``'s; whether
an answer runs tools, ``tools.CallTools``'; what the conversation remembers, ``agent``'s.

Every task belongs to the session's TaskGroup; leaving ``async with CallSession(...)`` cancels them all. A task
that crashes is logged with its traceback, counted, and ends the call (``end_reason="error"``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol

from hanmadi import metrics
from hanmadi.agent import Agent, context_prompt, grounding_config
from hanmadi.call_turn import CallTurn
from hanmadi.config import Settings
from hanmadi.engine.scheduler import Reply, TurnReport
from hanmadi.engine.timeline import Timeline, TimelineEvent, format_event
from hanmadi.idle import IdleWatch
from hanmadi.knowledge import KnowledgeSource
from hanmadi.preemptive import Preemption
from hanmadi.providers.base import LLM, STT, TTS, Message, STTStream, stall_guard
from hanmadi.reply_metrics import observe_reply
from hanmadi.store.recording import CallRecording, recording_path
from hanmadi.store.records import CallStart, call_end
from hanmadi.store.writer import Recorder
from hanmadi.stt_feed import EndOfSpeech, SttFeed
from hanmadi.telephony import audio
from hanmadi.telephony import twilio as tw
from hanmadi.telephony.playback import PlaybackClock
from hanmadi.telephony.rest import MACHINE_ENDS
from hanmadi.telephony.sink import TwilioSink
from hanmadi.tools import CallTools, EndCall, Transferred
from hanmadi.turn import SpeechStarted, SpeechStopped, TurnDetector, barge_in_due, is_backchannel

log = logging.getLogger("hanmadi.call")

# After the goodbye has been sent, how long past its modelled playback we wait for its marks before hanging up.
_GOODBYE_GRACE_S = 1.0
# WebSocket close codes: normal closure, internal error.
_CLOSE_NORMAL = 1000
MAX_PENDING_DTMF = 64  # keypad digits kept for one turn (what the store keeps of a turn's digits, too)
_CLOSE_ERROR = 1011
# After a REST transfer Twilio ends the stream itself; if it has not within this long, we close it.
_TRANSFER_CLOSE_S = 5.0


class Transport(Protocol):
    """Where outbound Media Streams messages go (the WebSocket), and how the call hangs up."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class PhoneRest(Protocol):
    """The REST side of the phone (``telephony.rest.TwilioRest``): the hang-up fallback."""

    async def hang_up(self, call_sid: str) -> None: ...


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
        clock: Callable[[], float] = time.monotonic,
        knowledge: KnowledgeSource | None = None,
        tools: CallTools | None = None,
        phone: PhoneRest | None = None,
        direction: str = "inbound",
        context: Mapping[str, str] | None = None,
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
        self.clock = clock
        self.engine_config = settings.engine_config()
        self.tools = tools
        self.phone = phone
        self.direction = direction
        self.answered_by: str | None = None
        self.transfer_to: str | None = None
        prompt = settings.system_prompt + context_prompt(context or {})
        self.agent = Agent(prompt, settings.max_history_turns, grounding_config(settings, knowledge))
        self.detector = TurnDetector(
            aggressiveness=settings.vad_aggressiveness,
            endpointing_ms=settings.endpointing_ms,
            min_speech_ms=settings.min_speech_ms,
            final_endpointing_ms=settings.endpointing_final_ms,
            connective_endpointing_ms=settings.endpointing_connective_ms,
        )
        self.media_clock = tw.MediaClock()
        self.playback = PlaybackClock()
        self.end_reason = "hangup"
        self.turns: list[CallTurn] = []
        self.dtmf_log: list[str] = []
        self.recording = (
            CallRecording(recording_path(settings.recordings_dir, self.call_sid)) if settings.record_audio else None
        )
        self.stt_feed = SttFeed(settings.stt_backlog_s, self.call_sid, block_ms=settings.stt_block())
        self._send_lock = asyncio.Lock()
        self._partial = ""
        self._barged_this_utterance = False
        self._ending = False  # the goodbye is under way: no new turn starts
        self.idle = IdleWatch(settings.idle_prompt_s, settings.idle_prompts, clock)
        self._started_mono = clock()
        self._tg = asyncio.TaskGroup()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stt_stream: STTStream | None = None
        self._marks_changed = asyncio.Event()
        self._closed = asyncio.Event()
        self.preemption = Preemption(llm, settings.preemptive_pause_ms, self._spawn, self.call_sid)

    # --- lifetime ---------------------------------------------------------------------------------------

    async def __aenter__(self) -> CallSession:
        metrics.ACTIVE_CALLS.inc()  # from here on, _finish() runs whatever happens
        if self.recorder:
            self.recorder.call_started(
                CallStart(
                    call_sid=self.call_sid,
                    stream_sid=self.stream_sid,
                    from_number=self.from_number,
                    to_number=self.to_number,
                    started_at=datetime.now(UTC),
                    providers={"stt": self.stt.name, "llm": self.llm.name, "tts": self.tts.name},
                    direction=self.direction,
                )
            )
        try:
            self._stt_stream = await self.stt.open(audio.SAMPLE_RATE)
        except BaseException as exc:
            self.end_reason = "stt_failed" if isinstance(exc, Exception) else "client_gone"
            if isinstance(exc, Exception):
                self._provider_error(self.stt.name, exc)
            await self._finish()
            raise
        await self._tg.__aenter__()
        self._spawn(self._audio_worker(), "stt")
        self._spawn(self._call_timer(), "call-timer")
        self._spawn(self._idle_watch(), "idle")
        if self.settings.greeting:
            self._start_reply(self._new_turn(None, "", self.clock(), 0.0), _once(self.settings.greeting))
        log.info("call %s started (stream %s)", self.call_sid, self.stream_sid)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            self.end_reason = "error"
            log.error("call %s: the socket handler failed", self.call_sid, exc_info=exc)
        try:
            if self.turns:
                await self.turns[-1].stop_reply()  # the turn in progress hands back what was said
        finally:
            # Even if this exit is itself cancelled: every task is stopped and the call is accounted for.
            self.stt_feed.close()
            for task in list(self._tasks):
                task.cancel()
            try:
                await self._tg.__aexit__(None, None, None)
            finally:
                await self._finish()

    async def _finish(self) -> None:
        path: str | None = None
        try:
            if self._stt_stream is not None:
                try:
                    await self._stt_stream.aclose()
                except Exception as exc:
                    log.warning("call %s: STT close failed: %s", self.call_sid, exc)
            if self.recording is not None:
                try:
                    path = str(await self.recording.close())
                except OSError as exc:
                    log.warning("call %s: recording not saved: %s", self.call_sid, exc)
        finally:
            for turn in self.turns:
                self._record_turn(turn)
            if self.recorder:
                self.recorder.call_ended(
                    call_end(self.call_sid, self.end_reason, path, self.transfer_to, self.answered_by)
                )
            metrics.ACTIVE_CALLS.dec()
            metrics.CALLS_ENDED.labels(reason=self.end_reason).inc()
            log.info("call %s ended: %s (%d turns)", self.call_sid, self.end_reason, len(self.turns))
            self._closed.set()

    async def hang_up(self, reason: str, code: int = _CLOSE_NORMAL) -> None:
        """End the call from our side: record why and close the stream (Twilio then ends the call)."""
        if self.end_reason == "hangup":
            self.end_reason = reason
        log.info("call %s: hanging up (%s)", self.call_sid, reason)
        try:
            await self.transport.close(code, reason)
        except Exception as exc:  # the socket is already gone: nothing left to close
            log.info("call %s: close failed: %s", self.call_sid, exc)
            if self.phone is not None:  # the fallback: end the call through the REST API
                try:
                    await self.phone.hang_up(self.call_sid)
                except Exception as rest_exc:
                    log.warning("call %s: REST hang-up failed too: %s", self.call_sid, rest_exc)

    async def wait_closed(self) -> None:
        """Wait until the call has ended and been accounted for."""
        await self._closed.wait()

    # --- inbound events (called by the server for every parsed message; must stay cheap) --------------------

    def on_event(self, event: tw.InboundEvent) -> None:
        """Handle one inbound Media Streams event."""
        if isinstance(event, tw.Media):
            self.on_media(event)
        elif isinstance(event, tw.Mark):
            self.on_mark(event.name)
        elif isinstance(event, tw.Dtmf):
            self.on_dtmf(event.digit)
        elif isinstance(event, tw.Stop) and self.end_reason != "transferred":
            self.end_reason = "caller_stop"

    def on_media(self, event: tw.Media) -> None:
        gap_ms = self.media_clock.gap_ms(event.timestamp_ms)
        if gap_ms > 0:
            # packet loss: the caller's audio has a hole; keep stream time honest with silence
            self.stt_feed.audio(audio.ulaw_to_pcm_bytes(audio.silence_ulaw(gap_ms / 1000)))
            self._on_turn_event(self.detector.feed_silence(gap_ms))
        pcm = audio.ulaw_to_pcm_bytes(event.payload)
        if self.recording is not None:
            self.recording.add_caller(pcm, self.clock() - self._started_mono)
        self.stt_feed.audio(pcm)
        self._on_turn_event(self.detector.feed(pcm))
        if self.detector.speaking or self.detector.speech_ms:
            self._check_barge_in()
            if self.settings.preemptive_generation:
                self.preemption.on_audio(
                    silence_ms=self.detector.silence_ms,
                    speaking=self.detector.speaking,
                    partial=self._partial,
                    allowed=not self.bot_speaking() and not self.agent.has_pending_events,
                    messages=lambda text: self.agent.messages_for(Message("user", text)),
                )

    def on_mark(self, name: str) -> None:
        parsed = tw.parse_mark_name(name)
        if parsed is None:
            return
        turn_index, index = parsed
        turn = next((t for t in reversed(self.turns) if t.index == turn_index), None)
        if turn is None or index not in turn.sentences:
            return
        if not turn.barge_in:
            turn.sentences[index].played = True
        self._marks_changed.set()
        if not turn.pending_marks() and turn.report is not None:
            self._record_turn(turn)

    def on_dtmf(self, digit: str) -> None:
        log.debug("call %s: DTMF %s", self.call_sid, digit)
        if self.tools is not None and self.tools.digits.push(digit):
            return  # collect_digits is waiting for it
        if len(self.dtmf_log) >= MAX_PENDING_DTMF:  # a flood of digits: bounded, counted, not logged one by one
            metrics.DTMF_DROPPED.inc()
            return
        self.dtmf_log.append(digit)
        self.agent.note_dtmf(digit)
        if len(self.dtmf_log) == MAX_PENDING_DTMF:
            log.info(
                "call %s: %d keypad digits pending; more are dropped until the next turn",
                self.call_sid,
                MAX_PENDING_DTMF,
            )

    def on_answered_by(self, answered_by: str) -> None:
        """Twilio's answering-machine detection for an outbound call: a voicemail gets its message, then we hang up;
        a person (or "unknown") gets the conversation already under way."""
        self.answered_by = answered_by
        log.info("call %s: answered by %s", self.call_sid, answered_by)
        if answered_by in MACHINE_ENDS and not self._ending:
            self._spawn(self.say_goodbye(self.settings.voicemail_message, "voicemail"), "voicemail")

    # --- turn taking -----------------------------------------------------------------------------------

    def _on_turn_event(self, event: SpeechStarted | SpeechStopped | None) -> None:
        # (the partial transcript is reset when the STT finalizes a turn, not here: it may already be ahead of the VAD)
        if isinstance(event, SpeechStarted):
            self.idle.activity()
        if isinstance(event, SpeechStopped):
            endpointing_s = (self.detector.now_ms - event.end_ms) / 1000
            self.stt_feed.end_of_speech(EndOfSpeech(self.clock(), endpointing_s, event.rule))
            self._barged_this_utterance = False

    def bot_speaking(self) -> bool:
        """Our audio is being generated or is still queued at Twilio (marks not echoed)."""
        return bool(self.turns) and (self.turns[-1].replying() or self.turns[-1].pending_marks())

    def _check_barge_in(self) -> None:
        if self._barged_this_utterance or not self.bot_speaking():
            return
        settings = self.settings
        if barge_in_due(self.detector.speech_ms, self._partial, settings.barge_in_min_speech_ms, settings.backchannels):
            self._barged_this_utterance = True
            self._spawn(self.barge_in(self.turns[-1]), "barge-in")

    async def barge_in(self, turn: CallTurn) -> None:
        """The caller talks over ``turn``: stop its reply, then clear Twilio's buffer; keep only what was heard.

        Bound to the turn it was decided for: a decision that arrives late (the next turn has started) does
        nothing. Cancel first, then clear — no audio of ``turn`` can follow the clear. A second call waits for the
        first one's clear, so whoever starts the next turn starts it after the clear.
        """
        if turn.barge_in:
            await turn.cleared.wait()
            return
        if not self.turns or turn is not self.turns[-1]:
            return
        turn.barge_in = True
        try:
            metrics.BARGE_INS.inc()
            log.info("call %s: barge-in during turn %d", self.call_sid, turn.index)
            await turn.stop_reply()
            # the clear goes out now: what had not played by now never will
            self.playback.clear(self.clock())
            await self.send(tw.clear_message(self.stream_sid))
        finally:
            turn.cleared.set()

    async def _audio_worker(self) -> None:
        """Feeds the STT in order; at each end of speech, finalizes and answers."""
        assert self._stt_stream is not None
        stream = self._stt_stream
        while True:
            item = await self.stt_feed.get()
            if item is None:
                return
            if isinstance(item, bytes):
                try:
                    results = await stream.push(item)
                except Exception as exc:  # a provider fault must not end the call
                    self._provider_error(self.stt.name, exc)
                    continue
                for result in results:
                    if result.text:
                        self._partial = result.text
                        self.detector.hear(result.text, result.audio_s)
                continue
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
            if self._ending:
                continue
            last = self.turns[-1] if self.turns else None
            if last is not None:
                if self.bot_speaking():
                    if is_backchannel(text, self.settings.backchannels):
                        log.info("call %s: backchannel %r while speaking, ignored", self.call_sid, text)
                        continue
                    await self.barge_in(last)
                elif last.barge_in:
                    await last.cleared.wait()  # a barge-in in progress: its clear goes out before our reply
                await last.stop_reply()
                if self._ending or self.turns[-1] is not last:
                    continue  # the goodbye started meanwhile
            self._start_turn(text, item)

    def _provider_error(self, provider: str, exc: Exception) -> None:
        reason = getattr(exc, "reason", type(exc).__name__)
        metrics.PROVIDER_ERRORS.labels(provider=provider, reason=reason).inc()
        log.warning("call %s: %s failed: %s", self.call_sid, provider, exc)

    async def _call_timer(self) -> None:
        """At ``max_call_s``: stop listening, say goodbye, hang up once it has played."""
        await asyncio.sleep(max(0.0, self.settings.max_call_s - (self.clock() - self._started_mono)))
        log.info("call %s: %.0f s limit reached, saying goodbye", self.call_sid, self.settings.max_call_s)
        await self.say_goodbye(self.settings.goodbye_message, "max_length")

    async def say_goodbye(self, text: str, reason: str) -> None:
        """Stop listening, cut what we are saying, say ``text``, and hang up once it has played."""
        if self._ending:
            return
        self._ending = True
        self.preemption.drop("miss")
        if self.turns:
            last = self.turns[-1]
            if last.replying() or last.pending_marks():
                await self.barge_in(last)
            await last.stop_reply()
        turn = self._new_turn(None, "", self.clock(), 0.0)
        task = self._start_reply(turn, _once(text))
        await asyncio.wait({task})
        await self._hang_up_after(turn, reason)

    async def _hang_up_after(self, turn: CallTurn, reason: str) -> None:
        """Hang up once ``turn``'s audio has played (its marks came back), or a little after it should have."""
        wait_s = max(0.0, self.playback.end_s - self.clock()) + _GOODBYE_GRACE_S
        try:
            async with asyncio.timeout(wait_s):
                while turn.pending_marks():
                    self._marks_changed.clear()
                    await self._marks_changed.wait()
        except TimeoutError:
            log.info("call %s: goodbye marks not echoed within %.1f s", self.call_sid, wait_s)
        await self.hang_up(reason)

    async def _idle_watch(self) -> None:
        """A silent caller is asked whether they are there (``idle``); unanswered prompts end in a goodbye."""
        while not self._ending:
            due = await self.idle.due(self)
            if self._ending:
                return
            if due == "goodbye":
                log.info("call %s: no answer to %d idle prompts, hanging up", self.call_sid, self.idle.prompts)
                await self.say_goodbye(self.settings.goodbye, "idle")
                return
            log.info("call %s: caller silent, idle prompt %d", self.call_sid, self.idle.prompts)
            self._start_reply(self._new_turn(None, "", self.clock(), 0.0), _once(self.settings.idle_prompt))

    def busy(self) -> bool:
        """Something is going on: we are speaking or generating, the caller is speaking, or keys are awaited."""
        return (
            self.bot_speaking()
            or self.detector.speaking
            or self.playback.end_s > self.clock()
            or (self.tools is not None and self.tools.digits.active)
        )

    def quiet_since(self) -> float:
        """When the line last went quiet: our audio finished playing, or the last turn began."""
        return max(self.playback.end_s, self.turns[-1].t_detect if self.turns else self._started_mono)

    # --- replies ---------------------------------------------------------------------------------------

    def _start_turn(self, text: str, end: EndOfSpeech) -> None:
        preempt = self.preemption.take(text, allowed=not self.agent.has_pending_events)
        user = self.agent.user_message(text)
        turn = self._new_turn(user, text, end.t_detect, end.endpointing_s)
        turn.end_rule = end.end_rule
        if self.softphone:
            self.side_event({"event": "hanmadi.transcript", "role": "caller", "text": user.content})
        self.idle.answered()
        tools = self.tools
        if tools is not None and tools.goodbye_rule(self.llm, text):
            # a model without tool calling cannot end the call: the caller's goodbye does (end_call's keyword rule)
            tools.action = EndCall(self.settings.goodbye)
            self._start_reply(turn, _once(self.settings.goodbye))
            return
        tool_llm = tools.answer_with(self.llm) if tools is not None else None
        if tools is not None and tool_llm is not None and preempt is None:
            turn.tool_turn = tools.turn(tool_llm, self.agent.messages_for(user))
            turn.grounding = self.agent.last_grounding if self.agent.knowledge else None
            self._start_reply(turn, turn.tool_turn.stream())  # each model round has its own stall guard
            return
        if preempt is not None:
            turn.preempt = preempt
            turn.grounding = self.agent.ground(user) if self.agent.knowledge else None
            stream = preempt.replay()
        else:
            answer = self.agent.reply(self.llm, user)
            turn.grounding = answer.grounding if self.agent.knowledge else None
            stream = answer.chunks
        self._start_reply(turn, stall_guard(stream, self.settings.llm_timeout_s, self.llm.name))

    def _new_turn(self, user: Message | None, heard: str, t_detect: float, endpointing_s: float) -> CallTurn:
        turn = CallTurn(
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

    def _start_reply(self, turn: CallTurn, chunks: AsyncIterator[str]) -> asyncio.Task[None]:
        listeners = [self._timeline_listener(turn)]
        timeline = Timeline(
            t0=turn.t_detect, lang=self.settings.log_lang, logger=log, listeners=listeners, clock=self.clock
        )
        sink = TwilioSink(self.stream_sid, turn.index, self.send, lambda index, ulaw: self._sent(turn, index, ulaw))
        turn.reply = Reply(self.tts, sink, self.engine_config, timeline)
        if turn.tool_turn is not None:
            turn.tool_turn.timeline = timeline  # tool start/end go on the turn's timeline
        turn.task = self._spawn(self._run_reply(turn, turn.reply, chunks), "reply")
        self.idle.activity()
        return turn.task

    async def _run_reply(self, turn: CallTurn, reply: Reply, chunks: AsyncIterator[str]) -> None:
        try:
            report = await reply.run(chunks)
        except Exception:
            # a fault in this reply (the socket went away mid-send) ends this reply only; what was said is kept
            log.exception("call %s: turn %d failed", self.call_sid, turn.index)
            if reply.report is None:
                return
            report = reply.report
        finally:
            if turn.preempt is not None:
                turn.preempt.cancel()  # the reply owned the preemptive LLM stream: it ends with the reply
        self._finish_reply(turn, report)

    def _finish_reply(self, turn: CallTurn, report: TurnReport) -> None:
        turn.report = report
        for s in report.sentences:
            turn.sentence(s.index).text = s.text
        observe_reply(
            report,
            tts=self.tts.name,
            llm=self.llm.name,
            answer=turn.user is not None,
            endpointing_s=turn.endpointing_s,
        )
        self.agent.remember(turn.user, self._heard(turn), turn.tool_turn.exchange if turn.tool_turn else ())
        if self.softphone and report.spoken_text:
            self.side_event({"event": "hanmadi.transcript", "role": "agent", "text": report.spoken_text})
        if not turn.pending_marks():
            self._record_turn(turn)
        self._act_on_tools(turn, report)

    def _act_on_tools(self, turn: CallTurn, report: TurnReport) -> None:
        """What the turn's tools did to the call: hang up after the goodbye, or let the transfer take the call."""
        action = self.tools.action if self.tools is not None else None
        if action is None or self._ending:
            return
        if isinstance(action, EndCall) and report.cancelled:
            assert self.tools is not None
            self.tools.action = None  # the caller spoke over the goodbye: the call goes on
            return
        self._ending = True
        if isinstance(action, EndCall):
            log.info("call %s: the agent ends the call", self.call_sid)
            self._spawn(self._hang_up_after(turn, "agent_hangup"), "end-call")
        elif isinstance(action, Transferred):
            self.end_reason = "transferred"
            self.transfer_to = action.number
            log.info("call %s: transferred to %s", self.call_sid, action.label)
            self._spawn(self._close_after_transfer(), "transfer")

    async def _close_after_transfer(self) -> None:
        await asyncio.sleep(_TRANSFER_CLOSE_S)
        await self.hang_up("transferred")

    def _sent(self, turn: CallTurn, index: int, ulaw: bytes) -> None:
        """Audio of sentence ``index`` goes to Twilio now: place it on the playback clock and in the recording."""
        duration_s = len(ulaw) / audio.SAMPLE_RATE
        piece = self.playback.add_audio(self.clock(), duration_s, (turn.index, index))
        turn.sentence(index).audio_s += duration_s
        if self.recording is not None:
            self.recording.add_bot(audio.ulaw_to_pcm_bytes(ulaw), piece.start_s - self._started_mono)

    def heard_reply(self, turn: CallTurn) -> str:
        """``turn``'s reply as the caller has heard it so far."""
        return turn.heard_reply(self.playback, self.clock())

    def _heard(self, turn: CallTurn) -> str:
        return turn.spoken(self.playback, self.clock())

    def _timeline_listener(self, turn: CallTurn) -> Callable[[TimelineEvent], None]:
        def listener(event: TimelineEvent) -> None:
            if event.kind == "sentence" and event.index is not None:
                turn.sentence(event.index).text = event.text
            if self.softphone and event.kind != "chunk_sent":
                line = format_event(event, self.settings.log_lang)
                self.side_event(
                    {"event": "hanmadi.timeline", "turn": turn.index, "line": line, "data": event.to_dict()}
                )

        return listener

    def _record_turn(self, turn: CallTurn) -> None:
        if turn.recorded or turn.report is None:
            return
        turn.recorded = True
        if self.recorder is not None:
            self.recorder.turn_finished(turn.record(self.call_sid, self._heard(turn)))

    # --- outbound ----------------------------------------------------------------------------------------

    async def send(self, message: str) -> None:
        async with self._send_lock:
            await self.transport.send_text(message)

    def side_event(self, payload: dict[str, Any]) -> None:
        """Softphone-only extra events (live timeline, transcript); Twilio never sees these."""
        self._spawn(self.send(json.dumps(payload, ensure_ascii=False)), "side-event")

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """Start a task owned by this call: cancelled when the call ends, never outliving it."""
        task = self._tg.create_task(self._guarded(coro, what), name=f"{what}:{self.call_sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # a task cancelled before its first step never started ``coro``: close it (a no-op once it has run)
        task.add_done_callback(lambda _: coro.close())
        return task

    async def _guarded(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run one call task; a crash is a bug: logged with its traceback, counted, and the call ends."""
        try:
            await coro
        except Exception:
            log.exception("call %s: %s task crashed", self.call_sid, what)
            metrics.CALL_CRASHES.labels(task=what).inc()
            self.end_reason = "error"
            await self.hang_up("error", _CLOSE_ERROR)


async def _once(text: str) -> AsyncIterator[str]:
    yield text
