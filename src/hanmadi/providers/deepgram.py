"""Deepgram live streaming speech-to-text over a WebSocket (Korean).

``wss://api.deepgram.com/v1/listen?encoding=linear16&sample_rate=8000&language=ko&interim_results=true``
(+ ``model``) with ``Authorization: Token <key>``. Binary messages carry PCM; the server answers with JSON ``Results``
messages (``channel.alternatives[0].transcript``, ``is_final``, ``speech_final``, ``from_finalize``,
``start``, ``duration``). ``{"type": "Finalize"}`` flushes the audio at the end of the caller's turn, ``{"type":
"KeepAlive"}`` holds an idle connection open, ``{"type": "CloseStream"}`` ends the session.

A turn survives a dropped connection: the stream keeps the current turn's audio, reconnects once and sends
that audio again, so the final transcript still covers the whole turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from hanmadi.providers._http import (
    RETRY_BACKOFF_S,
    count_failure,
    fail,
    is_retryable_status,
    reason_for_status,
    retry_delay,
)
from hanmadi.providers.base import Transcript
from hanmadi.providers.turn_audio import TurnAudio

log = logging.getLogger(__name__)

PROVIDER = "deepgram"
DEEPGRAM_BASE_URL = "wss://api.deepgram.com"
_FINALIZE = json.dumps({"type": "Finalize"})
_KEEPALIVE = json.dumps({"type": "KeepAlive"})
_CLOSE_STREAM = json.dumps({"type": "CloseStream"})
# A final result whose end is this close to the audio sent covers the whole turn.
_COVER_TOLERANCE_S = 0.02
# Turn audio sent again after a reconnect goes out in messages of at most this size.
_RESEND_BYTES = 32_000


class DeepgramSTT:
    """Deepgram live transcription: one WebSocket session per call."""

    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        base_url: str = DEEPGRAM_BASE_URL,
        model: str = "nova-2",
        timeout_s: float = 10.0,
        *,
        language: str = "ko",
        finalize_timeout_s: float | None = None,
        keepalive_s: float = 5.0,
        params: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.language = language
        self.timeout_s = timeout_s
        # Deepgram does not promise a from_finalize answer when little audio is pending, so the wait is short
        self.finalize_timeout_s = min(timeout_s, 2.0) if finalize_timeout_s is None else finalize_timeout_s
        # Deepgram closes a session that gets no message for ~10 s
        self.keepalive_s = keepalive_s
        self.params = dict(params or {})
        self._api_key = api_key

    def url(self, sample_rate: int) -> str:
        query = {
            "encoding": "linear16",
            "sample_rate": str(sample_rate),
            "channels": "1",
            "language": self.language,
            "model": self.model,
            "interim_results": "true",
            "punctuate": "true",
            **self.params,
        }
        return f"{self.base_url}/v1/listen?{urlencode(query)}"

    async def open(self, sample_rate: int = 8000) -> DeepgramStream:
        """Connect a live session for one call."""
        stream = DeepgramStream(self, sample_rate)
        await stream.start()
        return stream

    async def connect(self, sample_rate: int) -> ClientConnection:
        """Open the WebSocket, retrying once on a refused connection or a 429/5xx handshake answer."""
        attempt = 0
        while True:
            try:
                return await connect(
                    self.url(sample_rate),
                    additional_headers={"Authorization": f"Token {self._api_key}"},
                    open_timeout=self.timeout_s,
                    close_timeout=min(self.timeout_s, 2.0),
                    max_size=2**20,
                    ping_interval=None,  # liveness is ours: KeepAlive messages and the finalize timeout
                )
            except TimeoutError as exc:
                raise fail(PROVIDER, "timeout", f"no handshake within {self.timeout_s:g} s") from exc
            except InvalidStatus as exc:
                status = exc.response.status_code
                delay = retry_delay(exc.response.headers) if is_retryable_status(status) else None
                if attempt == 0 and delay is not None:
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                raise fail(PROVIDER, reason_for_status(status), f"handshake answered HTTP {status}") from exc
            except (OSError, InvalidHandshake) as exc:
                if attempt == 0:
                    attempt += 1
                    await asyncio.sleep(RETRY_BACKOFF_S)
                    continue
                raise fail(PROVIDER, "connect", f"{type(exc).__name__}: {exc}") from exc

    async def warm_up(self) -> None:
        """Nothing to load: each call opens its own streaming socket."""

    async def aclose(self) -> None:
        """Nothing to release: each call's socket is closed with its stream."""


class DeepgramStream:
    """One call's live session. ``push``/``finalize`` are called in order by one task; a reader task owned by
    the stream collects results. ``aclose`` leaves no task behind.
    """

    def __init__(self, stt: DeepgramSTT, sample_rate: int) -> None:
        self._stt = stt
        self.sample_rate = sample_rate
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()  # set by the reader on every result and when the connection ends
        self._closed = False
        # stream time (seconds of audio pushed)
        self._sent_s = 0.0
        self._turn_start_s = 0.0
        self._offset_s = 0.0  # stream time at which the current connection's audio starts
        self._last_send = time.monotonic()
        # the current turn
        self._turn_audio = TurnAudio(self.sample_rate)  # kept for a resend: the caller's speech, not the silence
        self._finals: list[str] = []
        self._interim = ""
        self._final_end_s = 0.0
        self._from_finalize = False
        self._last_partial = ""
        self._new: list[Transcript] = []
        self._reconnects_in_turn = 0
        self._replace_next = False  # the connection was dropped on purpose: replace it quietly

    # --- connection ----------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._lock:
            await self._connect()

    async def _connect(self) -> None:
        ws = await self._stt.connect(self.sample_rate)
        self._ws = ws
        self._offset_s = self._turn_start_s
        self._changed.clear()
        self._reader = asyncio.create_task(self._read(ws), name="deepgram-reader")

    def _connected(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def _teardown(self) -> None:
        """Drop the connection at once (no closing handshake) and stop its reader."""
        reader, self._reader = self._reader, None
        ws, self._ws = self._ws, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if ws is not None:
            ws.transport.abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 1.0)

    async def _reconnect(self, why: str) -> None:
        """Replace a lost connection and send the turn's audio again; once per turn.

        A connection this stream dropped itself (after a stalled finalize) is replaced without counting.
        """
        await self._teardown()
        if self._replace_next:
            self._replace_next = False
        elif self._reconnects_in_turn >= 1:
            raise fail(PROVIDER, "connect", f"{why}, again in the same turn")
        else:
            self._reconnects_in_turn += 1
            count_failure(PROVIDER, "connect", f"{why}; reconnecting")
        await self._connect()
        self._finals, self._interim, self._last_partial = [], "", ""
        self._final_end_s, self._from_finalize = self._offset_s, False
        audio = bytes(self._turn_audio)
        try:
            for i in range(0, len(audio), _RESEND_BYTES):
                await self._send(audio[i : i + _RESEND_BYTES])
        except (ConnectionClosed, TimeoutError) as exc:
            await self._teardown()
            raise fail(PROVIDER, "connect", "connection lost again while resending the turn") from exc

    async def _send(self, message: bytes | str) -> None:
        if self._ws is None:
            raise ConnectionClosed(None, None)
        async with asyncio.timeout(self._stt.timeout_s):
            await self._ws.send(message)
        self._last_send = time.monotonic()

    async def _send_or_reconnect(self, message: bytes | str) -> bool:
        """Send on the live connection, or reconnect (which resends the turn). True if sent as is."""
        if not self._connected():
            await self._reconnect("connection lost")
            return False
        try:
            await self._send(message)
        except ConnectionClosed:
            await self._reconnect("connection lost")
            return False
        except TimeoutError:
            await self._reconnect(f"send blocked for {self._stt.timeout_s:g} s")
            return False
        return True

    async def _read(self, ws: ClientConnection) -> None:
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), self._stt.keepalive_s)
                except TimeoutError:  # cancelling recv() loses nothing
                    if time.monotonic() - self._last_send >= self._stt.keepalive_s:
                        await ws.send(_KEEPALIVE)
                        self._last_send = time.monotonic()
                    continue
                self._handle(message)
                self._changed.set()
        except ConnectionClosed as exc:
            if not self._closed:
                log.info("deepgram connection closed: %s", exc)
        finally:
            self._changed.set()

    # --- results ---------------------------------------------------------------------------------

    def _turn_text(self) -> str:
        return " ".join(t for t in [*self._finals, self._interim] if t)

    def _handle(self, message: str | bytes) -> None:
        try:
            data: Any = json.loads(message)
            if not isinstance(data, dict) or data.get("type") != "Results":
                return  # Metadata, SpeechStarted, UtteranceEnd
            transcript = data["channel"]["alternatives"][0]["transcript"]
            end_s = self._offset_s + float(data.get("start", 0.0)) + float(data.get("duration", 0.0))
            if not isinstance(transcript, str):
                raise TypeError("transcript is not text")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            count_failure(PROVIDER, "bad_reply", f"unreadable message: {exc}")
            return
        transcript = transcript.strip()
        if data.get("is_final"):
            if transcript:
                self._finals.append(transcript)
            self._interim = ""
            self._final_end_s = max(self._final_end_s, end_s)
        else:
            self._interim = transcript
        if data.get("from_finalize"):
            self._from_finalize = True
        partial = self._turn_text()
        if partial and partial != self._last_partial:
            self._last_partial = partial
            self._new.append(Transcript(partial, False, end_s))

    def _turn_finalized(self) -> bool:
        return self._from_finalize or self._final_end_s >= self._sent_s - _COVER_TOLERANCE_S

    def _reset_turn(self) -> None:
        self._turn_audio.take()
        self._finals, self._interim, self._last_partial = [], "", ""
        self._from_finalize = False
        self._turn_start_s = self._final_end_s = self._sent_s
        self._reconnects_in_turn = 0

    # --- the STTStream interface -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the Deepgram stream is closed")

    async def push(self, pcm: bytes) -> list[Transcript]:
        """Send caller audio; return the partial transcripts (``is_final=False``) that arrived since."""
        async with self._lock:
            self._check_open()
            if pcm:
                self._turn_audio.add(pcm)
                self._sent_s += len(pcm) / 2 / self.sample_rate
                # a resend starts where the kept audio starts
                self._turn_start_s = self._sent_s - self._turn_audio.duration_s
                await self._send_or_reconnect(pcm)
            new, self._new = self._new, []
            return new

    async def finalize(self) -> Transcript:
        """Flush the turn (``Finalize``) and return its final transcript.

        Waits up to ``finalize_timeout_s`` for Deepgram to confirm (``from_finalize``) or for final results
        that cover all the audio sent. Past that the turn is closed with what was heard (counted as
        ``timeout``) and the connection is replaced at the next push, in case it was stalled.
        """
        async with self._lock:
            self._check_open()
            try:
                if not self._turn_audio:
                    return Transcript("", True, self._sent_s)
                await self._await_final()
                return Transcript(self._turn_text(), True, self._sent_s)
            finally:
                self._new = []
                self._reset_turn()

    async def _await_final(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stt.finalize_timeout_s
        self._from_finalize = False
        sent = False
        while not self._turn_finalized():
            if not sent:
                sent = await self._send_or_reconnect(_FINALIZE)
                if not sent:  # reconnected: the turn's audio went again, Finalize goes next round
                    deadline = loop.time() + self._stt.finalize_timeout_s
                continue
            if not self._connected():
                await self._reconnect("connection lost while finalizing")
                deadline = loop.time() + self._stt.finalize_timeout_s
                sent = False
                continue
            self._changed.clear()
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                count_failure(
                    PROVIDER,
                    "timeout",
                    f"no final within {self._stt.finalize_timeout_s:g} s; using what was heard",
                )
                await self._teardown()
                self._replace_next = True
                return

    async def aclose(self) -> None:
        """Send ``CloseStream``, give the server a moment to close, then drop the connection and reader."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._connected() and self._ws is not None and self._reader is not None:
                async with asyncio.timeout(min(self._stt.timeout_s, 2.0)):
                    await self._ws.send(_CLOSE_STREAM)
                    await asyncio.shield(self._reader)
        except (TimeoutError, ConnectionClosed):
            pass
        finally:
            await self._teardown()
