"""Google Cloud Text-to-Speech (REST) against a fake speaking its documented wire format."""

from __future__ import annotations

import base64
import json
import socket

import pytest
from vendor_servers import GOOGLE_KEY, TTS_PCM, Control, VendorServers, wav_bytes

from hanmadi.providers._http import parse_wav
from hanmadi.providers.base import TTS, ProviderError
from hanmadi.providers.google import GoogleTTS, language_of


async def test_synthesizes_linear16_and_strips_the_wav_header(vendors: VendorServers, control: Control) -> None:
    tts = GoogleTTS(GOOGLE_KEY, "ko-KR-Neural2-A", base_url=vendors.http_url, timeout_s=2.0)
    assert isinstance(tts, TTS)
    chunks = [c async for c in tts.synthesize("안녕하세요.")]
    await tts.aclose()
    assert len(chunks) == 1
    assert chunks[0].sample_rate == 24000  # from the WAV header
    assert chunks[0].pcm == TTS_PCM  # no RIFF header left in the audio
    (req,) = control.requests
    assert req.path == "/v1/text:synthesize"
    assert req.query == {"key": GOOGLE_KEY}
    assert json.loads(req.body) == {
        "input": {"text": "안녕하세요."},
        "voice": {"languageCode": "ko-KR", "name": "ko-KR-Neural2-A"},
        "audioConfig": {"audioEncoding": "LINEAR16"},
    }


async def test_requested_sample_rate_is_sent_and_read_back(vendors: VendorServers, control: Control) -> None:
    tts = GoogleTTS(GOOGLE_KEY, base_url=vendors.http_url, timeout_s=2.0, sample_rate=8000)
    chunks = [c async for c in tts.synthesize("네.")]
    await tts.aclose()
    assert json.loads(control.requests[0].body)["audioConfig"] == {"audioEncoding": "LINEAR16", "sampleRateHertz": 8000}
    assert chunks[0].sample_rate == 8000


async def test_stall_before_the_answer_is_timeout(vendors: VendorServers, control: Control) -> None:
    # a server that accepts the connection and never answers

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        tts = GoogleTTS(GOOGLE_KEY, base_url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.3)
        with pytest.raises(ProviderError) as info:
            [c async for c in tts.synthesize("네.")]
        await tts.aclose()
    assert info.value.reason == "timeout"


def test_language_of_voice_names() -> None:
    assert language_of("ko-KR-Standard-A") == "ko-KR"
    assert language_of("en-US-Wavenet-D") == "en-US"


def test_parse_wav_accepts_extra_chunks_and_rejects_other_formats() -> None:
    assert parse_wav(wav_bytes(b"\x01\x02" * 10, 16000), "google") == (b"\x01\x02" * 10, 16000)
    stereo = bytearray(wav_bytes(b"\x00" * 8, 16000, extra_chunk=False))
    stereo[22] = 2  # channels
    with pytest.raises(ProviderError, match="bad_reply"):
        parse_wav(bytes(stereo), "google")
    with pytest.raises(ProviderError, match="bad_reply"):
        parse_wav(base64.b64decode("SUQzAwAAAAAA"), "google")  # an MP3 (ID3) header
