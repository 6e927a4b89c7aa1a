"""The REST API under ``/api``: call records for operators (JSON, in the OpenAPI schema).

Every route needs ``Authorization: Bearer <HANMADI_ADMIN_TOKEN>``. Without an admin token configured the API is
off, not open: every route answers 404 and none appears in the schema.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from hanmadi.store import repository
from hanmadi.store.records import CallDetail, CallStatus, CallSummary, TurnDetail
from hanmadi.store.writer import Recorder

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="HANMADI_ADMIN_TOKEN")


# --- response models ------------------------------------------------------------------------------------------


class CallOut(BaseModel):
    """One call as listed, with per-call latency means."""

    call_sid: str
    stream_sid: str
    from_masked: str
    to_masked: str
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    status: CallStatus
    end_reason: str | None
    providers: dict[str, str]
    turn_count: int
    has_recording: bool
    mean_first_audio_s: float | None
    mean_voice_to_voice_s: float | None
    barge_ins: int
    direction: str = "inbound"  # "outbound": placed by POST /api/calls or hanmadi dial
    answered_by: str | None = None  # outbound: human, machine_end_beep, … (Twilio's answering-machine detection)
    transfer_to: str | None = None  # end_reason "transferred": the (masked) number


class CallDetailOut(CallOut):
    """One call with its turns, ordered by index, and their timelines."""

    turns: list[TurnDetail]  # the stored turn's one schema (store/records.py), served as it is


class CallPage(BaseModel):
    """A page of calls, newest first; ``total`` counts every call matching the filters."""

    items: list[CallOut]
    total: int
    limit: int
    offset: int


class PercentilesOut(BaseModel):
    """p50/p95 in seconds over ``count`` turns (null when there are none)."""

    count: int
    p50: float | None
    p95: float | None


class ProviderSetOut(BaseModel):
    """Latency of the turns of calls that used one stt/llm/tts set."""

    providers: dict[str, str]
    turns: int
    first_audio_s: PercentilesOut
    voice_to_voice_s: PercentilesOut


class SummaryOut(BaseModel):
    """Latency over the newest ``window`` turns: first response and voice-to-voice, overall and per provider set."""

    window: int
    turns: int
    first_audio_s: PercentilesOut
    voice_to_voice_s: PercentilesOut
    by_providers: list[ProviderSetOut]


def _call_fields(call: CallSummary) -> dict[str, Any]:
    return {
        "call_sid": call.call_sid,
        "stream_sid": call.stream_sid,
        "from_masked": call.from_masked,
        "to_masked": call.to_masked,
        "started_at": call.started_at,
        "ended_at": call.ended_at,
        "duration_s": call.duration_s,
        "status": call.status,
        "end_reason": call.end_reason,
        "providers": call.providers,
        "turn_count": call.turn_count,
        "has_recording": call.recording_path is not None,
        "mean_first_audio_s": call.mean_first_audio_s,
        "mean_voice_to_voice_s": call.mean_voice_to_voice_s,
        "barge_ins": call.barge_ins,
        "direction": call.direction,
        "answered_by": call.answered_by,
        "transfer_to": call.transfer_to,
    }


def _detail_out(detail: CallDetail) -> CallDetailOut:
    return CallDetailOut(**_call_fields(detail.call), turns=detail.turns)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


# --- the router -----------------------------------------------------------------------------------------------


def api_router(
    recorder: Recorder, admin_token: str | None, extra_routes: Callable[[APIRouter], None] | None = None
) -> APIRouter:
    """The ``/api`` routes (mount with ``app.include_router(api_router(...), prefix="/api")``).

    With no (or an empty) ``admin_token`` every route answers 404 and is left out of the OpenAPI schema.
    ``extra_routes`` adds more routes behind the same admin token (the actions: outbound calls, webhooks).
    """
    enabled = bool(admin_token)
    expected = (admin_token or "").encode()

    async def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if not enabled:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong admin token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    router = APIRouter(
        dependencies=[Depends(require_admin)],
        include_in_schema=enabled,
        tags=["calls"],
        responses={401: {"description": "Missing or wrong bearer token"}},
    )

    @router.get("/calls", response_model=CallPage, summary="List calls, newest first")
    async def list_calls(
        status_: Annotated[CallStatus | None, Query(alias="status")] = None,
        since: Annotated[datetime | None, Query(description="started at or after (ISO 8601)")] = None,
        until: Annotated[datetime | None, Query(description="started before (ISO 8601)")] = None,
        q: Annotated[str | None, Query(max_length=200, description="text heard, generated or spoken")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # past this a database's OFFSET overflows (500)
    ) -> CallPage:
        async with recorder.session() as session:
            items, total = await repository.list_calls(
                session, limit=limit, offset=offset, status=status_, since=since, until=until, q=q
            )
        return CallPage(items=[CallOut(**_call_fields(c)) for c in items], total=total, limit=limit, offset=offset)

    @router.get("/summary", response_model=SummaryOut, summary="Latency summary")
    async def summary() -> SummaryOut:
        async with recorder.session() as session:
            result = await repository.latency_summary(session)
        return SummaryOut.model_validate(result)

    @router.get(
        "/calls/{call_sid}",
        response_model=CallDetailOut,
        summary="One call with turns and timelines",
        responses={404: {"description": "Unknown call"}},
    )
    async def get_call(call_sid: str) -> CallDetailOut:
        async with recorder.session() as session:
            detail = await repository.get_call(session, call_sid)
        if detail is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown call")
        return _detail_out(detail)

    @router.get(
        "/calls/{call_sid}/recording",
        response_class=FileResponse,
        summary="The call's stereo WAV (caller left, bot right)",
        responses={200: {"content": {"audio/wav": {}}}, 404: {"description": "No recording"}},
    )
    async def get_recording(call_sid: str) -> FileResponse:
        async with recorder.session() as session:
            stored = await repository.get_recording_path(session, call_sid)
        path = Path(stored) if stored else None
        if path is None or not await asyncio.to_thread(path.is_file):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no recording")
        return FileResponse(path, media_type="audio/wav", filename=f"{call_sid}.wav")

    @router.delete(
        "/calls/{call_sid}",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        summary="Delete a call, its turns and its recording",
        responses={404: {"description": "Unknown call"}},
    )
    async def delete_call(call_sid: str) -> Response:
        async with recorder.session() as session:
            deleted = await repository.delete_call(session, call_sid)
            await session.commit()
        if deleted is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown call")
        if deleted.recording_path:
            try:
                await asyncio.to_thread(_unlink, Path(deleted.recording_path))
            except OSError as exc:
                log.warning("api: call %s deleted but its recording was not: %s", call_sid, exc)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    if extra_routes is not None:
        extra_routes(router)
    return router
