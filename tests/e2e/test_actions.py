"""The agent acts on the call, end to end over real sockets: the simulated caller on one side, loopback servers
for the business's tools and webhooks and for Twilio's REST API on the other."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import AUTH_TOKEN, e2e_settings, free_port, sign, voice

from actions_support import ACCOUNT_SID, WEBHOOK_SECRET, ActionServers, ToolBehaviour, action_servers
from hanmadi.loopback import serve_in_thread, settle
from hanmadi.providers.base import ToolCall
from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedTTS
from hanmadi.server import Providers
from hanmadi.store.records import CallDetail
from hanmadi.telephony.caller import CallerConfig, CallResult, place_call
from loopback_support import read_call

pytestmark = pytest.mark.e2e

FILLER = "잠시만요, 확인해 보겠습니다."
ADMIN_TOKEN = "actions-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def servers() -> Iterator[ActionServers]:
    with action_servers() as s:
        s.twilio_token = AUTH_TOKEN  # the server's HANMADI_TWILIO_AUTH_TOKEN is also its REST credential
        yield s


@pytest.fixture(autouse=True)
def _reset(servers: ActionServers) -> None:
    servers.tools.clear()
    servers.tool_requests.clear()
    servers.hooks.clear()
    servers.hooks_down = False
    servers.rest.clear()
    servers.on_create = None


def tools_file(tmp_path: Path, servers: ActionServers) -> Path:
    path = tmp_path / "tools.yaml"
    path.write_text(
        f"""
tools:
  - name: check_table
    description: 날짜와 인원으로 빈 자리를 확인합니다
    parameters:
      type: object
      properties:
        date: {{type: string}}
        people: {{type: integer}}
      required: [date, people]
    url: {servers.tool_url("check_table")}
    timeout_s: 5
""",
        encoding="utf-8",
    )
    return path


def action_settings(tmp_path: Path, port: int, servers: ActionServers, **overrides: object) -> Any:
    return e2e_settings(
        tmp_path,
        port,
        tools_file=tools_file(tmp_path, servers),
        webhook_secret=WEBHOOK_SECRET,
        twilio_account_sid=ACCOUNT_SID,
        twilio_api_base=servers.base,
        transfer_numbers=["예약팀=+8221234567"],
        admin_token=ADMIN_TOKEN,
        greeting="네, 한마디입니다.",  # a short greeting: these tests are about what comes after it
        **overrides,
    )


def providers(llm: ScriptedLLM, transcripts: list[str]) -> Providers:
    # a long filler: the answer is always ready before it has finished playing
    return Providers(stt=SimulatedSTT(transcripts), llm=llm, tts=SimulatedTTS(audio_s={FILLER: 3.0}))


async def stored(settings: Any, call_sid: str) -> CallDetail:
    """The ended call as stored. (``settle`` can return between the socket's end and the session's last record,
    so the end is waited for here.)"""
    async with asyncio.timeout(10):
        while True:
            call = await read_call(settings.database_url, call_sid)
            if call is not None and call.call.end_reason is not None:
                return call
            await asyncio.sleep(0.05)


async def call(url: str, **kw: Any) -> CallResult:
    config = {"url": url, "utterances": [voice(1.0)], "auth_token": AUTH_TOKEN, "answer_timeout_s": 5.0, **kw}
    return await place_call(CallerConfig(**config))


async def test_slow_tool_gets_a_filler_and_the_answer_follows(tmp_path: Path, servers: ActionServers) -> None:
    servers.tools["check_table"] = ToolBehaviour(body={"available": True, "time": "19:00"}, delay_s=1.5)
    answer = "네, 내일 저녁 7시에 두 분 자리 있습니다."
    llm = ScriptedLLM(
        tool_rounds=[[(0.1, ToolCall("c1", "check_table", '{"date": "내일", "people": 2}'))], [(0.1, answer)]]
    )
    port = free_port()
    settings = action_settings(tmp_path, port, servers)
    with serve_in_thread(settings, port=port, providers=providers(llm, ["내일 저녁 두 명 자리 있나요"])) as url:
        result = await call(url)
        await settle(url)
        detail = await stored(settings, result.call_sid)
    turn = detail.turns[1]
    assert turn.spoken_text == f"{FILLER} {answer}"
    (record,) = turn.tool_calls
    assert (record["name"], record["status"], record["filler"]) == ("check_table", "ok", True)
    assert record["arguments"] == {"date": "내일", "people": 2}
    kinds = [(e.kind, e.index) for e in turn.events if e.kind in ("tool_start", "tool_end", "send_start", "send_done")]
    # the filler goes out while the tool runs; the answer only after the tool answered, right after the filler
    assert kinds == [
        ("tool_start", None),
        ("send_start", 0),
        ("send_done", 0),
        ("tool_end", None),
        ("send_start", 1),
        ("send_done", 1),
    ]
    (heard,) = result.turns
    assert not heard.interrupted and heard.gaps_ms == []  # the answer was queued before the filler finished playing
    assert json.loads(servers.tool_requests[0].body)["call_sid"] == result.call_sid
    # the model's second round saw the tool's answer
    assert llm.tool_requests[1][0][-1].content == '{"available": true, "time": "19:00"}'


async def test_end_call_says_goodbye_then_hangs_up(tmp_path: Path, servers: ActionServers) -> None:
    llm = ScriptedLLM(tool_rounds=[[(0.1, ToolCall("e", "end_call", '{"goodbye": "감사합니다. 좋은 하루 되세요."}'))]])
    port = free_port()
    settings = action_settings(tmp_path, port, servers)
    with serve_in_thread(settings, port=port, providers=providers(llm, ["이제 끊을게요"])) as url:
        result = await call(url, turns=2, utterances=[voice(1.0), voice(1.0)])
        await settle(url)
        detail = await stored(settings, result.call_sid)
    assert result.hung_up_by == "bot"
    assert len(result.turns) == 1  # the bot hung up before the caller's second utterance could start a turn
    assert detail.call.end_reason == "agent_hangup" and detail.call.status == "completed"
    assert detail.turns[-1].spoken_text == "감사합니다. 좋은 하루 되세요."
    goodbye_marks = [m for m in result.marks if m.turn == 0]
    assert goodbye_marks and not any(m.cleared for m in goodbye_marks)  # it played to the end before the hang-up


class TextOnlyLLM:
    """A model without function calling (like the embedded base model): text only."""

    name = "text-only"

    def __init__(self) -> None:
        self._inner = ScriptedLLM()

    def stream(self, messages: Any) -> Any:
        return self._inner.stream(messages)


async def test_without_function_calling_the_callers_goodbye_ends_the_call(
    tmp_path: Path, servers: ActionServers
) -> None:
    port = free_port()
    settings = action_settings(tmp_path, port, servers)
    stack = Providers(stt=SimulatedSTT(["네 알겠습니다 수고하세요"]), llm=TextOnlyLLM(), tts=SimulatedTTS())  # type: ignore[arg-type]
    with serve_in_thread(settings, port=port, providers=stack) as url:
        result = await call(url, turns=2, utterances=[voice(1.0), voice(1.0)])
        await settle(url)
        detail = await stored(settings, result.call_sid)
    assert result.hung_up_by == "bot" and len(result.turns) == 1
    assert detail.call.end_reason == "agent_hangup"
    assert detail.turns[-1].heard_text == "네 알겠습니다 수고하세요"
    assert detail.turns[-1].spoken_text == settings.goodbye


async def test_transfer_updates_the_live_call(tmp_path: Path, servers: ActionServers) -> None:
    llm = ScriptedLLM(
        tool_rounds=[[(0.1, "네, 연결해 드릴게요."), (0.1, ToolCall("t", "transfer_call", '{"target": "예약팀"}'))]]
    )
    port = free_port()
    settings = action_settings(tmp_path, port, servers, webhook_url=servers.base + "/hooks")
    with serve_in_thread(settings, port=port, providers=providers(llm, ["사람이랑 통화하고 싶어요"])) as url:
        result = await call(url)  # hangs up after the reply, as Twilio ends the stream when the TwiML changes
        await settle(url)
        detail = await stored(settings, result.call_sid)
        await wait_for(lambda: len(servers.hooks) >= 3)
    (update,) = servers.rest
    assert update.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{result.call_sid}.json"
    twiml = ET.fromstring(update.form["Twiml"])
    assert [(e.tag, e.get("language")) for e in twiml] == [("Say", "ko-KR"), ("Dial", None)]
    assert twiml[0].text == settings.transfer_message and twiml[1].text == "+8221234567"
    assert detail.call.end_reason == "transferred" and detail.call.transfer_to == "+822***4567"
    events = [h.headers["x-hanmadi-event"] for h in servers.hooks]
    assert events == ["call.started", "call.transferred", "call.ended"]
    assert json.loads(servers.hooks[1].body)["transfer_to"] == "+822***4567"


async def test_collect_digits_over_the_keypad(tmp_path: Path, servers: ActionServers) -> None:
    prompt = "예약 번호 네 자리를 눌러 주세요."
    llm = ScriptedLLM(
        tool_rounds=[
            [(0.1, ToolCall("d", "collect_digits", json.dumps({"prompt": prompt, "count": 4}, ensure_ascii=False)))],
            [(0.1, "확인했습니다. 1234번 예약이네요.")],
        ]
    )
    port = free_port()
    settings = action_settings(tmp_path, port, servers)
    with serve_in_thread(settings, port=port, providers=providers(llm, ["예약 확인하고 싶어요"])) as url:
        # the caller listens to the prompt, then types the digits (its second "turn" is keys only)
        result = await call(url, turns=2, utterances=[voice(1.0), b""], dtmf={1: "1234"})
        await settle(url)
        detail = await stored(settings, result.call_sid)
    turn = detail.turns[1]
    assert turn.spoken_text == f"{prompt} 확인했습니다. 1234번 예약이네요."
    assert turn.tool_calls[0]["status"] == "ok"
    assert json.loads(llm.tool_requests[1][0][-1].content) == {"digits": "1234", "complete": True}
    assert turn.dtmf == "" and all(t.dtmf == "" for t in detail.turns)  # the keys went to the tool, not the chat


async def test_silent_caller_gets_prompts_then_a_goodbye(tmp_path: Path, servers: ActionServers) -> None:
    port = free_port()
    settings = action_settings(tmp_path, port, servers, idle_prompt_s=0.4, idle_prompts=2)
    silence = bytes(2 * 8000 * 30)  # the caller holds the line without a word
    with serve_in_thread(settings, port=port, providers=providers(ScriptedLLM(), ["..."])) as url:
        result = await call(url, utterances=[silence])
        await settle(url)
        detail = await stored(settings, result.call_sid)
    assert result.hung_up_by == "bot"
    assert detail.call.end_reason == "idle"
    spoken = [t.spoken_text for t in detail.turns]
    assert spoken == [settings.greeting, settings.idle_prompt, settings.idle_prompt, settings.goodbye]


async def place_outbound(url: str, body: dict[str, Any]) -> str:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{url}/api/calls", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return str(r.json()["call_sid"])


async def post_amd(url: str, call_sid: str, answered_by: str) -> int:
    form = {
        "CallSid": call_sid,
        "AccountSid": ACCOUNT_SID,
        "AnsweredBy": answered_by,
        "MachineDetectionDuration": "2100",
    }
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{url}/twilio/amd", data=form, headers={"X-Twilio-Signature": sign(f"{url}/twilio/amd", form)}
        )
    return r.status_code


async def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` (state in another thread's server: there is no event to wait on)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def active_calls(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"{url}/healthz")).json()["active_calls"])


async def test_outbound_call_answered_by_a_machine_leaves_the_voicemail(tmp_path: Path, servers: ActionServers) -> None:
    port = free_port()
    settings = action_settings(tmp_path, port, servers, twilio_from_number="+8225550100")
    with serve_in_thread(settings, port=port, providers=providers(ScriptedLLM(), ["..."])) as url:
        call_sid = await place_outbound(url, {"to": "+821012345678", "context": {"name": "김민수"}})
        (create,) = servers.rest
        assert create.form["Url"] == f"{url}/twilio/voice"
        assert create.form["AsyncAmdStatusCallback"] == f"{url}/twilio/amd"
        assert (create.form["MachineDetection"], create.form["AsyncAmd"]) == ("DetectMessageEnd", "true")
        # Twilio dials; the voicemail picks up and its greeting plays (the caller keeps quiet), then the beep
        caller = asyncio.create_task(call(url, call_sid=call_sid, utterances=[bytes(2 * 8000 * 20)]))
        async with asyncio.timeout(10):
            while await active_calls(url) == 0:  # noqa: ASYNC110 (the stream is up once the server counts it)
                await asyncio.sleep(0.05)
        assert await post_amd(url, call_sid, "machine_end_beep") == 204
        result = await caller
        await settle(url)
        detail = await stored(settings, call_sid)
    assert result.hung_up_by == "bot"
    assert detail.call.direction == "outbound" and detail.call.answered_by == "machine_end_beep"
    assert detail.call.end_reason == "voicemail"
    assert detail.turns[-1].spoken_text == settings.voicemail_message


async def test_outbound_call_answered_by_a_person_talks_with_context(tmp_path: Path, servers: ActionServers) -> None:
    llm = ScriptedLLM()
    port = free_port()
    settings = action_settings(tmp_path, port, servers, twilio_from_number="+8225550100")
    with serve_in_thread(settings, port=port, providers=providers(llm, ["네 여보세요"])) as url:
        call_sid = await place_outbound(url, {"to": "+821012345678", "context": {"name": "김민수", "예약": "7시"}})
        assert await post_amd(url, call_sid, "human") == 204  # AMD can answer before the stream starts
        result = await call(url, call_sid=call_sid)
        await settle(url)
        detail = await stored(settings, call_sid)
        async with httpx.AsyncClient() as client:
            listed = (await client.get(f"{url}/api/calls", headers=ADMIN)).json()["items"]
    assert not result.turns[0].timed_out
    system = llm.tool_requests[0][0][0]
    assert system.role == "system" and "- name: 김민수" in system.content and "- 예약: 7시" in system.content
    assert detail.call.answered_by == "human" and detail.call.end_reason == "caller_stop"
    (row,) = [c for c in listed if c["call_sid"] == call_sid]
    assert (row["direction"], row["answered_by"]) == ("outbound", "human")


async def test_bad_outbound_requests_are_refused(tmp_path: Path, servers: ActionServers) -> None:
    port = free_port()
    settings = action_settings(tmp_path, port, servers)  # no caller ID configured
    with serve_in_thread(settings, port=port, providers=providers(ScriptedLLM(), ["..."])) as url:
        async with httpx.AsyncClient() as client:
            bad_number = await client.post(f"{url}/api/calls", json={"to": "010-1234"}, headers=ADMIN)
            no_caller_id = await client.post(f"{url}/api/calls", json={"to": "+821012345678"}, headers=ADMIN)
            no_token = await client.post(f"{url}/api/calls", json={"to": "+821012345678"})
        unsigned = await httpx.AsyncClient().post(f"{url}/twilio/amd", data={"CallSid": "CA1", "AnsweredBy": "human"})
    assert bad_number.status_code == 422
    assert no_caller_id.status_code == 409 and "HANMADI_TWILIO_FROM_NUMBER" in no_caller_id.text
    assert no_token.status_code == 401
    assert unsigned.status_code == 403
    assert servers.rest == []


async def test_webhooks_survive_a_receiver_outage_and_a_restart(tmp_path: Path, servers: ActionServers) -> None:
    port = free_port()
    settings = action_settings(tmp_path, port, servers, webhook_url=servers.base + "/hooks")
    servers.hooks_down = True
    with serve_in_thread(settings, port=port, providers=providers(ScriptedLLM(), ["안녕하세요"])) as url:
        result = await call(url)
        await settle(url)
        async with httpx.AsyncClient() as client:
            for _ in range(200):  # until the dispatcher has tried both at least once
                pending = (await client.get(f"{url}/api/webhooks?status=pending", headers=ADMIN)).json()
                if len(pending["items"]) == 2 and all(d["attempts"] for d in pending["items"]):
                    break
                await asyncio.sleep(0.05)
    assert pending["counts"]["pending"] == 2 and servers.hooks == []
    assert [d["event"] for d in pending["items"]] == ["call.started", "call.ended"]
    assert all(d["attempts"] >= 1 and d["last_error"] == "HTTP 503" for d in pending["items"])

    servers.hooks_down = False  # the receiver is back; this server process is a new one
    with serve_in_thread(settings, port=port, providers=providers(ScriptedLLM(), ["..."])) as url:
        await wait_for(lambda: len(servers.hooks) == 2, timeout_s=20)
        async with httpx.AsyncClient() as client:
            after = (await client.get(f"{url}/api/webhooks", headers=ADMIN)).json()
    assert after["counts"] == {"pending": 0, "delivered": 2, "failed": 0}
    # retries are not ordered (each row has its own backoff): receivers key on the event and the delivery id
    by_event = {h.headers["x-hanmadi-event"]: h for h in servers.hooks}
    assert set(by_event) == {"call.started", "call.ended"}
    ended = json.loads(by_event["call.ended"].body)
    assert ended["call_sid"] == result.call_sid and ended["turns"][1]["heard_text"] == "안녕하세요"
    assert len({h.headers["x-hanmadi-delivery"] for h in servers.hooks}) == 2
