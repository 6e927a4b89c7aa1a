"""The agent: system prompt + the conversation as the caller heard it, turned into LLM messages — grounded in the
business's knowledge when there is a knowledge file.

Grounding happens here, in the messages, so every path (the call, ``hanmadi ask``, tools) gets it:

- every LLM: the best entries for the caller's words go in a second system message, as the only source of business
  facts (``messages_for``);
- a *base* model (the embedded Gemma 270M, ``llm.base_model``) also gets help it needs (``reply``): a confident
  match is answered with the entry's own answer, no model involved; a weaker one is a completion with the entries
  in the prompt whose sentences pass the ``FactGuard`` (a sentence stating a number or place the knowledge does not
  have ends the reply there, or becomes the best entry's answer when nothing was said yet); a question nothing in
  the knowledge matches gets the honest "잘 모르겠습니다" line offering a person.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from hanmadi import metrics
from hanmadi.config import Settings
from hanmadi.knowledge import FactGuard, Hit, KnowledgeSource, overlap
from hanmadi.providers.base import LLM, Message

GroundingMode = Literal["none", "answer", "grounded", "unknown", "open"]

ANSWER_SCORE: Final = 0.2
MIN_SCORE: Final = 0.1
TOP_K: Final = 3
UNKNOWN_REPLY: Final = "죄송하지만 그 부분은 제가 잘 모르겠습니다. 정확한 안내는 직원에게 확인해 주시면 감사하겠습니다."
UNKNOWN_REPLY_TRANSFER: Final = "죄송하지만 그 부분은 제가 잘 모르겠습니다. 담당 직원에게 연결해 드릴까요?"
GROUNDING_RULES: Final = (
    "이 업체에 관한 사실(가격, 시간, 장소, 숫자, 정책)은 아래 '참고 정보'에 있는 것만 말하세요. "
    "참고 정보에 없는 내용은 지어내지 말고 '잘 모르겠습니다'라고 솔직하게 말한 뒤 직원 연결을 제안하세요."
)
REFERENCE_HEADER: Final = "참고 정보:"
NOTHING_RELEVANT: Final = "(없음)"

# A caller's line that asks something (so "nothing relevant" must be answered honestly, not improvised).
_QUESTION_RE: Final = re.compile(
    r"\?|까요|나요|가요|니까|[되돼]요|있어요|없어요|예요|에요|죠\b|언제|어디|얼마|몇|무슨|무엇|뭐|뭘|어떤|어떻게|왜|누가|누구"
    r"|알려|궁금|말해"
)
_SENTENCE_END: Final = re.compile(r"[.?!。](?=\s|$)")
_DECLINE_RE: Final = re.compile(r"모르겠|확인할 수 없|연결해 드릴|확인해 드릴까요")
# A base model's sentence answering from a reference must take at least this share of its words from it.
GROUNDED_OVERLAP: Final = 0.5
# Said before the best entry's answer when the model's own reply did not hold up: the match was not certain.
HEDGE: Final = "제가 이해한 게 맞다면,"


@dataclass(frozen=True, slots=True)
class Grounding:
    """How the knowledge shaped one turn: the mode and the entries (with scores) it drew on."""

    mode: GroundingMode
    hits: tuple[Hit, ...] = ()

    @property
    def grounded(self) -> bool:
        """The answer was drawn from the knowledge."""
        return self.mode in ("answer", "grounded")

    def to_dict(self) -> dict[str, Any]:
        """As stored with the turn and printed by ``hanmadi ask --json``."""
        return {"mode": self.mode, "grounded": self.grounded, "entries": [h.to_dict() for h in self.hits]}


@dataclass(frozen=True, slots=True)
class AgentReply:
    """One turn's answer: its text as it streams, and what grounded it."""

    chunks: AsyncIterator[str]
    grounding: Grounding


@dataclass
class GroundingConfig:
    """The knowledge and how to use it (from the settings)."""

    source: KnowledgeSource
    answer_score: float = ANSWER_SCORE
    min_score: float = MIN_SCORE
    top_k: int = TOP_K
    unknown_reply: str = UNKNOWN_REPLY


class Agent:
    """Keeps one call's history. Only what the caller actually heard of our replies is kept (barge-in truncates)."""

    def __init__(
        self, system_prompt: str, max_history_turns: int = 8, knowledge: GroundingConfig | None = None
    ) -> None:
        self.system_prompt = system_prompt
        self.max_history_turns = max_history_turns
        self.knowledge = knowledge
        self.history: list[Message] = []
        self._pending_events: list[str] = []
        self._window_start = 0  # first history message the LLM still sees
        self.last_grounding: Grounding | None = None  # of the latest reply() / messages_for()
        self._grounded: tuple[str, object, Grounding] | None = None  # words, knowledge version, grounding

    def note_dtmf(self, digit: str) -> None:
        """A keypad digit: it reaches the LLM with the caller's next words."""
        self._pending_events.append(digit)

    @property
    def has_pending_events(self) -> bool:
        """Keypad digits are waiting to go out with the caller's next words."""
        return bool(self._pending_events)

    def user_message(self, text: str) -> Message:
        """The caller's turn as the LLM sees it (keypad digits pressed since the last turn appended)."""
        if self._pending_events:
            digits = "".join(self._pending_events)
            self._pending_events.clear()
            text = f"{text} (키패드 입력: {digits})".strip()
        return Message("user", text)

    # --- grounding ---------------------------------------------------------------------------------------

    def ground(self, user: Message) -> Grounding:
        """Retrieve for the caller's words and decide how the knowledge answers them (cached for the same words)."""
        config = self.knowledge
        if config is None:
            return Grounding("none")
        current = config.source.current
        if self._grounded is not None and self._grounded[:2] == (user.content, current):
            return self._grounded[2]
        hits = [h for h in current.index.search(user.content, config.top_k) if h.score >= config.min_score]
        if hits and hits[0].score >= config.answer_score:
            grounding = Grounding("answer", tuple(hits))
        elif hits:
            grounding = Grounding("grounded", tuple(hits))
        elif _QUESTION_RE.search(user.content):
            grounding = Grounding("unknown")
        else:
            grounding = Grounding("open")
        self._grounded = (user.content, current, grounding)
        return grounding

    def _reference(self, items: list[str]) -> Message:
        lines = [GROUNDING_RULES, REFERENCE_HEADER, *(f"- {item}" for item in items)]
        if not items:
            lines.append(f"- {NOTHING_RELEVANT}")
        return Message("system", "\n".join(lines))

    # --- messages and replies --------------------------------------------------------------------------------

    def messages_for(self, user: Message) -> list[Message]:
        """System prompt, the knowledge for these words (if any), the recent history and the new user message.

        The knowledge is the retrieved entries' answers and every fact, in a second system message with the rule
        that it is the only source of business facts.

        The window over the history moves in steps: when it holds more than ``max_history_turns`` turns, the older
        half is dropped at once. Between steps the prompt only grows at its end, so a model server that reuses the
        longest common prompt prefix (llama.cpp, vLLM) prefills just the new lines instead of the whole history.
        """
        grounding = self.ground(user)
        items = [h.text for h in grounding.hits]
        if self.knowledge is not None:
            items += [f for f in self.knowledge.source.current.knowledge.facts if f not in items]
        return self._messages(user, grounding, items)

    def _messages(self, user: Message, grounding: Grounding, items: list[str]) -> list[Message]:
        self.last_grounding = grounding
        head = [Message("system", self.system_prompt)]
        if self.knowledge is not None:
            head.append(self._reference(items))
        if not self.max_history_turns:
            return [*head, user]
        if len(self.history) - self._window_start > 2 * self.max_history_turns:
            self._window_start = len(self.history) - self.max_history_turns
        return [*head, *self.history[self._window_start :], user]

    def reply(self, llm: LLM, user: Message) -> AgentReply:
        """The answer to ``user``: the LLM's stream, or for a base model the knowledge's own words where it can.

        A base model is shown only the best entry: with several, the 270M model mixes them up or picks the first.
        """
        config = self.knowledge
        if config is None or not getattr(llm, "base_model", False):
            messages = self.messages_for(user)
            grounding = self.last_grounding or Grounding("none")
            if config is not None:
                metrics.KNOWLEDGE_TURNS.labels(mode=grounding.mode).inc()
            return AgentReply(llm.stream(messages), grounding)
        grounding = self.ground(user)
        metrics.KNOWLEDGE_TURNS.labels(mode=grounding.mode).inc()
        if grounding.mode == "answer":
            self.last_grounding = grounding
            return AgentReply(_once(grounding.hits[0].text), grounding)
        if grounding.mode == "unknown":
            self.last_grounding = grounding
            return AgentReply(_once(config.unknown_reply), grounding)
        guard = config.source.current.guard
        if grounding.mode == "open":
            messages = self._messages(user, grounding, [])
            check = _sentence_check(guard, user.content, None)
            return AgentReply(guarded(llm.stream(messages), check, config.unknown_reply), grounding)
        top = grounding.hits[0]
        messages = self._messages(user, grounding, [top.text])
        check = _sentence_check(guard, user.content, top.text)
        return AgentReply(guarded(llm.stream(messages), check, f"{HEDGE} {top.text}"), grounding)

    def remember(self, user: Message | None, heard_reply: str, tool_exchange: Sequence[Message] = ()) -> None:
        """Record a finished turn: the caller's words and the part of our reply they heard. The model's tool calls
        and their results (``tool_exchange``) stay in the conversation, between the caller and our answer."""
        if user is not None:
            self.history.append(user)
        self.history.extend(tool_exchange)
        if heard_reply:
            self.history.append(Message("assistant", heard_reply))


async def _once(text: str) -> AsyncIterator[str]:
    yield text


async def guarded(chunks: AsyncIterator[str], allowed: Callable[[str], bool], fallback: str) -> AsyncIterator[str]:
    """Pass the model's text on sentence by sentence, each checked by ``allowed`` before it goes out.

    The first sentence that is not allowed ends the reply; if nothing was said yet, ``fallback`` is said instead.
    """
    held = ""
    said = False
    try:
        async for chunk in chunks:
            held += chunk
            while (end := _SENTENCE_END.search(held)) is not None:
                sentence, held = held[: end.end()], held[end.end() :]
                if not allowed(sentence):
                    if not said:
                        yield fallback
                    return
                said = True
                yield sentence
        if held.strip():
            if not allowed(held):
                if not said:
                    yield fallback
                return
            said = True
            yield held
        if not said:
            yield fallback
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _sentence_check(guard: FactGuard, caller_said: str, reference: str | None) -> Callable[[str], bool]:
    """A base model's sentence may go out when it states no number or place the knowledge lacks (without a
    ``reference``: no number or place the caller did not say), and — when it
    answers from a ``reference`` — when it says what the reference says (most of its words from the reference; the
    caller's words do not count, or "네, 충전할 수 있습니다" would pass for "충전할 수 있어요?") or declines."""

    def allowed(sentence: str) -> bool:
        if guard.unsupported(sentence, caller_said, from_knowledge=reference is not None):
            return False
        if reference is None or _DECLINE_RE.search(sentence):
            return True
        return overlap(sentence, reference) >= GROUNDED_OVERLAP

    return allowed


def grounding_config(settings: Settings, source: KnowledgeSource | None) -> GroundingConfig | None:
    """How a call uses the knowledge, from the settings (``None`` without a knowledge file)."""
    if source is None:
        return None
    # a transfer target configured (HANMADI_TRANSFER_NUMBERS): the honest "I don't know" offers to put them through
    transfer = getattr(settings, "transfer_numbers", None)
    unknown = settings.knowledge_unknown_reply or (UNKNOWN_REPLY_TRANSFER if transfer else UNKNOWN_REPLY)
    return GroundingConfig(
        source=source,
        answer_score=settings.knowledge_answer_score,
        min_score=settings.knowledge_min_score,
        top_k=settings.knowledge_top_k,
        unknown_reply=unknown,
    )


def context_prompt(context: Mapping[str, str]) -> str:
    """An outbound call's context (``--context name=김민수``) as lines appended to the system prompt."""
    if not context:
        return ""
    lines = "\n".join(f"- {key}: {value}" for key, value in context.items())
    return f"\n\n이 전화는 우리가 먼저 건 전화입니다. 통화 정보:\n{lines}"
