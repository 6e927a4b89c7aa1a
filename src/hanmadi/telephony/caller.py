"""The simulated caller: Media Streams from Twilio's side, shipped in the package like Starlette's TestClient.

``place_call(config)`` answers like Twilio would: it POSTs the signed webhook (for an http(s) URL), reads the
TwiML, opens the ``<Stream>`` WebSocket, sends ``connected`` and ``start``, then streams the caller's
microphone in real time — 20 ms frames, the utterance of each turn, silence otherwise. The bot's audio is
"played" on a model of Twilio's playback buffer: audio plays in real time from when it arrives, a ``mark`` is
echoed when playback reaches it, and a ``clear`` drops the buffer and echoes every pending mark at once.
Everything is recorded on one clock, zero at ``start``, and measured per turn.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import itertools
import json
import secrets
import ssl
import time
import wave
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from hanmadi.telephony import audio
from hanmadi.telephony.playback import PendingMark, Piece, PlaybackClock
from hanmadi.telephony.twilio import SIGNATURE_HEADER, VOICE_PATH, compute_signature

if TYPE_CHECKING:
    from hanmadi.providers.base import TTS

FRAME_S: Final = audio.FRAME_MS / 1000
BYTES_PER_S: Final = audio.SAMPLE_RATE  # mu-law: one byte a sample
GAP_MIN_S: Final = 0.040  # playback silences shorter than this are not gaps
GREETING: Final = -1  # the turn index of audio heard before the caller's first utterance
_SILENCE_FRAME: Final = bytes([audio.ULAW_SILENCE]) * audio.FRAME_BYTES_ULAW
_SILENCE_PAYLOAD: Final = base64.b64encode(_SILENCE_FRAME).decode("ascii")
_POLL_S: Final = 0.02


class CallerError(Exception):
    """The call could not be placed: the webhook refused it, the TwiML had no stream, the socket failed."""


@dataclass
class CallerConfig:
    """One simulated call. ``utterances`` are 8 kHz mono PCM16 bytes, one per turn (reused cyclically)."""

    url: str  # http(s)://host[/twilio/voice] → webhook first; ws(s)://host/twilio/media → stream directly
    utterances: list[bytes]
    params: dict[str, str] = field(default_factory=dict)  # customParameters; override the TwiML's
    auth_token: str | None = None  # signs the webhook and the WebSocket upgrade like Twilio
    turns: int = 1
    answer_timeout_s: float = 15.0  # how long to wait for a reply to start (and for the webhook/socket)
    silence_after_s: float = 0.8  # a reply is over once nothing played or arrived for this long
    greeting_timeout_s: float = 5.0  # how long to wait for a greeting before the first utterance
    barge_in_after_s: float | None = None  # start utterances 2.. this long after the reply's first audio
    dtmf: dict[int, str] = field(default_factory=dict)  # turn index → digits pressed after that utterance
    from_number: str = "+821012345678"
    to_number: str = "+8225550100"
    call_sid: str | None = None
    account_sid: str | None = None
    max_duration_s: float = 300.0
    stop_after_s: float | None = None  # start no new utterance after this long (hang up after that reply)


@dataclass
class MarkEcho:
    """A mark the bot sent and we echoed: ``cleared`` when a ``clear`` emptied the buffer before it played."""

    name: str
    turn: int
    received_s: float
    echoed_s: float
    cleared: bool


@dataclass
class TurnResult:
    """What the caller measured in one turn: from the end of its utterance to the end of the bot's reply."""

    index: int
    end_of_speech_s: float
    first_audio_ms: float | None = None  # end of our speech → first media frame back
    reply_audio_s: float = 0.0  # audio received
    heard_audio_s: float = 0.0  # audio played before any clear
    gaps_ms: list[float] = field(default_factory=list)  # silences > 40 ms inside the reply's playback
    interrupted: bool = False  # part of the reply was cleared (barge-in)
    timed_out: bool = False  # no reply within answer_timeout_s
    dtmf: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``hanmadi call --json``'s ``turns`` items."""
        return {
            "first_audio_ms": None if self.first_audio_ms is None else round(self.first_audio_ms, 1),
            "reply_audio_s": round(self.reply_audio_s, 3),
            "heard_audio_s": round(self.heard_audio_s, 3),
            "gaps_ms": [round(g, 1) for g in self.gaps_ms],
            "interrupted": self.interrupted,
            "timed_out": self.timed_out,
            "dtmf": self.dtmf,
        }


@dataclass
class _Segment:
    """One received media message: its audio and its piece of the playback clock (which a clear truncates)."""

    piece: Piece
    mulaw: bytes
    turn: int

    @property
    def start_s(self) -> float:
        return self.piece.start_s

    @property
    def arrived_s(self) -> float:
        return self.piece.arrived_s

    @property
    def played_bytes(self) -> int:
        return min(len(self.mulaw), int(self.piece.played_s * BYTES_PER_S + 1e-6))

    @property
    def end_s(self) -> float:
        return self.start_s + self.played_bytes / BYTES_PER_S


@dataclass
class CallResult:
    """Everything one simulated call saw, on the call's clock (seconds from ``start``)."""

    call_sid: str
    stream_sid: str
    account_sid: str
    answered: bool = False  # a stream was opened
    busy_message: str | None = None  # the <Say> of TwiML that declined the call
    stream_url: str | None = None
    greeting_first_audio_ms: float | None = None  # from ``start``
    greeting_audio_s: float = 0.0
    turns: list[TurnResult] = field(default_factory=list)
    marks: list[MarkEcho] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    dtmf_sent: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # protocol errors the bot made
    frames_sent: int = 0  # microphone frames
    late_frames: int = 0  # microphone frames sent more than one frame (20 ms) after their due time
    max_frame_lateness_ms: float = 0.0
    hung_up_by: Literal["caller", "bot"] | None = None
    close_code: int | None = None
    close_reason: str = ""
    duration_s: float = 0.0
    caller_mulaw: bytes = b""  # everything we sent, frame n at n x 20 ms
    segments: list[_Segment] = field(default_factory=list)

    @property
    def marks_echoed(self) -> int:
        return len(self.marks)

    def bot_track(self) -> np.ndarray:
        """The bot's audio as the caller heard it: int16 8 kHz on the call's clock, silence in between."""
        played = [s for s in self.segments if s.played_bytes]
        end = max((s.end_s for s in played), default=0.0)
        track = np.zeros(round(end * BYTES_PER_S) + 1 if played else 0, dtype=np.int16)
        for seg in played:
            pcm = audio.ulaw_to_pcm16(seg.mulaw[: seg.played_bytes])
            at = round(seg.start_s * BYTES_PER_S)
            track[at : at + pcm.size] = pcm[: track.size - at]
        return track

    @property
    def reply_pcm(self) -> bytes:
        """8 kHz PCM16 of the bot audio the caller heard, from its first sound to its last (for ``--out``)."""
        track = self.bot_track()
        first = min((s.start_s for s in self.segments if s.played_bytes), default=0.0)
        return bytes(track[round(first * BYTES_PER_S) :].astype("<i2").tobytes())

    def conversation_stereo(self) -> bytes:
        """Interleaved stereo PCM16 8 kHz: the caller left, the bot right, aligned on the call's clock."""
        caller = audio.ulaw_to_pcm16(self.caller_mulaw)
        bot = self.bot_track()
        n = max(caller.size, bot.size)
        stereo = np.zeros((n, 2), dtype="<i2")
        stereo[: caller.size, 0] = caller
        stereo[: bot.size, 1] = bot
        return bytes(stereo.tobytes())

    def to_json(self) -> dict[str, Any]:
        """The report of ``hanmadi call --json``."""
        return {
            "call_sid": self.call_sid,
            "answered": self.answered,
            "busy_message": self.busy_message,
            "greeting_first_audio_ms": (
                None if self.greeting_first_audio_ms is None else round(self.greeting_first_audio_ms, 1)
            ),
            "greeting_audio_s": round(self.greeting_audio_s, 3),
            "turns": [t.to_json() for t in self.turns],
            "marks_echoed": self.marks_echoed,
            "marks_cleared": sum(m.cleared for m in self.marks),
            "clears": len(self.clears),
            "dtmf_sent": "".join(self.dtmf_sent),
            "errors": self.errors,
            "frames_sent": self.frames_sent,
            "late_frames": self.late_frames,
            "hung_up_by": self.hung_up_by,
            "close_code": self.close_code,
            "duration_s": round(self.duration_s, 3),
        }


class _Playback:
    """Twilio's outbound buffer (the shared :class:`PlaybackClock`) plus the audio of each piece, for the recording."""

    def __init__(self) -> None:
        self.clock = PlaybackClock()
        self.segments: list[_Segment] = []
        self.first_arrival_s: dict[int, float] = {}

    @property
    def pending(self) -> deque[PendingMark]:
        return self.clock.pending

    def add_audio(self, now: float, mulaw: bytes, turn: int) -> None:
        self.segments.append(_Segment(self.clock.add_audio(now, len(mulaw) / BYTES_PER_S, turn), mulaw, turn))
        self.first_arrival_s.setdefault(turn, now)

    def add_mark(self, now: float, name: str, turn: int) -> None:
        self.clock.add_mark(now, name, turn)

    def next_due_s(self) -> float | None:
        return self.clock.next_due_s()

    def pop_due(self, now: float) -> list[PendingMark]:
        return self.clock.pop_due(now)

    def clear(self, now: float) -> list[PendingMark]:
        """Drop what has not played yet; return every pending mark (all echoed at once)."""
        return self.clock.clear(now)

    def quiet_since_s(self) -> float:
        return self.clock.quiet_since_s()


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class _Session:
    """One open stream: the microphone, the receiver, the mark echoer and the turn script, on one clock."""

    def __init__(self, ws: ClientConnection, config: CallerConfig, result: CallResult) -> None:
        self.ws = ws
        self.config = config
        self.result = result
        self.playback = _Playback()
        self.turn = GREETING
        self.closed = asyncio.Event()
        self._t0 = time.monotonic()
        self._seq = 0
        self._send_lock = asyncio.Lock()
        self._mark_added = asyncio.Event()
        self._speech: deque[bytes] = deque()
        self._speech_done = asyncio.Event()
        self._speech_done_s = 0.0
        self._sent = bytearray()

    def now(self) -> float:
        return time.monotonic() - self._t0

    async def _send(self, message: dict[str, Any], *, numbered: bool = True) -> None:
        async with self._send_lock:
            if numbered:
                self._seq += 1
                message["sequenceNumber"] = str(self._seq)
            await self.ws.send(json.dumps(message, separators=(",", ":")))

    async def _send_media(self, n: int, payload: str) -> None:
        """Frame ``n`` of the microphone; formatted by hand (50 a second per call: no dict, no json.dumps)."""
        async with self._send_lock:
            self._seq += 1
            await self.ws.send(
                f'{{"event":"media","sequenceNumber":"{self._seq}","media":{{"track":"inbound","chunk":"{n + 1}",'
                f'"timestamp":"{n * audio.FRAME_MS}","payload":"{payload}"}},"streamSid":"{self.result.stream_sid}"}}'
            )

    async def open(self, params: dict[str, str]) -> None:
        r = self.result
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"}, numbered=False)
        start = {
            "accountSid": self.result.account_sid,
            "streamSid": r.stream_sid,
            "callSid": r.call_sid,
            "tracks": ["inbound"],
            "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": audio.SAMPLE_RATE, "channels": 1},
        }
        await self._send({"event": "start", "start": start, "streamSid": r.stream_sid})
        self._t0 = time.monotonic()

    # --- the microphone: one frame every 20 ms, speech when queued, silence otherwise ---------------------

    async def microphone(self) -> None:
        n = 0
        r = self.result
        try:
            while True:
                delay = n * FRAME_S - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                    delay = n * FRAME_S - self.now()
                # how late this frame leaves: a busy caller (load generator) shows up here, not as a bot delay
                if -delay > FRAME_S:
                    r.late_frames += 1
                    r.max_frame_lateness_ms = max(r.max_frame_lateness_ms, -delay * 1000)
                speaking = bool(self._speech)
                frame = self._speech.popleft() if speaking else _SILENCE_FRAME
                payload = base64.b64encode(frame).decode("ascii") if speaking else _SILENCE_PAYLOAD
                await self._send_media(n, payload)
                self._sent += frame
                n += 1
                r.frames_sent = n
                if speaking and not self._speech:
                    self._speech_done_s = self.now()
                    self._speech_done.set()
        except ConnectionClosed:
            self.closed.set()
            self._speech_done.set()

    async def speak(self, pcm: bytes) -> float:
        """Queue ``pcm`` on the microphone; return the time its last frame was sent (the end of speech)."""
        if not pcm:
            return self.now()
        self._speech_done.clear()
        self._speech.extend(audio.frames(audio.pcm_bytes_to_ulaw(pcm)))
        await self._speech_done.wait()
        return self._speech_done_s if not self.closed.is_set() else self.now()

    async def press(self, digits: str) -> None:
        for i, digit in enumerate(digits):
            if i:
                await asyncio.sleep(0.1)  # keypresses are ~100 ms apart on a real phone
            dtmf = {"track": "inbound_track", "digit": digit}
            await self._send({"event": "dtmf", "streamSid": self.result.stream_sid, "dtmf": dtmf})
            self.result.dtmf_sent.append(digit)

    # --- the speaker: receive, play, echo ------------------------------------------------------------------

    async def receive(self) -> None:
        try:
            async for raw in self.ws:
                await self._on_message(raw)
        except ConnectionClosed:
            pass
        # the bot hung up (a cancelled receiver never gets here)
        self.result.hung_up_by = "bot"
        self.closed.set()
        self._speech_done.set()

    async def _on_message(self, raw: str | bytes) -> None:
        errors = self.result.errors
        if not isinstance(raw, str):
            errors.append("binary_frame")
            return
        try:
            msg = json.loads(raw)
        except ValueError:
            errors.append("invalid_json")
            return
        if not isinstance(msg, dict):
            errors.append("not_object")
            return
        event = msg.get("event")
        if msg.get("streamSid") != self.result.stream_sid:
            errors.append(f"wrong_stream_sid:{event}")  # Twilio ignores such messages
            return
        now = self.now()
        if event == "media":
            payload = msg.get("media", {}).get("payload") if isinstance(msg.get("media"), dict) else None
            try:
                mulaw = base64.b64decode(payload, validate=True) if isinstance(payload, str) else None
            except (binascii.Error, ValueError):
                mulaw = None
            if mulaw is None:
                errors.append("bad_media")
                return
            self.playback.add_audio(now, mulaw, self.turn)
        elif event == "mark":
            name = msg.get("mark", {}).get("name") if isinstance(msg.get("mark"), dict) else None
            if not isinstance(name, str):
                errors.append("bad_mark")
                return
            self.playback.add_mark(now, name, self.turn)
            self._mark_added.set()
        elif event == "clear":
            self.result.clears.append(now)
            for mark in self.playback.clear(now):
                await self._echo(mark, cleared=True)
        else:
            errors.append(f"unknown_event:{str(event)[:20]}")

    async def _echo(self, mark: PendingMark, *, cleared: bool) -> None:
        turn = mark.key if isinstance(mark.key, int) else -1
        self.result.marks.append(MarkEcho(mark.name, turn, mark.received_s, self.now(), cleared))
        await self._send({"event": "mark", "streamSid": self.result.stream_sid, "mark": {"name": mark.name}})

    async def echo_marks(self) -> None:
        """Echo each mark when playback reaches it."""
        try:
            while True:
                due = self.playback.next_due_s()
                try:
                    async with asyncio.timeout(None if due is None else max(0.0, due - self.now())):
                        await self._mark_added.wait()
                except TimeoutError:
                    pass
                self._mark_added.clear()
                for mark in self.playback.pop_due(self.now()):
                    await self._echo(mark, cleared=False)
        except ConnectionClosed:
            pass

    # --- the script: greeting, then utterance → reply, turn by turn ----------------------------------------

    async def _wait_reply(self, turn: int, since_s: float, timeout_s: float, barge_in_s: float | None) -> bool:
        """Wait for the reply of ``turn`` to start and finish; False when it never started."""
        cfg = self.config
        while not self.closed.is_set():
            now = self.now()
            first = self.playback.first_arrival_s.get(turn)
            if first is None:
                if now - since_s >= timeout_s:
                    return False
            elif barge_in_s is not None and now >= first + barge_in_s:
                return True
            elif not self.playback.pending and now - self.playback.quiet_since_s() >= cfg.silence_after_s:
                return True
            else:
                # the reply is playing: nothing can end it before silence_after_s past the last sound
                wake = self.playback.quiet_since_s() + cfg.silence_after_s
                if barge_in_s is not None:
                    wake = min(wake, first + barge_in_s)
                await asyncio.sleep(max(_POLL_S, wake - now))
                continue
            await asyncio.sleep(_POLL_S)
        return self.playback.first_arrival_s.get(turn) is not None

    async def script(self) -> None:
        cfg = self.config
        await self._wait_reply(GREETING, 0.0, cfg.greeting_timeout_s, None)
        for i in range(cfg.turns):
            if self.closed.is_set():
                return
            if cfg.stop_after_s is not None and i and self.now() >= cfg.stop_after_s:
                return
            utterance = cfg.utterances[i % len(cfg.utterances)] if cfg.utterances else b""
            end_of_speech = await self.speak(utterance)
            self.turn = i
            turn = TurnResult(index=i, end_of_speech_s=end_of_speech)
            self.result.turns.append(turn)
            if digits := cfg.dtmf.get(i, ""):
                await self.press(digits)
                turn.dtmf = digits
            barge_in = cfg.barge_in_after_s if i + 1 < cfg.turns else None
            turn.timed_out = not await self._wait_reply(i, end_of_speech, cfg.answer_timeout_s, barge_in)

    async def hang_up(self) -> None:
        if self.closed.is_set():
            return
        r = self.result
        r.hung_up_by = "caller"
        stop = {"accountSid": self.result.account_sid, "callSid": r.call_sid}
        try:
            await self._send({"event": "stop", "streamSid": r.stream_sid, "stop": stop})
        except ConnectionClosed:
            pass

    def finish(self) -> None:
        """Turn the recordings into the per-turn measurements."""
        r = self.result
        r.duration_s = self.now()
        r.caller_mulaw = bytes(self._sent)
        r.segments = self.playback.segments
        r.close_code = self.ws.close_code
        r.close_reason = self.ws.close_reason or ""
        first = self.playback.first_arrival_s
        if GREETING in first:
            r.greeting_first_audio_ms = first[GREETING] * 1000
        r.greeting_audio_s = sum(len(s.mulaw) for s in r.segments if s.turn == GREETING) / BYTES_PER_S
        for turn in r.turns:
            segs = [s for s in r.segments if s.turn == turn.index]
            if turn.index in first:
                turn.first_audio_ms = (first[turn.index] - turn.end_of_speech_s) * 1000
            turn.reply_audio_s = sum(len(s.mulaw) for s in segs) / BYTES_PER_S
            turn.heard_audio_s = sum(s.played_bytes for s in segs) / BYTES_PER_S
            turn.interrupted = any(s.played_bytes < len(s.mulaw) for s in segs)
            played = [s for s in segs if s.played_bytes]
            turn.gaps_ms = [
                (b.start_s - a.end_s) * 1000 for a, b in itertools.pairwise(played) if b.start_s - a.end_s > GAP_MIN_S
            ]


# --- placing the call ---------------------------------------------------------------------------------------


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: httpx builds one per client otherwise, loading the CA bundle each time
    (~30 ms of CPU a call: with 200 calls starting, a third of a core for the load generator)."""
    return httpx.create_ssl_context()


async def _answer_webhook(config: CallerConfig, result: CallResult) -> tuple[str | None, dict[str, str]]:
    """POST the voice webhook like Twilio; return the ``<Stream>`` URL (None if declined) and parameters."""
    parts = urlsplit(config.url)
    url = config.url if parts.path not in ("", "/") else config.url.rstrip("/") + VOICE_PATH
    form = {
        "AccountSid": result.account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": result.call_sid,
        "CallStatus": "ringing",
        "Called": config.to_number,
        "Caller": config.from_number,
        "Direction": "inbound",
        "From": config.from_number,
        "FromCountry": "KR",
        "To": config.to_number,
        "ToCountry": "KR",
    }
    headers = {SIGNATURE_HEADER: compute_signature(config.auth_token, url, form)} if config.auth_token else {}
    async with httpx.AsyncClient(timeout=config.answer_timeout_s, verify=_tls_context()) as client:
        response = await client.post(url, data=form, headers=headers)
    if response.status_code != 200:
        raise CallerError(f"webhook {url} answered HTTP {response.status_code}")
    try:
        twiml = ET.fromstring(response.content)
    except ET.ParseError as exc:
        raise CallerError(f"webhook {url} answered invalid TwiML: {exc}") from None
    stream = twiml.find("./Connect/Stream")
    if stream is None:
        say = twiml.find("./Say")
        if say is None and twiml.find("./Hangup") is None:
            raise CallerError(f"webhook {url} answered TwiML without <Connect><Stream>")
        result.busy_message = (say.text or "") if say is not None else ""
        return None, {}
    stream_url = stream.get("url")
    if not stream_url:
        raise CallerError("<Stream> has no url")
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream_url, params


async def place_call(config: CallerConfig) -> CallResult:
    """Place one simulated call; return what the caller measured. Cancelling hangs up; no task survives it."""
    if config.turns < 0:
        raise ValueError("turns must be >= 0")
    result = CallResult(
        call_sid=config.call_sid or _sid("CA"),
        stream_sid=_sid("MZ"),
        account_sid=config.account_sid or _sid("AC"),
    )
    scheme = urlsplit(config.url).scheme
    if scheme in ("http", "https"):
        stream_url, params = await _answer_webhook(config, result)
        if stream_url is None:
            return result
    elif scheme in ("ws", "wss"):
        stream_url, params = config.url, {}
    else:
        raise CallerError(f"unsupported URL scheme in {config.url!r}")
    params = {**params, **config.params}
    result.stream_url = stream_url
    # Twilio signs the upgrade request over the wss URL, no parameters
    headers = {SIGNATURE_HEADER: compute_signature(config.auth_token, stream_url, {})} if config.auth_token else {}
    try:
        ws_connect = connect(
            stream_url, additional_headers=headers, open_timeout=config.answer_timeout_s, compression=None
        )
        ws = await ws_connect
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise CallerError(f"cannot open {stream_url}: {exc}") from exc
    async with ws:
        result.answered = True
        session = _Session(ws, config, result)
        await session.open(params)
        async with asyncio.TaskGroup() as tg:
            background = [
                tg.create_task(session.microphone()),
                tg.create_task(session.receive()),
                tg.create_task(session.echo_marks()),
            ]
            try:
                async with asyncio.timeout(config.max_duration_s):
                    await session.script()
            except TimeoutError:
                result.errors.append("max_duration")
            finally:
                await _cancel_all(background)
                await session.hang_up()
    session.finish()
    return result


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- audio files --------------------------------------------------------------------------------------------


def load_wav_8k(path: str | Path) -> bytes:
    """Read a 16-bit WAV (any rate, mono or stereo) as 8 kHz mono PCM16 bytes."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        channels, rate = wav.getnchannels(), wav.getframerate()
        data = wav.readframes(wav.getnframes())
    samples = np.frombuffer(data, dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).round().astype(np.int16)
    return bytes(audio.resample(samples, rate, audio.SAMPLE_RATE).astype("<i2").tobytes())


def write_wav(path: str | Path, pcm: bytes, sample_rate: int = audio.SAMPLE_RATE, channels: int = 1) -> None:
    """Write PCM16 bytes (interleaved when ``channels`` > 1) as a WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)


async def tts_utterance(tts: TTS, text: str) -> bytes:
    """``text`` spoken by ``tts`` as 8 kHz PCM16 bytes, for ``hanmadi call --say``."""
    parts: list[np.ndarray] = []
    async for chunk in tts.synthesize(text):
        samples = np.frombuffer(chunk.pcm, dtype="<i2")
        parts.append(await asyncio.to_thread(audio.resample, samples, chunk.sample_rate, audio.SAMPLE_RATE))
    return bytes(np.concatenate(parts).astype("<i2").tobytes()) if parts else b""


__all__ = [
    "CallResult",
    "CallerConfig",
    "CallerError",
    "MarkEcho",
    "TurnResult",
    "load_wav_8k",
    "place_call",
    "tts_utterance",
    "write_wav",
]
