"""The Twilio sink: one resampler per sentence (reproducer p7), mu-law media then the sentence's mark."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hanmadi.providers.base import AudioChunk
from hanmadi.telephony import audio
from hanmadi.telephony.sink import TwilioSink


def sine(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")


@pytest.mark.parametrize("rate", [16000, 24000])
async def test_a_sentence_in_uneven_chunks_sounds_like_the_sentence_resampled_whole(rate: int) -> None:
    """p7: each network chunk was resampled on its own: clicks (error 9096 of an 8000 peak) at every edge."""
    x = sine(rate, 2.0)
    cuts = np.cumsum(np.random.default_rng(0).integers(600, 3000, 200))
    cuts = cuts[cuts < x.size]
    sent: list[dict[str, object]] = []
    heard: list[bytes] = []

    async def send(message: str) -> None:
        sent.append(json.loads(message))

    sink = TwilioSink("MZ1", 1, send, lambda index, ulaw: heard.append(ulaw))
    for part in np.split(x, cuts):
        await sink.send_audio(0, AudioChunk(part.tobytes(), rate))
    await sink.send_mark(0)
    chunked = audio.ulaw_to_pcm16(b"".join(heard)).astype(np.int32)
    whole = audio.ulaw_to_pcm16(audio.pcm_to_telephone(x.tobytes(), rate)).astype(np.int32)
    assert abs(chunked.size - whole.size) <= 2  # no length drift
    n = min(chunked.size, whole.size)
    assert np.abs(chunked[:n] - whole[:n]).max() < 400  # mu-law steps near the peak, no clicks
    assert sent[-1] == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "t1s0"}}
    assert all(m["event"] == "media" for m in sent[:-1])
