"""ElevenLabs streaming text to speech: raw 16 kHz PCM as the voice is generated.

``POST {base_url}/v1/text-to-speech/{voice_id}/stream?output_format=pcm_16000`` with the ``xi-api-key`` header
and a JSON body ``{"text", "model_id"}``; the answer body is little-endian 16-bit mono PCM, streamed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from hanmadi.providers._http import EvenBytes, stream_bytes
from hanmadi.providers.base import AudioChunk

PROVIDER = "elevenlabs"
ELEVENLABS_BASE_URL = "https://api.elevenlabs.io"
# Sample rates ElevenLabs offers as raw PCM (``pcm_<rate>``); 44.1 kHz needs a Pro plan.
PCM_RATES = (8000, 16000, 22050, 24000, 44100)


class ElevenLabsTTS:
    """ElevenLabs HTTP streaming TTS; yields ``AudioChunk(pcm, sample_rate)`` chunks as they arrive."""

    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        voice_id: str,
        model: str = "eleven_multilingual_v2",
        base_url: str = ELEVENLABS_BASE_URL,
        timeout_s: float = 10.0,
        *,
        sample_rate: int = 16000,
        language_code: str = "",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if sample_rate not in PCM_RATES:
            raise ValueError(f"ElevenLabs PCM sample_rate must be one of {PCM_RATES}")
        self.url = f"{base_url.rstrip('/')}/v1/text-to-speech/{quote(voice_id, safe='')}/stream"
        self.model = model
        self.sample_rate = sample_rate
        self.timeout_s = timeout_s
        # only some models accept language_code (it errors on others), so it is sent only when set
        self.language_code = language_code
        self._headers = {"xi-api-key": api_key, "Accept": "audio/pcm"}
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    def _request(self, text: str) -> httpx.Request:
        body: dict[str, Any] = {"text": text, "model_id": self.model}
        if self.language_code:
            body["language_code"] = self.language_code
        return self._client.build_request(
            "POST",
            self.url,
            params={"output_format": f"pcm_{self.sample_rate}"},
            json=body,
            headers=self._headers,
        )

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """Yield the speech of ``text`` as PCM chunks (whole samples each)."""
        even = EvenBytes()
        async for data in stream_bytes(self._client, PROVIDER, lambda: self._request(text), self.timeout_s):
            pcm = even.feed(data)
            if pcm:
                yield AudioChunk(pcm, self.sample_rate)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def warm_up(self) -> None:
        """Nothing to load: the HTTP client connects on first use."""
