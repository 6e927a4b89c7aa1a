"""Twilio REST through the twilio package, against a loopback server speaking the Calls resource's wire format."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from actions_support import ACCOUNT_SID, TWILIO_TOKEN, ActionServers
from hanmadi import metrics
from hanmadi.telephony.rest import TwilioRest, TwilioRestError, transfer_twiml


@pytest.fixture(autouse=True)
def _reset(servers: ActionServers) -> None:
    servers.rest.clear()
    servers.rest_fail_status = None


def rest(servers: ActionServers, token: str = TWILIO_TOKEN) -> TwilioRest:
    return TwilioRest(ACCOUNT_SID, token, api_base=servers.base)


def test_transfer_twiml_says_korean_then_dials() -> None:
    root = ET.fromstring(transfer_twiml("상담원에게 연결 <합니다>", "+8221234567"))
    assert [(e.tag, e.text, e.get("language")) for e in root] == [
        ("Say", "상담원에게 연결 <합니다>", "ko-KR"),
        ("Dial", "+8221234567", None),
    ]
    sip = ET.fromstring(transfer_twiml("", "sip:desk@example.kr")).find("./Dial/Sip")
    assert sip is not None and sip.text == "sip:desk@example.kr"


async def test_transfer_and_hang_up_update_the_live_call(servers: ActionServers) -> None:
    client = rest(servers)
    try:
        await client.transfer("CA1", "+8221234567", "연결해 드리겠습니다.")
        await client.hang_up("CA2")
    finally:
        await client.aclose()
    transfer, hang_up = servers.rest
    assert transfer.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/CA1.json"
    say_dial = ET.fromstring(transfer.form["Twiml"])
    assert [e.tag for e in say_dial] == ["Say", "Dial"] and say_dial[1].text == "+8221234567"
    assert hang_up.path.endswith("/Calls/CA2.json") and hang_up.form == {"Status": "completed"}


async def test_outbound_call_asks_for_async_amd(servers: ActionServers) -> None:
    client = rest(servers)
    try:
        sid = await client.create_call(
            to="+821012345678",
            from_="+8225550100",
            url="https://bot/twilio/voice",
            amd_callback="https://bot/twilio/amd",
        )
    finally:
        await client.aclose()
    (create,) = servers.rest
    assert sid.startswith("CA") and create.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert create.form == {
        "To": "+821012345678",
        "From": "+8225550100",
        "Url": "https://bot/twilio/voice",
        "Method": "POST",
        "MachineDetection": "DetectMessageEnd",
        "AsyncAmd": "true",
        "AsyncAmdStatusCallback": "https://bot/twilio/amd",
        "AsyncAmdStatusCallbackMethod": "POST",
    }


@pytest.mark.parametrize(("token", "fail", "status"), [("wrong-token", None, 401), (TWILIO_TOKEN, 500, 500)])
async def test_failures_are_typed_and_counted(
    servers: ActionServers, token: str, fail: int | None, status: int
) -> None:
    servers.rest_fail_status = fail
    counter = metrics.TWILIO_REST_ERRORS.labels(op="transfer")
    before = counter._value.get()
    client = rest(servers, token)
    try:
        with pytest.raises(TwilioRestError) as info:
            await client.transfer("CA1", "+8221234567", "연결")
    finally:
        await client.aclose()
    assert info.value.status == status and info.value.op == "transfer"
    assert counter._value.get() == before + 1


async def test_unreachable_api_is_a_typed_error() -> None:
    from hanmadi.net import free_port

    client = TwilioRest(ACCOUNT_SID, TWILIO_TOKEN, api_base=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TwilioRestError, match="hang_up"):
            await client.hang_up("CA1")
    finally:
        await client.aclose()
