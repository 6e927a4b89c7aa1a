"""A call's lifetime in memory: failed start, crashed task, maximum length (reproducers p1, p4)."""

from __future__ import annotations

import gc
import logging
import warnings

import pytest
from call_harness import CallHarness, until

from hanmadi.metrics import REGISTRY
from hanmadi.providers.base import ProviderError, Transcript
from hanmadi.providers.simulated import SimulatedSTT, SimulatedSTTStream


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class BrokenSTT:
    name = "broken"

    async def open(self, sample_rate: int = 8000) -> SimulatedSTTStream:
        raise ProviderError("broken", "connect", "handshake refused")


async def test_an_stt_that_fails_to_open_leaks_no_active_call() -> None:
    """p1: the gauge was raised before ``stt.open()`` and never lowered when it failed; no end was recorded."""
    active = sample("hanmadi_active_calls")
    ended = sample("hanmadi_calls_ended_total", {"reason": "stt_failed"})
    for _ in range(3):
        with pytest.raises(ProviderError):
            async with CallHarness(stt=BrokenSTT()):  # type: ignore[arg-type]
                pass
    assert sample("hanmadi_active_calls") == active
    assert sample("hanmadi_calls_ended_total", {"reason": "stt_failed"}) == ended + 3


class BuggyStream(SimulatedSTTStream):
    async def finalize(self) -> Transcript:
        return (await super().finalize()).text  # type: ignore[return-value]  # an adapter bug: a str


class BuggySTT(SimulatedSTT):
    async def open(self, sample_rate: int = 8000) -> SimulatedSTTStream:
        return BuggyStream(self, sample_rate)


async def test_a_crash_in_a_call_task_is_logged_counted_and_ends_the_call(caplog: pytest.LogCaptureFixture) -> None:
    """p4: the ExceptionGroup was swallowed; the call was stored as client_gone and no traceback was logged."""
    crashes = sample("hanmadi_call_crashes_total", {"task": "stt"})
    caplog.set_level(logging.ERROR, "hanmadi.call")
    async with CallHarness(stt=BuggySTT(["안녕하세요"])) as h:
        h.speak()
        h.pause()
        await until(lambda: h.transport.closed is not None, "the call hung up")
    assert h.transport.closed == (1011, "error")
    assert h.call.end_reason == "error"
    assert sample("hanmadi_call_crashes_total", {"task": "stt"}) == crashes + 1
    crash = next(r for r in caplog.records if "crashed" in r.getMessage())
    assert crash.exc_info is not None and crash.exc_info[0] is AttributeError


async def test_a_call_at_its_length_limit_says_goodbye_then_hangs_up() -> None:
    async with CallHarness(max_call_s=0.05, goodbye_message="통화 시간이 다 되었습니다.") as h:
        h.transport.on_send = lambda message: h.play() if message["event"] == "mark" else None
        await until(lambda: h.transport.closed is not None, "the call hung up", turns=200000)
    assert h.transport.closed == (1000, "max_length")
    assert h.call.end_reason == "max_length"
    goodbye = h.call.turns[-1]
    assert goodbye.report is not None and goodbye.report.spoken_text == "통화 시간이 다 되었습니다."
    assert h.transport.kinds()[-1] == f"mark:t{goodbye.index}s0"  # the goodbye went out whole before the hang-up


async def test_a_call_left_before_its_tasks_took_a_step_leaves_no_coroutine_never_awaited() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with CallHarness(stt=SimulatedSTT(["네"])):
            pass  # nothing awaited inside: every task of the call is cancelled before its first step
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
