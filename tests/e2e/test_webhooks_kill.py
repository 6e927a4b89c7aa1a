"""Call webhooks survive ``kill -9``: real ``hanmadi serve`` processes, a receiver that is down, then back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from actions_support import WEBHOOK_SECRET, ActionServers, action_servers
from hanmadi.net import free_port
from hanmadi.telephony.caller import CallerConfig, place_call
from loopback_support import voice

pytestmark = pytest.mark.e2e

AUTH_TOKEN = "kill-auth-token-0123456789abcdef"
ADMIN_TOKEN = "kill-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def servers() -> Iterator[ActionServers]:
    with action_servers() as s:
        yield s


def launch(tmp_path: Path, port: int, hooks: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HANMADI_HOST": "127.0.0.1",
        "HANMADI_PORT": str(port),
        "HANMADI_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HANMADI_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "HANMADI_ADMIN_TOKEN": ADMIN_TOKEN,
        "HANMADI_STT": "simulated",
        "HANMADI_LLM": "simulated",
        "HANMADI_TTS": "simulated",
        "HANMADI_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}",
        "HANMADI_WEBHOOK_URL": hooks,
        "HANMADI_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "HANMADI_GREETING": "네.",
        "HANMADI_ENDPOINTING_MS": "300",
        "HANMADI_MIN_SPEECH_MS": "100",
        "HANMADI_BARGE_IN_MIN_SPEECH_MS": "200",
    }
    hanmadi = Path(sys.executable).with_name("hanmadi")
    with log.open("ab") as out:
        return subprocess.Popen([str(hanmadi), "serve"], env=env, stdout=out, stderr=out)


async def wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"hanmadi serve exited {process.returncode}:\n{_tail(log)}")
            try:
                if (await client.get(f"{url}/healthz", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"hanmadi serve did not answer /healthz:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def deliveries(url: str) -> dict[str, object]:
    async with httpx.AsyncClient() as client:
        return dict((await client.get(f"{url}/api/webhooks", headers=ADMIN, timeout=5)).json())


async def test_webhooks_survive_kill_9(tmp_path: Path, servers: ActionServers) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    servers.hooks_down = True
    first = launch(tmp_path, port, servers.base + "/hooks", log)
    try:
        await wait_healthy(first, url, log)
        done = await place_call(CallerConfig(url=url, utterances=[voice(1.0)], auth_token=AUTH_TOKEN))
        # a second call is in the middle of its reply when the server dies
        live = asyncio.create_task(
            place_call(CallerConfig(url=url, utterances=[voice(1.0)] * 3, turns=3, auth_token=AUTH_TOKEN))
        )
        async with asyncio.timeout(20):
            while True:  # the finished call's events were tried against the down receiver; the live one started
                state = await deliveries(url)
                items = state["items"]
                assert isinstance(items, list)
                tried = [d for d in items if d["attempts"]]
                if len(items) >= 3 and len(tried) >= 2:
                    break
                await asyncio.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    await asyncio.gather(live, return_exceptions=True)  # its server vanished: however the caller saw it
    assert servers.hooks == []

    servers.hooks_down = False  # the receiver is back; a new server starts on the same database
    second = launch(tmp_path, port, servers.base + "/hooks", log)
    try:
        await wait_healthy(second, url, log)
        async with asyncio.timeout(30):
            while len(servers.hooks) < 4:  # noqa: ASYNC110 (the receiver runs in another thread)
                await asyncio.sleep(0.1)
        state = await deliveries(url)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    events = sorted((json.loads(h.body)["call_sid"], h.headers["x-hanmadi-event"]) for h in servers.hooks)
    cut_sid = next(sid for sid, _ in events if sid != done.call_sid)
    assert events == sorted(
        [
            (done.call_sid, "call.started"),
            (done.call_sid, "call.ended"),
            (cut_sid, "call.started"),
            (cut_sid, "call.ended"),
        ]
    )
    cut_end = next(
        json.loads(h.body)
        for h in servers.hooks
        if h.headers["x-hanmadi-event"] == "call.ended" and json.loads(h.body)["call_sid"] == cut_sid
    )
    assert cut_end["end_reason"] == "server_restart" and cut_end["status"] == "failed"
    assert state["counts"] == {"pending": 0, "delivered": 4, "failed": 0}
