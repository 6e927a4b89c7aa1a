"""Tools: the tools file, HTTP tools against a loopback server, filler, failures, built-ins, parallel calls."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from actions_support import WEBHOOK_SECRET, ActionServers, ToolBehaviour
from hanmadi import metrics
from hanmadi.engine.timeline import Timeline
from hanmadi.providers.base import Message, ToolCall
from hanmadi.providers.simulated import ScriptedLLM
from hanmadi.signing import verify_body
from hanmadi.tools import (
    CallTools,
    EndCall,
    HttpTool,
    Toolbox,
    ToolsFileError,
    Transferred,
    TransferTarget,
    load_tools_file,
    well_formed,
)

FILLER = "잠시만요, 확인해 보겠습니다."
ANSWER = "네, 내일 저녁 7시에 두 분 자리 있습니다."


@pytest.fixture(autouse=True)
def _reset(servers: ActionServers) -> None:
    servers.tools.clear()
    servers.tool_requests.clear()


def http_tool(servers: ActionServers, name: str = "check_table", **kw: object) -> HttpTool:
    return HttpTool.model_validate(
        {
            "name": name,
            "description": "빈 자리 확인",
            "parameters": {
                "type": "object",
                "properties": {"date": {"type": "string"}, "people": {"type": "integer"}},
                "required": ["date"],
            },
            "url": servers.tool_url(name),
            **kw,
        }
    )


def tool_llm(*calls: ToolCall, answer: str = ANSWER) -> ScriptedLLM:
    return ScriptedLLM(tool_rounds=[[(0.0, c) for c in calls], [(0.0, answer)]])


async def run_turn(turn_stream: AsyncIterator[str]) -> list[str]:
    return [chunk async for chunk in turn_stream]


def call_tools(box: Toolbox) -> CallTools:
    return CallTools(box, call_sid="CA123", from_number="+821012345678", to_number="+8225550100")


USER = [Message("system", "당신은 식당 예약 상담원입니다."), Message("user", "내일 저녁 일곱 시 두 명 자리 있어요?")]


# --- the tools file ------------------------------------------------------------------------------------------


def test_tools_file_yaml_with_env_headers(tmp_path: Path) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text(
        """
tools:
  - name: check_table
    description: 빈 자리를 확인합니다
    parameters: {type: object, properties: {date: {type: string}}, required: [date]}
    url: https://api.example.kr/tables
    method: post
    timeout_s: 3
    headers: {Authorization: "Bearer ${RESTAURANT_KEY}"}
    filler: 자리를 확인하고 있어요.
""",
        encoding="utf-8",
    )
    (tool,) = load_tools_file(path, env={"RESTAURANT_KEY": "k-42"})
    assert tool.headers == {"Authorization": "Bearer k-42"}
    assert (tool.method, tool.timeout_s, tool.filler) == ("POST", 3.0, "자리를 확인하고 있어요.")


def test_tools_file_json_list(tmp_path: Path) -> None:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([{"name": "a", "description": "d", "url": "http://x/a"}]), encoding="utf-8")
    (tool,) = load_tools_file(path, env={})
    assert tool.parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("tools: [{name: a, description: d}]", "tools.0.url: Field required"),
        ("tools: [{name: a, description: d, url: ftp://x}]", "must be an http(s):// URL"),
        ("tools: [{name: a, description: d, url: http://x, parameters: {type: string}}]", "JSON Schema object"),
        (
            "tools: [{name: a, description: d, url: http://x, parameters: {type: object, required: [q]}}]",
            "required must list names",
        ),
        ("tools: [{name: a, description: d, url: http://x}, {name: a, description: e, url: http://y}]", "used twice"),
        ("tools: [{name: a, description: d, url: http://x, headers: {K: '${NOPE}'}}]", "${NOPE}, which is not set"),
        ("tools: [{name: 'a b', description: d, url: http://x}]", "tools.0.name"),
        ("tools: [{name: a, description: d, url: http://x, methd: GET}]", "methd: Extra inputs"),
        ("tools: [unclosed", "not valid yaml"),
    ],
)
def test_tools_file_errors_say_where(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ToolsFileError, match=r"tools file .*tools\.yaml") as info:
        load_tools_file(path, env={})
    assert message in str(info.value)


def test_http_tools_need_the_signing_secret(servers: ActionServers) -> None:
    with pytest.raises(ToolsFileError, match="HANMADI_WEBHOOK_SECRET"):
        Toolbox([http_tool(servers)], secret="")
    with pytest.raises(ToolsFileError, match="built-ins"):
        Toolbox([http_tool(servers, name="end_call")], secret="s")


def test_transfer_is_offered_only_when_it_can_work() -> None:
    assert "transfer_call" not in Toolbox().names()  # no numbers, no phone control

    class Phone:
        async def transfer(self, call_sid: str, number: str, announcement: str) -> None:
            return None

    box = Toolbox(transfer_targets=[TransferTarget("예약팀", "+8221234567")], phone=Phone())
    assert box.names() == ["end_call", "transfer_call", "collect_digits"]
    spec = next(s for s in box.specs if s.name == "transfer_call")
    assert spec.parameters["properties"]["target"]["enum"] == ["예약팀"]


# --- HTTP tools ---------------------------------------------------------------------------------------------


async def test_tool_call_is_signed_and_its_answer_goes_back_to_the_model(servers: ActionServers) -> None:
    servers.tools["check_table"] = ToolBehaviour(body={"available": True, "time": "19:00"})
    box = Toolbox([http_tool(servers)], secret=WEBHOOK_SECRET, filler_after_s=30)
    llm = tool_llm(ToolCall("call_1", "check_table", '{"date": "내일", "people": 2}'))
    timeline = Timeline()
    turn = call_tools(box).turn(llm, USER)
    turn.timeline = timeline
    chunks = await run_turn(turn.stream())

    assert chunks == [ANSWER]  # fast tool: no filler
    (seen,) = servers.tool_requests
    assert verify_body(WEBHOOK_SECRET, seen.body, seen.headers["x-hanmadi-signature"])
    assert seen.headers["x-hanmadi-signature"].startswith("sha256=")
    assert seen.json() == {
        "call_sid": "CA123",
        "from": "+821012345678",
        "to": "+8225550100",
        "tool": "check_table",
        "arguments": {"date": "내일", "people": 2},
    }
    # the second round saw the call and its result, as OpenAI's tool messages
    convo, _ = llm.tool_requests[1]
    assert convo[-2].tool_calls == (ToolCall("call_1", "check_table", '{"date": "내일", "people": 2}'),)
    assert convo[-1] == Message("tool", '{"available": true, "time": "19:00"}', tool_call_id="call_1")
    assert turn.exchange == convo[-2:]
    (record,) = turn.records
    assert (record.name, record.arguments, record.status, record.filler) == (
        "check_table",
        {"date": "내일", "people": 2},
        "ok",
        False,
    )
    assert record.duration_s is not None and record.duration_s > 0
    kinds = [(e.kind, e.text) for e in timeline.events]
    assert kinds == [("tool_start", "check_table"), ("tool_end", "check_table")]


async def test_slow_tool_gets_its_filler_before_the_answer(servers: ActionServers) -> None:
    servers.tools["check_table"] = ToolBehaviour(body={"available": False}, delay_s=0.5)
    box = Toolbox([http_tool(servers, filler="자리를 확인하고 있어요.")], secret=WEBHOOK_SECRET, filler_after_s=0.05)
    fillers = metrics.TOOL_FILLERS._value.get()
    turn = call_tools(box).turn(tool_llm(ToolCall("c1", "check_table", '{"date": "내일"}')), USER)
    chunks = await run_turn(turn.stream())
    assert chunks == ["자리를 확인하고 있어요.\n", ANSWER]
    assert turn.records[0].filler and metrics.TOOL_FILLERS._value.get() == fillers + 1


async def test_default_filler_and_no_filler_after_the_model_spoke(servers: ActionServers) -> None:
    servers.tools["check_table"] = ToolBehaviour(delay_s=0.3)
    box = Toolbox([http_tool(servers)], secret=WEBHOOK_SECRET, filler_after_s=0.02)
    llm = tool_llm(ToolCall("c1", "check_table", '{"date": "내일"}'))
    assert await run_turn(call_tools(box).turn(llm, USER).stream()) == [FILLER + "\n", ANSWER]

    spoke = ScriptedLLM(
        tool_rounds=[[(0.0, "확인해 볼게요."), (0.0, ToolCall("c1", "check_table", '{"date": "내일"}'))], [(0, ANSWER)]]
    )
    assert await run_turn(call_tools(box).turn(spoke, USER).stream()) == ["확인해 볼게요.", "\n", ANSWER]


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (ToolBehaviour(status=500, body={"error": "db"}), "http_5xx"),
        (ToolBehaviour(status=404), "http_4xx"),
        (ToolBehaviour(body=b"<html>not json"), "bad_json"),
        (ToolBehaviour(delay_s=2.0), "timeout"),
    ],
)
async def test_failed_tool_tells_the_model_and_the_turn_goes_on(
    servers: ActionServers, behaviour: ToolBehaviour, status: str, caplog: pytest.LogCaptureFixture
) -> None:
    servers.tools["check_table"] = behaviour
    box = Toolbox([http_tool(servers, timeout_s=0.2)], secret=WEBHOOK_SECRET, filler_after_s=30)
    counter = metrics.TOOL_CALLS.labels(tool="check_table", status=status)
    before = counter._value.get()
    llm = tool_llm(ToolCall("c1", "check_table", '{"date": "내일"}'), answer="죄송합니다, 지금은 확인이 어렵습니다.")
    turn = call_tools(box).turn(llm, USER)
    with caplog.at_level(logging.WARNING, logger="hanmadi.tools"):
        chunks = await run_turn(turn.stream())
    assert chunks == ["죄송합니다, 지금은 확인이 어렵습니다."]
    told = json.loads(llm.tool_requests[1][0][-1].content)
    assert told["ok"] is False and status in told["error"]
    assert turn.records[0].status == status
    assert counter._value.get() == before + 1
    assert f"tool check_table failed: {status}" in caplog.text


async def test_bad_arguments_and_unknown_tool_are_told_to_the_model(servers: ActionServers) -> None:
    box = Toolbox([http_tool(servers)], secret=WEBHOOK_SECRET, filler_after_s=30)
    llm = tool_llm(
        ToolCall("c1", "check_table", "{not json"),
        ToolCall("c2", "check_table", '{"people": 2}'),
        ToolCall("c3", "drop_tables", "{}"),
    )
    turn = call_tools(box).turn(llm, USER)
    await run_turn(turn.stream())
    assert [r.status for r in turn.records] == ["bad_arguments", "bad_arguments", "unknown_tool"]
    assert servers.tool_requests == []
    assert "missing date" in llm.tool_requests[1][0][-2].content


async def test_parallel_calls_run_together(servers: ActionServers) -> None:
    # each tool answers only once both requests have arrived: sequential calls would wait for the timeout
    servers.tools["check_table"] = ToolBehaviour(body={"n": 1}, wait_for=2)
    servers.tools["menu"] = ToolBehaviour(body={"n": 2}, wait_for=2)
    box = Toolbox(
        [http_tool(servers), http_tool(servers, name="menu", timeout_s=5)],
        secret=WEBHOOK_SECRET,
        filler_after_s=30,
    )
    llm = tool_llm(ToolCall("a", "check_table", '{"date": "내일"}'), ToolCall("b", "menu", '{"date": "내일"}'))
    turn = call_tools(box).turn(llm, USER)
    await run_turn(turn.stream())
    assert [r.status for r in turn.records] == ["ok", "ok"]
    convo = llm.tool_requests[1][0]
    assert [(m.role, m.tool_call_id, m.content) for m in convo[-2:]] == [
        ("tool", "a", '{"n": 1}'),
        ("tool", "b", '{"n": 2}'),
    ]


# --- built-ins ----------------------------------------------------------------------------------------------


async def test_end_call_speaks_the_goodbye_and_asks_the_model_no_more() -> None:
    box = Toolbox(goodbye="감사합니다. 안녕히 계세요.")
    tools = call_tools(box)
    llm = tool_llm(ToolCall("e", "end_call", "{}"))
    chunks = await run_turn(tools.turn(llm, USER).stream())
    assert chunks == ["감사합니다. 안녕히 계세요.\n"]
    assert tools.action == EndCall("감사합니다. 안녕히 계세요.")
    assert len(llm.tool_requests) == 1


async def test_collect_digits_speaks_the_prompt_then_returns_the_keys() -> None:
    tools = call_tools(Toolbox(filler_after_s=0.01))
    llm = tool_llm(ToolCall("d", "collect_digits", '{"prompt": "예약 번호 네 자리를 눌러 주세요.", "count": 4}'))
    stream = tools.turn(llm, USER).stream()
    assert await anext(stream) == "예약 번호 네 자리를 눌러 주세요.\n"  # no filler: the prompt was spoken
    assert tools.digits.active
    for key in "1234":
        assert tools.digits.push(key)
    assert [c async for c in stream] == [ANSWER]
    assert json.loads(llm.tool_requests[1][0][-1].content) == {"digits": "1234", "complete": True}
    assert not tools.digits.push("5")  # collection over: digits go to the conversation again


async def test_collect_digits_hash_ends_and_silence_times_out() -> None:
    tools = call_tools(Toolbox(filler_after_s=30))
    llm = tool_llm(ToolCall("d", "collect_digits", '{"prompt": "번호를 누르고 우물 정자를 눌러 주세요."}'))
    stream = tools.turn(llm, USER).stream()
    await anext(stream)
    for key in "010#9":
        tools.digits.push(key)
    assert [c async for c in stream] == [ANSWER]
    assert json.loads(llm.tool_requests[1][0][-1].content) == {"digits": "010", "complete": True}

    llm = tool_llm(ToolCall("d", "collect_digits", '{"prompt": "눌러 주세요.", "timeout_s": 1}'))
    turn = tools.turn(llm, USER)
    stream = turn.stream()
    await anext(stream)
    tools.digits.push("7")
    assert [c async for c in stream] == [ANSWER]
    assert json.loads(llm.tool_requests[1][0][-1].content) == {"digits": "7", "complete": False}
    assert turn.records[0].status == "timeout"


async def test_transfer_only_to_configured_numbers() -> None:
    transfers: list[tuple[str, str, str]] = []

    class Phone:
        async def transfer(self, call_sid: str, number: str, announcement: str) -> None:
            transfers.append((call_sid, number, announcement))

    box = Toolbox(
        transfer_targets=[TransferTarget("예약팀", "+8221234567")], phone=Phone(), transfer_message="연결합니다."
    )
    tools = call_tools(box)
    llm = tool_llm(ToolCall("t", "transfer_call", '{"target": "+8299999999"}'), answer="그 번호로는 연결할 수 없어요.")
    turn = tools.turn(llm, USER)
    assert await run_turn(turn.stream()) == ["그 번호로는 연결할 수 없어요."]
    assert turn.records[0].status == "refused" and transfers == [] and tools.action is None

    llm = tool_llm(ToolCall("t", "transfer_call", '{"target": "예약팀"}'))
    assert await run_turn(tools.turn(llm, USER).stream()) == []  # Twilio speaks the announcement
    assert transfers == [("CA123", "+8221234567", "연결합니다.")]
    assert tools.action == Transferred("+8221234567", "예약팀")


async def test_cancelled_turn_leaves_no_tool_task(servers: ActionServers) -> None:
    servers.tools["check_table"] = ToolBehaviour(delay_s=5)
    box = Toolbox([http_tool(servers, timeout_s=10)], secret=WEBHOOK_SECRET, filler_after_s=0.01)
    turn = call_tools(box).turn(tool_llm(ToolCall("c1", "check_table", '{"date": "내일"}')), USER)
    stream = turn.stream()
    assert await anext(stream) == FILLER + "\n"
    before = {t for t in asyncio.all_tasks() if t.get_name().startswith("tool-")}
    assert before  # the tool is running
    await stream.aclose()  # barge-in: the engine closes the stream
    await asyncio.sleep(0)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("tool-") and not t.done()]


def test_well_formed_drops_broken_tool_rounds() -> None:
    call = ToolCall("x", "menu", "{}")
    history = [
        Message("tool", "{}", tool_call_id="gone"),  # its call fell out of the window
        Message("user", "메뉴?"),
        Message("assistant", "볼게요", tool_calls=(call,)),  # its result never came (barge-in)
        Message("user", "아니요"),
    ]
    assert well_formed(history) == [Message("user", "메뉴?"), Message("assistant", "볼게요"), Message("user", "아니요")]


# --- OpenAI-compatible function calling, over the wire -----------------------------------------------------


async def test_openai_function_calling_round_trip(servers: ActionServers) -> None:
    from hanmadi.providers.openai_compat import OpenAILLM

    servers.tools["check_table"] = ToolBehaviour(body={"available": True})
    servers.tools["menu"] = ToolBehaviour(body={"special": "갈비찜"})
    servers.chat_tool_calls = [
        ("call_a", "check_table", '{"date": "내일", "people": 2}'),
        ("call_b", "menu", '{"date": "내일"}'),
    ]
    box = Toolbox([http_tool(servers), http_tool(servers, name="menu")], secret=WEBHOOK_SECRET, filler_after_s=30)
    llm = OpenAILLM(base_url=servers.base + "/v1", model="gpt-test")
    try:
        turn = call_tools(box).turn(llm, USER)
        chunks = await run_turn(turn.stream())
    finally:
        await llm.aclose()
    assert "".join(chunks) == "네, 내일 저녁 7시에 자리 있습니다."
    assert [(r.name, r.arguments, r.status) for r in turn.records] == [
        ("check_table", {"date": "내일", "people": 2}, "ok"),
        ("menu", {"date": "내일"}, "ok"),
    ]
    first, second = servers.chat_requests
    assert [t["function"]["name"] for t in first["tools"]] == ["end_call", "collect_digits", "check_table", "menu"]
    assert first["tools"][2]["function"]["parameters"]["required"] == ["date"]
    assistant, tool_a, tool_b = second["messages"][-3:]
    assert assistant["role"] == "assistant"
    assert [c["function"]["arguments"] for c in assistant["tool_calls"]] == [
        '{"date": "내일", "people": 2}',
        '{"date": "내일"}',
    ]
    assert tool_a == {"role": "tool", "tool_call_id": "call_a", "content": '{"available": true}'}
    assert tool_b == {"role": "tool", "tool_call_id": "call_b", "content": '{"special": "갈비찜"}'}


async def test_openai_plain_stream_is_unchanged(servers: ActionServers) -> None:
    from hanmadi.providers.openai_compat import OpenAILLM

    servers.chat_requests.clear()
    llm = OpenAILLM(base_url=servers.base + "/v1", model="gpt-test")
    try:
        chunks = [c async for c in llm.stream([Message("user", "안녕"), Message("tool", "{}", tool_call_id="x")])]
    finally:
        await llm.aclose()
    assert "".join(chunks) == "네, 내일 저녁 7시에 자리 있습니다."
    assert "tools" not in servers.chat_requests[-1]


# --- start-up ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tools_file": "missing.yaml"}, "cannot read it"),
        ({"webhook_url": "https://hooks.example.kr/hanmadi"}, "HANMADI_WEBHOOK_SECRET is not"),
        ({"transfer_numbers": "예약팀=02-1234"}, "is not a phone number"),
    ],
)
def test_the_server_refuses_to_start_with_a_clear_reason(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    from hanmadi.config import Settings
    from hanmadi.providers.simulated import SimulatedSTT, SimulatedTTS
    from hanmadi.server import Providers, create_app

    values = {"dev": True, "database_url": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **overrides}
    if "tools_file" in values:
        values["tools_file"] = str(tmp_path / values["tools_file"])
    settings = Settings(**values)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match=message):
        create_app(settings, providers=Providers(SimulatedSTT(), ScriptedLLM(), SimulatedTTS()))


def test_the_restaurant_example_is_a_valid_tools_file() -> None:
    path = Path(__file__).parent.parent / "examples" / "restaurant-tools.yaml"
    tools = load_tools_file(path, env={"RESTAURANT_API_KEY": "k-1", "POS_API_KEY": "p-1"})
    assert [t.name for t in tools] == [
        "check_availability",
        "book_table",
        "find_booking",
        "cancel_booking",
        "order_status",
    ]
    assert tools[0].headers == {"Authorization": "Bearer k-1"}
    box = Toolbox(tools, secret="s")
    assert box.names()[:2] == ["end_call", "collect_digits"] and len(box.specs) == 7


@pytest.mark.parametrize(
    ("text", "goodbye"),
    [
        ("네 알겠습니다 수고하세요", True),
        ("이만 끊을게요", True),
        ("안녕히 계세요", True),
        ("고맙습니다 들어가세요", True),
        ("끊지 마세요", False),
        ("지금 끊어요?", False),
        ("예약하고 싶어요", False),
        ("아직 안 끊었어요", False),
    ],
)
def test_caller_goodbye_rule(text: str, goodbye: bool) -> None:
    from hanmadi.tools import caller_says_goodbye

    assert caller_says_goodbye(text) is goodbye
