"""Naver CLOVA Voice Premium TTS against a fake speaking its documented wire format."""

from __future__ import annotations

import pytest
from vendor_servers import CLOVA_ID, CLOVA_SECRET, TTS_PCM, Control, VendorServers

from hanmadi.providers.base import TTS
from hanmadi.providers.clova import ClovaTTS


async def test_posts_the_form_with_both_keys_and_parses_the_wav(vendors: VendorServers, control: Control) -> None:
    tts = ClovaTTS(CLOVA_ID, CLOVA_SECRET, "nara", base_url=vendors.http_url, timeout_s=2.0)
    assert isinstance(tts, TTS)
    chunks = [c async for c in tts.synthesize("안녕하세요, 한마디 상담원입니다.")]
    await tts.aclose()
    assert [(c.sample_rate, c.pcm) for c in chunks] == [(24000, TTS_PCM)]
    (req,) = control.requests
    assert req.path == "/tts-premium/v1/tts"
    assert req.headers["x-ncp-apigw-api-key-id"] == CLOVA_ID
    assert req.headers["x-ncp-apigw-api-key"] == CLOVA_SECRET
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.form == {"speaker": "nara", "text": "안녕하세요, 한마디 상담원입니다.", "format": "wav", "speed": "0"}


async def test_sampling_rate_is_requested_for_wav(vendors: VendorServers, control: Control) -> None:
    tts = ClovaTTS(CLOVA_ID, CLOVA_SECRET, base_url=vendors.http_url, timeout_s=2.0, sample_rate=8000)
    chunks = [c async for c in tts.synthesize("네.")]
    await tts.aclose()
    assert control.requests[0].form["sampling-rate"] == "8000"
    assert chunks[0].sample_rate == 8000


def test_rejects_a_rate_clova_does_not_offer() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        ClovaTTS("i", "s", sample_rate=22050)
