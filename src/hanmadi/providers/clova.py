"""Naver CLOVA Voice Premium TTS (Korean voices).

``POST {base_url}/tts-premium/v1/tts``, form-encoded ``speaker``, ``text``, ``format=wav`` (+ optional
``sampling-rate``, ``speed``), with the ``X-NCP-APIGW-API-KEY-ID`` / ``X-NCP-APIGW-API-KEY`` headers. The
answer body is the WAV file; its header gives the sample rate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from hanmadi.providers._http import parse_wav, read_body
from hanmadi.providers.base import AudioChunk

PROVIDER = "clova"
CLOVA_BASE_URL = "https://naveropenapi.apigw.ntruss.com"
# The rates CLOVA can render a wav at.
WAV_RATES = (8000, 16000, 24000, 48000)


class ClovaTTS:
    """CLOVA Voice Premium; one WAV per sentence, yielded as one PCM chunk."""

    name = PROVIDER

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        speaker: str = "nara",
        base_url: str = CLOVA_BASE_URL,
        timeout_s: float = 10.0,
        *,
        sample_rate: int | None = None,
        speed: int = 0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if sample_rate is not None and sample_rate not in WAV_RATES:
            raise ValueError(f"CLOVA sample_rate must be one of {WAV_RATES}")
        self.url = base_url.rstrip("/") + "/tts-premium/v1/tts"
        self.speaker = speaker
        self.sample_rate = sample_rate
        self.speed = speed
        self.timeout_s = timeout_s
        self._headers = {"X-NCP-APIGW-API-KEY-ID": client_id, "X-NCP-APIGW-API-KEY": client_secret}
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    def _request(self, text: str) -> httpx.Request:
        form = {"speaker": self.speaker, "text": text, "format": "wav", "speed": str(self.speed)}
        if self.sample_rate:
            form["sampling-rate"] = str(self.sample_rate)
        return self._client.build_request("POST", self.url, data=form, headers=self._headers)

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """Yield the speech of ``text`` as one PCM chunk."""
        wav = await read_body(self._client, PROVIDER, lambda: self._request(text), self.timeout_s)
        pcm, rate = parse_wav(wav, PROVIDER)
        if pcm:
            yield AudioChunk(pcm, rate)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def warm_up(self) -> None:
        """Nothing to load: the HTTP client connects on first use."""
