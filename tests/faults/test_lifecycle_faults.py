"""The call's and the server's lifetime under faults: the caller vanishing mid-answer, SIGTERM, ``kill -9``."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import httpx
import pytest
import uvicorn
from faults_support import (
    ADMIN_TOKEN,
    AUTH_TOKEN,
    fault_settings,
    free_port,
    server_env,
    start_server,
    stored_call,
    voice,
)
from websockets.asyncio.client import connect

from hanmadi.providers.base import Message
from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedTTS
from hanmadi.server import Providers, create_app
from hanmadi.telephony import audio
from hanmadi.telephony import twilio as tw
from hanmadi.telephony.caller import CallerConfig, place_call

pytestmark = pytest.mark.e2e


class WatchedLLM:
    """Counts the LLM streams opened and closed (a cancelled reply must close its stream)."""

    name = "simulated"

    def __init__(self, inner: ScriptedLLM) -> None:
        self.inner = inner
        self.opened = 0
        self.closed = 0

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.opened += 1
        try:
            async for chunk in self.inner.stream(messages):
                yield chunk
        finally:
            self.closed += 1


async def until(condition: Callable[[], bool], timeout_s: float = 15) -> None:
    """Poll ``condition`` every 20 ms, for at most ``timeout_s``."""
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"condition not met within {timeout_s} s")


async def test_caller_vanishing_mid_answer_cancels_every_task_and_finalizes_the_record(tmp_path: Path) -> None:
    """The server runs in this test's event loop, so every task it leaves behind is visible here."""
    port = free_port()
    settings = fault_settings(tmp_path, port, greeting="")
    long_answer = [(0.3 * (i + 1), f"{i + 1} 번째로 길게 안내해 드리는 문장입니다.") for i in range(12)]
    llm = WatchedLLM(ScriptedLLM.from_sentences(long_answer))
    tts = SimulatedTTS(audio_s=0.6)
    app = create_app(settings, providers=Providers(stt=SimulatedSTT(), llm=llm, tts=tts))
    state = app.state.hanmadi
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(), name="test-uvicorn")
    try:
        await until(lambda: server.started)
        before = set(asyncio.all_tasks())
        call_sid = "CA" + uuid.uuid4().hex
        stream_sid = "MZ" + uuid.uuid4().hex
        url = f"http://127.0.0.1:{port}"
        params = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": "+821012345678"}
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"{url}/twilio/voice",
                data=params,
                headers={"X-Twilio-Signature": tw.compute_signature(AUTH_TOKEN, f"{url}/twilio/voice", params)},
            )
        stream = ET.fromstring(r.text).find("./Connect/Stream")
        assert stream is not None
        custom = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        ws_url = stream.get("url", "")
        ws = await connect(
            ws_url, additional_headers={"X-Twilio-Signature": tw.compute_signature(AUTH_TOKEN, ws_url, {})}
        )
        start = {
            "accountSid": "AC" + "0" * 32,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "customParameters": custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        await ws.send(json.dumps({"event": "start", "streamSid": stream_sid, "start": start}))
        frames = audio.frames(audio.pcm_bytes_to_ulaw(voice(1.0)))

        async def microphone() -> None:
            for n in range(1000):
                frame = frames[n] if n < len(frames) else bytes([audio.ULAW_SILENCE]) * len(frames[0])
                media = {"chunk": str(n + 1), "timestamp": str(20 * n), "payload": base64.b64encode(frame).decode()}
                await ws.send(json.dumps({"event": "media", "streamSid": stream_sid, "media": media}))
                await asyncio.sleep(0.02)

        mic = asyncio.create_task(microphone())
        async with asyncio.timeout(15):
            while json.loads(await ws.recv()).get("event") != "media":
                pass
        # the first words of the answer are playing: the caller's phone dies (no stop, no close frame)
        mic.cancel()
        await asyncio.gather(mic, return_exceptions=True)
        assert llm.opened == 1 and llm.closed == 0, "the answer should still be streaming"
        ws.transport.abort()

        await until(lambda: not state.calls)

        def leftovers() -> list[asyncio.Task[object]]:
            mine = asyncio.current_task()
            return [t for t in asyncio.all_tasks() - before if t is not mine and not t.done()]

        await until(lambda: not leftovers(), timeout_s=10)
        assert not [t.get_name() for t in asyncio.all_tasks() if t.get_name().endswith(":" + call_sid)]
        assert (llm.opened, llm.closed) == (1, 1)  # the LLM stream was closed, not abandoned
        assert tts.in_flight == 0
        assert state.recorder is not None
        await state.recorder.flush()
        detail = await stored_call(settings.database_url, call_sid)
        assert detail is not None
        assert (detail.call.status, detail.call.end_reason) == ("failed", "client_gone")
        assert detail.call.ended_at is not None
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)


def test_sigterm_drains_the_active_call_answers_busy_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}"
    env = server_env(tmp_path, port, database_url, HANMADI_DRAIN_TIMEOUT_S="60", HANMADI_GREETING="네.")
    process = start_server(env, port, tmp_path / "server.log")
    url = f"http://127.0.0.1:{port}"

    async def scenario() -> tuple[object, str, dict[str, object]]:
        call = asyncio.create_task(
            place_call(CallerConfig(url=url, utterances=[voice(1.0)], auth_token=AUTH_TOKEN, turns=2))
        )
        async with httpx.AsyncClient() as client:

            async def health() -> dict[str, object]:
                return dict((await client.get(f"{url}/healthz")).json())

            for _ in range(400):
                if (await health())["active_calls"] == 1:
                    break
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            for _ in range(400):
                if (await health())["draining"]:
                    break
                await asyncio.sleep(0.05)
            params = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32}
            signature = tw.compute_signature(AUTH_TOKEN, f"{url}/twilio/voice", params)
            busy = await client.post(f"{url}/twilio/voice", data=params, headers={"X-Twilio-Signature": signature})
            busy_twiml = busy.text
            during = await health()
        return await call, busy_twiml, during

    try:
        result, busy_twiml, during = asyncio.run(scenario())
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    root = ET.fromstring(busy_twiml)
    assert root.find("Connect") is None and root.find("Hangup") is not None  # the webhook now answers busy
    assert during["active_calls"] == 1  # while the call went on
    assert [t.timed_out for t in result.turns] == [False, False]  # type: ignore[attr-defined]
    assert result.hung_up_by == "caller"  # type: ignore[attr-defined]
    assert returncode == 0, (tmp_path / "server.log").read_text()[-3000:]
    detail = asyncio.run(stored_call(database_url, result.call_sid))  # type: ignore[attr-defined]
    assert detail is not None
    assert (detail.call.status, detail.call.end_reason) == ("completed", "caller_stop")


def test_kill_9_mid_call_keeps_every_finished_turn_and_marks_the_call_failed(tmp_path: Path) -> None:
    port = free_port()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}"
    env = server_env(tmp_path, port, database_url, HANMADI_GREETING="네.")
    log = tmp_path / "server.log"
    process = start_server(env, port, log)
    url = f"http://127.0.0.1:{port}"
    call_sid = "CA" + uuid.uuid4().hex

    async def scenario() -> tuple[object, list[int]]:
        call = asyncio.create_task(
            place_call(
                CallerConfig(
                    url=url,
                    utterances=[voice(0.8)],
                    auth_token=AUTH_TOKEN,
                    turns=8,
                    call_sid=call_sid,
                    answer_timeout_s=5,
                )
            )
        )
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient() as client:
            async with asyncio.timeout(60):
                while True:
                    r = await client.get(f"{url}/api/calls/{call_sid}", headers=headers)
                    if r.status_code == 200 and len(r.json()["turns"]) >= 3:  # the greeting and two answers
                        break
                    await asyncio.sleep(0.1)
        process.kill()  # SIGKILL: no drain, no shutdown hooks
        return await call, [t["index"] for t in r.json()["turns"]]

    try:
        result, seen_before_kill = asyncio.run(scenario())
        process.wait(timeout=10)
        restarted = start_server(env, port, log)  # marks what the dead process left active
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=30) == 0
    finally:
        for p in (process, locals().get("restarted")):
            if p is not None and p.poll() is None:  # type: ignore[union-attr]
                p.kill()  # type: ignore[union-attr]
                p.wait()  # type: ignore[union-attr]
    detail = asyncio.run(stored_call(database_url, call_sid))
    assert detail is not None
    assert (detail.call.status, detail.call.end_reason) == ("failed", "server_restart")
    recorded = {t.index for t in detail.turns}
    assert set(seen_before_kill) <= recorded
    # every answer the caller heard to the end (it then spoke again) is in the database: server turn = caller turn + 1
    heard_in_full = {t.index + 1 for t in result.turns[:-1] if not t.timed_out}  # type: ignore[attr-defined]
    assert heard_in_full and heard_in_full | {0} <= recorded
