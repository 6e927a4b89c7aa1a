"""Google Cloud Text-to-Speech (REST, API key): one request per sentence, one chunk back.

``POST {base_url}/v1/text:synthesize?key=…`` with ``{"input": {"text"}, "voice": {"languageCode", "name"},
"audioConfig": {"audioEncoding": "LINEAR16"}}``; the answer is ``{"audioContent": <base64>}``. LINEAR16
content is a whole WAV file: the header is parsed (sample rate) and stripped.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from hanmadi.providers._http import fail, parse_wav, read_body
from hanmadi.providers.base import AudioChunk

PROVIDER = "google"
GOOGLE_TTS_BASE_URL = "https://texttospeech.googleapis.com"


def language_of(voice: str) -> str:
    """``ko-KR-Standard-A`` → ``ko-KR``."""
    parts = voice.split("-")
    return "-".join(parts[:2]) if len(parts) >= 2 else "ko-KR"


class GoogleTTS:
    """Google Cloud TTS, LINEAR16. ``sample_rate`` asks for a rate; by default the voice's natural one."""

    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        voice: str = "ko-KR-Standard-A",
        base_url: str = GOOGLE_TTS_BASE_URL,
        timeout_s: float = 10.0,
        *,
        sample_rate: int | None = None,
        speaking_rate: float | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/v1/text:synthesize"
        self.voice = voice
        self.language = language_of(voice)
        self.sample_rate = sample_rate
        self.speaking_rate = speaking_rate
        self.timeout_s = timeout_s
        self._api_key = api_key
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    def _request(self, text: str) -> httpx.Request:
        audio_config: dict[str, Any] = {"audioEncoding": "LINEAR16"}
        if self.sample_rate:
            audio_config["sampleRateHertz"] = self.sample_rate
        if self.speaking_rate:
            audio_config["speakingRate"] = self.speaking_rate
        body = {
            "input": {"text": text},
            "voice": {"languageCode": self.language, "name": self.voice},
            "audioConfig": audio_config,
        }
        return self._client.build_request("POST", self.url, params={"key": self._api_key}, json=body)

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """Yield the speech of ``text`` as one PCM chunk."""
        body = await read_body(self._client, PROVIDER, lambda: self._request(text), self.timeout_s)
        try:
            content = json.loads(body)["audioContent"]
            wav = base64.b64decode(content, validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise fail(PROVIDER, "bad_reply", "no base64 audioContent in the reply") from exc
        pcm, rate = parse_wav(wav, PROVIDER)
        if pcm:
            yield AudioChunk(pcm, rate)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def warm_up(self) -> None:
        """Nothing to load: the HTTP client connects on first use."""
