"""Helpers for the web tests: a stand-in app (the web router + a fake /api + an echo Media Streams agent), a
loopback uvicorn helper, headless Debian Chromium with a fake microphone, and the screenshot folder."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import secrets
import struct
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, WebSocket, WebSocketDisconnect

from hanmadi.web import web_router

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
ADMIN_TOKEN = "web-admin-token-0123456789abcd"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


# --- realistic records, shaped like hanmadi.api's JSON ----------------------------------------------------------


def _ev(seq: int, t: float, kind: str, index: int | None = None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"seq": seq, "t": t, "kind": kind, "index": index, "text": "", "duration_s": None}
    base.update({"audio_s": None, "reason": None})
    base.update(extra)
    return base


def _events(rows: list[tuple[float, str, int | None, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [_ev(i, t, kind, index, **extra) for i, (t, kind, index, extra) in enumerate(rows)]


GREETING_EVENTS = _events(
    [
        (0.0, "turn_start", None, {"text": "realtime"}),
        (0.21, "sentence", 0, {"text": "안녕하세요, 한마디 상담원입니다."}),
        (0.21, "tts_start", 0, {}),
        (0.64, "tts_done", 0, {"duration_s": 0.43}),
        (0.64, "send_start", 0, {}),
        (0.70, "send_done", 0, {"audio_s": 1.9}),
        (0.70, "done", None, {"audio_s": 1.9}),
    ]
)

# The seed's scenario, with sentence [1]'s TTS timing out twice: skipped, [2] still goes out in order.
SEED_SKIP_EVENTS = _events(
    [
        (0.0, "turn_start", None, {"text": "realtime"}),
        (0.52, "sentence", 0, {"text": "안녕하세요!"}),
        (0.52, "tts_start", 0, {}),
        (1.05, "tts_done", 0, {"duration_s": 0.53}),
        (1.05, "send_start", 0, {}),
        (1.08, "sentence", 1, {"text": "오늘 날씨가 정말 좋은데..."}),
        (1.08, "tts_start", 1, {}),
        (1.12, "send_done", 0, {"audio_s": 0.52}),
        (1.56, "sentence", 2, {"text": "기분이 좋아질 거예요!"}),
        (1.56, "tts_start", 2, {}),
        (2.38, "tts_done", 2, {"duration_s": 0.82}),
        (2.58, "tts_retry", 1, {"reason": "tts_timeout"}),
        (3.08, "skip", 1, {"reason": "tts_timeout"}),
        (3.08, "send_start", 2, {}),
        (3.15, "send_done", 2, {"audio_s": 0.80}),
        (3.15, "done", None, {"audio_s": 1.32}),
    ]
)

# The caller talks over the reply: sentence [0] partly heard, [1] cancelled during its TTS.
BARGE_IN_EVENTS = _events(
    [
        (0.0, "turn_start", None, {"text": "realtime"}),
        (0.40, "sentence", 0, {"text": "네, 주문 번호를 확인해 드릴게요."}),
        (0.40, "tts_start", 0, {}),
        (0.95, "tts_done", 0, {"duration_s": 0.55}),
        (0.95, "send_start", 0, {}),
        (1.01, "send_done", 0, {"audio_s": 2.1}),
        (1.30, "sentence", 1, {"text": "잠시만 기다려 주세요."}),
        (1.30, "tts_start", 1, {}),
        (1.80, "cancel", None, {"reason": "barge_in", "audio_s": 2.1}),
    ]
)

CALL_SID = "CA" + "5" * 32


def _turn(index: int, start: str, heard: str, generated: str, spoken: str, events: list[dict[str, Any]], **kw: Any):
    metrics = {"first_audio_s": kw.get("first_audio_s"), "total_s": kw.get("total_s"), "gap_s": 0.0}
    return {
        "index": index,
        "started_at": start,
        "ended_at": start,
        "heard_text": heard,
        "generated_text": generated,
        "spoken_text": spoken,
        "barge_in": kw.get("barge_in", False),
        "dtmf": kw.get("dtmf", ""),
        "first_audio_s": kw.get("first_audio_s"),
        "voice_to_voice_s": kw.get("voice_to_voice_s"),
        "total_s": kw.get("total_s"),
        "metrics": metrics | {"order": kw.get("order", []), "skipped": kw.get("skipped", [])},
        "events": events,
    }


CALL_SUMMARY: dict[str, Any] = {
    "call_sid": CALL_SID,
    "stream_sid": "MZ" + "6" * 32,
    "from_masked": "+8210****5678",
    "to_masked": "+8270****0000",
    "started_at": "2026-11-24T01:30:00+00:00",
    "ended_at": "2026-11-24T01:31:12+00:00",
    "status": "completed",
    "end_reason": "hangup",
    "providers": {"stt": "simulated", "llm": "simulated", "tts": "simulated"},
    "turn_count": 3,
    "has_recording": False,
    "mean_first_audio_s": 0.94,
    "mean_voice_to_voice_s": 1.44,
    "barge_ins": 1,
    "duration_s": 72.0,
}

CALL_DETAIL: dict[str, Any] = CALL_SUMMARY | {
    "turns": [
        _turn(
            0,
            "2026-11-24T01:30:00+00:00",
            "",
            "안녕하세요, 한마디 상담원입니다.",
            "안녕하세요, 한마디 상담원입니다.",
            GREETING_EVENTS,
            first_audio_s=0.70,
            total_s=0.70,
            order=[0],
        ),
        _turn(
            1,
            "2026-11-24T01:30:10+00:00",
            "오늘 날씨 어때요?",
            "안녕하세요! 오늘 날씨가 정말 좋은데... 기분이 좋아질 거예요!",
            "안녕하세요! 기분이 좋아질 거예요!",
            SEED_SKIP_EVENTS,
            first_audio_s=1.12,
            voice_to_voice_s=1.62,
            total_s=3.15,
            order=[0, 2],
            skipped=[1],
        ),
        _turn(
            2,
            "2026-11-24T01:30:30+00:00",
            "잠깐만요, 주문 취소할게요",
            "네, 주문 번호를 확인해 드릴게요. 잠시만 기다려 주세요.",
            "네, 주문 번호를",
            BARGE_IN_EVENTS,
            first_audio_s=1.01,
            voice_to_voice_s=1.51,
            total_s=None,
            barge_in=True,
            dtmf="1",
            order=[0],
        ),
    ]
}

OTHER_CALLS = [
    CALL_SUMMARY
    | {
        "call_sid": f"CA{i:032x}",
        "from_masked": f"010****{1000 + i}",
        "started_at": f"2026-11-23T{10 + i % 10:02d}:00:00+00:00",
        "status": "failed" if i % 7 == 0 else "completed",
        "end_reason": "client_gone" if i % 7 == 0 else "hangup",
    }
    for i in range(1, 31)
]

SUMMARY: dict[str, Any] = {
    "window": 1000,
    "turns": 93,
    "first_audio_s": {"count": 93, "p50": 0.98, "p95": 1.41},
    "voice_to_voice_s": {"count": 90, "p50": 1.48, "p95": 1.93},
    "by_providers": [
        {
            "providers": {"stt": "simulated", "llm": "simulated", "tts": "simulated"},
            "turns": 93,
            "first_audio_s": {"count": 93, "p50": 0.98, "p95": 1.41},
            "voice_to_voice_s": {"count": 90, "p50": 1.48, "p95": 1.93},
        }
    ],
}


# --- the stand-in app -------------------------------------------------------------------------------------------


def _tone_frames(seconds: float, hz: float = 660.0) -> list[str]:
    """Base64 mu-law frames (20 ms, 160 bytes) of a tone, as the agent would send them."""
    import numpy as np

    from hanmadi.telephony.audio import pcm16_to_ulaw

    n = int(seconds * 8000) // 160 * 160
    samples = (np.sin(2 * math.pi * hz * np.arange(n) / 8000) * 8000).astype(np.int16)
    data = pcm16_to_ulaw(samples)
    return [base64.b64encode(data[i : i + 160]).decode() for i in range(0, n, 160)]


@dataclass
class EchoLog:
    """What the echo agent saw from the softphone."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    inbound_payloads: list[bytes] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    mark_echo_times: dict[str, float] = field(default_factory=dict)
    mark_sent_times: dict[str, float] = field(default_factory=dict)
    clear_sent_at: float | None = None
    start: dict[str, Any] | None = None
    token_ok: bool = False
    stopped: threading.Event = field(default_factory=threading.Event)


def fake_app(*, admin_token: str | None = ADMIN_TOKEN) -> tuple[FastAPI, dict[str, str], EchoLog]:
    """The web router plus a fake /api with the records above and an echo agent at /twilio/media.

    Returns the app, the stream tokens issued (token → call sid) and the echo agent's log.
    """
    issued: dict[str, str] = {}
    log = EchoLog()

    def issue_stream_token(call_sid: str) -> str:
        token = secrets.token_urlsafe(16)
        issued[token] = call_sid
        return token

    def bearer(authorization: str | None = Header(None)) -> None:
        if authorization != f"Bearer {ADMIN_TOKEN}":
            raise HTTPException(401, "admin token required")

    api = APIRouter(dependencies=[Depends(bearer)])

    @api.get("/calls")
    async def calls(limit: int = 50, offset: int = 0, status: str = "", q: str = "") -> dict[str, Any]:
        items = [CALL_SUMMARY, *OTHER_CALLS]
        if status:
            items = [c for c in items if c["status"] == status]
        return {"items": items[offset : offset + limit], "total": len(items), "limit": limit, "offset": offset}

    @api.get("/calls/{call_sid}")
    async def call(call_sid: str) -> dict[str, Any]:
        if call_sid != CALL_SID:
            raise HTTPException(404, "unknown call")
        return CALL_DETAIL

    @api.get("/summary")
    async def summary() -> dict[str, Any]:
        return SUMMARY

    app = FastAPI()
    app.include_router(api, prefix="/api")
    app.include_router(web_router(admin_token=admin_token, issue_stream_token=issue_stream_token))

    @app.websocket("/twilio/media")
    async def media(ws: WebSocket) -> None:
        await ws.accept()
        await echo_agent(ws, issued, log)

    return app, issued, log


async def echo_agent(ws: WebSocket, issued: dict[str, str], log: EchoLog) -> None:
    """Plays the agent's side: after 0.5 s of caller audio it answers 0.5 s of audio + mark "a", then 2 s + mark
    "b" and a clear (which must make the softphone echo "b" at once), and it sends timeline/transcript events."""
    sid = ""
    media = 0
    answered = False

    async def send(msg: dict[str, Any]) -> None:
        await ws.send_text(json.dumps(msg, ensure_ascii=False))

    try:
        while True:
            msg = json.loads(await ws.receive_text())
            log.messages.append(msg)
            event = msg.get("event")
            if event == "start":
                log.start = msg["start"]
                sid = msg["streamSid"]
                params = msg["start"].get("customParameters", {})
                log.token_ok = issued.get(params.get("token", "")) == msg["start"]["callSid"]
                if not log.token_ok:
                    await ws.close(code=1008, reason="invalid stream token")
                    return
            elif event == "media":
                log.inbound_payloads.append(base64.b64decode(msg["media"]["payload"]))
                media += 1
                if media == 25 and not answered:
                    answered = True
                    await send({"event": "hanmadi.transcript", "role": "caller", "text": "여보세요?"})
                    await send(
                        {
                            "event": "hanmadi.timeline",
                            "line": "[발화 종료 +0.00초] 실시간 하이브리드 파이프라인 시작",
                            "data": {"t": 0.0, "kind": "turn_start"},
                        }
                    )
                    await send({"event": "hanmadi.unknown-extension", "x": 1})
                    for payload in _tone_frames(0.5):
                        await send({"event": "media", "streamSid": sid, "media": {"payload": payload}})
                    await send({"event": "mark", "streamSid": sid, "mark": {"name": "a"}})
                    log.mark_sent_times["a"] = time.monotonic()
                    await send(
                        {
                            "event": "hanmadi.timeline",
                            "line": "[+0.52초] 문장[0] 생성: 안녕하세요!",
                            "data": {"t": 0.52, "kind": "sentence", "index": 0},
                        }
                    )
                    await send({"event": "hanmadi.transcript", "role": "agent", "text": "안녕하세요!"})
            elif event == "mark":
                name = msg["mark"]["name"]
                log.marks_echoed.append(name)
                log.mark_echo_times[name] = time.monotonic()
                if name == "a":
                    for payload in _tone_frames(2.0):
                        await send({"event": "media", "streamSid": sid, "media": {"payload": payload}})
                    await send({"event": "mark", "streamSid": sid, "mark": {"name": "b"}})
                    await asyncio.sleep(0.2)
                    await send({"event": "clear", "streamSid": sid})
                    log.clear_sent_at = time.monotonic()
            elif event == "stop":
                log.stopped.set()
                break
    except WebSocketDisconnect:
        pass


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        time.sleep(0.02)
    return True


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 (a free port) in a background thread; yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=server.run, name="web-test-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("test server failed to start")
        thread.join(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# --- the browser ------------------------------------------------------------------------------------------------


def write_mic_wav(path: Path, *, rate: int = 16000) -> Path:
    """A 16-bit mono WAV for Chromium's fake microphone: 1.2 s of a 440 Hz tone (with a vowel-like harmonic
    structure, so voice-activity detectors take it for speech), then 1.3 s of silence; Chromium loops it."""
    frames = bytearray()
    for i in range(int(1.2 * rate)):
        t = i / rate
        envelope = min(1.0, i / (0.02 * rate), (1.2 * rate - i) / (0.02 * rate))
        v = sum(math.sin(2 * math.pi * 220 * k * t) / k for k in (1, 2, 3, 4, 5)) * 0.35 * envelope
        frames += struct.pack("<h", int(max(-1.0, min(1.0, v)) * 32767))
    frames += b"\x00\x00" * int(1.3 * rate)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian Chromium with a fake microphone. Skips only outside CI when chromium is not installed."""
    if not CHROMIUM.exists() and not os.environ.get("CI"):
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    wav = write_mic_wav(tmp_path_factory.mktemp("mic") / "mic.wav")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page; console errors are collected on ``page.errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ko-KR")
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    try:
        yield pg
    finally:
        context.close()


def with_token(page: Any, token: str = ADMIN_TOKEN) -> None:
    """Pre-set the admin token the pages keep in localStorage."""
    page.add_init_script(f"localStorage.setItem('hanmadi.adminToken', {json.dumps(token)})")


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
