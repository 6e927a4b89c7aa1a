"""The failure rules every HTTP vendor shares: reasons (vendors classify, the call counts), and when a request is
retried (TTS never: the engine retries sentences; LLM and STT once, before any output)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
from vendor_servers import (
    CLOVA_ID,
    CLOVA_SECRET,
    ELEVENLABS_KEY,
    GOOGLE_KEY,
    OPENAI_KEY,
    Control,
    VendorServers,
)

from hanmadi.providers.base import Message, ProviderError
from hanmadi.providers.clova import ClovaTTS
from hanmadi.providers.elevenlabs import ElevenLabsTTS
from hanmadi.providers.google import GoogleTTS
from hanmadi.providers.openai_compat import OpenAILLM, OpenAISTT, OpenAITTS

VENDORS = ["openai_llm", "openai_tts", "openai_stt", "elevenlabs", "google", "clova"]
PROVIDER = {
    "openai_llm": "openai",
    "openai_tts": "openai",
    "openai_stt": "openai",
    "elevenlabs": "elevenlabs",
    "google": "google",
    "clova": "clova",
}
# Nothing above an LLM or STT request retries it, so the vendor may, once; a TTS request is the engine's to retry.
RETRIED = {"openai_llm", "openai_stt"}


def build(vendor: str, base: str, *, good_key: bool = True, timeout_s: float = 2.0) -> Any:
    bad = "wrong-key"
    if vendor == "openai_llm":
        return OpenAILLM(f"{base}/v1", OPENAI_KEY if good_key else bad, "fake-model", 32, timeout_s)
    if vendor == "openai_tts":
        return OpenAITTS(f"{base}/v1", OPENAI_KEY if good_key else bad, "fake-tts", "alloy", timeout_s)
    if vendor == "openai_stt":
        return OpenAISTT(f"{base}/v1", OPENAI_KEY if good_key else bad, "fake-stt", timeout_s)
    if vendor == "elevenlabs":
        return ElevenLabsTTS(ELEVENLABS_KEY if good_key else bad, "voice123", base_url=base, timeout_s=timeout_s)
    if vendor == "google":
        return GoogleTTS(GOOGLE_KEY if good_key else bad, base_url=base, timeout_s=timeout_s)
    return ClovaTTS(CLOVA_ID, CLOVA_SECRET if good_key else bad, base_url=base, timeout_s=timeout_s)


async def run(vendor: str, provider: Any) -> Any:
    """One use of the provider: all it returns."""
    try:
        if vendor == "openai_llm":
            return [t async for t in provider.stream([Message("user", "안녕하세요")])]
        if vendor == "openai_stt":
            stream = await provider.open(8000)
            await stream.push(b"\x01\x00" * 1600)
            return await stream.finalize()
        return [c async for c in provider.synthesize("안녕하세요.")]
    finally:
        await provider.aclose()


@pytest.mark.parametrize("vendor", VENDORS)
async def test_wrong_key_is_auth_and_not_counted_by_the_vendor(
    vendor: str, vendors: VendorServers, control: Control, errors_added: Callable[[str, str], float]
) -> None:
    with pytest.raises(ProviderError) as info:
        await run(vendor, build(vendor, vendors.http_url, good_key=False))
    assert (info.value.provider, info.value.reason) == (PROVIDER[vendor], "auth")
    assert errors_added(PROVIDER[vendor], "auth") == 0  # classified here, counted once by the call
    assert len(control.requests) == 1  # never retried


@pytest.mark.parametrize("vendor", sorted(RETRIED))
async def test_429_then_ok_is_retried_once(vendor: str, vendors: VendorServers, control: Control) -> None:
    control.failures = [(429, {"Retry-After": "0"})]
    result = await run(vendor, build(vendor, vendors.http_url))
    assert result
    assert len(control.requests) == 2


@pytest.mark.parametrize("vendor", sorted(RETRIED))
async def test_500_then_ok_is_retried_once(vendor: str, vendors: VendorServers, control: Control) -> None:
    control.failures = [(500, {})]
    assert await run(vendor, build(vendor, vendors.http_url))
    assert len(control.requests) == 2


@pytest.mark.parametrize("vendor", sorted(set(VENDORS) - RETRIED))
async def test_a_tts_request_is_not_retried_by_the_vendor(
    vendor: str, vendors: VendorServers, control: Control
) -> None:
    control.failures = [(500, {})]
    with pytest.raises(ProviderError) as info:
        await run(vendor, build(vendor, vendors.http_url))
    assert info.value.reason == "http_5xx"
    assert len(control.requests) == 1


@pytest.mark.parametrize(
    ("status", "headers", "reason", "attempts"),
    [
        (429, {"Retry-After": "0"}, "rate_limited", 2),  # retried once, then given up
        (429, {"Retry-After": "60"}, "rate_limited", 1),  # longer than the cap: not retried
        (503, {}, "http_5xx", 2),
        (400, {}, "http_4xx", 1),
        (403, {}, "auth", 1),
    ],
)
@pytest.mark.parametrize("vendor", VENDORS)
async def test_error_answers(
    vendor: str,
    status: int,
    headers: dict[str, str],
    reason: str,
    attempts: int,
    vendors: VendorServers,
    control: Control,
    errors_added: Callable[[str, str], float],
) -> None:
    control.failures = [(status, headers)] * 3
    # a hang guard, not a timing bound: a Retry-After past the cap must not be waited for (60 s)
    async with asyncio.timeout(30):
        with pytest.raises(ProviderError) as info:
            await run(vendor, build(vendor, vendors.http_url))
    assert info.value.reason == reason
    assert len(control.requests) == (attempts if vendor in RETRIED else 1)
    assert errors_added(PROVIDER[vendor], reason) == 0  # one failure surfaced, counted by whoever it reaches


@pytest.mark.parametrize("vendor", VENDORS)
async def test_refused_connection_is_connect_after_one_retry(
    vendor: str, errors_added: Callable[[str, str], float]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderError) as info:
        await run(vendor, build(vendor, f"http://127.0.0.1:{port}"))
    assert info.value.reason == "connect"
    assert errors_added(PROVIDER[vendor], "connect") == 0


@pytest.mark.parametrize("vendor", ["openai_stt", "google", "clova"])
async def test_malformed_reply_is_bad_reply(
    vendor: str, vendors: VendorServers, control: Control, errors_added: Callable[[str, str], float]
) -> None:
    control.mode = "garbage"
    with pytest.raises(ProviderError) as info:
        await run(vendor, build(vendor, vendors.http_url))
    assert info.value.reason == "bad_reply"
    assert errors_added(PROVIDER[vendor], "bad_reply") == 0
