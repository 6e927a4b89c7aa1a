"""The call's side of the agent's actions, in memory: end_call waits for the goodbye's marks, the REST hang-up is
the fallback, keys go to collect_digits while it listens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from call_harness import FakeClock, ListTransport, call_settings, start_event, until

from hanmadi.call import CallSession
from hanmadi.providers.base import ToolCall
from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedTTS
from hanmadi.telephony import audio
from hanmadi.telephony import twilio as tw
from hanmadi.tools import CallTools, Toolbox
from loopback_support import voice

GOODBYE = "전화 주셔서 감사합니다."


class Phone:
    def __init__(self) -> None:
        self.hung_up: list[str] = []

    async def hang_up(self, call_sid: str) -> None:
        self.hung_up.append(call_sid)


class StuckTransport(ListTransport):
    """A socket that cannot be closed from our side (so the REST API must end the call)."""

    async def close(self, code: int, reason: str) -> None:
        raise RuntimeError("socket already gone")


@asynccontextmanager
async def session(llm: ScriptedLLM, transport: ListTransport, phone: Phone | None = None) -> AsyncIterator[Any]:
    tools = CallTools(Toolbox(goodbye=GOODBYE, filler_after_s=30), call_sid="CAtest")
    call = CallSession(
        settings=call_settings(),
        stt=SimulatedSTT(["네 이제 됐어요", "..."]),
        llm=llm,
        tts=SimulatedTTS(latency=0.0),
        transport=transport,
        start=start_event(),
        clock=FakeClock(),
        tools=tools,
        phone=phone,
    )
    await call.__aenter__()
    try:
        yield call
    finally:
        await call.__aexit__(None, None, None)


def speak(call: CallSession, seconds: float = 0.6) -> None:
    pcm = voice(seconds) + bytes(8000)  # the words, then half a second of silence
    for n, frame in enumerate(audio.frames(audio.pcm_bytes_to_ulaw(pcm))):
        call.on_event(tw.Media("MZtest", "inbound", n + 1, n * 20, frame))


def play(call: CallSession, transport: ListTransport) -> None:
    for name in transport.marks():
        call.on_event(tw.Mark("MZtest", name))


def end_call_llm() -> ScriptedLLM:
    return ScriptedLLM(tool_rounds=[[(0.0, ToolCall("e", "end_call", "{}"))]])


async def test_end_call_closes_the_stream_only_after_the_goodbye_played() -> None:
    transport = ListTransport()
    async with session(end_call_llm(), transport) as call:
        speak(call)
        await until(lambda: len(call.turns) == 1 and call.turns[0].report is not None, "the goodbye was sent")
        assert call.turns[0].report.spoken_text == GOODBYE
        assert transport.closed is None  # sent, not yet played: the caller has not heard it
        play(call, transport)
        await until(lambda: transport.closed is not None, "the stream closed")
        assert transport.closed == (1000, "agent_hangup") and call.end_reason == "agent_hangup"


async def test_rest_hang_up_when_the_stream_cannot_be_closed() -> None:
    transport, phone = StuckTransport(), Phone()
    async with session(end_call_llm(), transport, phone) as call:
        speak(call)
        await until(lambda: len(call.turns) == 1 and call.turns[0].report is not None, "the goodbye was sent")
        play(call, transport)
        await until(lambda: phone.hung_up == ["CAtest"], "the REST hang-up")


async def test_keys_go_to_collect_digits_while_it_listens() -> None:
    transport = ListTransport()
    prompt = json.dumps({"prompt": "번호를 눌러 주세요.", "count": 2}, ensure_ascii=False)
    llm = ScriptedLLM(
        tool_rounds=[[(0.0, ToolCall("d", "collect_digits", prompt))], [(0.0, "네, 확인했습니다.")]],
        first_token_s=0.0,
        token_s=0.0,
    )
    async with session(llm, transport) as call:
        assert call.tools is not None
        speak(call)
        await until(lambda: call.tools is not None and call.tools.digits.active, "the collection listens")
        for key in "42":
            call.on_event(tw.Dtmf("MZtest", key))
        await until(lambda: call.turns[0].report is not None, "the answer")
        assert call.turns[0].report.spoken_text == "번호를 눌러 주세요. 네, 확인했습니다."
        call.on_event(tw.Dtmf("MZtest", "7"))  # no collection now: this one is for the chat
        assert call.dtmf_log == ["7"]
    assert json.loads(llm.tool_requests[1][0][-1].content) == {"digits": "42", "complete": True}
