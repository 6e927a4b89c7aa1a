"""The three provider interfaces — STT, LLM, TTS — and the values that flow between them.

Every provider, simulated, embedded or vendor, implements one of these small Protocols. The engine and the call
only ever see these types. Cancellation is asyncio cancellation: a consumer that stops iterating (or whose task is
cancelled) must leave the provider with nothing running on its behalf; providers release their resources in
``finally`` blocks / ``aclose``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
Role = Literal["system", "user", "assistant", "tool"]


class ProviderError(Exception):
    """A provider failed in a way the caller of the provider should handle (skip, retry, fallback).

    ``provider`` names the provider (``"openai"``, ``"local"``…) and ``reason`` is a short machine-friendly label used
    as a metric label (``"http_500"``, ``"timeout"``, ``"auth"``, ``"bad_reply"``…).
    """

    def __init__(self, provider: str, reason: str, message: str = "") -> None:
        super().__init__(f"{provider}: {reason}" + (f" — {message}" if message else ""))
        self.provider = provider
        self.reason = reason


class ConfigError(Exception):
    """A provider cannot be built from the settings (missing key, unknown name, missing model)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for a tool. ``arguments`` is the JSON text the model wrote (the tool runner parses it)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model: its name, what it does, its ``parameters`` as a JSON Schema object."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message of the agent's conversation.

    An assistant message may carry the ``tool_calls`` it made; a ``tool`` message answers the call ``tool_call_id``.
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Mono signed 16-bit little-endian PCM at ``sample_rate`` Hz."""

    pcm: bytes
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


@dataclass(frozen=True, slots=True)
class Transcript:
    """A speech-to-text result. ``is_final`` marks the text that closes the turn."""

    text: str
    is_final: bool
    # seconds of audio the recognizer had consumed when it produced this result (stream time, not wall time)
    audio_s: float = 0.0


@runtime_checkable
class LLM(Protocol):
    """A streaming language model: text chunks (tokens or larger) for a conversation."""

    name: str

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        """Yield the answer's text as it is generated. Raise ``ProviderError`` on failure."""
        ...


@runtime_checkable
class ToolCallingLLM(LLM, Protocol):
    """An LLM that can also call tools (OpenAI-style function calling).

    The stream yields text as it is generated and, once the model has finished writing them, the tool calls it
    made (several for parallel calls). A stream that yields no tool call is the whole answer.
    """

    def stream_with_tools(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[str | ToolCall]:
        """Yield text chunks and tool calls. Raise ``ProviderError`` on failure."""
        ...


@runtime_checkable
class TTS(Protocol):
    """Text to speech. A non-streaming vendor yields one chunk; a streaming one yields many."""

    name: str

    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """Yield the audio of ``text``. Raise ``ProviderError`` on failure."""
        ...


@runtime_checkable
class STTStream(Protocol):
    """One call's recognizer. Fed 8 kHz PCM16 frames; returns partial results as they appear."""

    async def push(self, pcm: bytes) -> list[Transcript]:
        """Feed audio; return any new (partial or final) results."""
        ...

    async def finalize(self) -> Transcript:
        """End of the caller's speech: return the final transcript of the turn and reset for the next turn."""
        ...

    async def aclose(self) -> None:
        """Release the recognizer."""
        ...


@runtime_checkable
class STT(Protocol):
    """A speech-to-text service: opens a recognizer per call."""

    name: str

    async def open(self, sample_rate: int = 8000) -> STTStream:
        """Start a recognizer for one call."""
        ...


@runtime_checkable
class Lifecycle(Protocol):
    """What a provider holds beyond one call: loaded before the first call, released once at shutdown.

    Every built-in STT, LLM and TTS has both (a no-op where there is nothing to do); the server, the demo and the
    benches warm up and close any provider that has them, so a custom provider may leave them out.
    """

    async def warm_up(self) -> None:
        """Load models, open pools: what would otherwise slow the first call."""
        ...

    async def aclose(self) -> None:
        """Release clients, threads and processes; called once, when the server stops."""
        ...


async def stall_guard(stream: AsyncIterator[T], timeout_s: float, provider: str) -> AsyncGenerator[T, None]:
    """Pass ``stream`` through, raising ``ProviderError(provider, "stalled")`` when no chunk comes for ``timeout_s``.

    A vendor that hangs mid-answer would otherwise hold the caller in silence; with the error the engine speaks
    what was complete and then its fallback.
    """
    iterator = aiter(stream)
    try:
        while True:
            try:
                async with asyncio.timeout(timeout_s):
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise ProviderError(provider, "stalled", f"no text for {timeout_s:.1f} s") from exc
            yield chunk
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
