"""The pages against the real server (simulated providers, SQLite): a simulated phone call shows up on the
dashboard with its waterfall, and the softphone completes a turn with Chromium's fake microphone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from web_support import ADMIN_TOKEN, screenshot, with_token

from hanmadi.config import Settings
from hanmadi.loopback import serve_in_thread
from hanmadi.telephony.caller import CallerConfig, place_call

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

FROM_NUMBER = "+821055501234"


def voice(seconds: float) -> bytes:
    """Caller speech the VAD hears: a vowel-like harmonic signal, 8 kHz PCM16."""
    t = np.arange(int(8000 * seconds)) / 8000
    sig = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate([140, 280, 420, 700, 1100]))
    return bytes((sig * 6000).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("db") / "calls.db"
    settings = Settings(
        stt="simulated",
        llm="simulated",
        tts="simulated",
        dev=True,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        database_url=f"sqlite+aiosqlite:///{db}",
        drain_timeout_s=2.0,
        greeting="한마디입니다.",  # short: the simulated caller listens to all of it
    )
    with serve_in_thread(settings) as url:
        yield url


def api(url: str, path: str) -> Any:
    res = httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    res.raise_for_status()
    return res.json()


def test_a_simulated_call_is_listed_and_its_waterfall_renders(page: Any, server: str) -> None:
    config = CallerConfig(url=server, utterances=[voice(1.0)], turns=1, from_number=FROM_NUMBER, silence_after_s=0.5)
    # Sync Playwright owns this thread's event loop: the simulated caller gets a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(asyncio.run, place_call(config)).result(timeout=60)
    assert result.answered
    call_sid = result.call_sid
    detail = api(server, f"/api/calls/{call_sid}")
    sentences = {ev["index"] for turn in detail["turns"] for ev in turn["events"] if ev["kind"] == "sentence"}
    assert sentences, "the call recorded no sentences"

    with_token(page)
    page.goto(f"{server}/web/")
    page.wait_for_selector(f"#calls tbody tr[data-sid='{call_sid}']")
    row = page.locator(f"#calls tbody tr[data-sid='{call_sid}']").inner_text()
    assert "+8210****1234" in row
    screenshot(page, "server-dashboard.png")

    page.locator(f"#calls tbody tr[data-sid='{call_sid}'] td").nth(1).click()
    page.wait_for_selector("body[data-loaded='1']")
    for turn in detail["turns"]:
        indexes = {ev["index"] for ev in turn["events"] if ev["index"] is not None}
        rows = page.locator(f"article.turn[data-turn='{turn['index']}'] g.wf-row")
        assert rows.count() == len(indexes)
        log = page.locator(f"article.turn[data-turn='{turn['index']}'] pre.log").inner_text()
        assert "파이프라인 시작" in log and "문장[0] 생성" in log
    screenshot(page, "server-call.png")
    assert page.errors == []


def test_softphone_completes_a_turn_with_the_fake_microphone(page: Any, server: str, tmp_path: Path) -> None:
    with_token(page)
    page.goto(f"{server}/web/softphone.html")
    page.click("#call")
    page.wait_for_selector("#state[data-state='live']", timeout=10_000)
    # The fake microphone's tone burst is a caller turn: heard, answered, played, marks echoed.
    page.wait_for_selector("#transcript .bubble[data-role='caller']", timeout=20_000)
    page.wait_for_selector("#transcript .bubble[data-role='caller'] ~ .bubble[data-role='agent']", timeout=20_000)
    page.wait_for_function("() => Number(document.getElementById('marks-echoed').textContent) >= 2")
    assert int(page.inner_text("#frames-received")) > 0
    assert int(page.inner_text("#frames-sent")) > 50
    timeline = page.inner_text("#timeline")
    assert "파이프라인 시작" in timeline and "전송 완료" in timeline
    screenshot(page, "server-softphone.png")
    call_sid = page.inner_text("#call-sid")
    page.click("#hangup")
    page.wait_for_selector("#state[data-state='ended']")

    # The browser call is recorded like a phone call.
    for _ in range(50):
        detail = api(server, f"/api/calls/{call_sid}")
        if detail["status"] != "active":
            break
        page.wait_for_timeout(100)
    assert detail["status"] == "completed"
    assert any(turn["heard_text"] for turn in detail["turns"])
    assert page.errors == []
