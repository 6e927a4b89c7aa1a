"""OpenAI-compatible LLM, TTS and STT against a fake server speaking OpenAI's wire format."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from collections.abc import Callable

import pytest
from vendor_servers import CHAT_TOKENS, OPENAI_KEY, TRANSCRIPTION, TTS_PCM, Control, VendorServers

from hanmadi.providers.base import LLM, STT, TTS, Message, ProviderError
from hanmadi.providers.openai_compat import OpenAILLM, OpenAISTT, OpenAITTS

CONVERSATION = [
    Message("user", "예약을 변경하고 싶어요"),
    Message("assistant", "네, 언제로요?"),
    Message("user", "내일"),
]


def llm(vendors: VendorServers, timeout_s: float = 2.0, system_prompt: str = "") -> OpenAILLM:
    return OpenAILLM(f"{vendors.http_url}/v1", OPENAI_KEY, "fake-model", 48, timeout_s, system_prompt=system_prompt)


def tts(vendors: VendorServers, timeout_s: float = 2.0) -> OpenAITTS:
    return OpenAITTS(f"{vendors.http_url}/v1", OPENAI_KEY, "gpt-4o-mini-tts", "alloy", timeout_s)


async def wait_for(event_is_set: Callable[[], bool], within_s: float = 2.0) -> bool:
    deadline = asyncio.get_running_loop().time() + within_s
    while not event_is_set():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_implements_the_protocols(vendors: VendorServers) -> None:
    assert isinstance(llm(vendors), LLM)
    assert isinstance(tts(vendors), TTS)
    assert isinstance(OpenAISTT(vendors.http_url, OPENAI_KEY), STT)


async def test_llm_streams_chunks_and_sends_the_documented_request(vendors: VendorServers, control: Control) -> None:
    provider = llm(vendors, system_prompt="당신은 상담원입니다.")
    chunks = [t async for t in provider.stream(CONVERSATION)]
    await provider.aclose()
    assert chunks == CHAT_TOKENS
    (req,) = control.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    body = json.loads(req.body)
    assert body["stream"] is True
    assert body["model"] == "fake-model"
    assert body["max_tokens"] == 48
    assert body["messages"][0] == {"role": "system", "content": "당신은 상담원입니다."}
    assert [m["role"] for m in body["messages"][1:]] == ["user", "assistant", "user"]
    assert body["messages"][-1]["content"] == "내일"


async def test_llm_keeps_a_system_message_given_by_the_caller(vendors: VendorServers, control: Control) -> None:
    provider = llm(vendors, system_prompt="default")
    [t async for t in provider.stream([Message("system", "custom"), Message("user", "hi")])]
    await provider.aclose()
    messages = json.loads(control.requests[0].body)["messages"]
    assert messages[0] == {"role": "system", "content": "custom"}
    assert len(messages) == 2


async def test_llm_dies_mid_stream_after_partial_output_without_retry(
    vendors: VendorServers, control: Control, errors_added: Callable[[str, str], float]
) -> None:
    control.mode = "drop"
    got: list[str] = []
    provider = llm(vendors)
    with pytest.raises(ProviderError) as info:
        async for t in provider.stream(CONVERSATION):
            got.append(t)
    await provider.aclose()
    assert got == CHAT_TOKENS[:2]
    assert info.value.reason == "connect"
    assert len(control.requests) == 1
    assert errors_added("openai", "connect") == 0  # surfaced: the call counts it


async def test_llm_stall_mid_stream_is_stalled_within_the_timeout(
    vendors: VendorServers, control: Control, errors_added: Callable[[str, str], float]
) -> None:
    control.mode = "stall"
    provider = llm(vendors, timeout_s=0.4)
    got: list[str] = []
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderError) as info:
        async for t in provider.stream(CONVERSATION):
            got.append(t)
    elapsed = asyncio.get_running_loop().time() - started
    await provider.aclose()
    assert info.value.reason == "stalled"
    assert got == CHAT_TOKENS[:2]
    assert 0.3 < elapsed < 1.5
    assert len(control.requests) == 1
    assert errors_added("openai", "stalled") == 0  # surfaced: the call counts it
    assert await wait_for(control.disconnected.is_set)  # the stalled connection was closed


async def test_llm_malformed_chunk_is_bad_reply(vendors: VendorServers, control: Control) -> None:
    control.mode = "garbage"
    provider = llm(vendors)
    with pytest.raises(ProviderError) as info:
        [t async for t in provider.stream(CONVERSATION)]
    await provider.aclose()
    assert info.value.reason == "bad_reply"


async def test_llm_cancel_closes_the_http_stream(vendors: VendorServers, control: Control) -> None:
    control.chunk_delay_s = 0.2
    provider = llm(vendors)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(CONVERSATION):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_for(control.disconnected.is_set)
    assert not control.completed.is_set()
    await provider.aclose()


async def test_llm_consumer_stopping_early_closes_the_stream(vendors: VendorServers, control: Control) -> None:
    control.chunk_delay_s = 0.2
    provider = llm(vendors)
    stream = provider.stream(CONVERSATION)
    assert await anext(stream) == CHAT_TOKENS[0]
    await stream.aclose()  # type: ignore[attr-defined]
    assert await wait_for(control.disconnected.is_set)
    await provider.aclose()


async def test_tts_streams_24k_pcm_in_whole_samples(vendors: VendorServers, control: Control) -> None:
    provider = tts(vendors)
    chunks = [c async for c in provider.synthesize("안녕하세요.")]
    await provider.aclose()
    assert len(chunks) > 1
    assert all(c.sample_rate == 24000 and len(c.pcm) % 2 == 0 and c.pcm for c in chunks)
    assert b"".join(c.pcm for c in chunks) == TTS_PCM
    (req,) = control.requests
    assert req.path == "/v1/audio/speech"
    assert req.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert json.loads(req.body) == {
        "model": "gpt-4o-mini-tts",
        "input": "안녕하세요.",
        "voice": "alloy",
        "response_format": "pcm",
    }


async def test_tts_fails_mid_stream_after_audio_without_retry(vendors: VendorServers, control: Control) -> None:
    control.mode = "drop"
    provider = tts(vendors)
    got = []
    with pytest.raises(ProviderError) as info:
        async for chunk in provider.synthesize("안녕하세요."):
            got.append(chunk)
    await provider.aclose()
    assert got
    assert info.value.reason == "connect"
    assert len(control.requests) == 1


async def test_tts_stall_mid_stream_is_stalled(
    vendors: VendorServers, control: Control, errors_added: Callable[[str, str], float]
) -> None:
    control.mode = "stall"
    provider = tts(vendors, timeout_s=0.3)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderError) as info:
        [c async for c in provider.synthesize("안녕하세요.")]
    await provider.aclose()
    assert info.value.reason == "stalled"
    assert asyncio.get_running_loop().time() - started < 1.2
    assert errors_added("openai", "stalled") == 0  # surfaced: the call counts it
    assert await wait_for(control.disconnected.is_set)


async def test_tts_cancel_closes_the_connection(vendors: VendorServers, control: Control) -> None:
    control.chunk_delay_s = 0.2
    provider = tts(vendors)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.synthesize("안녕하세요."):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_for(control.disconnected.is_set)
    await provider.aclose()


async def test_stt_posts_the_turn_as_a_wav_at_finalize(vendors: VendorServers, control: Control) -> None:
    stt = OpenAISTT(f"{vendors.http_url}/v1", OPENAI_KEY, "gpt-4o-mini-transcribe", 2.0)
    stream = await stt.open(8000)
    frame = b"\xe8\x03" * 160  # 20 ms of voice (silence before the voice is not uploaded)
    for _ in range(50):
        assert await stream.push(frame) == []  # batch: no partials
    assert control.requests == []
    result = await stream.finalize()
    assert result.is_final and result.text == TRANSCRIPTION
    assert result.audio_s == pytest.approx(1.0)
    (req,) = control.requests
    assert req.path == "/v1/audio/transcriptions"
    assert req.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert req.headers["content-type"].startswith("multipart/form-data")
    assert req.form["model"] == "gpt-4o-mini-transcribe"
    assert req.form["language"] == "ko"
    upload = req.form["file"]
    assert upload["filename"].endswith(".wav")
    with wave.open(io.BytesIO(upload["data"])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.readframes(w.getnframes()) == frame * 50
    # the next turn starts empty: an empty turn makes no request
    assert (await stream.finalize()).text == ""
    assert len(control.requests) == 1
    await stream.aclose()
    await stt.aclose()
