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
        self._window_start = 0  # first history message the LLM still sees

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
        """System prompt, the recent history and the new user message.

        The window over the history moves in steps: when it holds more than ``max_history_turns`` turns, the older
        half is dropped at once. Between steps the prompt only grows at its end, so a model server that reuses the
        longest common prompt prefix (llama.cpp, vLLM) prefills just the new lines instead of the whole history.
        """
        if not self.max_history_turns:
            return [Message("system", self.system_prompt), user]
        if len(self.history) - self._window_start > 2 * self.max_history_turns:
            self._window_start = len(self.history) - self.max_history_turns
        return [Message("system", self.system_prompt), *self.history[self._window_start :], user]

    def remember(self, user: Message | None, heard_reply: str) -> None:
        """Record a finished turn: the caller's words and the part of our reply they heard."""
        if user is not None:
            self.history.append(user)
        if heard_reply:
            self.history.append(Message("assistant", heard_reply))
