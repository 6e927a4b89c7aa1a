"""Loopback servers for the actions tests: the business's tools and webhook receiver, and Twilio's REST API.

One Starlette app under uvicorn, on its own event loop in a background thread (a client that blocks its loop shows
up as a failure, not a deadlock). Wire formats as documented:

- tools: ``POST /tools/{name}`` with the signed JSON envelope; the test picks each tool's behaviour (answer, delay,
  status, garbage, a wait for parallel calls).
- webhooks: ``POST /hooks`` — recorded with their headers; ``down`` makes it answer 503.
- Twilio REST: ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (create, form-encoded) and
  ``…/Calls/{CallSid}.json`` (update: ``Twiml``, ``Status=completed``), JSON call resources back, HTTP Basic auth
  checked; every request is recorded. A created call can be *answered* by the test through ``on_create``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hanmadi.net import free_port
from hanmadi.signing import verify_body

WEBHOOK_SECRET = "whsec-test-0123456789"
ACCOUNT_SID = "AC" + "0" * 32
TWILIO_TOKEN = "twilio-test-token-abcdef"


@dataclass
class ToolBehaviour:
    """What a tool endpoint does: wait ``delay_s``, then answer ``status`` with ``body`` (JSON unless bytes).

    ``wait_for`` holds the answer until that many requests to any tool have arrived (parallel calls).
    """

    body: Any = field(default_factory=lambda: {"ok": True})
    status: int = 200
    delay_s: float = 0.0
    wait_for: int = 0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class ActionServers:
    """The loopback servers; ``base`` is their http://127.0.0.1:port."""

    def __init__(self) -> None:
        self.tools: dict[str, ToolBehaviour] = {}
        self.tool_requests: list[Seen] = []
        self.hooks: list[Seen] = []
        self.hooks_down = False
        self.rest: list[Seen] = []
        self.rest_fail_status: int | None = None
        self.twilio_token = TWILIO_TOKEN  # the auth token the Calls resource accepts
        self.on_create: Callable[[dict[str, str]], None] | None = None
        self.chat_requests: list[dict[str, Any]] = []
        self.chat_tool_calls: list[tuple[str, str, str]] = []
        self._arrived = 0
        self._arrival: asyncio.Event | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tool_url(self, name: str) -> str:
        return f"{self.base}/tools/{name}"

    # --- handlers (run on the server's loop) --------------------------------------------------------------

    async def _tool(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        self.tool_requests.append(Seen(request.url.path, dict(request.headers), body))
        self._arrived += 1
        if self._arrival is None:
            self._arrival = asyncio.Event()
        self._arrival.set()
        behaviour = self.tools.get(name, ToolBehaviour())
        while self._arrived < behaviour.wait_for:
            self._arrival.clear()
            await self._arrival.wait()
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if isinstance(behaviour.body, bytes):
            return Response(behaviour.body, status_code=behaviour.status, media_type="application/json")
        return JSONResponse(behaviour.body, status_code=behaviour.status)

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        if self.hooks_down:
            return Response("down", status_code=503)
        if not verify_body(WEBHOOK_SECRET, body, request.headers.get("x-hanmadi-signature", "")):
            return Response("bad signature", status_code=401)
        self.hooks.append(Seen(request.url.path, dict(request.headers), body))
        return Response(status_code=204)

    def _authorized(self, request: Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{self.twilio_token}".encode()).decode()
        return request.headers.get("authorization") == expected

    async def _calls(self, request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        self.rest.append(Seen(request.url.path, dict(request.headers), b"", form))
        if not self._authorized(request):
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        if request.path_params["account"] != ACCOUNT_SID:
            return JSONResponse({"code": 20404, "message": "not found", "status": 404}, status_code=404)
        if self.rest_fail_status is not None:
            status = self.rest_fail_status
            return JSONResponse({"code": 20500, "message": "failure", "status": status}, status_code=status)
        call_sid = request.path_params.get("call") or "CA" + secrets.token_hex(16)
        if self.on_create is not None and "call" not in request.path_params:
            self.on_create({**form, "CallSid": call_sid})
        resource = {
            "sid": call_sid,
            "account_sid": ACCOUNT_SID,
            "to": form.get("To", "+821000000000"),
            "from": form.get("From", "+8225550100"),
            "status": form.get("Status", "queued"),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call_sid}.json",
        }
        return JSONResponse(resource, status_code=200 if "call" in request.path_params else 201)

    async def _chat(self, request: Request) -> Response:
        """OpenAI chat completions, streamed: tool-call deltas when no tool result is in the conversation yet."""
        body = await request.json()
        self.chat_requests.append(body)
        answered = any(m.get("role") == "tool" for m in body["messages"])
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return "data: " + json.dumps({**base, "choices": [choice]}, ensure_ascii=False) + "\n\n"

        if answered:
            parts = [chunk({"role": "assistant", "content": ""})]
            parts += [chunk({"content": t}) for t in ("네, 내일 ", "저녁 7시에 ", "자리 있습니다.")]
            parts.append(chunk({}, "stop"))
        else:
            # two parallel calls, each streamed in pieces: id+name first, then the arguments in fragments
            parts = [chunk({"role": "assistant", "content": None})]
            for index, (call_id, name, args) in enumerate(self.chat_tool_calls):
                first = {"index": index, "id": call_id, "type": "function", "function": {"name": name}}
                parts.append(chunk({"tool_calls": [{**first, "function": {**first["function"], "arguments": ""}}]}))
                for k in range(0, len(args), 7):
                    piece = {"index": index, "function": {"arguments": args[k : k + 7]}}
                    parts.append(chunk({"tool_calls": [piece]}))
            parts.append(chunk({}, "tool_calls"))
        parts.append("data: [DONE]\n\n")
        return Response("".join(parts), media_type="text/event-stream")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/tools/{name}", self._tool, methods=["POST", "PUT", "PATCH"]),
                Route("/hooks", self._hook, methods=["POST"]),
                Route("/2010-04-01/Accounts/{account}/Calls.json", self._calls, methods=["POST"]),
                Route("/2010-04-01/Accounts/{account}/Calls/{call}.json", self._calls, methods=["POST"]),
            ]
        )

    # --- lifetime -----------------------------------------------------------------------------------------

    def start(self, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)

        def run() -> None:
            assert self._server is not None
            asyncio.run(self._server.serve())

        self._thread = threading.Thread(target=run, name="action-servers", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("action servers did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None


@contextlib.contextmanager
def action_servers() -> Iterator[ActionServers]:
    servers = ActionServers()
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()
