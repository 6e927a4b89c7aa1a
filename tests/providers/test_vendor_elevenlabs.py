"""ElevenLabs streaming TTS against a fake speaking its documented wire format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from vendor_servers import ELEVENLABS_KEY, TTS_PCM, Control, VendorServers

from hanmadi.providers.base import TTS, ProviderError
from hanmadi.providers.elevenlabs import ElevenLabsTTS


def make(
    vendors: VendorServers, timeout_s: float = 2.0, *, model: str = "eleven_multilingual_v2", language_code: str = ""
) -> ElevenLabsTTS:
    return ElevenLabsTTS(
        ELEVENLABS_KEY,
        "JBFqnCBsd6RMkjVDRZzb",
        model,
        base_url=vendors.http_url,
        timeout_s=timeout_s,
        language_code=language_code,
    )


async def test_streams_16k_pcm_with_the_documented_request(vendors: VendorServers, control: Control) -> None:
    tts = make(vendors)
    assert isinstance(tts, TTS)
    chunks = [c async for c in tts.synthesize("안녕하세요, 한마디입니다.")]
    await tts.aclose()
    assert len(chunks) > 1
    assert all(c.sample_rate == 16000 and c.pcm and len(c.pcm) % 2 == 0 for c in chunks)
    assert b"".join(c.pcm for c in chunks) == TTS_PCM
    (req,) = control.requests
    assert req.path == "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream"
    assert req.query == {"output_format": "pcm_16000"}
    assert req.headers["xi-api-key"] == ELEVENLABS_KEY
    assert "authorization" not in req.headers
    assert json.loads(req.body) == {"text": "안녕하세요, 한마디입니다.", "model_id": "eleven_multilingual_v2"}


async def test_language_code_is_sent_only_when_set(vendors: VendorServers, control: Control) -> None:
    tts = make(vendors, language_code="ko", model="eleven_flash_v2_5")
    [c async for c in tts.synthesize("네.")]
    await tts.aclose()
    assert json.loads(control.requests[0].body) == {
        "text": "네.",
        "model_id": "eleven_flash_v2_5",
        "language_code": "ko",
    }


async def test_dies_mid_stream_after_audio_without_retry(
    vendors: VendorServers, control: Control, errors_added: Callable[[str, str], float]
) -> None:
    control.mode = "drop"
    tts = make(vendors)
    got = []
    with pytest.raises(ProviderError) as info:
        async for chunk in tts.synthesize("안녕하세요."):
            got.append(chunk)
    await tts.aclose()
    assert got and info.value.reason == "connect"
    assert len(control.requests) == 1
    assert errors_added("elevenlabs", "connect") == 0  # surfaced: the call counts it


async def test_stall_mid_stream_is_stalled_and_closes_the_connection(
    vendors: VendorServers, control: Control, errors_added: Callable[[str, str], float]
) -> None:
    control.mode = "stall"
    tts = make(vendors, timeout_s=0.3)
    got = []
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderError) as info:
        async for chunk in tts.synthesize("안녕하세요."):
            got.append(chunk)
    await tts.aclose()
    assert got and info.value.reason == "stalled"
    assert asyncio.get_running_loop().time() - started < 1.2
    assert errors_added("elevenlabs", "stalled") == 0  # surfaced: the call counts it
    assert await asyncio.to_thread(control.disconnected.wait, 2)


async def test_cancel_closes_the_connection(vendors: VendorServers, control: Control) -> None:
    control.chunk_delay_s = 0.2
    tts = make(vendors)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in tts.synthesize("안녕하세요."):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(control.disconnected.wait, 2)
    assert not control.completed.is_set()
    await tts.aclose()


def test_rejects_a_rate_elevenlabs_does_not_offer() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        ElevenLabsTTS("k", "v", sample_rate=12345)
