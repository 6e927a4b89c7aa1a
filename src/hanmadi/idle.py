"""The idle watch: a caller who says nothing is asked whether they are still there, then bid goodbye.

``idle_prompt_s`` after the line went quiet (our reply finished playing, or the last turn began) the call is due a
prompt; after ``idle_prompts`` prompts in a row without an answer it is due its goodbye. The watch only decides
*when*: the call says the prompt or the goodbye (``CallSession._idle_watch``). Anything that happens on the line
(the caller starts speaking, a reply starts) is ``activity()`` and starts the wait over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal, Protocol

# While something is going on (a reply, the caller speaking, keys awaited) the watch looks again this often.
_BUSY_RECHECK_S = 0.2

IdleDue = Literal["prompt", "goodbye"]


class Line(Protocol):
    """What the watch reads of the call."""

    def busy(self) -> bool:
        """Something is going on: a reply is generated or playing, the caller speaks, or keys are awaited."""
        ...

    def quiet_since(self) -> float:
        """When the line last went quiet (the clock's seconds)."""
        ...


class IdleWatch:
    """When a silent caller is due a prompt, and when the prompts have run out."""

    def __init__(self, prompt_s: float, max_prompts: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.prompt_s = prompt_s
        self.max_prompts = max_prompts
        self.clock = clock
        self.prompts = 0  # prompts in a row the caller has not answered
        self._activity = asyncio.Event()

    def activity(self) -> None:
        """The caller spoke or a reply started: the wait starts over."""
        self._activity.set()

    def answered(self) -> None:
        """The caller said something: the prompts in a row start over."""
        self.prompts = 0

    async def due(self, line: Line) -> IdleDue:
        """Wait until the line has been quiet for ``prompt_s``: ``"prompt"`` (counted), or ``"goodbye"`` once
        ``max_prompts`` prompts went unanswered."""
        while True:
            if line.busy():
                self._activity.clear()
                await self._activity_or(_BUSY_RECHECK_S)  # look again when it may be over
                continue
            quiet_since = line.quiet_since()
            self._activity.clear()
            if await self._activity_or(quiet_since + self.prompt_s - self.clock()):
                continue
            if line.busy() or line.quiet_since() > quiet_since:
                continue  # something happened while we waited
            if self.prompts >= self.max_prompts:
                return "goodbye"
            self.prompts += 1
            return "prompt"

    async def _activity_or(self, timeout_s: float) -> bool:
        """Wait for activity (True) or ``timeout_s`` (False)."""
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await self._activity.wait()
        except TimeoutError:
            return False
        return True
