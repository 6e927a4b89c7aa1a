"""Fuzzing a running server over real sockets: thousands of mutated messages on a few Media Streams sockets.

A model of the server's policy predicts how each fuzzed socket ends: closed 1008 at the ``max_bad_frames``-th bad
frame, or open until a valid ``stop`` ends the call normally (1000). A healthy call runs beside the fuzzed ones and
must get every reply; nothing is logged at ERROR level (an exception escaping the handler would be).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fuzz_support import (
    AUTH_TOKEN,
    SILENCE_B64,
    STREAM_SID,
    mutate,
    server_settings,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hanmadi.loopback import serve_in_thread
from hanmadi.net import free_port
from hanmadi.telephony import twilio as tw
from hanmadi.telephony.caller import CallerConfig, CallResult, place_call
from loopback_support import voice

pytestmark = pytest.mark.e2e

MAX_BAD_FRAMES = 300
MEDIA = json.dumps(
    {
        "event": "media",
        "streamSid": STREAM_SID,
        "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": SILENCE_B64},
    }
)


def fuzz_batch(rng: random.Random, size: int) -> list[str | bytes]:
    """Half good media frames (a live call), half mutated messages; none a valid ``stop`` (that ends the call)."""
    batch = [MEDIA if rng.random() < 0.5 else mutate(rng) for _ in range(size)]
    return [MEDIA if predict([raw]) == (0, "stop") else raw for raw in batch]


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, from any logger and thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def predict(batch: list[str | bytes]) -> tuple[int, str]:
    """How the server ends this socket: (index of the last message it reads, "policy" | "stop" | "open")."""
    bad = 0
    for i, raw in enumerate(batch):
        try:
            event = tw.parse_message(raw, max_bytes=64 * 1024)
            if isinstance(event, tw.Start):
                raise tw.BadFrame("duplicate_start")
            if isinstance(event, tw.Connected):
                continue
            if event.stream_sid != STREAM_SID:
                raise tw.BadFrame("wrong_stream_sid")
            if isinstance(event, tw.Stop):
                return i, "stop"
        except tw.BadFrame:
            bad += 1
            if bad >= MAX_BAD_FRAMES:
                return i, "policy"
    return len(batch) - 1, "open"


async def fuzz_one_socket(url: str, batch: list[str | bytes]) -> tuple[int, str, str]:
    """Open a real call, send ``batch`` up to where the server must stop reading; return how it closed."""
    call_sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32}
    signature = tw.compute_signature(AUTH_TOKEN, f"{url}/twilio/voice", params)
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{url}/twilio/voice", data=params, headers={"X-Twilio-Signature": signature})
    stream = ET.fromstring(r.text).find("./Connect/Stream")
    assert stream is not None
    token = next(p.get("value", "") for p in stream.findall("Parameter") if p.get("name") == "token")
    last, outcome = predict(batch)
    start = {
        "accountSid": "AC" + "0" * 32,
        "streamSid": STREAM_SID,
        "callSid": call_sid,
        "customParameters": {"token": token},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    async with connect(stream.get("url", ""), max_size=None, open_timeout=20) as ws:
        await ws.send(json.dumps({"event": "start", "streamSid": STREAM_SID, "start": start}))
        for raw in batch[: last + 1]:
            await ws.send(raw)
        if outcome == "open":
            await ws.send(json.dumps({"event": "stop", "streamSid": STREAM_SID, "stop": {"callSid": call_sid}}))
        try:
            async with asyncio.timeout(30):
                while True:
                    await ws.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the server dropped the connection without a close frame"
            return closed.rcvd.code, closed.rcvd.reason, outcome
    raise AssertionError("unreachable")


def test_fuzzed_sockets_close_only_by_policy_and_a_healthy_call_is_unaffected(tmp_path: Path, errors: ErrorLog) -> None:
    port = free_port()
    settings_ = server_settings(tmp_path, port, max_bad_frames=MAX_BAD_FRAMES)
    outcomes: list[tuple[int, str, str]] = []
    sent: list[int] = []
    healthy: list[CallResult] = []
    with serve_in_thread(settings_, port=port) as url:
        caller = threading.Thread(
            target=lambda: healthy.append(
                asyncio.run(
                    place_call(
                        CallerConfig(
                            url=url, utterances=[voice(1.0)], auth_token=AUTH_TOKEN, turns=2, answer_timeout_s=30
                        )
                    )
                )
            )
        )
        caller.start()

        @settings(
            max_examples=5,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=[Phase.generate],  # shrinking would replay whole calls
        )
        @given(st.randoms(use_true_random=True), st.integers(400, 1200))
        def run(rng: random.Random, size: int) -> None:
            batch = fuzz_batch(rng, size)
            outcomes.append(asyncio.run(fuzz_one_socket(url, batch)))
            sent.append(predict(batch)[0] + 1)

        run()
        caller.join(timeout=120)
    assert not caller.is_alive()
    assert sum(sent) >= 2_000, sent
    for code, reason, outcome in outcomes:
        if outcome == "policy":
            assert (code, reason) == (1008, "too many bad frames")
        else:
            assert code == 1000, (code, reason, outcome)
    (result,) = healthy
    assert [t.first_audio_ms is not None and t.reply_audio_s > 0.2 for t in result.turns] == [True, True]
    assert result.errors == [] and result.hung_up_by == "caller"
    assert [r.getMessage() for r in errors.records] == []
