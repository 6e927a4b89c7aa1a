"""The pages in headless Debian Chromium against a stand-in app: a fake /api with realistic records and an echo
Media Streams agent. (The same pages against the real server: test_server_browser.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from web_support import ADMIN_TOKEN, CALL_SID, EchoLog, fake_app, screenshot, serve, wait_until, with_token

from hanmadi.telephony.audio import ulaw_to_pcm16

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[str, EchoLog]]:
    app, _, log = fake_app()
    with serve(app) as url:
        yield url, log


def font_loaded(page: Any) -> bool:
    """True when the bundled Pretendard face is loaded and used for Hangul (not a fallback's boxes)."""
    return bool(
        page.evaluate(
            """async () => {
              await document.fonts.ready;
              const faces = [...document.fonts].filter((f) => f.family.replace(/"/g, '') === 'Pretendard');
              return faces.some((f) => f.status === 'loaded') && document.fonts.check('16px Pretendard', '한마디');
            }"""
        )
    )


def test_dashboard_asks_for_the_token_lists_calls_and_opens_the_waterfall(
    page: Any, stand_in: tuple[str, EchoLog]
) -> None:
    url, _ = stand_in
    page.goto(f"{url}/web/")
    # No token yet: the form; a wrong token is refused and asked again.
    page.fill("#admin-token", "wrong")
    page.click("#token-form button")
    page.wait_for_selector("text=토큰이 맞지 않습니다")
    page.fill("#admin-token", ADMIN_TOKEN)
    page.click("#token-form button")
    page.wait_for_selector("body[data-loaded='1']")
    page.errors.clear()  # the refused token's 401 was logged

    rows = page.locator("#calls tbody tr.call")
    assert rows.count() == 25  # one page
    assert page.inner_text("#calls-total") == "31"
    first = rows.nth(0).inner_text()
    assert "+8210****5678" in first and "완료" in first and "0.94초" in first and "1.44초" in first
    assert "0.98초" in page.inner_text("#summary")
    assert "p95 1.93초" in page.inner_text("#summary")
    page.click("#next")
    page.wait_for_function("() => document.querySelectorAll('#calls tbody tr.call').length === 6")
    assert page.inner_text("#page-info").startswith("26–31")
    page.click("#prev")
    page.wait_for_function("() => document.querySelectorAll('#calls tbody tr.call').length === 25")
    assert font_loaded(page)
    screenshot(page, "web-dashboard.png")

    page.locator(f"#calls tbody tr[data-sid='{CALL_SID}'] td").nth(2).click()
    page.wait_for_url(f"**/web/call.html?sid={CALL_SID}")
    page.wait_for_selector("body[data-loaded='1']")

    turns = page.locator("article.turn")
    assert turns.count() == 3
    seed_turn = page.locator("article.turn[data-turn='1']")
    wf_rows = seed_turn.locator("g.wf-row")
    assert wf_rows.count() == 3  # one row per sentence
    assert seed_turn.locator("g.wf-row[data-skipped='1']").get_attribute("data-index") == "1"
    assert seed_turn.locator("text.mark-skip").count() == 1
    assert seed_turn.locator("rect.tts").count() == 3
    assert seed_turn.locator("g.wf-row[data-index='1'] rect.tts.failed").count() == 1  # tried until given up
    assert seed_turn.locator("rect.send").count() == 2
    assert seed_turn.locator("rect.play").count() == 2
    assert seed_turn.locator("circle.gen").count() == 3
    log = seed_turn.locator("pre.log").inner_text()
    assert "[발화 종료 +0.00초] 실시간 하이브리드 파이프라인 시작" in log
    assert "[+0.52초] 문장[0] 생성: 안녕하세요!" in log
    assert "[+1.05초] 문장[0] TTS 완료 (0.53초 소요)" in log
    assert "[+1.12초] 문장[0] 전송 완료 (재생: 0.52초)" in log
    assert "[+3.08초] 문장[1] 건너뜀 (사유: tts_timeout)" in log
    assert "[+3.15초] 전체 완료 (재생시간: 1.32초)" in log
    assert "오늘 날씨 어때요?" in seed_turn.inner_text()

    barge = page.locator("article.turn[data-turn='2']")
    assert barge.locator("g.wf-row[data-cancelled='1']").count() == 2  # [0] cut short, [1] never sent
    assert barge.locator("line.cancel").count() == 1
    assert barge.locator("rect.play.cut").count() == 1
    assert "끼어들기" in barge.inner_text() and "DTMF 1" in barge.inner_text()
    assert "응답 취소 (사유: barge_in" in barge.locator("pre.log").inner_text()

    assert font_loaded(page)
    seed_turn.screenshot(path=str(screenshot(page, "web-call.png").with_name("web-call-turn1.png")))
    shot = screenshot(page, "web-call.png")
    assert shot.stat().st_size > 10_000
    assert page.errors == []


def test_softphone_streams_the_microphone_plays_audio_and_echoes_marks(
    page: Any, stand_in: tuple[str, EchoLog]
) -> None:
    url, log = stand_in
    with_token(page)
    page.goto(f"{url}/web/softphone.html")
    page.click("#call")
    page.wait_for_selector("#state[data-state='live']", timeout=10_000)
    # "a" is echoed after its 0.5 s of audio has played; "b" at once when the clear drops its 2 s.
    page.wait_for_function("() => document.getElementById('marks-echoed').textContent === '2'", timeout=15_000)
    assert wait_until(lambda: len(log.marks_echoed) == 2)
    assert log.marks_echoed == ["a", "b"]
    assert log.mark_echo_times["a"] - log.mark_sent_times["a"] >= 0.4  # after its 0.5 s of audio played
    assert log.clear_sent_at is not None
    assert log.mark_echo_times["b"] - log.clear_sent_at < 1.0  # not after the 2 s it would have taken to play
    assert page.inner_text("#frames-received") == str(25 + 100)
    assert page.inner_text("#clears") == "1"
    assert int(page.inner_text("#frames-sent")) >= 25
    assert "실시간 하이브리드 파이프라인 시작" in page.inner_text("#timeline")
    assert page.locator("#transcript .bubble[data-role='caller']").inner_text().endswith("여보세요?")
    assert page.locator("#transcript .bubble[data-role='agent']").inner_text().endswith("안녕하세요!")
    screenshot(page, "web-softphone.png")

    page.click("#hangup")
    assert log.stopped.wait(5)
    assert page.get_attribute("#state", "data-state") == "ended"

    # The protocol as Twilio speaks it: connected, start (with the session's token), 20 ms mu-law frames.
    assert log.messages[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert log.token_ok and log.start is not None
    assert log.start["customParameters"]["softphone"] == "1"
    assert log.start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert {len(p) for p in log.inbound_payloads} == {160}
    media = [m for m in log.messages if m["event"] == "media"]
    assert [int(m["media"]["chunk"]) for m in media] == list(range(1, len(media) + 1))
    seqs = [int(m["sequenceNumber"]) for m in log.messages if "sequenceNumber" in m]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # The fake microphone's 220 Hz tone arrives intact through the downsampler and the mu-law encoder.
    pcm = ulaw_to_pcm16(b"".join(log.inbound_payloads)).astype(np.float64)
    frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
    loud = frames[np.sqrt((frames**2).mean(axis=1)) > 500]
    assert len(loud) >= 10, "no microphone audio came through"
    spectrum = np.abs(np.fft.rfft(loud[:10].ravel()))
    peak_hz = np.argmax(spectrum[1:]) * 8000 / (10 * 160) + 8000 / (10 * 160)
    assert 200 <= peak_hz <= 240, peak_hz
    assert page.errors == []


def test_softphone_says_so_when_the_session_is_refused(page: Any, stand_in: tuple[str, EchoLog]) -> None:
    url, _ = stand_in
    with_token(page, "wrong")
    page.goto(f"{url}/web/softphone.html")
    page.click("#call")
    page.wait_for_selector("text=토큰이 맞지 않습니다")
    assert page.get_attribute("#state", "data-state") == "connecting"


def test_softphone_explains_a_denied_microphone(page: Any, stand_in: tuple[str, EchoLog]) -> None:
    url, _ = stand_in
    with_token(page)
    page.add_init_script(
        """navigator.mediaDevices.getUserMedia = () =>
             Promise.reject(new DOMException("Permission denied", "NotAllowedError"));"""
    )
    page.goto(f"{url}/web/softphone.html")
    page.click("#call")
    page.wait_for_selector("#state[data-state='error']")
    assert "마이크 사용이 거부되었습니다" in page.inner_text("#message")
    assert page.is_enabled("#call") and not page.is_enabled("#hangup")


def test_softphone_shows_why_the_stream_was_closed(page: Any, stand_in: tuple[str, EchoLog]) -> None:
    url, _ = stand_in
    with_token(page)
    session = {
        "call_sid": "WS" + "0" * 32,
        "stream_url": url.replace("http://", "ws://") + "/twilio/media",
        "parameters": {"token": "forged", "softphone": "1"},
    }
    page.route("**/web/softphone/session", lambda route: route.fulfill(json=session))
    page.goto(f"{url}/web/softphone.html")
    page.click("#call")
    page.wait_for_selector("#state[data-state='ended']")
    message = page.inner_text("#message")
    assert "invalid stream token" in message and "1008" in message
    assert page.is_enabled("#call")
