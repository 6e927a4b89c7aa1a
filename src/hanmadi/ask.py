"""``hanmadi ask``: the agent's whole text path without audio — settings, knowledge, LLM, tools — one turn per line.

It is how a team checks its agent before putting it on a phone line: the same ``Agent`` as a call (greeting in
the history, the knowledge's grounding, the base model's guard, the tools when the model can call them), the
conversation carried from one line to the next, and for each turn which knowledge entries grounded the reply.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hanmadi.agent import Agent, AgentReply, Grounding, grounding_config
from hanmadi.config import Settings
from hanmadi.knowledge import KnowledgeSource
from hanmadi.providers.base import LLM, Message, ToolCallingLLM, stall_guard


@dataclass(frozen=True, slots=True)
class AskTurn:
    """One line of the caller and the agent's reply."""

    caller: str
    reply: str
    grounding: Grounding

    def to_dict(self) -> dict[str, Any]:
        """``{"caller", "reply", "grounded", "entries": [{"index", "score"}…], "mode"}``."""
        return {
            "caller": self.caller,
            "reply": self.reply,
            "grounded": self.grounding.grounded,
            "entries": [h.to_dict() for h in self.grounding.hits],
            "mode": self.grounding.mode,
        }


class Conversation:
    """A text-only conversation with the agent (the conversation carries on across ``say`` calls)."""

    def __init__(self, settings: Settings, llm: LLM, knowledge: KnowledgeSource | None) -> None:
        self.settings = settings
        self.llm = llm
        self.agent = Agent(settings.system_prompt, settings.max_history_turns, grounding_config(settings, knowledge))
        self._tools: Any = None
        if settings.greeting:
            self.agent.remember(None, settings.greeting)

    async def __aenter__(self) -> Conversation:
        self._tools = await _call_tools(self.settings, self.llm)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tools is not None:
            await self._tools.toolbox.aclose()

    def _answer(self, user: Message) -> AgentReply:
        if self._tools is not None and isinstance(self.llm, ToolCallingLLM):
            turn = self._tools.turn(self.llm, self.agent.messages_for(user))
            return AgentReply(turn.stream(), self.agent.last_grounding or Grounding("none"))
        return self.agent.reply(self.llm, user)

    async def say(self, text: str) -> AskTurn:
        """One turn: the caller says ``text``; returns the whole reply."""
        user = self.agent.user_message(text)
        answer = self._answer(user)
        parts: list[str] = []
        chunks = stall_guard(answer.chunks, self.settings.llm_timeout_s, self.llm.name)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                parts.append(chunk)
        reply = " ".join("".join(parts).split())
        self.agent.remember(user, reply)
        return AskTurn(text, reply, answer.grounding)


async def _call_tools(settings: Settings, llm: LLM) -> Any:
    """The tools of a call, when the model can call them and some are configured (``None`` otherwise)."""
    if not isinstance(llm, ToolCallingLLM):
        return None
    from hanmadi.tools import CallTools, Toolbox

    toolbox = Toolbox.from_settings(settings)
    if not toolbox.enabled:
        await toolbox.aclose()
        return None
    return CallTools(toolbox, call_sid="ask")


async def ask(settings: Settings, texts: Sequence[str], llm: LLM, knowledge: KnowledgeSource | None) -> list[AskTurn]:
    """One agent turn per text, in order, the conversation carried on."""
    async with Conversation(settings, llm, knowledge) as conversation:
        return [await conversation.say(text) for text in texts]
