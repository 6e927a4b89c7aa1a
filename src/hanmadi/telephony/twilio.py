"""Twilio Media Streams, as a serializer: parse inbound events, build outbound messages; signatures; TwiML.

Knows nothing of engines, calls or FastAPI. The wire format (bidirectional ``<Connect><Stream>``):

- inbound: ``connected``, ``start``, ``media`` (base64 mu-law 8 kHz, 20 ms frames), ``dtmf``, ``mark``,
  ``stop``; ``sequenceNumber``, ``chunk`` and ``timestamp`` are JSON *strings* holding numbers;
- outbound: ``media`` (base64 mu-law), ``mark`` (echoed back once the audio queued before it has played, or
  was cleared), ``clear`` (empty Twilio's playback buffer).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

VOICE_PATH: Final = "/twilio/voice"
MEDIA_PATH: Final = "/twilio/media"
SIGNATURE_HEADER: Final = "X-Twilio-Signature"
MULAW_ENCODING: Final = "audio/x-mulaw"
MEDIA_SAMPLE_RATE: Final = 8000
# 8000 mu-law bytes = 1 s of audio: the most we put in one outbound media message
MAX_MEDIA_BYTES: Final = 8000

BAD_FRAME_REASONS: Final = (
    # stateless, raised by parse_message
    "binary_frame",
    "too_large",
    "invalid_json",
    "not_object",
    "unknown_event",
    "missing_field",  # a required field is absent or has the wrong type
    "invalid_base64",
    "bad_media_format",
    # stateful, raised by StreamGuard (the call handler's view of the stream)
    "media_before_start",
    "wrong_stream_sid",
    "duplicate_start",
)


class BadFrame(Exception):
    """An inbound message we refuse. ``reason`` is one of ``BAD_FRAME_REASONS`` (a metric label)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- inbound events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaFormat:
    encoding: str
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = field(hash=False)
    media_format: MediaFormat
    tracks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Media:
    stream_sid: str
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes  # decoded mu-law


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    call_sid: str


InboundEvent: TypeAlias = Connected | Start | Media | Dtmf | Mark | Stop

_DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
_UINT_DIGITS: Final = 18  # chunk and timestamp: far beyond any call's length
_b64decode = base64.b64decode
_loads = json.loads


def parse_message(raw: str | bytes, *, max_bytes: int) -> InboundEvent:
    """Parse one WebSocket message from Twilio. Raises ``BadFrame`` with a stable reason.

    Strict on the fields we use (types, base64), tolerant of fields we don't know.
    """
    if not isinstance(raw, str):
        raise BadFrame("binary_frame", f"{len(raw)} bytes")
    n = len(raw)
    # a str of n chars is n..4n bytes of UTF-8: only encode when the bound is ambiguous
    if n > max_bytes or (n * 4 > max_bytes and len(raw.encode()) > max_bytes):
        raise BadFrame("too_large", f"over {max_bytes} bytes")
    try:
        msg = _loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadFrame("invalid_json", str(exc)[:80]) from None
    if type(msg) is not dict:
        raise BadFrame("not_object", type(msg).__name__)
    event = msg.get("event")
    # the media fast path: 50 messages a second per call
    if event == "media":
        return _parse_media(msg)
    if event == "start":
        return _parse_start(msg)
    if event == "mark":
        mark = _obj(msg, "mark")
        return Mark(_str(msg, "streamSid"), _str(mark, "name", "mark.name"))
    if event == "dtmf":
        digit = _str(_obj(msg, "dtmf"), "digit", "dtmf.digit")
        if digit not in _DTMF_DIGITS:
            raise BadFrame("missing_field", f"dtmf.digit: {digit[:8]!r} is not a DTMF digit")
        return Dtmf(_str(msg, "streamSid"), digit)
    if event == "stop":
        stop = msg.get("stop")
        call_sid = stop.get("callSid") if type(stop) is dict else None
        return Stop(_str(msg, "streamSid"), call_sid if type(call_sid) is str else "")
    if event == "connected":
        protocol, version = msg.get("protocol"), msg.get("version")
        return Connected(protocol if type(protocol) is str else "", version if type(version) is str else "")
    if type(event) is not str:
        raise BadFrame("missing_field", "event")
    raise BadFrame("unknown_event", event[:40])


def _parse_media(msg: dict[str, Any]) -> Media:
    media = msg.get("media")
    stream_sid = msg.get("streamSid")
    if type(media) is not dict:
        raise BadFrame("missing_field", "media")
    if type(stream_sid) is not str:
        raise BadFrame("missing_field", "streamSid")
    payload = media.get("payload")
    if type(payload) is not str:
        raise BadFrame("missing_field", "media.payload")
    try:
        audio = _b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadFrame("invalid_base64", "media.payload") from None
    track = media.get("track", "inbound")
    if type(track) is not str:
        raise BadFrame("missing_field", "media.track")
    return Media(
        stream_sid,
        track,
        _uint(media, "chunk", "media.chunk"),
        _uint(media, "timestamp", "media.timestamp"),
        audio,
    )


def _parse_start(msg: dict[str, Any]) -> Start:
    start = _obj(msg, "start")
    stream_sid = start.get("streamSid", msg.get("streamSid"))
    if type(stream_sid) is not str or not stream_sid:
        raise BadFrame("missing_field", "start.streamSid")
    call_sid = _str(start, "callSid", "start.callSid")
    account_sid = start.get("accountSid", "")
    if type(account_sid) is not str:
        raise BadFrame("missing_field", "start.accountSid")
    params = start.get("customParameters", {})
    if type(params) is not dict or not all(type(v) is str for v in params.values()):
        raise BadFrame("missing_field", "start.customParameters: expected an object of strings")
    tracks = start.get("tracks", ["inbound"])
    if type(tracks) is not list or not all(type(t) is str for t in tracks):
        raise BadFrame("missing_field", "start.tracks: expected a list of strings")
    fmt = _obj(start, "mediaFormat", "start.mediaFormat")
    encoding, rate, channels = fmt.get("encoding"), fmt.get("sampleRate"), fmt.get("channels")
    if encoding != MULAW_ENCODING or type(rate) is not int or rate != MEDIA_SAMPLE_RATE or channels != 1:
        raise BadFrame("bad_media_format", f"{encoding!r} {rate!r} {channels!r}"[:80])
    media_format = MediaFormat(MULAW_ENCODING, MEDIA_SAMPLE_RATE, 1)
    return Start(stream_sid, call_sid, account_sid, dict(params), media_format, tuple(tracks))


def _obj(msg: dict[str, Any], key: str, label: str | None = None) -> dict[str, Any]:
    value = msg.get(key)
    if type(value) is not dict:
        raise BadFrame("missing_field", label or key)
    return value


def _str(msg: dict[str, Any], key: str, label: str | None = None) -> str:
    value = msg.get(key)
    if type(value) is not str:
        raise BadFrame("missing_field", label or key)
    return value


def _uint(msg: dict[str, Any], key: str, label: str) -> int:
    """A non-negative integer below 10**18; Twilio sends these as strings of digits, we also take JSON numbers.

    The bound keeps a forged value cheap: ``int()`` of a 5,000-digit string raises ``ValueError``, not ``BadFrame``.
    """
    value = msg.get(key)
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= _UINT_DIGITS:
        return int(value)
    if type(value) is int and 0 <= value < 10**_UINT_DIGITS:
        return value
    raise BadFrame("missing_field", f"{label}: expected a non-negative integer")


class StreamGuard:
    """The stateful checks of one stream: ``start`` once and first, then one streamSid.

    ``check(event)`` raises ``BadFrame`` with ``media_before_start``, ``duplicate_start`` or
    ``wrong_stream_sid``.
    """

    __slots__ = ("stream_sid",)

    def __init__(self) -> None:
        self.stream_sid: str | None = None

    def check(self, event: InboundEvent) -> None:
        """Accept ``event`` or raise ``BadFrame``; a valid ``Start`` fixes the stream's sid."""
        if isinstance(event, Connected):
            return
        if isinstance(event, Start):
            if self.stream_sid is not None:
                raise BadFrame("duplicate_start", event.stream_sid[:40])
            self.stream_sid = event.stream_sid
            return
        if self.stream_sid is None:
            raise BadFrame("media_before_start", type(event).__name__.lower())
        if event.stream_sid != self.stream_sid:
            raise BadFrame("wrong_stream_sid", event.stream_sid[:40])


# --- outbound messages ----------------------------------------------------------------------------


def media_message(stream_sid: str, mulaw: bytes) -> str:
    """One outbound ``media`` message carrying ``mulaw`` (8 kHz mu-law bytes)."""
    payload = base64.b64encode(mulaw).decode("ascii")
    return f'{{"event":"media","streamSid":{json.dumps(stream_sid)},"media":{{"payload":"{payload}"}}}}'


def media_messages(stream_sid: str, mulaw: bytes, max_bytes: int = MAX_MEDIA_BYTES) -> list[str]:
    """``mulaw`` split into ``media`` messages of at most ``max_bytes`` of audio each (8000 bytes = 1 s)."""
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    return [media_message(stream_sid, mulaw[i : i + max_bytes]) for i in range(0, len(mulaw), max_bytes)]


def mark_message(stream_sid: str, name: str) -> str:
    """An outbound ``mark``: Twilio echoes it when the audio sent before it has played (or was cleared)."""
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}, separators=(",", ":"))


def clear_message(stream_sid: str) -> str:
    """An outbound ``clear``: Twilio drops the audio it has buffered and echoes every pending mark."""
    return json.dumps({"event": "clear", "streamSid": stream_sid}, separators=(",", ":"))


# The greeting is turn 0; the caller's first answer is turn 1. Names that are not sentence marks
# (``"greeting"``, ``"hangup"``…) are free-form and parse to None.
GREETING_TURN: Final = 0
_MARK_NAME = re.compile(r"t(\d{1,9})s(\d{1,9})")


def mark_name(turn: int, index: int) -> str:
    """The mark sent after sentence ``index`` of ``turn``: ``mark_name(3, 1) == "t3s1"``."""
    if turn < 0 or index < 0:
        raise ValueError("turn and index must be non-negative")
    return f"t{turn}s{index}"


def parse_mark_name(name: str) -> tuple[int, int] | None:
    """``(turn, index)`` of a sentence mark, or None for any other (special) mark name."""
    m = _MARK_NAME.fullmatch(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


# --- packet loss ----------------------------------------------------------------------------------


class MediaClock:
    """Detects lost inbound frames from ``media.timestamp`` jumps.

    ``gap_ms(timestamp_ms, duration_ms)`` returns how many ms of silence to insert before this frame: the
    distance from where the previous frame ended, when it is at least ``min_gap_ms`` (jitter below that is
    ignored), capped at ``max_fill_ms`` so a forged timestamp cannot make us allocate minutes of silence.
    Late or repeated frames return 0 and never move the clock backwards.
    """

    __slots__ = ("_expected_ms", "max_fill_ms", "min_gap_ms")

    def __init__(self, *, min_gap_ms: int = 10, max_fill_ms: int = 1000) -> None:
        self.min_gap_ms = min_gap_ms
        self.max_fill_ms = max_fill_ms
        self._expected_ms: int | None = None

    def gap_ms(self, timestamp_ms: int, duration_ms: int = 20) -> int:
        """Silence (ms) to fill before a frame stamped ``timestamp_ms`` lasting ``duration_ms``."""
        expected = self._expected_ms
        end = timestamp_ms + duration_ms
        if expected is None:
            self._expected_ms = end
            return 0
        if end > expected:
            self._expected_ms = end
        gap = timestamp_ms - expected
        if gap < self.min_gap_ms:
            return 0
        return min(gap, self.max_fill_ms)


# --- URLs and signatures --------------------------------------------------------------------------


def webhook_url(public_url: str, path: str) -> str:
    """The URL Twilio signed: always ``HANMADI_PUBLIC_URL + path``, never the request's own URL.

    A TLS-terminating proxy makes the request look like http://internal-host; Twilio signed https://public-host.
    """
    return public_url.rstrip("/") + "/" + path.lstrip("/")


def stream_url(public_url: str) -> str:
    """The ``<Stream url>``: https→wss, http→ws, + ``/twilio/media``, no query string (Twilio rejects one)."""
    parts = urlsplit(public_url)
    scheme = {"https": "wss", "http": "ws", "wss": "wss", "ws": "ws"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"public_url must be an absolute http(s) URL, got {public_url!r}")
    if parts.query or parts.fragment:
        raise ValueError("public_url must not carry a query string or fragment")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{MEDIA_PATH}"


def compute_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for a request to ``url`` with form ``params``."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def validate_signature(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    """Whether ``signature`` is Twilio's for ``url`` + ``params``; False without a token or a signature.

    ``url`` must be the public URL (see ``webhook_url``); for the WebSocket upgrade it is the wss URL.
    """
    if not auth_token or not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


# --- one-time stream tokens ------------------------------------------------------------------------


class TokenError(Exception):
    """A stream token we refuse; ``reason`` is one of ``TOKEN_ERROR_REASONS``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


TOKEN_ERROR_REASONS: Final = ("missing", "malformed", "bad_signature", "expired", "wrong_call", "reused")

# used when no auth token is configured (dev mode): tokens then only hold within this process
_PROCESS_SECRET: Final = secrets.token_bytes(32)
_B64URL = r"[A-Za-z0-9_-]"
_TOKEN = re.compile(rf"({_B64URL}{{22}})\.(\d{{1,15}})\.({_B64URL}{{22}})\.({_B64URL}{{43}})")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _call_tag(call_sid: str) -> str:
    return _b64url(hashlib.sha256(call_sid.encode()).digest()[:16])


class StreamTokens:
    """One-time tokens that bind a WebSocket stream to the CallSid whose webhook we answered.

    A token is ``<call tag>.<expiry ms>.<nonce>.<HMAC-SHA256>`` (URL-safe); the call tag is a hash of the
    CallSid, so the MAC covers CallSid + expiry + nonce. A redeemed nonce is remembered until the token's
    expiry, then forgotten (memory stays bounded by issue rate x ttl). An empty ``secret`` uses a random
    per-process one.
    """

    def __init__(self, secret: str, ttl_s: float, *, clock: Callable[[], float] = time.time) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._key = secret.encode() if secret else _PROCESS_SECRET
        self._ttl_ms = round(ttl_s * 1000)
        self._clock = clock
        self._used: set[str] = set()
        self._expiries: list[tuple[int, str]] = []  # heap of (expiry ms, nonce) of redeemed tokens

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _mac(self, body: str) -> str:
        return _b64url(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def issue(self, call_sid: str) -> str:
        """A fresh token for ``call_sid``, valid for ``ttl_s`` and once."""
        body = f"{_call_tag(call_sid)}.{self._now_ms() + self._ttl_ms}.{_b64url(secrets.token_bytes(16))}"
        return f"{body}.{self._mac(body)}"

    def redeem(self, token: str | None, call_sid: str) -> None:
        """Accept ``token`` for ``call_sid`` once (remembered in this process), or raise ``TokenError``."""
        nonce, expiry_ms = self.verify(token, call_sid)
        if nonce in self._used:
            raise TokenError("reused")
        self._used.add(nonce)
        heapq.heappush(self._expiries, (expiry_ms, nonce))

    def verify(self, token: str | None, call_sid: str) -> tuple[str, int]:
        """Check ``token`` for ``call_sid`` — format, MAC, expiry, CallSid — but not its one use: ``(nonce, expiry
        ms)`` for whoever remembers redeemed nonces (this process in :meth:`redeem`, or the shared database)."""
        if not token:
            raise TokenError("missing")
        m = _TOKEN.fullmatch(token)
        if m is None:
            raise TokenError("malformed")
        tag, expiry, nonce, mac = m.groups()
        if not hmac.compare_digest(mac, self._mac(f"{tag}.{expiry}.{nonce}")):
            raise TokenError("bad_signature")
        now = self._now_ms()
        self._prune(now)
        expiry_ms = int(expiry)
        if now >= expiry_ms:
            raise TokenError("expired")
        if not hmac.compare_digest(tag, _call_tag(call_sid)):
            raise TokenError("wrong_call")
        return nonce, expiry_ms

    def _prune(self, now_ms: int) -> None:
        while self._expiries and self._expiries[0][0] <= now_ms:
            self._used.discard(heapq.heappop(self._expiries)[1])

    def __len__(self) -> int:
        """How many redeemed nonces are remembered (for tests and metrics)."""
        return len(self._used)


# --- TwiML ----------------------------------------------------------------------------------------


def connect_twiml(stream_url: str, params: Mapping[str, str]) -> str:
    """``<Response><Connect><Stream url=…><Parameter name value/>…</Stream></Connect></Response>``."""
    if "?" in stream_url:
        raise ValueError("Twilio rejects a <Stream> url with a query string: pass values as params")
    response = VoiceResponse()
    connect = Connect()
    stream = Stream(url=stream_url)
    for name, value in params.items():
        stream.parameter(name=name, value=value)
    connect.append(stream)
    response.append(connect)
    return str(response.to_xml())


def busy_twiml(message: str) -> str:
    """``<Response><Say language="ko-KR">message</Say><Hangup/></Response>``."""
    response = VoiceResponse()
    response.say(message, language="ko-KR")
    response.hangup()
    return str(response.to_xml())
