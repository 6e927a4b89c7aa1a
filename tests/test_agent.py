"""The agent's conversation window and keypad events."""

from __future__ import annotations

import itertools

from hanmadi.agent import Agent
from hanmadi.providers.base import Message


def converse(agent: Agent, turns: int) -> list[list[Message]]:
    prompts = []
    for i in range(turns):
        user = agent.user_message(f"질문 {i}")
        prompts.append(agent.messages_for(user))
        agent.remember(user, f"답변 {i}")
    return prompts


def test_history_window_is_bounded() -> None:
    agent = Agent("지침", max_history_turns=4)
    for prompt in converse(agent, 30):
        assert prompt[0] == Message("system", "지침")
        assert len(prompt) - 2 <= 2 * 4 + 1  # system + history + user


def test_window_moves_in_steps_so_consecutive_prompts_share_their_prefix() -> None:
    agent = Agent("지침", max_history_turns=4)
    prompts = converse(agent, 30)
    slides = 0
    for before, after in itertools.pairwise(prompts):
        if after[: len(before) - 1] != before[:-1]:
            slides += 1
    # a sliding window breaks the prefix on every turn once full (26 of these 29 turns); steps of half the
    # window break it once every max_history_turns / 2 + 1 turns
    assert 0 < slides <= 29 // (4 // 2 + 1) + 1


def test_keypad_digits_go_with_the_next_words_once() -> None:
    agent = Agent("지침")
    agent.note_dtmf("1")
    agent.note_dtmf("#")
    assert agent.has_pending_events
    assert agent.user_message("확인해 주세요").content == "확인해 주세요 (키패드 입력: 1#)"
    assert not agent.has_pending_events
    assert agent.user_message("네").content == "네"


def test_only_what_was_heard_is_remembered() -> None:
    agent = Agent("지침")
    agent.remember(Message("user", "안녕하세요"), "")
    agent.remember(None, "안녕하세요, 무엇을…")
    assert [m.role for m in agent.history] == ["user", "assistant"]
