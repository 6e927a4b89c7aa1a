"""Tools: what the agent can *do* during a call — the business's HTTP tools and the built-in phone actions.

- :func:`load_tools_file` reads ``HANMADI_TOOLS_FILE`` (YAML or JSON) and validates it at start-up.
- :class:`Toolbox` (one per server) holds the tools, their :class:`ToolSpec` for the model, the HTTP client and the
  phone control (Twilio REST) the built-ins need.
- :class:`CallTools` (one per call) holds the keypad collector and the call-level outcome of the tools (the agent
  hung up, the caller was transferred); :meth:`CallTools.turn` makes one :class:`ToolTurn`.
- :class:`ToolTurn` is one turn's answer as text for the engine: the model's text streams through as before; when
  the model calls tools they run in parallel, a filler is spoken if they are slow, and the model's next round —
  the answer built on the results — streams after it, in the same reply, so there is no gap and no overlap.

An HTTP tool call is ``POST url`` with the JSON body ``{"call_sid", "from", "to", "tool", "arguments"}`` signed
``X-Hanmadi-Signature: sha256=<hex HMAC-SHA256 of the body>``; the JSON answer goes back to the model. A timeout,
an error status or a body that is not JSON tells the model the tool failed; the call goes on (metric + log line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hanmadi import metrics
from hanmadi.engine.timeline import Timeline
from hanmadi.providers.base import LLM, Message, ToolCall, ToolCallingLLM, ToolSpec, stall_guard
from hanmadi.signing import SIGNATURE_HEADER, sign_body

log = logging.getLogger("hanmadi.tools")

DEFAULT_FILLER = "잠시만요, 확인해 보겠습니다."
BUILTINS = ("end_call", "transfer_call", "collect_digits")
# Rounds of tool calls in one turn; the last round is offered no tools, so the model must answer in words.
MAX_TOOL_ROUNDS = 4
# A tool answer bigger than this is refused: it would not fit a phone answer's prompt anyway.
MAX_RESULT_BYTES = 64 * 1024
DIGITS_TIMEOUT_S = 10.0
MAX_DIGITS = 32

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# How Korean callers take their leave. For a model that cannot call end_call (the embedded base model), the agent
# ends the call itself when the caller's words say this — and not as a question or a "don't".
_GOODBYE = re.compile(
    r"안녕히\s*(계세요|계십시오|가세요)|수고\s*(하세요|하십시오|하셨습니다|많으셨습니다)|들어가세요"
    r"|끊(을게요|을께요|을게|겠습니다|겠어요|습니다|어요)"
)
_NOT_GOODBYE = re.compile(r"[?？]|마세요|말고|않|못|안\s*끊")


class ToolsFileError(Exception):
    """The tools file (or the settings the tools need) is invalid; the message says where and why."""


# --- the tools file ---------------------------------------------------------------------------------------------


class HttpTool(BaseModel):
    """One HTTP tool of the business, as written in the tools file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    url: str
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    timeout_s: float = Field(5.0, gt=0, le=120)
    headers: dict[str, str] = Field(default_factory=dict)
    filler: str = ""

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return v

    @field_validator("parameters")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_parameters_schema(v)


class _ToolsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tools: list[HttpTool]


def check_parameters_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The structural rules a model's function ``parameters`` must follow (a JSON Schema object)."""
    if schema.get("type") != "object":
        raise ValueError('must be a JSON Schema object: {"type": "object", "properties": {…}}')
    properties = schema.get("properties", {})
    if not isinstance(properties, dict) or not all(isinstance(p, dict) for p in properties.values()):
        raise ValueError("properties must map each argument name to a JSON Schema")
    for name, prop in properties.items():
        if "type" not in prop and "enum" not in prop and "anyOf" not in prop:
            raise ValueError(f"property {name!r} needs a type (or enum/anyOf)")
    required = schema.get("required", [])
    if not isinstance(required, list) or any(r not in properties for r in required):
        raise ValueError("required must list names defined in properties")
    return schema


def _expand_env(value: str, where: str, env: Mapping[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ToolsFileError(f"{where} names ${{{name}}}, which is not set in the environment")
        return env[name]

    return _ENV_REF.sub(sub, value)


def load_tools_file(path: Path, env: Mapping[str, str] | None = None) -> list[HttpTool]:
    """Read and validate a tools file: ``tools:`` (or a top-level list) of :class:`HttpTool`.

    Header values may name environment variables as ``${NAME}``; they are expanded here, so a missing secret
    fails at start-up, not in the middle of a call. Raises :class:`ToolsFileError` with the place of the error.
    """
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ToolsFileError(f"tools file {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ToolsFileError(f"tools file {path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if isinstance(data, list):
        data = {"tools": data}
    try:
        parsed = _ToolsFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ToolsFileError(f"tools file {path}: {problems}") from None
    seen: set[str] = set()
    tools: list[HttpTool] = []
    for i, tool in enumerate(parsed.tools):
        if tool.name in seen:
            raise ToolsFileError(f"tools file {path}: tools.{i}: the name {tool.name!r} is used twice")
        seen.add(tool.name)
        headers = {
            k: _expand_env(v, f"tools file {path}: tools.{i} ({tool.name}) header {k}", env)
            for k, v in tool.headers.items()
        }
        tools.append(tool.model_copy(update={"headers": headers}))
    return tools


# --- phone control (implemented by telephony.rest) --------------------------------------------------------------


class PhoneControl(Protocol):
    """What the built-ins need of the telephony provider's REST API."""

    async def transfer(self, call_sid: str, number: str, announcement: str) -> None:
        """Hand the live call to ``number`` after ``announcement`` is spoken; raise on failure."""
        ...


@dataclass(frozen=True, slots=True)
class TransferTarget:
    """A number ``transfer_call`` may dial; ``label`` is how the model names it (the number itself if unlabelled)."""

    label: str
    number: str


def parse_transfer_targets(entries: Sequence[str]) -> list[TransferTarget]:
    """``["예약팀=+8221234567", "+8227654321"]`` → targets; a number must look like E.164 (or a SIP URI)."""
    targets: list[TransferTarget] = []
    for entry in entries:
        label, sep, number = entry.partition("=")
        if not sep:
            label, number = entry, entry
        label, number = label.strip(), number.strip()
        if not (re.fullmatch(r"\+?[0-9]{3,15}", number) or number.startswith("sip:")):
            raise ToolsFileError(f"HANMADI_TRANSFER_NUMBERS: {entry!r} is not a phone number (+8221234567)")
        targets.append(TransferTarget(label, number))
    return targets


# --- what a tool call leaves behind --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndCall:
    """The agent decided to end the call: ``goodbye`` is spoken, then the call hangs up once it has played."""

    goodbye: str


@dataclass(frozen=True, slots=True)
class Transferred:
    """The live call was handed to ``number`` (Twilio now plays the announcement and dials)."""

    number: str
    label: str


CallAction = EndCall | Transferred


@dataclass
class ToolCallRecord:
    """One tool call of a turn, as the turn's record keeps it."""

    id: str
    name: str
    arguments: Any
    status: str = "pending"
    duration_s: float | None = None
    t_start: float | None = None  # seconds on the turn's timeline
    filler: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "id": self.id,
            "name": self.name,
            "arguments": self.arguments,
            "status": self.status,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "t_start": None if self.t_start is None else round(self.t_start, 3),
            "filler": self.filler,
        }


class DigitCollector:
    """Keypad digits for ``collect_digits``: while a collection runs, the call's DTMF goes here, not to the model."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] | None = None

    @property
    def active(self) -> bool:
        return self._queue is not None

    def push(self, digit: str) -> bool:
        """Offer a pressed key; False when no collection is running (the digit goes to the conversation)."""
        if self._queue is None:
            return False
        self._queue.put_nowait(digit)
        return True

    def open(self) -> bool:
        """Start listening for keys now (before the prompt is spoken); False if a collection is already open."""
        if self._queue is not None:
            return False
        self._queue = asyncio.Queue()
        return True

    def close(self) -> None:
        self._queue = None

    async def collect(self, count: int | None, timeout_s: float) -> tuple[str, bool]:
        """Digits until ``count`` of them or ``#``; ``timeout_s`` without a key press ends early.

        Opens the collection unless :meth:`open` already did. Returns ``(digits, complete)``; ``complete`` is False
        when the time ran out.
        """
        if self._queue is None:
            self.open()
        queue = self._queue
        assert queue is not None
        digits = ""
        try:
            while count is None or len(digits) < count:
                try:
                    async with asyncio.timeout(timeout_s):
                        key = await queue.get()
                except TimeoutError:
                    return digits, False
                if key == "#":
                    return digits, True
                if key.isdigit() or key == "*":
                    digits += key
            return digits, True
        finally:
            self.close()


# --- the toolbox (one per server) ------------------------------------------------------------------------------


class Toolbox:
    """The tools offered to the model, and what runs them: the HTTP client, the signing key, the phone control."""

    def __init__(
        self,
        http_tools: Sequence[HttpTool] = (),
        *,
        builtins: Sequence[str] = BUILTINS,
        transfer_targets: Sequence[TransferTarget] = (),
        phone: PhoneControl | None = None,
        secret: str = "",
        filler: str = DEFAULT_FILLER,
        filler_after_s: float = 0.3,
        goodbye: str = "",
        transfer_message: str = "",
        llm_timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.http_tools = {t.name: t for t in http_tools}
        clash = set(self.http_tools) & set(builtins)
        if clash:
            raise ToolsFileError(f"tool name(s) {sorted(clash)} are built-ins: rename them or turn the built-in off")
        if self.http_tools and not secret:
            raise ToolsFileError("HANMADI_WEBHOOK_SECRET is required: every tool call is signed with it")
        self.transfer_targets = list(transfer_targets)
        self.phone = phone
        # transfer_call is offered only when it can work: somewhere to send the caller and a REST API to do it
        self.builtins = [
            b for b in builtins if b != "transfer_call" or (self.transfer_targets and self.phone is not None)
        ]
        self.secret = secret
        self.filler = filler or DEFAULT_FILLER
        self.filler_after_s = filler_after_s
        self.goodbye = goodbye
        self.transfer_message = transfer_message
        self.llm_timeout_s = llm_timeout_s
        self._client = client or httpx.AsyncClient(timeout=None, follow_redirects=False)
        self.specs = [*(_builtin_spec(b, self.transfer_targets) for b in self.builtins), *map(_http_spec, http_tools)]

    @classmethod
    def from_settings(cls, settings: Any, phone: PhoneControl | None = None) -> Toolbox:
        """The server's toolbox: the tools file (validated now), the enabled built-ins, the transfer numbers."""
        http_tools = load_tools_file(settings.tools_file) if settings.tools_file else []
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
        return cls(
            http_tools,
            builtins=settings.builtin_tools,
            transfer_targets=parse_transfer_targets(settings.transfer_numbers),
            phone=phone,
            secret=secret,
            filler=settings.tool_filler,
            filler_after_s=settings.tool_filler_after_ms / 1000,
            goodbye=settings.goodbye,
            transfer_message=settings.transfer_message,
            llm_timeout_s=settings.llm_timeout_s,
        )

    @property
    def enabled(self) -> bool:
        """Any tool to offer."""
        return bool(self.specs)

    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call_http(self, tool: HttpTool, envelope: dict[str, Any]) -> tuple[str, str]:
        """POST the signed envelope; return ``(status, content for the model)``."""
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "hanmadi-tools",
            SIGNATURE_HEADER: sign_body(self.secret, body),
            **tool.headers,
        }
        try:
            async with asyncio.timeout(tool.timeout_s):
                response = await self._client.request(tool.method, tool.url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return _failed("timeout", f"no answer within {tool.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return _failed("connect", f"{type(exc).__name__}: {exc}")
        if not 200 <= response.status_code < 300:
            family = "http_5xx" if response.status_code >= 500 else "http_4xx"
            return _failed(family, f"HTTP {response.status_code}")
        if len(response.content) > MAX_RESULT_BYTES:
            return _failed("too_large", f"{len(response.content)} bytes")
        try:
            value = json.loads(response.content)
        except ValueError:
            return _failed("bad_json", "the answer is not JSON")
        return "ok", json.dumps(value, ensure_ascii=False)


def _failed(status: str, detail: str) -> tuple[str, str]:
    message = {"ok": False, "error": f"the tool failed ({status}: {detail})", "hint": "tell the caller it failed"}
    return status, json.dumps(message, ensure_ascii=False)


def _http_spec(tool: HttpTool) -> ToolSpec:
    return ToolSpec(tool.name, tool.description, tool.parameters)


def _builtin_spec(name: str, targets: Sequence[TransferTarget]) -> ToolSpec:
    if name == "end_call":
        return ToolSpec(
            "end_call",
            "End the phone call when the caller is done or says goodbye. Say nothing else; the goodbye is spoken "
            "for you.",
            {
                "type": "object",
                "properties": {"goodbye": {"type": "string", "description": "short Korean goodbye (optional)"}},
            },
        )
    if name == "transfer_call":
        return ToolSpec(
            "transfer_call",
            "Transfer the caller to a person when they ask for one or you cannot help.",
            {
                "type": "object",
                "properties": {
                    "target": {"type": "string", "enum": [t.label for t in targets], "description": "who to call"},
                    "reason": {"type": "string", "description": "why, in a few words"},
                },
                "required": ["target"],
            },
        )
    return ToolSpec(
        "collect_digits",
        "Ask the caller to type digits on the keypad (phone number, reservation number, PIN). Returns the digits.",
        {
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "description": "what to say first, in Korean"},
                "count": {"type": "integer", "minimum": 1, "maximum": MAX_DIGITS, "description": "digits to wait for"},
                "timeout_s": {"type": "number", "minimum": 1, "maximum": 60},
            },
            "required": ["prompt"],
        },
    )


# --- one call, one turn --------------------------------------------------------------------------------------


class CallTools:
    """The tools' side of one call: the keypad collector and what the tools did to the call."""

    def __init__(self, toolbox: Toolbox, *, call_sid: str, from_number: str = "", to_number: str = "") -> None:
        self.toolbox = toolbox
        self.call_sid = call_sid
        self.from_number = from_number
        self.to_number = to_number
        self.digits = DigitCollector()
        self.action: CallAction | None = None

    def turn(self, llm: ToolCallingLLM, messages: Sequence[Message]) -> ToolTurn:
        """One turn's answer with tools (iterate :meth:`ToolTurn.stream`)."""
        return ToolTurn(self, llm, messages)

    def answer_with(self, llm: LLM) -> ToolCallingLLM | None:
        """``llm`` when the call's answers run tools: some are configured and the model can call them (the local
        base model cannot); else None."""
        return llm if self.toolbox.enabled and isinstance(llm, ToolCallingLLM) else None

    def goodbye_rule(self, llm: LLM, text: str) -> bool:
        """end_call for a model that cannot call it: the caller clearly said goodbye (:func:`caller_says_goodbye`)."""
        return "end_call" in self.toolbox.builtins and not isinstance(llm, ToolCallingLLM) and caller_says_goodbye(text)


@dataclass
class ToolTurn:
    """One turn's answer with tools, as text for the engine (see the module docstring).

    ``timeline`` (set before the stream starts) receives ``tool_start``/``tool_end``; ``records`` keeps every call;
    ``exchange`` the complete rounds (the assistant's calls and their results) for the conversation history.
    """

    call: CallTools
    llm: ToolCallingLLM
    messages: Sequence[Message]
    timeline: Timeline | None = None
    records: list[ToolCallRecord] = field(default_factory=list)
    exchange: list[Message] = field(default_factory=list)

    async def stream(self) -> AsyncGenerator[str, None]:
        box = self.call.toolbox
        convo = well_formed(self.messages)
        for round_index in range(MAX_TOOL_ROUNDS):
            offered = box.specs if round_index < MAX_TOOL_ROUNDS - 1 else []
            said: list[str] = []
            calls: list[ToolCall] = []
            model = stall_guard(self.llm.stream_with_tools(convo, offered), box.llm_timeout_s, self.llm.name)
            async with contextlib.aclosing(model):
                async for item in model:
                    if isinstance(item, ToolCall):
                        calls.append(item)
                    elif item:
                        said.append(item)
                        yield item
            if not calls:
                return
            text = "".join(said).strip()
            if text:
                yield "\n"  # what the model said before calling is a sentence of its own
            results: dict[str, str] = {}
            speeches = self._run(calls, spoke=bool(text), results=results)
            async with contextlib.aclosing(speeches):  # a barge-in closes this stream: the tools stop with it
                async for speech in speeches:
                    yield speech
            round_messages = [
                Message("assistant", text, tool_calls=tuple(calls)),
                *(Message("tool", results[c.id], tool_call_id=c.id) for c in calls),
            ]
            convo.extend(round_messages)
            self.exchange.extend(round_messages)
            action = self.call.action
            if isinstance(action, EndCall):
                yield action.goodbye + "\n"
                return
            if isinstance(action, Transferred):
                return  # the call is leaving: Twilio speaks the announcement and dials

    async def _run(self, calls: list[ToolCall], *, spoke: bool, results: dict[str, str]) -> AsyncGenerator[str, None]:
        """Run ``calls`` in parallel; yield the prompts to speak, and the filler if they are slow."""
        box = self.call.toolbox
        records = [ToolCallRecord(c.id, c.name, _arguments_for_record(c.arguments)) for c in calls]
        self.records.extend(records)
        # keys pressed while the prompt plays count: the collection opens before it is spoken (one at a time)
        collecting = {c.id for c in calls if c.name == "collect_digits" and self.call.digits.open()}
        tasks = [
            asyncio.create_task(self._execute(c, r, c.id in collecting), name=f"tool-{c.name}:{self.call.call_sid}")
            for c, r in zip(calls, records, strict=True)
        ]
        try:
            for c in calls:
                prompt = _digits_prompt(c) if c.id in collecting else ""
                if prompt:
                    spoke = True
                    yield prompt + "\n"
            _, pending = await asyncio.wait(tasks, timeout=box.filler_after_s)
            if pending and not spoke:
                slow = next(r for t, r in zip(tasks, records, strict=True) if t in pending)
                tool = box.http_tools.get(slow.name)
                slow.filler = True
                metrics.TOOL_FILLERS.inc()
                yield ((tool.filler if tool and tool.filler else "") or box.filler) + "\n"
            await asyncio.wait(tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if collecting:
                self.call.digits.close()
        for c, task in zip(calls, tasks, strict=True):
            results[c.id] = task.result()

    async def _execute(self, call: ToolCall, record: ToolCallRecord, collecting: bool = False) -> str:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.timeline is not None:
            record.t_start = self.timeline.emit("tool_start", text=call.name).t
        try:
            status, content = await self._dispatch(call, collecting)
        except Exception:  # a bug in a tool path must not end the call; the model hears it failed
            log.exception("call %s: tool %s crashed", self.call.call_sid, call.name)
            status, content = _failed("error", "internal error")
        record.status = status
        record.duration_s = loop.time() - started
        label = call.name if call.name in self.call.toolbox.names() else "unknown"
        metrics.TOOL_CALLS.labels(tool=label, status=status).inc()
        metrics.TOOL_SECONDS.labels(tool=label).observe(record.duration_s)
        if status != "ok":
            log.warning(
                "call %s: tool %s failed: %s (%.2f s)", self.call.call_sid, call.name, status, record.duration_s
            )
        else:
            log.info("call %s: tool %s ok (%.2f s)", self.call.call_sid, call.name, record.duration_s)
        if self.timeline is not None:
            self.timeline.emit("tool_end", text=call.name, reason=status, duration_s=record.duration_s)
        return content

    async def _dispatch(self, call: ToolCall, collecting: bool) -> tuple[str, str]:
        box = self.call.toolbox
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            return _failed("bad_arguments", "the arguments are not JSON")
        if not isinstance(arguments, dict):
            return _failed("bad_arguments", "the arguments are not a JSON object")
        if call.name not in box.names():
            return _failed("unknown_tool", f"there is no tool named {call.name!r}")
        spec = next(s for s in box.specs if s.name == call.name)
        missing = [r for r in spec.parameters.get("required", []) if r not in arguments]
        if missing:
            return _failed("bad_arguments", f"missing {', '.join(missing)}")
        if call.name == "end_call":
            goodbye = str(arguments.get("goodbye") or "").strip() or box.goodbye
            self.call.action = self.call.action or EndCall(goodbye)
            return "ok", json.dumps({"ok": True, "ending": True})
        if call.name == "transfer_call":
            return await self._transfer(str(arguments.get("target", "")))
        if call.name == "collect_digits":
            if not collecting:
                return _failed("busy", "another digit collection is running")
            return await self._collect(arguments)
        envelope = {
            "call_sid": self.call.call_sid,
            "from": self.call.from_number,
            "to": self.call.to_number,
            "tool": call.name,
            "arguments": arguments,
        }
        return await box.call_http(box.http_tools[call.name], envelope)

    async def _transfer(self, target: str) -> tuple[str, str]:
        box = self.call.toolbox
        match = next((t for t in box.transfer_targets if target in (t.label, t.number)), None)
        if match is None:
            allowed = ", ".join(t.label for t in box.transfer_targets)
            return _failed("refused", f"{target!r} is not a transfer target (allowed: {allowed})")
        if box.phone is None:
            return _failed("unavailable", "no phone control configured")
        try:
            await box.phone.transfer(self.call.call_sid, match.number, box.transfer_message)
        except Exception as exc:
            log.warning("call %s: transfer to %s failed: %s", self.call.call_sid, match.label, exc)
            return _failed("transfer_failed", str(exc)[:200])
        self.call.action = Transferred(match.number, match.label)
        return "ok", json.dumps({"ok": True, "transferred_to": match.label}, ensure_ascii=False)

    async def _collect(self, arguments: dict[str, Any]) -> tuple[str, str]:
        count = arguments.get("count")
        count = int(count) if isinstance(count, int | float) and 1 <= count <= MAX_DIGITS else None
        timeout = arguments.get("timeout_s")
        timeout_s = float(timeout) if isinstance(timeout, int | float) and 1 <= timeout <= 60 else DIGITS_TIMEOUT_S
        digits, complete = await self.call.digits.collect(count, timeout_s)
        return ("ok" if complete else "timeout"), json.dumps({"digits": digits, "complete": complete})


def caller_says_goodbye(text: str) -> bool:
    """The caller's words end the call: "네 수고하세요", "이만 끊을게요", "안녕히 계세요" (not "끊지 마세요?")."""
    return bool(_GOODBYE.search(text)) and not _NOT_GOODBYE.search(text)


def _digits_prompt(call: ToolCall) -> str:
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        return ""
    prompt = arguments.get("prompt") if isinstance(arguments, dict) else None
    return prompt.strip() if isinstance(prompt, str) else ""


def _arguments_for_record(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return arguments


def well_formed(messages: Sequence[Message]) -> list[Message]:
    """The conversation without broken tool exchanges (which chat APIs refuse).

    A history window can start in the middle of a tool round: a ``tool`` message whose call is not in the
    conversation, or an assistant call without all its results, is dropped.
    """
    answered = {m.tool_call_id for m in messages if m.role == "tool"}
    out: list[Message] = []
    open_calls: set[str] = set()
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            if not all(c.id in answered for c in m.tool_calls):
                if m.content:
                    out.append(Message("assistant", m.content))
                continue
            open_calls |= {c.id for c in m.tool_calls}
        elif m.role == "tool" and m.tool_call_id not in open_calls:
            continue
        out.append(m)
    return out
