"""Limits before work: what an unauthenticated peer may cost the server before it has proved anything.

- WebSocket messages: uvicorn's ``ws_max_size`` is set to ``max_message_bytes``, so the WebSocket parser refuses
  a larger frame from its header (close 1009) before buffering it — see ``uvicorn_config``.
- HTTP request headers must arrive within ``http_header_timeout_s`` (a slow-loris peer is disconnected), and a
  request body within ``http_body_timeout_s`` and ``max_body_bytes`` (408 / 413, read here before any route runs).
  A client that goes away mid-request is one INFO line and a metric, never a traceback.
- Media Streams sockets: at most ``max_pending_sockets_per_ip`` sockets per client address that have not yet
  sent a valid ``start`` (more are refused at the handshake, HTTP 403), and a socket without a valid ``start``
  within ``start_timeout_s`` is closed 1008. The route says "this socket is authenticated" with ``socket_started``.
- The Twilio webhook's form is parsed from the capped body as ``application/x-www-form-urlencoded`` only:
  nothing (multipart files included) is parsed, let alone spooled to disk, before the signature is checked.

Every refusal: ``hanmadi_requests_refused_total{reason}`` and a log line, throttled so a flood cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import parse_qsl

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from hanmadi import metrics
from hanmadi.config import Settings
from hanmadi.logs import safe

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent

log = logging.getLogger("hanmadi.limits")

MEDIA_PATH: Final = "/twilio/media"
SOCKET_KEY: Final = "hanmadi.pending_socket"
FORM_TYPE: Final = "application/x-www-form-urlencoded"
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOG_EVERY_S: Final = 10.0


class Refused(Exception):
    """A request refused before any work: an HTTP status and a short reason (a metric label)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Throttle:
    """At most one log line per reason every ``every_s`` seconds; says how many were held back in between."""

    def __init__(self, every_s: float = _LOG_EVERY_S, clock: Any = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def __call__(self, reason: str) -> int | None:
        """None: stay silent; else log now, mentioning the returned count of lines held back since the last."""
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.every_s:
            self._held[reason] += 1
            return None
        self._last[reason] = now
        return self._held.pop(reason, 0)


def refused(reason: str, message: str, *args: object, throttle: Throttle | None = None) -> None:
    """Count a refusal and log it (at most one line per reason per 10 s when ``throttle`` is given)."""
    metrics.REQUESTS_REFUSED.labels(reason=reason).inc()
    held = throttle(reason) if throttle is not None else 0
    if held is None:
        return
    suffix = f" (+{held} more since the last such line)" if held else ""
    log.info(message + suffix, *args)


def client_ip(scope: Scope) -> str:
    """The peer's address as uvicorn saw it (after ``--forwarded-allow-ips`` proxies, if configured)."""
    client = scope.get("client")
    return str(client[0]) if client else "?"


# --- Media Streams sockets: per-IP cap and start deadline -----------------------------------------------------


@dataclass
class PendingSocket:
    """A Media Streams socket that has not yet sent a valid ``start``."""

    ip: str
    release: Any = None  # called once, when the socket starts or ends
    started: bool = False
    expired: bool = False
    _released: bool = field(default=False, repr=False)

    def done(self) -> None:
        if not self._released:
            self._released = True
            if self.release is not None:
                self.release(self.ip)


def socket_started(scope: Scope) -> None:
    """The route accepted this socket's ``start`` (token redeemed): lift the start deadline and the per-IP slot."""
    pending = scope.get(SOCKET_KEY)
    if isinstance(pending, PendingSocket):
        pending.started = True
        pending.done()


class EdgeGuard:
    """ASGI middleware: bounded request bodies, per-IP caps and a start deadline for Media Streams sockets."""

    def __init__(self, app: ASGIApp, settings: Settings, media_path: str = MEDIA_PATH) -> None:
        self.app = app
        self.settings = settings
        self.media_path = media_path
        self.pending_by_ip: Counter[str] = Counter()
        self.throttle = Throttle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == self.media_path:
            await self._media_socket(scope, receive, send)
        elif scope["type"] == "http" and scope["method"] in _BODY_METHODS:
            await self._bounded_body(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    @property
    def pending_sockets(self) -> int:
        """Media Streams sockets open without a valid ``start`` yet, all addresses."""
        return sum(self.pending_by_ip.values())

    def _release(self, ip: str) -> None:
        self.pending_by_ip[ip] -= 1
        if self.pending_by_ip[ip] <= 0:
            del self.pending_by_ip[ip]

    async def _media_socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.settings
        ip = client_ip(scope)
        if self.pending_by_ip[ip] >= settings.max_pending_sockets_per_ip:
            refused(
                "per_ip_cap",
                "media socket from %s refused: %d sockets without a start already",
                safe(ip, 64),
                self.pending_by_ip[ip],
                throttle=self.throttle,
            )
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "too many pending sockets"})  # → 403
            return
        self.pending_by_ip[ip] += 1
        pending = PendingSocket(ip, release=self._release)
        scope[SOCKET_KEY] = pending
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.start_timeout_s
        closed = False

        async def guarded_send(message: Message) -> None:
            nonlocal closed
            if message["type"] == "websocket.close":
                if closed:
                    return
                closed = True
            await send(message)

        async def guarded_receive() -> Message:
            if pending.started:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    return await receive()
            except TimeoutError:
                pass
            pending.expired = True
            refused(
                "start_timeout",
                "media socket from %s closed: no valid start within %.1f s",
                safe(ip, 64),
                settings.start_timeout_s,
                throttle=self.throttle,
            )
            await guarded_send({"type": "websocket.close", "code": 1008, "reason": "no start in time"})
            return {"type": "websocket.disconnect", "code": 1008, "reason": "no start in time"}

        try:
            await self.app(scope, guarded_receive, guarded_send)
        finally:
            pending.done()

    async def _bounded_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.settings
        path = safe(scope.get("path", ""), 80)
        declared = _content_length(scope)
        if declared is not None and declared > settings.max_body_bytes:
            refused("body_too_large", "%s %s refused: body of %d bytes declared", scope["method"], path, declared)
            await _plain(send, 413, "request body too large")
            return
        body = bytearray()
        try:
            async with asyncio.timeout(settings.http_body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        refused(
                            "client_gone",
                            "%s %s: the client went away mid-request (%d bytes read)",
                            scope["method"],
                            path,
                            len(body),
                            throttle=self.throttle,
                        )
                        return
                    body += message.get("body", b"")
                    if len(body) > settings.max_body_bytes:
                        refused("body_too_large", "%s %s refused: body over %d bytes", scope["method"], path, len(body))
                        await _plain(send, 413, "request body too large")
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            refused(
                "body_timeout",
                "%s %s refused: body not received within %.0f s",
                scope["method"],
                path,
                settings.http_body_timeout_s,
                throttle=self.throttle,
            )
            await _plain(send, 408, "request body too slow")
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def webhook_params(request: Request) -> dict[str, str]:
    """The webhook's form fields, from the body ``EdgeGuard`` already capped; urlencoded only (Twilio's format).

    Raises ``Refused`` (415) for any other content type: a multipart body is never parsed, so never spooled.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise Refused(415, "unsupported_media_type")
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "bad_form") from exc
    return dict(pairs)


# --- HTTP header deadline (a protocol option of uvicorn) ------------------------------------------------------


def _header_deadline_protocol(timeout_s: float) -> type[asyncio.Protocol] | None:
    """uvicorn's httptools protocol, closing a connection whose request headers take longer than ``timeout_s``.

    The deadline starts when the connection opens (and at each later request's first byte on a kept-alive one)
    and ends when the headers are complete; uvicorn itself has no such deadline for a first request. None when
    httptools is not installed (uvicorn then uses h11, without this deadline).
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools ships with uvicorn[standard]
        return None

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        header_timeout_s = timeout_s
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(self.header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being answered: its headers came in time
            refused("header_timeout", "HTTP connection closed: request headers not received in time")
            self.transport.close()

    return HeaderDeadlineProtocol


class WatermarkWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, its read flow control by watermarks.

    uvicorn pauses the socket after every message and resumes it on every ``receive``: two ``epoll_ctl`` calls a
    20 ms Twilio frame, the largest single cost of a media socket under load. Here reading pauses only once
    ``high`` messages wait unread and resumes when ``receive`` brings the queue down to ``low``, so a peer that
    outruns the call still holds at most ``high`` messages (each within ``ws_max_size``) plus one read.
    """

    high: ClassVar[int] = 16
    low: ClassVar[int] = 4

    def send_receive_event_to_app(self) -> None:
        paused = self.read_paused
        self.read_paused = True  # uvicorn pauses after each message unless it believes reading is paused already
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if not paused and self.queue.qsize() >= self.high and not self.transport.is_closing():
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> ASGIReceiveEvent:
        message = await self.queue.get()
        if self.read_paused and self.queue.qsize() <= self.low:
            self.read_paused = False
            self.transport.resume_reading()
        return message


def uvicorn_config(app: ASGIApp, settings: Settings, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration with hanmadi's limits: every place that runs the app builds it here.

    ``ws_max_size`` = ``max_message_bytes`` (enforced by the WebSocket parser before a frame is buffered),
    the WebSocket implementation whose limits are tested (``websockets-sansio``, with watermark flow control:
    ``WatermarkWebSocketProtocol``), the header deadline protocol.
    ``options`` go to ``uvicorn.Config`` as they are (``log_level``, ``lifespan``, ``backlog``, ``log_config``…).
    """
    values: dict[str, Any] = {
        "ws": WatermarkWebSocketProtocol,
        "ws_max_size": settings.max_message_bytes,
        "h11_max_incomplete_event_size": 16 * 1024,
        "timeout_keep_alive": 5,
    }
    protocol = _header_deadline_protocol(settings.http_header_timeout_s)
    if protocol is not None:
        values["http"] = protocol
    values.update(options)
    return uvicorn.Config(app, host=host, port=port, **values)
