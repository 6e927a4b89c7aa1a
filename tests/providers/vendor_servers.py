"""Fake vendor servers on loopback, speaking each vendor's documented wire format.

One Starlette app (under uvicorn) answers the HTTP vendors — OpenAI chat completions (SSE), ``/audio/speech``
(streamed PCM), ``/audio/transcriptions`` (multipart), ElevenLabs streaming TTS, Google ``text:synthesize``
(base64 WAV), CLOVA Voice (WAV body) — and a ``websockets`` server plays Deepgram live. Both run on their own
event loop in a background thread, so a client bug that blocks its loop shows up as a failure, not a deadlock.

Tests steer the servers through ``Control``: queued error answers, a mode for the next stream (``ok``,
``drop`` — the connection dies mid-answer, ``stall`` — the answer stops mid-way, ``garbage`` — malformed
payload), and they read back what the servers saw.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import struct
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

OPENAI_KEY = "sk-test-openai"
ELEVENLABS_KEY = "xi-test-key"
GOOGLE_KEY = "google-test-key"
CLOVA_ID = "clova-id"
CLOVA_SECRET = "clova-secret"
DEEPGRAM_KEY = "dg-test-key"

CHAT_TOKENS = ["안녕하세요", ", ", "한마디", " 상담원", "입니다", "."]
TRANSCRIPTION = "예약을 변경하고 싶어요"
# PCM chunks the TTS fakes stream: odd sizes, so a client must re-cut them into whole samples
TTS_CHUNK_BYTES = (4801, 3199, 4000, 2001, 1999)
# Deepgram fake: one recognized word per this many bytes of 8 kHz PCM (0.2 s), a final every 3 words
DG_WORD_BYTES = 3200
DG_WORDS_PER_FINAL = 3
DG_WORDS = ["안녕하세요", "예약을", "변경하고", "싶어요", "내일", "오후", "세시로", "부탁드려요"]


def pcm_pattern(n: int) -> bytes:
    """Deterministic bytes standing in for audio."""
    return bytes((i * 7 + 3) % 256 for i in range(n))


TTS_PCM = pcm_pattern(sum(TTS_CHUNK_BYTES))


def wav_bytes(pcm: bytes, sample_rate: int, *, extra_chunk: bool = True) -> bytes:
    """A mono 16-bit WAV; with a LIST chunk before ``data`` like many encoders write."""
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:
        info = b"INFOISFT\x05\x00\x00\x00fake\x00\x00"
        chunks += b"LIST" + struct.pack("<I", len(info)) + info
    chunks += b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def dg_words(count: int, first: int = 0) -> list[str]:
    return [DG_WORDS[i % len(DG_WORDS)] for i in range(first, first + count)]


@dataclass
class Seen:
    """One request as a fake server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    form: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)  # Deepgram: text messages from the client
    audio_bytes: int = 0  # Deepgram: binary bytes from the client


class Control:
    """What the fakes do next and what they saw; shared by the server thread and the tests."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: list[Seen] = []
        # (status, headers) answered to the next requests, one each, before normal behaviour
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.mode = "ok"
        self.chunk_delay_s = 0.005
        self.stall_s = 30.0
        self.disconnected = threading.Event()  # the client went away before the answer was complete
        self.completed = threading.Event()
        # Deepgram
        self.dg_mode = "ok"  # ok | drop_once | drop_always | stall | no_from_finalize
        self.dg_drop_after_bytes = 8000
        self.dg_stall_after_bytes = 6400
        self.dg_dropped = 0
        self.dg_closed_by_client = threading.Event()

    def take_failure(self) -> tuple[int, dict[str, str]] | None:
        return self.failures.pop(0) if self.failures else None


def _error(status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": HTTPStatus(status).phrase, "type": "fake_error", "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def make_app(control: Control) -> Starlette:
    """The HTTP vendors' fake: every route records, then applies queued failures, then checks auth."""

    async def seen(request: Request) -> Seen:
        body = await request.body()
        rec = Seen(request.method, request.url.path, dict(request.query_params), dict(request.headers), body)
        control.requests.append(rec)
        return rec

    async def stream(parts: list[bytes], media_type: str) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            finished = False
            try:
                for i, part in enumerate(parts):
                    if i == 2 and control.mode == "drop":
                        finished = True
                        raise RuntimeError("fake vendor dies mid-answer")
                    if i == 2 and control.mode == "stall":
                        await asyncio.sleep(control.stall_s)
                    yield part
                    await asyncio.sleep(control.chunk_delay_s)
                finished = True
                control.completed.set()
            finally:
                if not finished:
                    control.disconnected.set()

        return StreamingResponse(gen(), media_type=media_type)

    def preflight(auth_ok: bool) -> Response | None:
        failure = control.take_failure()
        if failure is not None:
            return _error(*failure)
        if not auth_ok:
            return _error(401)
        return None

    async def chat(request: Request) -> Response:
        rec = await seen(request)
        early = preflight(request.headers.get("authorization") == f"Bearer {OPENAI_KEY}")
        if early:
            return early
        body = json.loads(rec.body)
        events = []
        for i, token in enumerate(CHAT_TOKENS):
            delta: dict[str, str] = {"content": token}
            if i == 0:
                delta["role"] = "assistant"
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            events.append(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        if control.mode == "garbage":
            events[1] = b"data: {this is not json\n\n"
        events.append(b"data: [DONE]\n\n")
        return await stream(events, "text/event-stream")

    def pcm_parts() -> list[bytes]:
        parts, pos = [], 0
        for size in TTS_CHUNK_BYTES:
            parts.append(TTS_PCM[pos : pos + size])
            pos += size
        return parts

    async def speech(request: Request) -> Response:
        await seen(request)
        early = preflight(request.headers.get("authorization") == f"Bearer {OPENAI_KEY}")
        return early or await stream(pcm_parts(), "audio/pcm")

    async def transcriptions(request: Request) -> Response:
        rec = Seen(request.method, request.url.path, dict(request.query_params), dict(request.headers))
        control.requests.append(rec)
        async with request.form() as form:
            for key, value in form.multi_items():
                if isinstance(value, str):
                    rec.form[key] = value
                else:
                    rec.form[key] = {"filename": value.filename, "type": value.content_type}
                    rec.form[key]["data"] = await value.read()
        early = preflight(request.headers.get("authorization") == f"Bearer {OPENAI_KEY}")
        if early:
            return early
        if control.mode == "garbage":
            return JSONResponse({"txt": "?"})
        return JSONResponse({"text": f" {TRANSCRIPTION} "})

    async def elevenlabs(request: Request) -> Response:
        await seen(request)
        early = preflight(request.headers.get("xi-api-key") == ELEVENLABS_KEY)
        return early or await stream(pcm_parts(), "audio/pcm")

    async def google(request: Request) -> Response:
        rec = await seen(request)
        early = preflight(request.query_params.get("key") == GOOGLE_KEY)
        if early:
            return early
        if control.mode == "garbage":
            return JSONResponse({"audioContent": "%%% not base64 %%%"})
        config = json.loads(rec.body)["audioConfig"]
        rate = int(config.get("sampleRateHertz") or 24000)
        return JSONResponse({"audioContent": base64.b64encode(wav_bytes(TTS_PCM, rate)).decode()})

    async def clova(request: Request) -> Response:
        rec = Seen(request.method, request.url.path, dict(request.query_params), dict(request.headers))
        control.requests.append(rec)
        async with request.form() as form:
            rec.form = {k: v for k, v in form.items() if isinstance(v, str)}
        ok = (
            request.headers.get("x-ncp-apigw-api-key-id") == CLOVA_ID
            and request.headers.get("x-ncp-apigw-api-key") == CLOVA_SECRET
        )
        early = preflight(ok)
        if early:
            return early
        if control.mode == "garbage":
            return Response(b"ID3\x03fake mp3", media_type="audio/mpeg")
        rate = int(rec.form.get("sampling-rate", "24000"))
        return Response(wav_bytes(TTS_PCM, rate), media_type="audio/wav")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/audio/speech", speech, methods=["POST"]),
            Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
            Route("/v1/text-to-speech/{voice_id}/stream", elevenlabs, methods=["POST"]),
            Route("/v1/text:synthesize", google, methods=["POST"]),
            Route("/tts-premium/v1/tts", clova, methods=["POST"]),
        ]
    )


class _DeepgramSession:
    """One fake Deepgram live connection: a word per ``DG_WORD_BYTES`` of audio, interim then final results."""

    def __init__(self, control: Control, ws: ServerConnection, rec: Seen, sample_rate: int) -> None:
        self.control = control
        self.ws = ws
        self.rec = rec
        self.rate = sample_rate
        self.words = 0
        self.segment: list[str] = []
        self.segment_start_s = 0.0
        self.stalled = False

    def now_s(self) -> float:
        return self.rec.audio_bytes / 2 / self.rate

    async def results(self, *, is_final: bool, from_finalize: bool = False, end_s: float | None = None) -> None:
        end = self.now_s() if end_s is None else end_s
        message = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(end - self.segment_start_s, 4),
            "start": round(self.segment_start_s, 4),
            "is_final": is_final,
            "speech_final": is_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": " ".join(self.segment), "confidence": 0.9, "words": []}]},
            "metadata": {"request_id": "fake", "model_info": {"name": "fake"}},
        }
        await self.ws.send(json.dumps(message, ensure_ascii=False))
        if is_final:
            self.segment = []
            self.segment_start_s = end

    async def audio(self, data: bytes) -> None:
        control = self.control
        self.rec.audio_bytes += len(data)
        if control.dg_mode == "drop_always" or (control.dg_mode == "drop_once" and control.dg_dropped == 0):
            if self.rec.audio_bytes >= control.dg_drop_after_bytes:
                control.dg_dropped += 1
                self.ws.transport.abort()
                return
        if control.dg_mode == "stall" and self.rec.audio_bytes >= control.dg_stall_after_bytes:
            self.stalled = True
        if self.stalled:
            return
        while (self.words + 1) * DG_WORD_BYTES <= self.rec.audio_bytes:
            self.segment.append(DG_WORDS[self.words % len(DG_WORDS)])
            self.words += 1
            word_end = self.words * DG_WORD_BYTES / 2 / self.rate
            final = len(self.segment) >= DG_WORDS_PER_FINAL
            await self.results(is_final=final, end_s=word_end)

    async def text(self, message: str) -> bool:
        """Handle a control message; False when the session should end."""
        self.rec.messages.append(message)
        kind = json.loads(message).get("type")
        if self.stalled:
            return True
        if kind == "Finalize":
            from_finalize = self.control.dg_mode != "no_from_finalize"
            await self.results(is_final=True, from_finalize=from_finalize)
        elif kind == "CloseStream":
            self.control.dg_closed_by_client.set()
            await self.ws.send(json.dumps({"type": "Metadata", "request_id": "fake", "duration": self.now_s()}))
            await self.ws.close(1000)
            return False
        return True

    async def run(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    await self.audio(message)
                elif not await self.text(message):
                    return
        except ConnectionClosed:
            pass


class VendorServers:
    """Runs the fakes on 127.0.0.1 (ports chosen by the OS) in a background thread."""

    def __init__(self) -> None:
        self.control = Control()
        self.http_port = 0
        self.ws_port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vendor-servers", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake vendor servers did not start")
        if self._error is not None:
            raise RuntimeError("fake vendor servers failed") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to start() through _error
            self._error = exc
            self._ready.set()

    def _deepgram_handshake(self, connection: ServerConnection, request: WsRequest) -> WsResponse | None:
        failure = self.control.take_failure()
        if failure is not None:
            status, headers = failure
            response = connection.respond(HTTPStatus(status), f"{HTTPStatus(status).phrase}\n")
            for key, value in headers.items():
                response.headers[key] = value
            return response
        if request.headers.get("Authorization") != f"Token {DEEPGRAM_KEY}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid credentials.\n")
        return None

    async def _deepgram(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        path, _, query = request.path.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        rec = Seen("GET", path, params, {k.lower(): v for k, v in Headers(request.headers).raw_items()})
        self.control.requests.append(rec)
        await _DeepgramSession(self.control, ws, rec, int(params.get("sample_rate", "8000"))).run()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(
            make_app(self.control), log_level="critical", lifespan="off", timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        ws_server: Server = await serve(
            self._deepgram, "127.0.0.1", 0, process_request=self._deepgram_handshake, close_timeout=1
        )
        self.ws_port = next(iter(ws_server.sockets)).getsockname()[1]
        http_task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if http_task.done():
                http_task.result()
            await asyncio.sleep(0.01)
        self._ready.set()
        await self._stop.wait()
        server.should_exit = True
        ws_server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws_server.wait_closed(), 3)
        await http_task
