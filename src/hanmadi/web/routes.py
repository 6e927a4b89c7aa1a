"""The web pages: dashboard, call page and softphone (static files), and the softphone's session route.

The pages hold no data: they ask the operator for the admin token once and call ``/api`` with it. The session
route hands the softphone what Twilio would: a call sid, the Media Streams URL and a one-shot stream token.
Without an admin token configured everything here answers 404 — off, not open.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel

from hanmadi.admin import bearer_matches

STATIC_DIR = Path(__file__).resolve().parent / "static"
MEDIA_STREAM_PATH = "twilio/media"

# Explicit, so the answer does not depend on the host's mime.types (woff2 and .mjs are often missing).
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}

# The pages render call transcripts (caller-controlled text): scripts only from here, no inline code.
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; font-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; media-src 'self' blob:; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class SoftphoneSession(BaseModel):
    """What the softphone needs to open a Media Streams session, as Twilio would have it."""

    call_sid: str
    stream_url: str
    parameters: dict[str, str]


def web_router(*, admin_token: str | None, issue_stream_token: Callable[[str], str]) -> APIRouter:
    """Routes for the web pages under ``/web/`` and ``POST /web/softphone/session``; ``GET /`` redirects.

    ``issue_stream_token(call_sid)`` returns the token the Media Streams endpoint accepts for that call.
    With no ``admin_token`` every route answers 404.
    """
    router = APIRouter()
    if not admin_token:

        @router.api_route("/web", methods=["GET", "HEAD", "POST"], include_in_schema=False)
        @router.api_route("/web/{path:path}", methods=["GET", "HEAD", "POST"], include_in_schema=False)
        async def web_off() -> None:
            raise HTTPException(404, "web pages are off: set HANMADI_ADMIN_TOKEN to turn them on")

        return router

    @router.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/web/", status_code=307)

    @router.get("/web", include_in_schema=False)
    async def web_no_slash() -> RedirectResponse:
        return RedirectResponse("/web/", status_code=307)

    @router.post("/web/softphone/session", response_model=SoftphoneSession, tags=["web"])
    async def softphone_session(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> SoftphoneSession:
        """Start a browser call: a fresh call sid, the WebSocket URL and a stream token for it."""
        if not bearer_matches(authorization, admin_token):
            raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})
        call_sid = "WS" + uuid.uuid4().hex
        return SoftphoneSession(
            call_sid=call_sid,
            stream_url=stream_url_for(request),
            parameters={"token": issue_stream_token(call_sid), "softphone": "1"},
        )

    @router.get("/web/{path:path}", include_in_schema=False)
    async def static_file(path: str) -> FileResponse:
        file = _resolve_static(path or "index.html")
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if file.suffix == ".html":
            headers["Content-Security-Policy"] = _PAGE_CSP
            headers["Referrer-Policy"] = "no-referrer"
        return FileResponse(file, media_type=_CONTENT_TYPES[file.suffix], headers=headers)

    return router


def stream_url_for(request: Request) -> str:
    """The Media Streams WebSocket URL on the host the browser reached us at (ws for http, wss for https)."""
    base = str(request.base_url)
    scheme, rest = base.split("://", 1)
    ws_scheme = "wss" if scheme == "https" else "ws"
    return f"{ws_scheme}://{rest.rstrip('/')}/{MEDIA_STREAM_PATH}"


def _resolve_static(path: str) -> Path:
    """The file under ``STATIC_DIR`` for a URL path; 404 for anything outside it or of an unknown type."""
    if path.endswith("/"):
        path += "index.html"
    file = (STATIC_DIR / path).resolve()
    if not file.is_relative_to(STATIC_DIR) or not file.is_file() or file.suffix not in _CONTENT_TYPES:
        raise HTTPException(404, "not found")
    return file
