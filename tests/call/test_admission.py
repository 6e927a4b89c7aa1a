"""Admission counts a call from its webhook to its hang-up (reproducer p8)."""

from __future__ import annotations

import asyncio

import httpx
from call_harness import call_settings

from hanmadi.server import create_app
from loopback_support import twilio_signature

BASE = "http://hanmadi.test"


async def test_a_burst_of_signed_webhooks_admits_only_max_calls() -> None:
    """p8: a call joined the count only when its stream started: 10 of 10 webhooks got <Connect><Stream>."""
    settings = call_settings(max_calls=1, dev=False, twilio_auth_token="tok", public_url=BASE)
    app = create_app(settings, use_recorder=False)

    async def webhook(client: httpx.AsyncClient, n: int) -> str:
        params = {"CallSid": f"CA{n:032d}", "From": "+821012345678"}
        signature = twilio_signature("tok", f"{BASE}/twilio/voice", params)
        response = await client.post("/twilio/voice", data=params, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200
        return response.text

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        answers = await asyncio.gather(*(webhook(client, n) for n in range(10)))
        assert sum("<Connect>" in a for a in answers) == 1
        assert sum("<Connect>" not in a and "<Say" in a for a in answers) == 9
        # Twilio retrying the admitted call's webhook is still that call, not a second one
        admitted = next(n for n, a in enumerate(answers) if "<Connect>" in a)
        assert "<Connect>" in await webhook(client, admitted)
