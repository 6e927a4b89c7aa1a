"""One turn of a call as the call sees it: the caller's words, the reply under way, what Twilio has played.

What the caller heard is read from the playback clock (``telephony.playback``): whole sentences whose mark came
back, and the interrupted one cut where the ``clear`` stopped it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from hanmadi.agent import Grounding
from hanmadi.engine.scheduler import Reply, TurnReport
from hanmadi.preemptive import PreemptiveAnswer
from hanmadi.providers.base import Message
from hanmadi.store.records import TurnRecord, turn_record
from hanmadi.telephony.playback import PlaybackClock
from hanmadi.tools import ToolTurn

# A sentence whose unplayed rest is shorter than this counts as heard whole (float dust, the last frame's padding).
_WHOLE_SLACK_S = 0.02
# How long a cancelled reply may take to hand back its report before its task is cancelled outright.
REPLY_SETTLE_S = 1.0


@dataclass
class SentSentence:
    """One sentence of a reply on Twilio's side: its text, the audio sent, whether its mark came back."""

    text: str = ""
    audio_s: float = 0.0  # sent to Twilio
    played: bool = False  # mark echoed before any clear


@dataclass
class CallTurn:
    """One turn: the caller's words (None for a greeting or goodbye) and the reply to them."""

    index: int
    user: Message | None
    heard_text: str
    started_at: datetime
    t_detect: float
    endpointing_s: float
    dtmf: str = ""
    sentences: dict[int, SentSentence] = field(default_factory=dict)
    reply: Reply | None = None
    task: asyncio.Task[None] | None = None
    report: TurnReport | None = None
    preempt: PreemptiveAnswer | None = None  # answered from an LLM stream started at the caller's pause
    end_rule: str = "default"
    grounding: Grounding | None = None  # which knowledge entries the answer drew on
    tool_turn: ToolTurn | None = None  # the answer ran tools: their calls, results and records
    barge_in: bool = False
    cleared: asyncio.Event = field(default_factory=asyncio.Event)  # set once a barge-in has sent its clear
    recorded: bool = False

    def sentence(self, index: int) -> SentSentence:
        return self.sentences.setdefault(index, SentSentence())

    def replying(self) -> bool:
        """The reply's task is still running."""
        return self.task is not None and not self.task.done()

    async def stop_reply(self) -> None:
        """Stop this turn's reply (never another's) and let it hand back its report.

        After ``cancel()`` the engine's ``run()`` returns the cancelled report by itself; letting the task finish
        records what the caller heard of this turn. Only a task that does not finish in ``REPLY_SETTLE_S`` is
        cancelled outright.
        """
        if self.reply is not None and not (self.task is not None and self.task.done()):
            await self.reply.cancel()
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            _, pending = await asyncio.wait({task}, timeout=REPLY_SETTLE_S)
            if pending:
                task.cancel()
                await asyncio.wait({task})

    def record(self, call_sid: str, spoken_text: str) -> TurnRecord:
        """This finished turn's stored form (its report is in); ``spoken_text``: what the caller heard of it."""
        report = self.report
        assert report is not None, "a turn is recorded once its reply has reported"
        return turn_record(
            call_sid,
            self.index,
            report,
            started_at=self.started_at,
            heard_text=self.heard_text,
            spoken_text=spoken_text,
            barge_in=self.barge_in,
            dtmf=self.dtmf,
            endpointing_s=self.endpointing_s,
            answered=self.user is not None,
            extra_metrics={
                "preemptive": self.preempt is not None,
                "end_rule": self.end_rule,
                **({"knowledge": self.grounding.to_dict()} if self.grounding else {}),
            },
            tool_calls=[c.to_dict() for c in self.tool_turn.records] if self.tool_turn is not None else [],
        )

    def pending_marks(self) -> bool:
        """Audio of this turn is still queued at Twilio (sent, mark not echoed, not cleared)."""
        return not self.barge_in and any(s.audio_s > 0 and not s.played for s in self.sentences.values())

    def heard_reply(self, playback: PlaybackClock, now: float) -> str:
        """The reply as the caller heard it by ``now``: whole sentences played, the interrupted one cut where it
        stopped (the playback clock has truncated what a ``clear`` dropped)."""
        parts: list[str] = []
        for index in sorted(self.sentences):
            s = self.sentences[index]
            heard = s.audio_s if s.played else playback.heard_s((self.index, index), now)
            if s.audio_s > 0 and heard >= s.audio_s - _WHOLE_SLACK_S:
                parts.append(s.text)
                continue
            if heard > 0 and s.audio_s > 0:
                cut = round(len(s.text) * heard / s.audio_s)
                if cut > 0:
                    parts.append(s.text[:cut] + "…")
            break
        return " ".join(parts)

    def spoken(self, playback: PlaybackClock, now: float) -> str:
        """What of the reply reached the caller: all of it when it played out, else what was heard."""
        report = self.report
        if report is None:
            return ""
        return self.heard_reply(playback, now) if (self.barge_in or report.cancelled) else report.spoken_text
