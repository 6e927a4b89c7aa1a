"""``hanmadi bench knowledge``: retrieval and answers over a set of Korean caller paraphrases.

The set (``data/knowledge_paraphrases.json``) has, per entry of the example restaurant file, paraphrases a
caller might say — spacing, particles, colloquial endings, fillers, STT-style errors — and the key fact a right
reply contains; plus questions the file cannot answer. For each paraphrase: is the right entry retrieved first
(top-1 accuracy), and does the agent's reply through the whole text path (``hanmadi ask``'s) contain the key fact
(answer accuracy). For the unanswerable ones: does the agent say it does not know.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from hanmadi.ask import Conversation
from hanmadi.config import Settings
from hanmadi.knowledge import KnowledgeSource
from hanmadi.providers.base import LLM

# what an honest "I don't know" contains
_DECLINES = ("모르", "확인할 수 없", "확인이 어렵", "알 수 없")


def default_set_path() -> Path:
    """The paraphrase set shipped with hanmadi."""
    return Path(str(resources.files("hanmadi.bench") / "data" / "knowledge_paraphrases.json"))


def load_set(path: Path) -> dict[str, Any]:
    """The paraphrase set: ``{"items": [{"entry", "key", "paraphrases"}], "unknown": [...]}``."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _compact(text: str) -> str:
    return "".join(text.split())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def retrieval(source: KnowledgeSource, cases: list[tuple[str, int]], min_score: float) -> dict[str, Any]:
    """Top-1 / top-3 accuracy of the ranking, the share of right answers ranked first *and* relevant enough to be
    used (score ≥ ``min_score``), and the time a query takes."""
    index = source.current.index
    top1 = top3 = usable = 0
    times_us: list[float] = []
    misses: list[dict[str, Any]] = []
    for text, entry in cases:
        started = time.perf_counter_ns()
        hits = index.search(text, 3)
        times_us.append((time.perf_counter_ns() - started) / 1000)
        first = bool(hits) and hits[0].kind == "entry" and hits[0].index == entry
        top1 += first
        usable += first and hits[0].score >= min_score
        top3 += any(h.kind == "entry" and h.index == entry for h in hits)
        if not first:
            misses.append({"caller": text, "expected": entry, "got": [h.to_dict() for h in hits]})
    n = len(cases)
    return {
        "top1_accuracy": round(top1 / n, 3),
        "top1_relevant": round(usable / n, 3),
        "top3_accuracy": round(top3 / n, 3),
        "query_us": {"p50": round(statistics.median(times_us), 1), "p95": round(_percentile(times_us, 0.95), 1)},
        "misses": misses,
    }


async def run_knowledge_bench(
    settings: Settings, source: KnowledgeSource, paraphrases: dict[str, Any], llm: LLM | None
) -> dict[str, Any]:
    """The benchmark's numbers (answers only when ``llm`` is given)."""
    cases = [(p, item["entry"]) for item in paraphrases["items"] for p in item["paraphrases"]]
    keys = {item["entry"]: item["key"] for item in paraphrases["items"]}
    unknown: list[str] = paraphrases.get("unknown", [])
    result: dict[str, Any] = {
        "knowledge": str(source.path) if source.path else "",
        "paraphrases": len(cases),
        "entries": len(keys),
        "retrieval": retrieval(source, cases, settings.knowledge_min_score),
    }
    if llm is None:
        return result
    right = 0
    modes: Counter[str] = Counter()
    wrong: list[dict[str, Any]] = []
    for text, entry in cases:
        async with Conversation(settings, llm, source) as conversation:  # a fresh call per question
            turn = await conversation.say(text)
        modes[turn.grounding.mode] += 1
        if _compact(keys[entry]) in _compact(turn.reply):
            right += 1
        else:
            wrong.append({"caller": text, "key": keys[entry], "reply": turn.reply, "mode": turn.grounding.mode})
    declined = 0
    unknown_replies: list[dict[str, str]] = []
    for text in unknown:
        async with Conversation(settings, llm, source) as conversation:
            turn = await conversation.say(text)
        declined += any(d in turn.reply for d in _DECLINES)
        unknown_replies.append({"caller": text, "reply": turn.reply, "mode": turn.grounding.mode})
    result["llm"] = llm.name
    result["answer"] = {"accuracy": round(right / len(cases), 3), "modes": dict(modes), "wrong": wrong}
    result["unknown"] = {
        "questions": len(unknown),
        "declined": round(declined / len(unknown), 3) if unknown else None,
        "replies": unknown_replies,
    }
    return result
