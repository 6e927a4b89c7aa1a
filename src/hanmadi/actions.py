"""The server's side of the agent's actions: tools, phone control, outbound calls, call webhooks.

:class:`Actions` is built once from the settings at start-up (a bad tools file, a webhook URL without a secret, a
transfer number that is not a number: the server refuses to start with the reason) and lives for the server's
lifetime (:meth:`Actions.running` owns the webhook dispatcher task and closes the HTTP clients). It hands each call
its :class:`~hanmadi.tools.CallTools`, remembers the outbound calls it placed until their stream starts, and
answers the ``/api`` routes that place calls and show webhook deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field, field_validator

from hanmadi.config import Settings
from hanmadi.store import outbox
from hanmadi.store.writer import Recorder
from hanmadi.telephony.rest import TwilioRest, TwilioRestError
from hanmadi.tools import CallTools, Toolbox, ToolsFileError

log = logging.getLogger("hanmadi.actions")

VOICE_PATH = "/twilio/voice"
AMD_PATH = "/twilio/amd"
# An outbound call's context is forgotten if its stream has not started within this long.
_OUTBOUND_TTL_S = 600.0
_NUMBER = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass
class OutboundCall:
    """A call we placed: where to, and what the agent should know (``context``, added to its system prompt)."""

    to: str
    from_: str
    context: dict[str, str]
    placed_at: float = field(default_factory=time.monotonic)
    answered_by: str | None = None  # AMD may answer before the stream starts


class ActionsError(Exception):
    """The actions cannot be set up from the settings; the message says which setting and why."""


class Actions:
    """Tools, Twilio REST, outbound calls and the webhook dispatcher of one server process."""

    def __init__(self, settings: Settings, recorder: Recorder | None) -> None:
        self.settings = settings
        self.rest = TwilioRest.from_settings(settings)
        try:
            self.toolbox = Toolbox.from_settings(settings, phone=self.rest)
        except ToolsFileError as exc:
            raise ActionsError(str(exc)) from exc
        self.recorder = recorder
        self.outbound: dict[str, OutboundCall] = {}
        self.dispatcher: outbox.WebhookDispatcher | None = None
        if settings.webhook_url:
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
            if not secret:
                raise ActionsError("HANMADI_WEBHOOK_URL is set but HANMADI_WEBHOOK_SECRET is not: webhooks are signed")
            if recorder is None:
                raise ActionsError("HANMADI_WEBHOOK_URL needs the call records (the outbox lives in the database)")
            recorder.in_transaction = outbox.record_events
            self.dispatcher = outbox.WebhookDispatcher(recorder.session, settings.webhook_url, secret)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The server's lifetime: the webhook dispatcher runs, the HTTP clients are closed at the end."""
        task = asyncio.create_task(self.dispatcher.run(), name="hanmadi-webhooks") if self.dispatcher else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            for close in (
                self.dispatcher.aclose if self.dispatcher else None,
                self.toolbox.aclose,
                self.rest.aclose if self.rest else None,
            ):
                if close is not None:
                    try:
                        await close()
                    except Exception as exc:  # one client failing to close must not keep the others open
                        log.warning("actions: a client did not close cleanly: %s", exc)

    def call_tools(self, call_sid: str, from_number: str, to_number: str) -> CallTools:
        """The tools' side of one new call."""
        return CallTools(self.toolbox, call_sid=call_sid, from_number=from_number, to_number=to_number)

    def take_outbound(self, call_sid: str) -> OutboundCall | None:
        """The outbound call whose stream is starting (forgotten here: the session carries it from now on)."""
        now = time.monotonic()
        for sid in [sid for sid, c in self.outbound.items() if now - c.placed_at > _OUTBOUND_TTL_S]:
            del self.outbound[sid]
        return self.outbound.pop(call_sid, None)

    def note_answered_by(self, call_sid: str, answered_by: str) -> bool:
        """AMD answered before the stream started: keep it for the session; False for a call we did not place."""
        call = self.outbound.get(call_sid)
        if call is None:
            return False
        call.answered_by = answered_by
        return True

    async def dial(self, to: str, from_: str, context: dict[str, str]) -> str:
        """Place an outbound call through Twilio (answered by our voice webhook, with async AMD); its CallSid."""
        if self.rest is None:
            raise ActionsError("outbound calls need HANMADI_TWILIO_ACCOUNT_SID and HANMADI_TWILIO_AUTH_TOKEN")
        base = self.settings.public_url
        if not base:
            raise ActionsError("outbound calls need HANMADI_PUBLIC_URL: Twilio fetches our webhook from it")
        caller_id = from_ or self.settings.twilio_from_number
        if not caller_id:
            raise ActionsError("no caller ID: pass from, or set HANMADI_TWILIO_FROM_NUMBER")
        call_sid = await self.rest.create_call(
            to=to, from_=caller_id, url=base + VOICE_PATH, amd_callback=base + AMD_PATH
        )
        self.outbound[call_sid] = OutboundCall(to, caller_id, context)
        log.info("outbound call %s placed", call_sid)
        return call_sid

    def add_routes(self, router: APIRouter) -> None:
        """``POST /api/calls`` (place a call), ``GET /api/webhooks``, ``POST /api/webhooks/{id}/retry``."""

        @router.post("/calls", status_code=status.HTTP_201_CREATED, summary="Place an outbound call")
        async def place_call(body: DialIn) -> DialOut:
            try:
                call_sid = await self.dial(body.to, body.from_ or "", body.context)
            except ActionsError as exc:
                raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
            except TwilioRestError as exc:
                raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from exc
            return DialOut(call_sid=call_sid)

        @router.get("/webhooks", summary="Webhook deliveries (pending, failed, delivered)", tags=["webhooks"])
        async def list_webhooks(
            status_: Annotated[str | None, Query(alias="status", pattern="^(pending|failed|delivered)$")] = None,
            limit: Annotated[int, Query(ge=1, le=500)] = 100,
        ) -> WebhooksOut:
            if self.recorder is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no call records")
            async with self.recorder.session() as session:
                items = await outbox.list_deliveries(session, status_, limit)
                counts = await outbox.delivery_counts(session)
            return WebhooksOut(
                url=self.settings.webhook_url or None,
                counts=counts,
                items=items,
            )

        @router.post(
            "/webhooks/{delivery_id}/retry",
            status_code=status.HTTP_202_ACCEPTED,
            summary="Retry a failed delivery now",
            tags=["webhooks"],
        )
        async def retry_webhook(delivery_id: str) -> dict[str, str]:
            if self.recorder is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no call records")
            async with self.recorder.session() as session:
                found = await outbox.retry_delivery(session, delivery_id)
                await session.commit()
            if not found:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no failed delivery with this id")
            if self.dispatcher is not None:
                self.dispatcher.wake()
            return {"delivery_id": delivery_id, "status": "pending"}


class DialIn(BaseModel):
    """``POST /api/calls``: the number to call (E.164), our caller ID, what the agent should know."""

    to: str
    from_: str | None = Field(None, alias="from")
    context: dict[str, str] = Field(default_factory=dict, max_length=20)

    @field_validator("to", "from_")
    @classmethod
    def _e164(cls, v: str | None) -> str | None:
        if v is not None and not _NUMBER.match(v):
            raise ValueError("must be an E.164 number such as +821012345678")
        return v


class DialOut(BaseModel):
    call_sid: str


class WebhooksOut(BaseModel):
    url: str | None
    counts: dict[str, int]
    items: list[outbox.Delivery]


def parse_context(pairs: list[str]) -> dict[str, Any]:
    """``["name=김민수", "order=A-12"]`` → ``{"name": "김민수", "order": "A-12"}`` (for ``hanmadi dial --context``)."""
    context: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--context {pair!r}: expected key=value")
        context[key.strip()] = value.strip()
    return context
