"""What every vendor module shares: failure reasons, the retry rule, streamed HTTP bodies, WAV parsing.

Vendors classify, they do not count: every failure leaves as ``ProviderError(provider, reason)`` with a reason
from ``REASONS``, and the call layer counts it once where it surfaces (``PROVIDER_ERRORS``). Only a failure the
vendor recovers from by itself (a reconnect) is counted here, with :func:`count_failure`.

Retries: a TTS request is never retried here — the engine retries a sentence (``tts_retries``), so one layer
decides. LLM and STT requests (which nothing above retries) may be retried once (``retries=1``), only before any
byte of the answer has been handed on — on a connection failure, or a 429/5xx whose ``Retry-After`` (if any) fits
under a small cap.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Mapping

import httpx

from hanmadi.metrics import PROVIDER_ERRORS
from hanmadi.providers.base import ProviderError

log = logging.getLogger(__name__)

# The stable failure reasons (metric label values).
REASONS = ("auth", "rate_limited", "http_5xx", "http_4xx", "timeout", "connect", "bad_reply", "stalled")

# A server asking us to wait longer than this is not retried: a caller on the phone cannot wait for it.
RETRY_AFTER_CAP_S = 2.0
# Pause before the retry when the server gives no Retry-After.
RETRY_BACKOFF_S = 0.2
# How much of an error body to quote in the exception message.
_ERROR_BODY_CHARS = 300


def count_failure(provider: str, reason: str, message: str = "") -> None:
    """Count and log a failure the vendor recovered from by itself (it never surfaces to be counted above)."""
    PROVIDER_ERRORS.labels(provider=provider, reason=reason).inc()
    log.warning("provider %s failed: %s%s", provider, reason, f" ({message})" if message else "")


def fail(provider: str, reason: str, message: str = "") -> ProviderError:
    """Classify a provider failure: the exception to raise (whoever it surfaces to logs and counts it once)."""
    log.debug("provider %s failed: %s%s", provider, reason, f" ({message})" if message else "")
    return ProviderError(provider, reason, message)


def reason_for_status(status: int) -> str:
    """The failure reason of an HTTP error status."""
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "http_5xx"
    return "http_4xx"


def is_retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def retry_delay(headers: Mapping[str, str], cap_s: float = RETRY_AFTER_CAP_S) -> float | None:
    """Seconds to wait before retrying a 429/5xx, or None when the server asks for longer than ``cap_s``.

    Understands ``Retry-After`` in seconds or as an HTTP date, and OpenAI's ``retry-after-ms``.
    """
    delay: float | None = None
    millis = headers.get("retry-after-ms")
    value = headers.get("retry-after")
    if millis is not None:
        try:
            delay = float(millis) / 1000
        except ValueError:
            delay = None
    if delay is None and value is not None:
        try:
            delay = float(value)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                delay = email.utils.mktime_tz(parsed) - time.time()
    if delay is None:
        return RETRY_BACKOFF_S
    if delay > cap_s:
        return None
    return max(0.0, delay)


async def _error_text(response: httpx.Response, timeout_s: float) -> str:
    """The start of an error answer's body, for the log line; never raises."""
    try:
        async with asyncio.timeout(timeout_s):
            body = await response.aread()
    except (TimeoutError, httpx.HTTPError):
        return ""
    return body[:_ERROR_BODY_CHARS].decode("utf-8", "replace").strip()


async def _send_with_retry(
    client: httpx.AsyncClient,
    provider: str,
    build: Callable[[], httpx.Request],
    timeout_s: float,
    retries: int,
) -> httpx.Response:
    """Send the request until its answer's headers say 2xx; the body is left unread (streamed)."""
    attempt = 0
    while True:
        request = build()
        try:
            async with asyncio.timeout(timeout_s):
                response = await client.send(request, stream=True)
        except (TimeoutError, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout) as exc:
            raise fail(provider, "timeout", f"no answer within {timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            # refused, reset, or closed before any answer: nothing reached the caller, so a retry is safe
            if attempt < retries:
                attempt += 1
                await asyncio.sleep(RETRY_BACKOFF_S)
                continue
            raise fail(provider, "connect", f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status < 400:
            return response
        text = await _error_text(response, timeout_s)
        await response.aclose()
        if is_retryable_status(status) and attempt < retries:
            delay = retry_delay(response.headers)
            if delay is not None:
                attempt += 1
                await asyncio.sleep(delay)
                continue
        raise fail(provider, reason_for_status(status), f"HTTP {status}: {text}")


async def stream_bytes(
    client: httpx.AsyncClient,
    provider: str,
    build: Callable[[], httpx.Request],
    timeout_s: float,
    *,
    retries: int = 0,
) -> AsyncIterator[bytes]:
    """Send a request and yield its body as it arrives.

    ``build`` makes a fresh request per attempt. No bytes for ``timeout_s``: ``timeout`` before the first
    byte, ``stalled`` after it. A connection lost mid-body is ``connect`` and is never retried. The response
    is closed when the consumer stops (break, ``aclose`` or cancellation), which closes the connection.
    """
    response = await _send_with_retry(client, provider, build, timeout_s, retries)
    received = False
    try:
        chunks = response.aiter_bytes()
        while True:
            try:
                async with asyncio.timeout(timeout_s):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except (TimeoutError, httpx.TimeoutException) as exc:
                reason = "stalled" if received else "timeout"
                raise fail(provider, reason, f"no bytes for {timeout_s:g} s") from exc
            except httpx.TransportError as exc:
                raise fail(provider, "connect", f"connection lost mid-answer: {type(exc).__name__}") from exc
            if chunk:
                received = True
                yield chunk
    finally:
        await response.aclose()


async def read_body(
    client: httpx.AsyncClient,
    provider: str,
    build: Callable[[], httpx.Request],
    timeout_s: float,
    *,
    retries: int = 0,
) -> bytes:
    """The whole body of a request's answer, with the rules of ``stream_bytes``."""
    body = bytearray()
    async for chunk in stream_bytes(client, provider, build, timeout_s, retries=retries):
        body += chunk
    return bytes(body)


class EvenBytes:
    """Re-cuts a byte stream so that every piece holds whole 16-bit samples (an even number of bytes)."""

    def __init__(self) -> None:
        self._odd = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._odd + chunk
        cut = len(data) - (len(data) % 2)
        self._odd = data[cut:]
        return data[:cut]


def parse_wav(data: bytes, provider: str) -> tuple[bytes, int]:
    """The samples and sample rate of a mono 16-bit PCM WAV file; ``bad_reply`` when it is anything else."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise fail(provider, "bad_reply", "audio is not a WAV file")
    pos = 12
    sample_rate = 0
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise fail(provider, "bad_reply", "short WAV fmt chunk")
            audio_format, channels, sample_rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if audio_format not in (1, 0xFFFE) or channels != 1 or bits != 16 or sample_rate <= 0:
                raise fail(
                    provider,
                    "bad_reply",
                    f"WAV is not mono 16-bit PCM (format {audio_format}, {channels} ch, {bits} bit)",
                )
        elif chunk_id == b"data":
            if not sample_rate:
                raise fail(provider, "bad_reply", "WAV data before its fmt chunk")
            # streamed WAVs may carry a placeholder size (0 or 0xFFFFFFFF): take what is there
            end = len(data) if size in (0, 0xFFFFFFFF) else min(len(data), body + size)
            pcm = data[body:end]
            return pcm[: len(pcm) - len(pcm) % 2], sample_rate
        pos = body + size + (size & 1)
    raise fail(provider, "bad_reply", "WAV has no data chunk")


def make_wav(pcm: bytes, sample_rate: int) -> bytes:
    """A mono 16-bit PCM WAV file holding ``pcm``."""
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        len(pcm),
    )
    return header + pcm
