"""OpenAI-compatible vendors: chat completions (LLM, with function calling), ``/audio/speech`` (TTS), transcriptions.

"Compatible" is the point: the same code talks to OpenAI, vLLM, Ollama and llama.cpp's server; only the base
URL (``…/v1``), the model and the key change. The LLM goes through the ``openai`` SDK's streaming chat
completions; speech and transcription are plain HTTP through httpx, with the retry/timeout rules of ``_http``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import openai
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionMessageToolCallParam,
    ChatCompletionToolParam,
)

from hanmadi.providers._http import (
    RETRY_BACKOFF_S,
    EvenBytes,
    fail,
    is_retryable_status,
    make_wav,
    read_body,
    reason_for_status,
    retry_delay,
    stream_bytes,
)
from hanmadi.providers.base import AudioChunk, Message, ProviderError, ToolCall, ToolSpec, Transcript
from hanmadi.providers.turn_audio import TurnAudio

PROVIDER = "openai"
OPENAI_BASE_URL = "https://api.openai.com/v1"
# The SDK refuses an empty key; self-hosted servers (vLLM, Ollama, llama.cpp) accept any.
_NO_KEY = "no-key"
# OpenAI's response_format="pcm": raw 24 kHz 16-bit mono little-endian.
OPENAI_PCM_RATE = 24000


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key or _NO_KEY}"}


def _sdk_error(exc: openai.OpenAIError, received: bool) -> ProviderError:
    """Translate an SDK exception into our reasons (and count it)."""
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: it is a subclass
        return fail(PROVIDER, "stalled" if received else "timeout", str(exc))
    if isinstance(exc, openai.APIConnectionError):
        return fail(PROVIDER, "connect", str(exc))
    if isinstance(exc, openai.APIStatusError):
        return fail(PROVIDER, reason_for_status(exc.status_code), f"HTTP {exc.status_code}: {exc.message}")
    # an error event inside the stream, or a reply the SDK could not make sense of
    return fail(PROVIDER, "bad_reply", str(exc))


def _chunk_text(chunk: ChatCompletionChunk) -> str:
    """The text a chunk adds; ``bad_reply`` when it is not shaped like a chat.completion.chunk."""
    try:
        if not chunk.choices:  # e.g. the usage chunk at the end
            return ""
        content = chunk.choices[0].delta.content
    except (AttributeError, IndexError, TypeError) as exc:
        raise fail(PROVIDER, "bad_reply", f"malformed chunk: {exc}") from exc
    if content is None:
        return ""
    if not isinstance(content, str):
        raise fail(PROVIDER, "bad_reply", "chunk content is not text")
    return content


class _ToolCallDeltas:
    """Tool calls streamed in pieces: the first delta of each ``index`` has its id and name, later ones append
    to its ``arguments``. Several indexes are parallel calls."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]

    def add(self, chunk: ChatCompletionChunk) -> bool:
        """Take the tool-call deltas of ``chunk``; True if it had any."""
        try:
            deltas = chunk.choices[0].delta.tool_calls if chunk.choices else None
        except (AttributeError, IndexError, TypeError) as exc:
            raise fail(PROVIDER, "bad_reply", f"malformed chunk: {exc}") from exc
        if not deltas:
            return False
        for delta in deltas:
            call = self._calls.setdefault(delta.index, ["", "", ""])
            if delta.id:
                call[0] = delta.id
            if delta.function is not None:
                if delta.function.name:
                    call[1] += delta.function.name
                if delta.function.arguments:
                    call[2] += delta.function.arguments
        return True

    def finish(self) -> list[ToolCall]:
        """The assembled calls in index order; ``bad_reply`` when one has no name."""
        out: list[ToolCall] = []
        for index in sorted(self._calls):
            call_id, name, arguments = self._calls[index]
            if not name:
                raise fail(PROVIDER, "bad_reply", f"tool call {index} has no function name")
            out.append(ToolCall(call_id or f"call_{index}", name, arguments or "{}"))
        return out


class OpenAILLM:
    """Streaming chat completions from any OpenAI-compatible server, through the ``openai`` SDK.

    ``system_prompt`` is sent first unless the conversation already starts with a system message. The HTTP
    stream is closed as soon as the consumer stops iterating or is cancelled.
    """

    name = PROVIDER

    def __init__(
        self,
        base_url: str = OPENAI_BASE_URL,
        api_key: str = "",
        model: str = "gpt-4o-mini",
        max_tokens: int = 96,
        timeout_s: float = 10.0,
        *,
        system_prompt: str = "",
        temperature: float | None = None,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.system_prompt = system_prompt
        self.temperature = temperature
        # retries are ours (one, before any output, Retry-After capped), not the SDK's
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or _NO_KEY, timeout=timeout_s, max_retries=0
        )

    def _messages(self, messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
        out: list[ChatCompletionMessageParam] = []
        if self.system_prompt and not (messages and messages[0].role == "system"):
            out.append({"role": "system", "content": self.system_prompt})
        for m in messages:
            if m.role == "system":
                out.append({"role": "system", "content": m.content})
            elif m.role == "user":
                out.append({"role": "user", "content": m.content})
            elif m.role == "tool":
                out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
            elif m.tool_calls:
                calls: list[ChatCompletionMessageToolCallParam] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in m.tool_calls
                ]
                out.append({"role": "assistant", "content": m.content or None, "tool_calls": calls})
            else:
                out.append({"role": "assistant", "content": m.content})
        return out

    async def _open(
        self, messages: list[ChatCompletionMessageParam], tools: Sequence[ToolSpec] = ()
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        offered: list[ChatCompletionToolParam] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
            }
            for t in tools
        ]
        attempt = 0
        while True:
            try:
                return await self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    max_tokens=self.max_tokens,
                    stream=True,
                    temperature=openai.omit if self.temperature is None else self.temperature,
                    tools=offered if offered else openai.omit,
                )
            except openai.APITimeoutError as exc:
                raise _sdk_error(exc, received=False) from exc
            except openai.APIConnectionError as exc:
                if attempt == 0:
                    attempt += 1
                    await asyncio.sleep(RETRY_BACKOFF_S)
                    continue
                raise _sdk_error(exc, received=False) from exc
            except openai.APIStatusError as exc:
                delay = retry_delay(exc.response.headers) if is_retryable_status(exc.status_code) else None
                if attempt == 0 and delay is not None:
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                raise _sdk_error(exc, received=False) from exc

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        """Yield the answer's text chunks as the server streams them."""
        async for item in self._stream(messages, ()):
            if isinstance(item, str):
                yield item

    async def stream_with_tools(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[str | ToolCall]:
        """Yield text as it streams, then the tool calls the model made (assembled from their streamed deltas)."""
        async for item in self._stream(messages, tools):
            yield item

    async def _stream(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> AsyncIterator[str | ToolCall]:
        stream = await self._open(self._messages(messages), tools)
        received = False
        calls = _ToolCallDeltas()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        chunk = await stream.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    reason = "stalled" if received else "timeout"
                    raise fail(PROVIDER, reason, f"no chunk for {self.timeout_s:g} s") from exc
                except openai.OpenAIError as exc:
                    raise _sdk_error(exc, received) from exc
                except ValueError as exc:  # a data: line that is not JSON
                    raise fail(PROVIDER, "bad_reply", f"undecodable chunk: {exc}") from exc
                if calls.add(chunk):
                    received = True
                text = _chunk_text(chunk)
                if text:
                    received = True
                    yield text
        finally:
            await stream.close()
        for call in calls.finish():
            yield call

    async def aclose(self) -> None:
        """Close the SDK's connection pool."""
        await self._client.close()

    async def warm_up(self) -> None:
        """Nothing to load: the HTTP client connects on first use."""


class OpenAITTS:
    """``POST {base_url}/audio/speech`` with ``response_format="pcm"``: 24 kHz PCM, yielded as it arrives."""

    name = PROVIDER

    def __init__(
        self,
        base_url: str = OPENAI_BASE_URL,
        api_key: str = "",
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        timeout_s: float = 10.0,
        *,
        instructions: str = "",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/audio/speech"
        self.model = model
        self.voice = voice
        self.timeout_s = timeout_s
        self.instructions = instructions
        self._headers = _headers(api_key)
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    def _request(self, text: str) -> httpx.Request:
        body: dict[str, Any] = {"model": self.model, "input": text, "voice": self.voice}
        body["response_format"] = "pcm"
        if self.instructions:
            body["instructions"] = self.instructions
        return self._client.build_request("POST", self.url, json=body, headers=self._headers)

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """Yield the speech of ``text`` as 24 kHz PCM chunks (whole samples each)."""
        even = EvenBytes()
        async for data in stream_bytes(self._client, PROVIDER, lambda: self._request(text), self.timeout_s):
            pcm = even.feed(data)
            if pcm:
                yield AudioChunk(pcm, OPENAI_PCM_RATE)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def warm_up(self) -> None:
        """Nothing to load: the HTTP client connects on first use."""


class OpenAISTTStream:
    """One call's transcription: buffers the turn's audio; ``finalize`` sends it as one WAV (no partials)."""

    def __init__(self, stt: OpenAISTT, sample_rate: int) -> None:
        self._stt = stt
        self.sample_rate = sample_rate
        self._turn = TurnAudio(sample_rate)  # the caller's speech only: not the silence while the bot spoke
        self._audio_s = 0.0  # audio consumed by this stream, all turns

    async def push(self, pcm: bytes) -> list[Transcript]:
        self._turn.add(pcm)
        self._audio_s += len(pcm) / 2 / self.sample_rate
        return []

    async def finalize(self) -> Transcript:
        audio = self._turn.take()
        if len(audio) < 2:
            return Transcript("", True, self._audio_s)
        text = await self._stt.transcribe(make_wav(audio[: len(audio) - len(audio) % 2], self.sample_rate))
        return Transcript(text, True, self._audio_s)

    async def aclose(self) -> None:
        self._turn.take()


class OpenAISTT:
    """Batch transcription at the end of each turn: ``POST {base_url}/audio/transcriptions`` (multipart)."""

    name = PROVIDER

    def __init__(
        self,
        base_url: str = OPENAI_BASE_URL,
        api_key: str = "",
        model: str = "gpt-4o-mini-transcribe",
        timeout_s: float = 10.0,
        *,
        language: str = "ko",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/audio/transcriptions"
        self.model = model
        self.language = language
        self.timeout_s = timeout_s
        self._headers = _headers(api_key)
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    async def open(self, sample_rate: int = 8000) -> OpenAISTTStream:
        return OpenAISTTStream(self, sample_rate)

    async def transcribe(self, wav: bytes) -> str:
        """The text of one WAV file."""

        def request() -> httpx.Request:
            return self._client.build_request(
                "POST",
                self.url,
                headers=self._headers,
                data={"model": self.model, "language": self.language, "response_format": "json"},
                files={"file": ("turn.wav", wav, "audio/wav")},
            )

        body = await read_body(self._client, PROVIDER, request, self.timeout_s, retries=1)
        try:
            reply = json.loads(body)
            text = reply["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise fail(PROVIDER, "bad_reply", "transcription reply has no text") from exc
        if not isinstance(text, str):
            raise fail(PROVIDER, "bad_reply", "transcription text is not a string")
        return text.strip()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def warm_up(self) -> None:
        """Nothing to load: the HTTP client connects on first use."""
