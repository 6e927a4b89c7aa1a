"""A socket that goes silent is a dead call: after HANMADI_RECEIVE_TIMEOUT_S the server ends it (receive_timeout)."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hanmadi.loopback import serve_in_thread, settle
from hanmadi.net import free_port
from loopback_support import loopback_settings, read_call


async def test_a_silent_socket_is_ended_with_receive_timeout(tmp_path: Path) -> None:
    port = free_port()
    settings = loopback_settings(tmp_path, port, dev=True, receive_timeout_s=0.5, greeting="")
    call_sid = "CA" + "5" * 32
    with serve_in_thread(settings, port=port) as url:
        async with httpx.AsyncClient() as client:
            twiml = (await client.post(f"{url}/twilio/voice", data={"CallSid": call_sid})).text
        stream = ET.fromstring(twiml).find("./Connect/Stream")
        assert stream is not None
        params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        start = {
            "event": "start",
            "streamSid": "MZ" + "5" * 32,
            "start": {
                "streamSid": "MZ" + "5" * 32,
                "callSid": call_sid,
                "accountSid": "AC" + "5" * 32,
                "tracks": ["inbound"],
                "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
        async with connect(stream.get("url", "")) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await ws.send(json.dumps(start))
            try:
                async with asyncio.timeout(30):  # a safety net for a server that never ends it, not a measurement
                    while True:  # then nothing: no media, no stop
                        await ws.recv()
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.reason == "receive timeout"
        await settle(url)
    detail = await read_call(settings.database_url, call_sid)
    assert detail is not None and detail.call.end_reason == "receive_timeout"
