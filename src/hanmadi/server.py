"""create_app(): the FastAPI routes — Twilio webhook, Media Streams WebSocket, health, metrics, API, pages.

Wiring only: the protocol lives in ``telephony.twilio``, a call's logic in ``call``, records in ``store``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse
from fastapi.websockets import WebSocketState
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Message

from hanmadi import limits, metrics, replay
from hanmadi.actions import AMD_PATH, Actions, ActionsError
from hanmadi.admin import add_schema_routes
from hanmadi.api import api_router
from hanmadi.call import CallSession
from hanmadi.config import Settings
from hanmadi.knowledge import KnowledgeError, KnowledgeSource, knowledge_watch, source_from_settings
from hanmadi.logs import safe
from hanmadi.providers.base import LLM, STT, TTS, Lifecycle
from hanmadi.providers.registry import make_llm, make_stt, make_tts
from hanmadi.store import repository
from hanmadi.store.writer import Recorder
from hanmadi.telephony import twilio as tw
from hanmadi.web.routes import web_router

log = logging.getLogger("hanmadi.server")

# WebSocket close codes: 1008 policy violation, 1013 try again later, 1001 going away.
_POLICY = 1008


@dataclass
class Providers:
    stt: STT
    llm: LLM
    tts: TTS


@dataclass
class AppState:
    """What the routes share: settings, providers, records, stream tokens and the live calls."""

    settings: Settings
    providers: Providers
    recorder: Recorder | None
    tokens: tw.StreamTokens
    calls: dict[str, CallSession] = field(default_factory=dict)
    draining: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while no call is active
    # calls admitted by the webhook whose stream has not started yet: CallSid -> when the admission lapses
    pending: dict[str, float] = field(default_factory=dict)
    knowledge: KnowledgeSource | None = None  # HANMADI_KNOWLEDGE_FILE, reloaded while the server runs
    actions: Actions | None = None  # tools, Twilio REST, outbound calls, call webhooks
    history: replay.CallHistory = field(default_factory=lambda: replay.CallHistory(None))  # one CallSid, one call

    def at_capacity(self) -> bool:
        """A call counts from its webhook to its hang-up: admitted-but-not-yet-streaming calls hold a place."""
        now = time.monotonic()
        for sid in [sid for sid, until in self.pending.items() if until <= now]:
            del self.pending[sid]  # the stream never came (its token has expired)
        return len(self.calls) + len(self.pending) >= self.settings.max_calls

    def admit(self, call_sid: str) -> None:
        """Hold a place for ``call_sid`` until its stream starts or its stream token expires."""
        self.pending[call_sid] = time.monotonic() + self.settings.stream_token_ttl_s


def build_providers(settings: Settings) -> Providers:
    """Build the configured providers; a missing key or unknown name fails here, at start-up."""
    return Providers(stt=make_stt(settings), llm=make_llm(settings), tts=make_tts(settings))


def create_app(
    settings: Settings,
    *,
    providers: Providers | None = None,
    recorder: Recorder | None = None,
    use_recorder: bool = True,
) -> FastAPI:
    """The hanmadi ASGI app. Providers and the recorder are built from settings unless given."""
    if not settings.auth_token() and not settings.dev:
        raise RuntimeError("HANMADI_TWILIO_AUTH_TOKEN is not set: refusing to start (use --dev for local testing)")
    try:
        knowledge = source_from_settings(settings.knowledge_file)
    except KnowledgeError as exc:
        raise RuntimeError(f"HANMADI_KNOWLEDGE_FILE: {exc}") from exc
    state = AppState(
        settings=settings,
        providers=providers or build_providers(settings),
        recorder=recorder
        if recorder is not None
        else (
            Recorder(
                settings.database_url,
                journal_dir=settings.store_journal,
                journal_max_bytes=int(settings.store_journal_max_mb * 1024 * 1024),
            )
            if use_recorder
            else None
        ),
        tokens=tw.StreamTokens(settings.auth_token(), settings.stream_token_ttl_s),
        knowledge=knowledge,
    )
    state.history = replay.CallHistory(state.recorder)
    try:
        state.actions = actions = Actions(settings, state.recorder)
    except ActionsError as exc:
        raise RuntimeError(str(exc)) from exc

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for provider in (state.providers.stt, state.providers.llm, state.providers.tts):
            if isinstance(provider, Lifecycle):
                await provider.warm_up()
        if state.recorder is not None:
            await state.recorder.start()
        try:
            async with actions.running():  # the tools' clients outlive the drain: calls finishing may use them
                try:
                    async with knowledge_watch(state.knowledge, state.settings.knowledge_poll_s):
                        yield
                finally:
                    await drain(state, state.settings.drain_timeout_s)
        finally:
            try:
                for provider in (state.providers.stt, state.providers.llm, state.providers.tts):
                    if isinstance(provider, Lifecycle):
                        try:
                            await provider.aclose()
                        except Exception as exc:  # one provider failing to close must not keep the others open
                            log.warning("provider %s did not close cleanly: %s", type(provider).__name__, exc)
            finally:
                if state.recorder is not None:
                    await state.recorder.stop()

    app = FastAPI(title="hanmadi", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hanmadi = state
    app.add_middleware(limits.EdgeGuard, settings=settings)  # limits before any route does work
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    add_schema_routes(app, admin_token=admin, dev=settings.dev)
    if state.recorder is not None:
        app.include_router(api_router(state.recorder, admin, actions.add_routes), prefix="/api")
    app.include_router(web_router(admin_token=admin, issue_stream_token=state.tokens.issue))

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        store = state.recorder.health() if state.recorder is not None else {"store": "off"}
        return {"ok": True, "active_calls": len(state.calls), "draining": state.draining, **store}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.post("/twilio/voice")
    async def voice(request: Request) -> Response:
        return await answer_webhook(state, request)

    @app.websocket("/twilio/media")
    async def media(ws: WebSocket) -> None:
        await serve_media_stream(state, ws)

    @app.post(AMD_PATH)
    async def amd(request: Request) -> Response:
        return await answer_amd(state, request)

    return app


def _twiml(body: str) -> Response:
    return Response(body, media_type="application/xml")


async def _signed_form(state: AppState, request: Request) -> dict[str, str] | Response:
    """The form Twilio posted, once its X-Twilio-Signature checks out; else the 403 to answer."""
    settings = state.settings
    try:
        params = await limits.webhook_params(request)  # urlencoded only: nothing parsed or spooled before the check
    except limits.Refused as exc:
        metrics.WEBHOOKS_REJECTED.labels(reason=exc.reason).inc()
        log.warning("webhook refused: %s", exc.reason)
        return PlainTextResponse(exc.reason, status_code=exc.status)
    token = settings.auth_token()
    if token:
        url = tw.webhook_url(settings.public_url or str(request.base_url).rstrip("/"), request.url.path)
        if request.url.query:
            url += "?" + request.url.query
        signature = request.headers.get("x-twilio-signature", "")
        if not signature or not tw.validate_signature(token, url, params, signature):
            reason = "missing_signature" if not signature else "bad_signature"
            metrics.WEBHOOKS_REJECTED.labels(reason=reason).inc()
            log.warning("webhook refused: %s (CallSid %s)", reason, safe(params.get("CallSid", "?"), 64))
            return PlainTextResponse("forbidden", status_code=403)
    else:
        log.warning(
            "dev mode: webhook accepted without signature check (CallSid %s)", safe(params.get("CallSid", "?"), 64)
        )
    return params


async def answer_amd(state: AppState, request: Request) -> Response:
    """Twilio's async AMD callback (signed like the voice webhook): tell the outbound call who answered."""
    params = await _signed_form(state, request)
    if isinstance(params, Response):
        return params
    call_sid, answered_by = params.get("CallSid", ""), params.get("AnsweredBy", "")
    if not call_sid or not answered_by:
        metrics.WEBHOOKS_REJECTED.labels(reason="amd_incomplete").inc()
        log.warning("AMD callback without CallSid or AnsweredBy refused")
        return PlainTextResponse("CallSid and AnsweredBy required", status_code=400)
    session = state.calls.get(call_sid)
    if session is not None:
        session.on_answered_by(answered_by)
    elif state.actions is None or not state.actions.note_answered_by(call_sid, answered_by):
        log.info("AMD for unknown call %s (%s) ignored", call_sid, answered_by)
    return Response(status_code=204)


async def answer_webhook(state: AppState, request: Request) -> Response:
    """Twilio's voice webhook: verify the signature, admit or refuse, answer TwiML that opens the stream."""
    settings = state.settings
    params = await _signed_form(state, request)
    if isinstance(params, Response):
        return params
    call_sid = params.get("CallSid", "")
    if not call_sid:
        metrics.WEBHOOKS_REJECTED.labels(reason="missing_callsid").inc()
        return PlainTextResponse("CallSid missing", status_code=400)
    if not replay.valid_call_sid(call_sid):
        metrics.WEBHOOKS_REJECTED.labels(reason="bad_callsid").inc()
        log.warning("webhook refused: malformed CallSid %s", safe(call_sid, 64))
        return PlainTextResponse("CallSid malformed", status_code=400)
    if await state.history.seen(call_sid):  # a replayed webhook: the call already had its stream
        replay.refused(call_sid, "webhook")
        return _twiml(replay.hangup_twiml())
    if state.draining or (call_sid not in state.pending and state.at_capacity()):
        reason = "draining" if state.draining else "busy"
        metrics.CALLS_REJECTED.labels(reason=reason).inc()
        log.info("call %s refused: %s", call_sid, reason)
        return _twiml(tw.busy_twiml(settings.busy_message))
    base = settings.public_url or str(request.base_url).rstrip("/")
    state.admit(call_sid)
    parameters = {"token": state.tokens.issue(call_sid)}
    for key in ("From", "To"):
        if params.get(key):
            parameters[key.lower()] = params[key]
    return _twiml(tw.connect_twiml(tw.stream_url(base), parameters))


async def redeem_stream_token(state: AppState, token: str, call_sid: str) -> None:
    """Accept a stream's one-time token once — across every process sharing the database when there is one (a
    captured token must not open N streams on N processes) — or raise ``TokenError``."""
    if state.recorder is None:
        state.tokens.redeem(token, call_sid)
        return
    nonce, expiry_ms = state.tokens.verify(token, call_sid)
    expires_at = datetime.fromtimestamp(expiry_ms / 1000, UTC)
    try:
        async with state.recorder.session() as session:
            first_use = await repository.redeem_stream_token(session, nonce, call_sid, expires_at)
    except (SQLAlchemyError, OSError, RuntimeError) as exc:
        # the database is unreachable: this process's memory still refuses a reuse here
        metrics.STORE_ERRORS.labels(op="stream_token").inc()
        log.warning("stream token of call %s checked in memory only: %s", call_sid, exc)
        state.tokens.redeem(token, call_sid)
        return
    if not first_use:
        raise tw.TokenError("reused")


class _WsTransport:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send_text(self, data: str) -> None:
        await self.ws.send_text(data)

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            await self.ws.close(code=code, reason=reason)


class _SilenceWatch:
    """The receive timeout of one socket, cheap per message: one timer for the whole socket, rearmed only when it
    fires early (``asyncio.timeout`` around every receive costs ~12 µs a frame, at 50 frames a second a call)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._waiter: asyncio.Task[Any] | None = None
        self._expired = False
        self._timer = self._loop.call_later(timeout_s, self._check)

    def _check(self) -> None:
        idle = self._loop.time() - self._last
        if idle < self.timeout_s or self._waiter is None:
            self._timer = self._loop.call_later(max(self.timeout_s - idle, 0.05), self._check)
            return
        self._expired = True
        self._waiter.cancel()

    async def receive(self, ws: WebSocket) -> Message:
        """One receive: a silence of ``timeout_s`` since the last message raises ``TimeoutError``."""
        self._waiter = asyncio.current_task()
        try:
            return await ws.receive()
        except asyncio.CancelledError:
            if self._expired and self._waiter is not None and self._waiter.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            self._waiter = None
            self._last = self._loop.time()

    def stop(self) -> None:
        self._timer.cancel()


async def serve_media_stream(state: AppState, ws: WebSocket) -> None:
    """One Media Streams socket: handshake checks, then every event to the call; bad input counted and bounded."""
    settings = state.settings
    token = settings.auth_token()
    signature = ws.headers.get("x-twilio-signature")
    if signature and token:
        url = tw.stream_url(settings.public_url) if settings.public_url else ""
        if not url or not tw.validate_signature(token, url, {}, signature):
            metrics.CALLS_REJECTED.labels(reason="bad_ws_signature").inc()
            log.warning("media stream refused: bad X-Twilio-Signature on upgrade")
            await ws.close(code=_POLICY, reason="bad signature")
            return
    await ws.accept()
    bad_frames = 0
    guard = tw.StreamGuard()
    session: CallSession | None = None
    stack = contextlib.AsyncExitStack()
    end_reason = "client_gone"

    async def close(reason: str) -> None:
        with contextlib.suppress(Exception):
            await ws.close(code=_POLICY, reason=reason)

    silence = _SilenceWatch(settings.receive_timeout_s)
    try:
        while True:
            try:
                message = await silence.receive(ws)
            except TimeoutError:
                # Twilio sends a frame every 20 ms: a silent socket is a dead call
                end_reason = "receive_timeout"
                log.warning(
                    "call %s: nothing received for %.0f s, ending the call",
                    session.call_sid if session else "-",
                    settings.receive_timeout_s,
                )
                await close("receive timeout")
                break
            except (WebSocketDisconnect, RuntimeError):
                break
            if message["type"] == "websocket.disconnect":
                break
            raw: str | bytes | None = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            try:
                event = tw.parse_message(raw, max_bytes=settings.max_message_bytes)
                guard.check(event)  # start first and once, then one streamSid
            except tw.BadFrame as exc:
                bad_frames += 1
                metrics.BAD_FRAMES.labels(reason=exc.reason).inc()
                log.warning(
                    "call %s: bad frame (%s) %s [%d/%d]",
                    session.call_sid if session else "-",
                    exc.reason,
                    safe(exc.detail, 80),
                    bad_frames,
                    settings.max_bad_frames,
                )
                if bad_frames >= settings.max_bad_frames:
                    end_reason = "bad_frames"
                    await close("too many bad frames")
                    break
                continue
            if isinstance(event, tw.Connected):
                continue
            if isinstance(event, tw.Start):
                try:
                    await redeem_stream_token(state, event.custom_parameters.get("token", ""), event.call_sid)
                except tw.TokenError as exc:
                    metrics.CALLS_REJECTED.labels(reason=f"token_{exc.reason}").inc()
                    log.warning("media stream for call %s refused: token %s", safe(event.call_sid, 64), exc.reason)
                    await close(f"stream token {exc.reason}")
                    return
                if event.call_sid in state.calls:
                    await close("call already streaming")
                    return
                if not await state.history.claim(event.call_sid):  # started or ended before: never a second stream
                    replay.refused(event.call_sid, "media stream")
                    await close("call already handled")
                    return
                limits.socket_started(ws.scope)
                outbound = state.actions.take_outbound(event.call_sid) if state.actions else None
                session = CallSession(
                    settings=settings,
                    stt=state.providers.stt,
                    llm=state.providers.llm,
                    tts=state.providers.tts,
                    transport=_WsTransport(ws),
                    start=event,
                    recorder=state.recorder,
                    softphone=event.custom_parameters.get("softphone") == "1",
                    knowledge=state.knowledge,
                    tools=state.actions.call_tools(
                        event.call_sid,
                        event.custom_parameters.get("from", ""),
                        event.custom_parameters.get("to", ""),
                    )
                    if state.actions
                    else None,
                    phone=state.actions.rest if state.actions else None,
                    direction="outbound" if outbound else "inbound",
                    context=outbound.context if outbound else None,
                )
                state.pending.pop(event.call_sid, None)
                try:
                    await stack.enter_async_context(session)
                except Exception:  # logged, counted and recorded by the session (end_reason stt_failed)
                    session = None
                    with contextlib.suppress(Exception):
                        await ws.close(code=1011, reason="call could not start")
                    return
                state.calls[event.call_sid] = session
                state.idle.clear()
                if outbound is not None and outbound.answered_by:
                    session.on_answered_by(outbound.answered_by)  # AMD answered before the stream started
                if settings.dev and not token:
                    log.warning("dev mode: call %s runs without Twilio authentication", event.call_sid)
                continue
            assert session is not None  # the guard let a non-start event through only after a start
            session.on_event(event)
            if isinstance(event, tw.Stop):
                end_reason = "caller_stop"
                break
    finally:
        silence.stop()
        if session is not None and session.end_reason == "hangup":
            session.end_reason = end_reason  # nothing more specific (stop, shutdown, error) was recorded
        try:
            await stack.aclose()  # the session's exit queues its last records
        finally:
            # only now is the call over: a drain or a test's settle() waiting on `idle` sees its records queued
            if session is not None:
                state.calls.pop(session.call_sid, None)
            if not state.calls:
                state.idle.set()
        if ws.application_state == WebSocketState.CONNECTED and ws.client_state == WebSocketState.CONNECTED:
            # the call ended (stop, drain): say so with a close frame; uvicorn would just drop the TCP connection
            with contextlib.suppress(Exception):
                await ws.close(code=1000, reason="call ended")


async def drain(state: AppState, timeout_s: float) -> None:
    """Stop admitting calls and let the active ones finish, up to ``timeout_s``."""
    state.draining = True
    if state.calls:
        log.info("draining: %d active calls, up to %.0f s", len(state.calls), timeout_s)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await state.idle.wait()
    for session in list(state.calls.values()):
        session.end_reason = "shutdown"


class DrainingServer(uvicorn.Server):
    """uvicorn, but SIGTERM first drains: webhooks answer busy while active calls finish (``drain_timeout_s``).

    Plain uvicorn closes every WebSocket at shutdown, which would cut live calls mid-sentence.

    With ``freeze_heap`` (a process that only serves: ``hanmadi serve``, the load server), everything alive once the
    server has started — modules, models, the app — is moved out of the garbage collector's sight
    (``gc.freeze``): a full collection then walks only what calls allocate, not the whole heap (158 ms pauses
    under ``hanmadi load`` before, every call in the process waiting).
    """

    def __init__(self, config: uvicorn.Config, state: AppState, *, freeze_heap: bool = False) -> None:
        super().__init__(config)
        self.hanmadi_state = state
        self.freeze_heap = freeze_heap

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.freeze_heap and not self.should_exit:
            gc.collect()
            gc.freeze()
            log.info("startup heap frozen: %d objects out of the collector's sight", gc.get_freeze_count())

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await drain(self.hanmadi_state, self.hanmadi_state.settings.drain_timeout_s)
        await super().shutdown(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT start the (draining) shutdown through uvicorn's public ``handle_exit``; once it is
        done the process exits 0 — uvicorn's own handler would raise the signal again and die by it."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be handled in the main thread (tests run the server in a thread)
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
