"""One CallSid, one call: a webhook or a stream for a CallSid that has already started gets nothing.

Twilio's webhook signature has no nonce, so a captured signed webhook can be replayed at will. Each replay
would mint a fresh stream token and open a second stream for the same CallSid, whose turns would overwrite the
first call's record (and spend LLM/TTS). So a CallSid is *claimed* when its stream starts, and from then on:

- its webhook is answered ``<Hangup/>`` (``hanmadi_calls_rejected_total{reason="callsid_seen"}``, one log line);
- a stream for it is closed 1008 ``call already handled`` even with a valid token;
- (in the store) a start record for a CallSid owned by another stream is refused, with every later record of
  that stream — see ``repository.CallConflictError``: records are never overwritten by another stream.

Where a CallSid is looked up: this process's claims (the last ``remember`` CallSids, which cover a database
outage) and the database's ``calls`` table (which covers N processes sharing one database).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from typing import Final

from twilio.twiml.voice_response import VoiceResponse

from hanmadi import metrics
from hanmadi.logs import safe
from hanmadi.store import repository
from hanmadi.store.writer import Recorder

log = logging.getLogger("hanmadi.replay")

REASON: Final = "callsid_seen"


_CALL_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_call_sid(call_sid: str) -> bool:
    """Twilio's CallSids are ``CA`` + 32 hex digits; accept that shape loosely (letters, digits, ``-_``, ≤ 64), so
    a CallSid can neither carry control characters into logs nor overflow the store's 64-character column."""
    return _CALL_SID.fullmatch(call_sid) is not None


def hangup_twiml() -> str:
    """``<Response><Hangup/></Response>``: end the (replayed) call, open nothing."""
    response = VoiceResponse()
    response.hangup()
    return str(response.to_xml())


class CallHistory:
    """The CallSids that already had a stream, here (bounded memory) or in the shared database."""

    def __init__(self, recorder: Recorder | None, remember: int = 100_000, lookup_timeout_s: float = 2.0) -> None:
        self.recorder = recorder
        self.remember = remember
        self.lookup_timeout_s = lookup_timeout_s  # a call's set-up never waits longer on an unreachable database
        self._claimed: OrderedDict[str, None] = OrderedDict()

    def _remember(self, call_sid: str) -> None:
        self._claimed[call_sid] = None
        self._claimed.move_to_end(call_sid)
        while len(self._claimed) > self.remember:
            self._claimed.popitem(last=False)

    async def _in_database(self, call_sid: str) -> bool:
        if self.recorder is None or not self.recorder.running:
            return False
        try:
            async with asyncio.timeout(self.lookup_timeout_s), self.recorder.session() as session:
                return await repository.call_exists(session, call_sid)
        except Exception as exc:  # the database is away (or hangs): this process's own memory still answers
            log.warning("replay check for call %s could not read the database: %s", safe(call_sid, 64), exc)
            return False

    async def seen(self, call_sid: str) -> bool:
        """True when ``call_sid`` already had a stream (here or, through the database, in another process)."""
        return call_sid in self._claimed or await self._in_database(call_sid)

    async def claim(self, call_sid: str) -> bool:
        """Claim ``call_sid`` for the stream starting now; False when it already had one (refuse this stream).

        The claim in memory is taken before anything is awaited, so two streams racing here cannot both win.
        """
        if call_sid in self._claimed:
            return False
        self._remember(call_sid)
        return not await self._in_database(call_sid)


def refused(call_sid: str, where: str) -> None:
    """Count and log one refusal of a CallSid seen before (``where``: webhook or stream)."""
    metrics.CALLS_REJECTED.labels(reason=REASON).inc()
    log.warning("%s for call %s refused: this CallSid already had a stream (replay?)", where, safe(call_sid, 64))
