"""The idle watch decides when a silent caller is due a prompt and when the prompts have run out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hanmadi.idle import IdleWatch


@dataclass
class FakeLine:
    is_busy: bool = False
    quiet_at: float = 0.0

    def busy(self) -> bool:
        return self.is_busy

    def quiet_since(self) -> float:
        return self.quiet_at


def watch(max_prompts: int = 2) -> IdleWatch:
    # prompt_s 0 on a clock that stands still: a quiet line is due at once
    return IdleWatch(prompt_s=0.0, max_prompts=max_prompts, clock=lambda: 10.0)


async def test_prompts_in_a_row_then_goodbye() -> None:
    w, line = watch(2), FakeLine(quiet_at=10.0)
    assert [await w.due(line) for _ in range(3)] == ["prompt", "prompt", "goodbye"]
    assert w.prompts == 2


async def test_an_answer_starts_the_prompts_over() -> None:
    w, line = watch(1), FakeLine(quiet_at=10.0)
    assert await w.due(line) == "prompt"
    w.answered()
    assert await w.due(line) == "prompt"
    assert await w.due(line) == "goodbye"


async def test_no_prompt_while_the_line_is_busy() -> None:
    w, line = watch(), FakeLine(is_busy=True, quiet_at=10.0)
    task = asyncio.create_task(w.due(line))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()  # a reply or the caller is under way
    line.is_busy = False
    w.activity()  # the reply ended: the watch looks again at once
    assert await asyncio.wait_for(task, 5) == "prompt"


async def test_zero_prompts_goes_straight_to_goodbye() -> None:
    assert await watch(0).due(FakeLine(quiet_at=10.0)) == "goodbye"
