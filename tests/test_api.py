"""The /api routes over a small app: auth, off-without-token, pagination, filters, one call, delete, recording."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from hanmadi.api import api_router
from hanmadi.store.records import CallEnd, CallStart, TurnRecord
from hanmadi.store.writer import Recorder

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)


def _turn(sid: str, index: int, heard: str, first: float) -> TurnRecord:
    began = T0 + timedelta(seconds=10 * index)
    return TurnRecord(
        call_sid=sid,
        index=index,
        started_at=began,
        ended_at=began + timedelta(seconds=4),
        heard_text=heard,
        generated_text="네, 확인해 드리겠습니다. 잠시만요.",
        spoken_text="네, 확인해 드리겠습니다.",
        barge_in=index == 1,
        dtmf="",
        first_audio_s=first,
        voice_to_voice_s=first + 0.3,
        total_s=3.0,
        metrics={"sentences": 2},
        events=[
            {
                "t": 0.0,
                "kind": "pipeline_start",
                "index": None,
                "text": "realtime",
                "duration_s": None,
                "audio_s": None,
                "reason": None,
            },
            {"t": 0.4, "kind": "sent", "index": 0, "text": "", "duration_s": None, "audio_s": 1.2, "reason": None},
        ],
    )


@pytest.fixture
async def recorder(tmp_path: Path) -> AsyncIterator[Recorder]:
    rec = Recorder(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    await rec.start()
    wav = tmp_path / "CA0.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0\0\0" * 800)
    for i in range(5):
        sid = f"CA{i}"
        rec.call_started(
            CallStart(
                sid,
                f"MZ{i}",
                "+821012345678",
                "+8215881234",
                T0 + timedelta(minutes=i),
                {"stt": "vosk", "llm": "gemma", "tts": "espeak"},
            )
        )
        rec.turn_finished(_turn(sid, 0, "요금 문의" if i == 2 else "안녕하세요", 0.2 * (i + 1)))
        rec.turn_finished(_turn(sid, 1, "감사합니다", 0.3))
        if i != 4:
            rec.call_ended(
                CallEnd(sid, T0 + timedelta(minutes=i, seconds=30), "completed", "hangup", str(wav) if i == 0 else None)
            )
    await rec.flush()
    yield rec
    await rec.stop()


def _client(recorder: Recorder, token: str | None) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(api_router(recorder, token), prefix="/api")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


ROUTES = [
    ("GET", "/api/calls"),
    ("GET", "/api/calls/CA1"),
    ("GET", "/api/calls/CA0/recording"),
    ("GET", "/api/summary"),
    ("DELETE", "/api/calls/CA1"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_token_is_required(recorder: Recorder, method: str, path: str) -> None:
    async with _client(recorder, TOKEN) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
        assert (await client.get("/api/calls/CA1", headers=AUTH)).status_code == 200


@pytest.mark.parametrize("token", [None, ""])
async def test_without_an_admin_token_the_api_is_off(recorder: Recorder, token: str | None) -> None:
    async with _client(recorder, token) as client:
        for method, path in ROUTES:
            for headers in ({}, AUTH, {"Authorization": "Bearer "}):
                response = await client.request(method, path, headers=headers)
                assert response.status_code == 404, (method, path)
        schema = (await client.get("/openapi.json")).json()
    assert not [p for p in schema.get("paths", {}) if p.startswith("/api")]


async def test_list_paginates_newest_first(recorder: Recorder) -> None:
    async with _client(recorder, TOKEN) as client:
        first = (await client.get("/api/calls", params={"limit": 2}, headers=AUTH)).json()
        last = (await client.get("/api/calls", params={"limit": 2, "offset": 4}, headers=AUTH)).json()
        default = (await client.get("/api/calls", headers=AUTH)).json()
        for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"status": "nope"}):
            assert (await client.get("/api/calls", params=bad, headers=AUTH)).status_code == 422, bad
    assert (first["total"], first["limit"], first["offset"]) == (5, 2, 0)
    assert [c["call_sid"] for c in first["items"]] == ["CA4", "CA3"]
    assert [c["call_sid"] for c in last["items"]] == ["CA0"]
    assert default["limit"] == 50 and len(default["items"]) == 5
    item = first["items"][1]
    assert item["from_masked"] == "+8210****5678" and item["status"] == "completed"
    assert item["turn_count"] == 2 and item["barge_ins"] == 1 and item["duration_s"] == 30.0
    assert item["mean_first_audio_s"] == pytest.approx((0.8 + 0.3) / 2)
    assert "recording_path" not in item and item["has_recording"] is False


async def test_list_filters(recorder: Recorder) -> None:
    async with _client(recorder, TOKEN) as client:

        async def sids(**params: str) -> list[str]:
            response = await client.get("/api/calls", params=params, headers=AUTH)
            assert response.status_code == 200, response.text
            return [c["call_sid"] for c in response.json()["items"]]

        assert await sids(status="active") == ["CA4"]
        assert await sids(q="요금") == ["CA2"]
        since, until = (T0 + timedelta(minutes=1)).isoformat(), (T0 + timedelta(minutes=3)).isoformat()
        assert await sids(since=since, until=until) == ["CA2", "CA1"]
        assert await sids(status="failed") == []


async def test_get_one_call_with_turns_and_timelines(recorder: Recorder) -> None:
    async with _client(recorder, TOKEN) as client:
        response = await client.get("/api/calls/CA2", headers=AUTH)
        missing = await client.get("/api/calls/CA404", headers=AUTH)
    assert response.status_code == 200 and missing.status_code == 404
    call = response.json()
    assert call["call_sid"] == "CA2" and call["providers"] == {"stt": "vosk", "llm": "gemma", "tts": "espeak"}
    assert [t["index"] for t in call["turns"]] == [0, 1]
    turn = call["turns"][0]
    assert turn["heard_text"] == "요금 문의" and turn["spoken_text"] == "네, 확인해 드리겠습니다."
    assert turn["metrics"] == {"sentences": 2} and turn["first_audio_s"] == pytest.approx(0.6)
    assert [(e["seq"], e["kind"], e["index"]) for e in turn["events"]] == [(0, "pipeline_start", None), (1, "sent", 0)]
    assert turn["events"][1]["audio_s"] == 1.2


async def test_summary(recorder: Recorder) -> None:
    async with _client(recorder, TOKEN) as client:
        summary = (await client.get("/api/summary", headers=AUTH)).json()
    assert summary["turns"] == 10
    assert summary["first_audio_s"]["count"] == 10
    assert summary["first_audio_s"]["p50"] == pytest.approx(0.3)
    (group,) = summary["by_providers"]
    assert group["providers"] == {"stt": "vosk", "llm": "gemma", "tts": "espeak"} and group["turns"] == 10
    assert group["voice_to_voice_s"]["p95"] is not None


async def test_recording_and_delete(recorder: Recorder, tmp_path: Path) -> None:
    wav = tmp_path / "CA0.wav"
    async with _client(recorder, TOKEN) as client:
        response = await client.get("/api/calls/CA0/recording", headers=AUTH)
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        assert response.content == wav.read_bytes()
        assert (await client.get("/api/calls/CA1/recording", headers=AUTH)).status_code == 404

        deleted = await client.delete("/api/calls/CA0", headers=AUTH)
        assert deleted.status_code == 204 and deleted.content == b""
        assert not wav.exists()
        assert (await client.get("/api/calls/CA0", headers=AUTH)).status_code == 404
        assert (await client.delete("/api/calls/CA0", headers=AUTH)).status_code == 404
        assert (await client.get("/api/calls", headers=AUTH)).json()["total"] == 4


async def test_openapi_lists_the_routes(recorder: Recorder) -> None:
    async with _client(recorder, TOKEN) as client:
        schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths["/api/calls"]) == {"get"}
    assert set(paths["/api/calls/{call_sid}"]) == {"get", "delete"}
    assert set(paths["/api/calls/{call_sid}/recording"]) == {"get"}
    assert set(paths["/api/summary"]) == {"get"}
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    ok = paths["/api/calls"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/CallPage"}
