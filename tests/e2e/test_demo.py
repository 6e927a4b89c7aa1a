"""The demo's whole-call path (here on simulated providers, so it runs anywhere) and what /metrics shows after it."""

from __future__ import annotations

import wave
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from hanmadi.config import Settings
from hanmadi.demo import DEMO_LINES, run_demo

pytestmark = pytest.mark.e2e


async def test_demo_places_a_call_prints_the_timeline_and_saves_a_stereo_wav(tmp_path: Path) -> None:
    settings = Settings(
        stt="simulated",
        llm="simulated",
        tts="simulated",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
        endpointing_ms=300,
    )
    console = Console(record=True, width=140)
    out = tmp_path / "demo.wav"
    summary = await run_demo(settings, turns=2, out=out, console=console)
    text = console.export_text()
    assert "[발화 종료 +0.0" in text and "실시간 하이브리드 파이프라인 시작" in text
    assert "문장[0] 생성:" in text and "전체 완료" in text
    rows = summary["turns"]
    assert [r["turn"] for r in rows] == [0, 1, 2]
    assert rows[1]["caller_said"] == DEMO_LINES[0]
    assert all(r["voice_to_voice_ms"] for r in rows[1:])
    # the example restaurant's knowledge answers the same lines on the text path
    assert [t["caller"] for t in summary["ask"]] == DEMO_LINES[:2]
    assert all(t["grounded"] for t in summary["ask"]) and "hanmadi ask" in text
    with wave.open(str(out)) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 8000
        assert wav.getnframes() > 8000 * 3


async def test_metrics_endpoint_reports_calls(server: tuple[str, Settings]) -> None:
    from e2e_support import AUTH_TOKEN, voice

    from hanmadi.telephony.caller import CallerConfig, place_call

    url, _ = server
    await place_call(CallerConfig(url=url, utterances=[voice(0.8)], auth_token=AUTH_TOKEN, turns=1))
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"{url}/metrics")).text
        health = (await client.get(f"{url}/healthz")).json()
    for name in (
        "hanmadi_active_calls",
        "hanmadi_calls_ended_total",
        "hanmadi_first_response_seconds_count",
        "hanmadi_voice_to_voice_seconds_count",
        "hanmadi_tts_seconds_count",
    ):
        assert name in body, name
    assert health["ok"] is True
