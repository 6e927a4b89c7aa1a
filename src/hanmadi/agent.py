"""The agent: system prompt + the conversation as the caller heard it, turned into LLM messages."""

from __future__ import annotations

from hanmadi.providers.base import Message


class Agent:
    """Keeps one call's history. Only what the caller actually heard of our replies is kept (barge-in truncates)."""

    def __init__(self, system_prompt: str, max_history_turns: int = 8) -> None:
        self.system_prompt = system_prompt
        self.max_history_turns = max_history_turns
        self.history: list[Message] = []
        self._pending_events: list[str] = []

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

    def messages_for(self, user: Message) -> list[Message]:
        """System prompt, the recent history and the new user message."""
        keep = self.history[-2 * self.max_history_turns :] if self.max_history_turns else []
        return [Message("system", self.system_prompt), *keep, user]

    def remember(self, user: Message | None, heard_reply: str) -> None:
        """Record a finished turn: the caller's words and the part of our reply they heard."""
        if user is not None:
            self.history.append(user)
        if heard_reply:
            self.history.append(Message("assistant", heard_reply))
