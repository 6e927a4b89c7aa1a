"""Twilio's REST API, through the ``twilio`` package's client: transfer, hang-up, outbound calls with AMD.

The Calls resource (``/2010-04-01/Accounts/{AccountSid}/Calls.json`` to create, ``…/Calls/{CallSid}.json`` to
update), form-encoded requests, JSON answers. The client is the ``twilio`` package's own, asynchronous
(``AsyncTwilioHttpClient``: nothing blocks the event loop); ``HANMADI_TWILIO_API_BASE`` replaces the API domain's base
URL (``https://api.twilio.com``), which is how tests point it at a local server speaking the same wire format.

Every failure leaves as :class:`TwilioRestError` with the operation, counted in ``hanmadi_twilio_rest_errors_total``
and logged once.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse

from hanmadi import metrics

log = logging.getLogger("hanmadi.telephony.rest")

TWILIO_API_BASE = "https://api.twilio.com"
# Twilio's AsyncAmd answers: machine_end_beep / machine_end_silence / machine_end_other (voicemail ready for a
# message), human, fax, unknown; machine_start only without DetectMessageEnd.
MACHINE_ENDS = frozenset({"machine_end_beep", "machine_end_silence", "machine_end_other"})


class TwilioRestError(Exception):
    """A Twilio REST request failed: ``op`` (transfer, hang_up, create_call), HTTP ``status`` and Twilio ``code``."""

    def __init__(self, op: str, message: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(f"twilio {op} failed: {message}")
        self.op = op
        self.status = status
        self.code = code


def transfer_twiml(announcement: str, number: str) -> str:
    """``<Response><Say language="ko-KR">announcement</Say><Dial>number</Dial></Response>`` (SIP URIs dial SIP)."""
    response = VoiceResponse()
    if announcement:
        response.say(announcement, language="ko-KR")
    if number.startswith("sip:"):
        dial = Dial()
        dial.sip(number)
        response.append(dial)
    else:
        response.dial(number)
    return str(response.to_xml())


class TwilioRest:
    """One account's Calls resource. Build with :meth:`from_settings`; ``await aclose()`` at shutdown."""

    def __init__(
        self, account_sid: str, auth_token: str, *, api_base: str = TWILIO_API_BASE, timeout_s: float = 10.0
    ) -> None:
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.api_base = api_base.rstrip("/")
        self.timeout_s = timeout_s
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """The twilio client, made on first use: its aiohttp session belongs to the loop that uses it."""
        if self._client is None:
            self._http = AsyncTwilioHttpClient(timeout=self.timeout_s)
            self._client = Client(
                username=self.account_sid,
                password=self._auth_token,
                account_sid=self.account_sid,
                http_client=self._http,
            )
            self._client.api.base_url = self.api_base
        return self._client

    @classmethod
    def from_settings(cls, settings: Any) -> TwilioRest | None:
        """The REST client, or None when the account SID or the auth token is not configured."""
        token = settings.auth_token()
        if not settings.twilio_account_sid or not token:
            return None
        return cls(settings.twilio_account_sid, token, api_base=settings.twilio_api_base or TWILIO_API_BASE)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = self._client = None

    async def _call(self, op: str, call_sid: str, **params: Any) -> None:
        try:
            await self.client.api.v2010.accounts(self.account_sid).calls(call_sid).update_async(**params)
        except (TwilioException, aiohttp.ClientError, TimeoutError) as exc:
            raise _error(op, exc) from exc

    async def transfer(self, call_sid: str, number: str, announcement: str) -> None:
        """Replace the live call's TwiML: the announcement in Korean, then dial ``number`` (the stream ends)."""
        await self._call("transfer", call_sid, twiml=transfer_twiml(announcement, number))
        log.info("call %s: transferred by REST", call_sid)

    async def hang_up(self, call_sid: str) -> None:
        """End the call (``Status=completed``)."""
        await self._call("hang_up", call_sid, status="completed")
        log.info("call %s: hung up by REST", call_sid)

    async def create_call(self, *, to: str, from_: str, url: str, amd_callback: str) -> str:
        """Place an outbound call answered by ``url`` (our voice webhook), with asynchronous answering-machine
        detection that waits for the end of a voicemail greeting; return its CallSid."""
        try:
            call = await self.client.api.v2010.accounts(self.account_sid).calls.create_async(
                to=to,
                from_=from_,
                url=url,
                method="POST",
                machine_detection="DetectMessageEnd",
                async_amd="true",
                async_amd_status_callback=amd_callback,
                async_amd_status_callback_method="POST",
            )
        except (TwilioException, aiohttp.ClientError, TimeoutError) as exc:
            raise _error("create_call", exc) from exc
        if not call.sid:
            raise _error("create_call", ValueError("the answer has no sid"))
        return str(call.sid)


def _error(op: str, exc: BaseException) -> TwilioRestError:
    metrics.TWILIO_REST_ERRORS.labels(op=op).inc()
    if isinstance(exc, TwilioRestException):
        error = TwilioRestError(op, f"HTTP {exc.status} code {exc.code}: {exc.msg}", exc.status, exc.code)
    else:
        error = TwilioRestError(op, f"{type(exc).__name__}: {exc}")
    log.warning("%s", error)
    return error
