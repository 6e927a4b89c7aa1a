"""Deepgram live streaming STT against a fake ``/v1/listen`` WebSocket speaking Deepgram's message format."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import pytest
from vendor_servers import DEEPGRAM_KEY, Control, VendorServers, dg_words

from hanmadi.providers.base import STT, ProviderError, Transcript
from hanmadi.providers.deepgram import DeepgramStream, DeepgramSTT

FRAME = b"\xe8\x03" * 160  # 20 ms at 8 kHz, loud enough to count as voice (silence is not re-uploaded)
FINALIZE = {"type": "Finalize"}


def make(
    vendors: VendorServers,
    *,
    key: str = DEEPGRAM_KEY,
    timeout_s: float = 2.0,
    finalize_timeout_s: float | None = None,
    keepalive_s: float = 5.0,
) -> DeepgramSTT:
    return DeepgramSTT(
        key,
        base_url=vendors.ws_url,
        model="nova-2",
        timeout_s=timeout_s,
        finalize_timeout_s=finalize_timeout_s,
        keepalive_s=keepalive_s,
    )


async def speak(stream: DeepgramStream, seconds: float) -> list[Transcript]:
    partials: list[Transcript] = []
    for _ in range(round(seconds / 0.02)):
        partials += await stream.push(FRAME)
        await asyncio.sleep(0)
    return partials


async def until(condition: Callable[[], bool], within_s: float = 2.0) -> bool:
    """Wait for the fake server thread to catch up."""
    for _ in range(round(within_s / 0.01)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


def other_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


async def test_streams_partials_and_finalizes_turns(vendors: VendorServers, control: Control) -> None:
    stt = make(vendors)
    assert isinstance(stt, STT)
    stream = await stt.open(8000)
    partials = await speak(stream, 1.3)
    await asyncio.sleep(0.05)
    partials += await stream.push(b"")
    assert partials and not any(p.is_final for p in partials)
    assert partials[0].text == "안녕하세요"
    final = await stream.finalize()
    assert (final.text, final.is_final) == (" ".join(dg_words(6)), True)
    assert final.audio_s == pytest.approx(1.3)
    # the second turn carries on in the same session
    await speak(stream, 0.8)
    second = await stream.finalize()
    assert second.text == " ".join(dg_words(4, first=6))
    assert second.audio_s == pytest.approx(2.1)
    await stream.aclose()

    (req,) = control.requests
    assert req.path == "/v1/listen"
    assert req.headers["authorization"] == f"Token {DEEPGRAM_KEY}"
    assert {k: req.query[k] for k in ("encoding", "sample_rate", "language", "interim_results", "model")} == {
        "encoding": "linear16",
        "sample_rate": "8000",
        "language": "ko",
        "interim_results": "true",
        "model": "nova-2",
    }
    assert req.audio_bytes == len(FRAME) * 105
    assert [json.loads(m) for m in req.messages] == [FINALIZE, FINALIZE, {"type": "CloseStream"}]
    assert control.dg_closed_by_client.is_set()
    assert other_tasks() == []


async def test_final_results_covering_the_audio_end_the_turn_without_from_finalize(
    vendors: VendorServers, control: Control
) -> None:
    control.dg_mode = "no_from_finalize"
    stream = await make(vendors, finalize_timeout_s=2.0).open()
    await speak(stream, 0.7)
    started = asyncio.get_running_loop().time()
    final = await stream.finalize()
    assert asyncio.get_running_loop().time() - started < 0.5
    assert final.text == " ".join(dg_words(3))
    await stream.aclose()


async def test_empty_turn_finalizes_at_once(vendors: VendorServers, control: Control) -> None:
    stream = await make(vendors).open()
    assert await stream.finalize() == Transcript("", True, 0.0)
    await stream.aclose()
    assert [json.loads(m) for m in control.requests[0].messages] == [{"type": "CloseStream"}]


async def test_dropped_connection_reconnects_and_the_turn_survives(
    vendors: VendorServers, control: Control, errors_added: Callable[[str, str], float]
) -> None:
    control.dg_mode = "drop_once"
    control.dg_drop_after_bytes = 8000  # 0.5 s into the turn
    stream = await make(vendors).open()
    await speak(stream, 1.3)
    final = await stream.finalize()
    assert final.text == " ".join(dg_words(6))  # the whole turn, not just what followed the drop
    assert await until(lambda: len(control.requests) == 2)
    assert control.requests[1].audio_bytes == len(FRAME) * 65  # the turn's audio went again, whole
    assert errors_added("deepgram", "connect") == 1
    await stream.aclose()
    assert other_tasks() == []


async def test_a_second_drop_in_the_same_turn_is_an_error(
    vendors: VendorServers, control: Control, errors_added: Callable[[str, str], float]
) -> None:
    control.dg_mode = "drop_always"
    control.dg_drop_after_bytes = 4000
    stream = await make(vendors).open()
    with pytest.raises(ProviderError) as info:
        await speak(stream, 1.0)
        await stream.finalize()
    assert info.value.reason == "connect"
    assert errors_added("deepgram", "connect") == 1  # the recovered drop; the fatal one is counted by the call
    await stream.aclose()
    assert other_tasks() == []


async def test_stalled_server_ends_the_turn_with_what_was_heard_within_the_timeout(
    vendors: VendorServers, control: Control, errors_added: Callable[[str, str], float]
) -> None:
    control.dg_mode = "stall"
    control.dg_stall_after_bytes = 6400
    stream = await make(vendors, timeout_s=0.3).open()
    await speak(stream, 1.0)
    started = asyncio.get_running_loop().time()
    final = await stream.finalize()
    assert asyncio.get_running_loop().time() - started < 1.0
    assert final.is_final and final.text == dg_words(1)[0]
    assert errors_added("deepgram", "timeout") == 1
    # the stalled connection is replaced at the next push
    control.dg_mode = "ok"
    await speak(stream, 0.1)
    assert await until(lambda: len(control.requests) == 2)
    assert errors_added("deepgram", "connect") == 0  # a planned replacement, not a failure
    await stream.aclose()
    assert other_tasks() == []


@pytest.mark.parametrize(
    ("failures", "reason", "handshakes"),
    [
        ([(401, {})], "auth", 1),
        ([(403, {})], "auth", 1),
        ([(429, {"Retry-After": "30"})], "rate_limited", 1),
        ([(500, {}), (503, {})], "http_5xx", 2),
        ([(400, {})], "http_4xx", 1),
    ],
)
async def test_handshake_errors(
    failures: list[tuple[int, dict[str, str]]],
    reason: str,
    handshakes: int,
    vendors: VendorServers,
    control: Control,
    errors_added: Callable[[str, str], float],
) -> None:
    control.failures = list(failures)
    with pytest.raises(ProviderError) as info:
        await make(vendors).open()
    assert (info.value.provider, info.value.reason) == ("deepgram", reason)
    assert errors_added("deepgram", reason) == 0  # surfaced: the call counts it
    assert control.failures == [] and len(failures) == handshakes


async def test_wrong_key_is_auth(vendors: VendorServers, control: Control) -> None:
    with pytest.raises(ProviderError, match="auth"):
        await make(vendors, key="wrong").open()


async def test_429_with_a_short_retry_after_is_retried(vendors: VendorServers, control: Control) -> None:
    control.failures = [(429, {"Retry-After": "0"})]
    stream = await make(vendors).open()
    await stream.aclose()
    assert control.dg_closed_by_client.is_set()


async def test_refused_connection_is_connect() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderError, match="connect"):
        await DeepgramSTT(DEEPGRAM_KEY, base_url=f"ws://127.0.0.1:{port}", timeout_s=1.0).open()


async def test_keepalive_while_idle(vendors: VendorServers, control: Control) -> None:
    stream = await make(vendors, keepalive_s=0.1).open()

    def keepalives() -> int:
        return sum(json.loads(m)["type"] == "KeepAlive" for r in control.requests for m in r.messages)

    async with asyncio.timeout(10):  # idle: KeepAlive after KeepAlive reaches the server
        while keepalives() < 2:  # noqa: ASYNC110 (the double records them on its own thread: no event to wait on)
            await asyncio.sleep(0.02)
    await stream.aclose()
    kinds = [json.loads(m)["type"] for m in control.requests[0].messages]
    assert kinds.count("KeepAlive") >= 2
    assert kinds[-1] == "CloseStream"


async def test_cancelled_turn_then_aclose_leaves_nothing_running(vendors: VendorServers, control: Control) -> None:
    control.dg_mode = "stall"
    control.dg_stall_after_bytes = 0
    stream = await make(vendors, timeout_s=1.0).open()
    await speak(stream, 0.2)
    task = asyncio.create_task(stream.finalize())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    assert other_tasks() == []
    with pytest.raises(RuntimeError):
        await stream.push(FRAME)
