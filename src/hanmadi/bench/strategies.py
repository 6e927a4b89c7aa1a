"""``hanmadi bench strategies``: the seed's three strategies side by side on one scenario, in real time.

A scenario says when the LLM finishes each sentence, how long its TTS takes and how much audio it makes; the bench
builds a :class:`ScriptedLLM`, a :class:`SimulatedTTS` and a :class:`TimedSink` from it and runs the real engine
(segmenter included) once per strategy. :func:`analytic_bound` is the best any schedule could do on the scenario.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from hanmadi.engine.scheduler import EngineConfig, Reply
from hanmadi.engine.timeline import Timeline, audio_arrivals
from hanmadi.providers.simulated import ScriptedLLM, SimulatedTTS, TimedSink, default_audio_s, default_tts_latency
from hanmadi.telephony.playback import playback_of

SCENARIOS_DIR = Path(__file__).parent / "scenarios"
ALL_STRATEGIES = ("realtime", "two_stage", "sequential")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file, the field and why."""


@dataclass(frozen=True)
class ScenarioSentence:
    """One sentence of the answer: finished by the LLM at ``emit_s`` (since end of speech), TTS takes ``tts_s``
    (first chunk after ``ttfb_s`` for a streaming TTS), ``audio_s`` of audio; ``fail`` makes every TTS attempt
    fail."""

    text: str
    emit_s: float
    tts_s: float
    audio_s: float
    fail: bool = False
    ttfb_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The scenario-file form (optional fields only when set)."""
        d: dict[str, Any] = {"text": self.text, "emit_s": self.emit_s, "tts_s": self.tts_s, "audio_s": self.audio_s}
        if self.fail:
            d["fail"] = True
        if self.ttfb_s is not None:
            d["ttfb_s"] = self.ttfb_s
        return d


@dataclass(frozen=True)
class Scenario:
    """A named answer with its timings and the sink's send latency per sentence (``send_s``)."""

    name: str
    send_s: float
    sentences: tuple[ScenarioSentence, ...]

    def to_dict(self) -> dict[str, Any]:
        """The scenario-file form."""
        return {"name": self.name, "send_s": self.send_s, "sentences": [s.to_dict() for s in self.sentences]}

    def scaled(self, factor: float) -> Scenario:
        """The same scenario with every time multiplied by ``factor`` (for quick runs)."""

        def scale(s: ScenarioSentence) -> ScenarioSentence:
            ttfb = None if s.ttfb_s is None else s.ttfb_s * factor
            return dataclasses.replace(
                s, emit_s=s.emit_s * factor, tts_s=s.tts_s * factor, audio_s=s.audio_s * factor, ttfb_s=ttfb
            )

        return Scenario(f"{self.name}x{factor:g}", self.send_s * factor, tuple(scale(s) for s in self.sentences))


SEED_SCENARIO = Scenario(
    name="seed",
    send_s=0.07,
    sentences=(
        ScenarioSentence("안녕하세요!", emit_s=0.50, tts_s=0.53, audio_s=0.52),
        ScenarioSentence(
            "오늘 날씨가 정말 좋은데 산책하러 나가시는 건 어떠세요?", emit_s=1.00, tts_s=1.20, audio_s=1.18
        ),
        ScenarioSentence("기분이 좋아질 거예요!", emit_s=1.50, tts_s=0.82, audio_s=0.80),
    ),
)

_SENTENCE_KEYS = {"text", "emit_s", "tts_s", "audio_s", "fail", "ttfb_s"}


def _number(where: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{where}: must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ScenarioError(f"{where}: must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def parse_scenario(data: object, source: str = "scenario") -> Scenario:
    """Validate a decoded scenario file; :class:`ScenarioError` says which field is wrong and why."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: must be a JSON object with name, send_s and sentences")
    unknown = set(data) - {"name", "send_s", "sentences"}
    if unknown:
        raise ScenarioError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError(f"{source}: name: must be a non-empty string, got {name!r}")
    if "send_s" not in data:
        raise ScenarioError(f"{source}: send_s: missing")
    send_s = _number(f"{source}: send_s", data["send_s"])
    raw = data.get("sentences")
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"{source}: sentences: must be a non-empty list, got {raw!r}")
    sentences: list[ScenarioSentence] = []
    for i, item in enumerate(raw):
        where = f"{source}: sentences[{i}]"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: must be an object, got {item!r}")
        unknown = set(item) - _SENTENCE_KEYS
        if unknown:
            raise ScenarioError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        for key in ("text", "emit_s", "tts_s", "audio_s"):
            if key not in item:
                raise ScenarioError(f"{where}.{key}: missing")
        text = item["text"]
        if not isinstance(text, str) or not text.strip():
            raise ScenarioError(f"{where}.text: must be a non-empty string, got {text!r}")
        emit_s = _number(f"{where}.emit_s", item["emit_s"])
        if sentences and emit_s < sentences[-1].emit_s:
            raise ScenarioError(
                f"{where}.emit_s: {emit_s} is before the previous sentence's {sentences[-1].emit_s} "
                "(the LLM emits sentences in order)"
            )
        tts_s = _number(f"{where}.tts_s", item["tts_s"])
        audio_s = _number(f"{where}.audio_s", item["audio_s"], positive=True)
        fail = item.get("fail", False)
        if not isinstance(fail, bool):
            raise ScenarioError(f"{where}.fail: must be true or false, got {fail!r}")
        ttfb_s: float | None = None
        if item.get("ttfb_s") is not None:
            ttfb_s = _number(f"{where}.ttfb_s", item["ttfb_s"])
            if ttfb_s > tts_s:
                raise ScenarioError(f"{where}.ttfb_s: {ttfb_s} is more than tts_s {tts_s} (first chunk after last)")
        sentences.append(ScenarioSentence(text.strip(), emit_s, tts_s, audio_s, fail, ttfb_s))
    return Scenario(name.strip(), send_s, tuple(sentences))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (format: see the module and README)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return parse_scenario(data, str(p))


def long_scenario(n: int = 50, seed: int = 50) -> Scenario:
    """A long answer whose TTS overlap fits the default window: a sentence every 0.2 s, TTS 0.15–0.5 s."""
    rng = random.Random(seed)
    subjects = ["예약", "배송", "결제", "상담", "주문", "환불", "회원 정보", "요금제", "쿠폰", "영수증"]
    endings = ["확인해 드렸어요.", "변경되었습니다.", "처리해 드릴게요!", "도와드릴까요?", "안내해 드릴게요."]
    sentences = []
    for i in range(n):
        text = f"{i + 1}번째로 {rng.choice(subjects)} 건을 {rng.choice(endings)}"
        tts_s = round(rng.uniform(0.15, 0.5), 2)
        sentences.append(
            ScenarioSentence(text, emit_s=round(0.3 + 0.2 * i, 2), tts_s=tts_s, audio_s=round(rng.uniform(0.8, 2.0), 2))
        )
    return Scenario(f"long{n}", 0.05, tuple(sentences))


def analytic_bound(scenario: Scenario, *, tts_retries: int = 1) -> tuple[float, float]:
    """The best ``(first_audio_s, total_s)`` any schedule can reach with unlimited parallel TTS and serial sends.

    Each TTS starts at its sentence's ``emit_s``; a sentence's first chunk can go at ``emit_s + ttfb_s`` (or
    ``emit_s + tts_s`` without streaming) once the previous sentence is sent, reaching the caller ``send_s``
    later; its last chunk cannot go before ``emit_s + tts_s``. A failing sentence holds the order back until its
    failure is known: ``emit_s + tts_s × (1 + tts_retries)``. Returns ``(0.0, 0.0)`` if nothing can be spoken.
    """
    prev_done = 0.0
    first: float | None = None
    total = 0.0
    for s in scenario.sentences:
        if s.fail:
            prev_done = max(prev_done, s.emit_s + s.tts_s * (1 + tts_retries))
            continue
        first_ready = s.emit_s + (min(s.ttfb_s, s.tts_s) if s.ttfb_s is not None else s.tts_s)
        first_done = max(first_ready, prev_done) + scenario.send_s
        prev_done = max(first_done, s.emit_s + s.tts_s)
        total = prev_done
        if first is None:
            first = first_done
    return (first or 0.0), total


def _by_sentence(scenario: Scenario, field: str) -> Callable[[str], float | None]:
    """A per-text profile for SimulatedTTS: the scenario's value for a sentence, prorated by length for a piece
    of one (e.g. a first clause the segmenter split off); the simulator's default for any other text."""
    defaults: dict[str, Callable[[str], float]] = {"tts_s": default_tts_latency, "audio_s": default_audio_s}

    def profile(text: str) -> float | None:
        exact = [s for s in scenario.sentences if s.text == text]
        for s in exact or [s for s in scenario.sentences if text in s.text]:
            value: float | None = getattr(s, field)
            if value is None:
                return None
            return value if exact else value * len(text) / len(s.text)
        return defaults[field](text) if field in defaults else None

    return profile


def scenario_tts(scenario: Scenario) -> SimulatedTTS:
    """A simulated TTS with the scenario's per-sentence latency, audio length, first-chunk time and failures."""
    return SimulatedTTS(
        latency=_by_sentence(scenario, "tts_s"),
        audio_s=_by_sentence(scenario, "audio_s"),
        ttfb_s=_by_sentence(scenario, "ttfb_s") if any(s.ttfb_s is not None for s in scenario.sentences) else None,
        fail_texts={s.text for s in scenario.sentences if s.fail},
    )


def scenario_llm(scenario: Scenario) -> ScriptedLLM:
    """A scripted LLM that completes each of the scenario's sentences at its ``emit_s``."""
    return ScriptedLLM.from_sentences([(s.emit_s, s.text) for s in scenario.sentences])


async def run_one(scenario: Scenario, config: EngineConfig) -> dict[str, Any]:
    """Run one strategy (``config.strategy``) on the scenario in real time; the metrics, rounded to ms."""
    tts = scenario_tts(scenario)
    sink = TimedSink(scenario.send_s)
    llm = scenario_llm(scenario)
    timeline = Timeline()
    report = await Reply(tts, sink, config, timeline).run(llm.stream([]))
    m = report.metrics
    playback = playback_of(audio_arrivals(report.events))

    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "first_audio_s": r(m.first_audio_s),
        "total_s": r(m.total_s),
        "playback_end_s": r(playback.end_s),
        "gap_s": r(playback.gap_s),
        "order": m.order,
        "skipped": m.skipped,
        "max_parallel_tts": m.max_parallel_tts,
    }


async def run_strategies(
    scenario: Scenario, strategies: Sequence[str] = ALL_STRATEGIES, config: EngineConfig | None = None
) -> dict[str, Any]:
    """Run each strategy on the scenario, one after the other, in real time.

    Without ``config`` the engine defaults are used with first-clause split off, so sentence boundaries are the
    scenario's. The TTS timeout is raised above the scenario's slowest TTS so latencies are not taken for stalls.
    """
    base = config or EngineConfig(first_clause_split=False)
    slowest = max(s.tts_s for s in scenario.sentences)
    base = dataclasses.replace(base, tts_timeout_s=max(base.tts_timeout_s, 2 * slowest + 1.0))
    first_bound, total_bound = analytic_bound(scenario, tts_retries=base.tts_retries)
    results: dict[str, Any] = {}
    for name in strategies:
        result = await run_one(scenario, dataclasses.replace(base, strategy=name))
        result["bound_first_audio_s"] = round(first_bound, 3)
        result["bound_total_s"] = round(total_bound, 3)
        results[name] = result
    return {"scenario": scenario.name, "strategies": results}


def run(
    scenario: Scenario | str | Path | None = None,
    strategies: Sequence[str] = ALL_STRATEGIES,
    config: EngineConfig | None = None,
) -> dict[str, Any]:
    """Synchronous entry point: a Scenario, a scenario file, or None for the seed scenario."""
    if scenario is None:
        scenario = SEED_SCENARIO
    elif not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    return asyncio.run(run_strategies(scenario, strategies, config))


def _runs(indexes: Sequence[int]) -> str:
    """Indexes in send order, consecutive runs collapsed: ``0-2,4``."""
    parts: list[str] = []
    k = 0
    while k < len(indexes):
        j = k
        while j + 1 < len(indexes) and indexes[j + 1] == indexes[j] + 1:
            j += 1
        parts.append(str(indexes[k]) if j == k else f"{indexes[k]}-{indexes[j]}")
        k = j + 1
    return ",".join(parts) or "-"


def render_table(result: dict[str, Any]) -> Table:
    """The bench result as a Rich table (one row per strategy; seconds since the end of the caller's speech)."""
    rows = result["strategies"]
    any_skipped = any(r["skipped"] for r in rows.values())
    table = Table(
        title=f"strategies — {result['scenario']}",
        caption="seconds since end of speech · heard: playback end · TTS∥: most TTS jobs at once",
    )
    table.add_column("strategy", no_wrap=True)
    for column in ("first", "total", "heard", "gap", "TTS∥"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("sent", no_wrap=True)
    if any_skipped:
        table.add_column("skip", no_wrap=True)
    table.add_column("bound", justify="right", no_wrap=True)

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for name, r in rows.items():
        cells = [
            name,
            fmt(r["first_audio_s"]),
            fmt(r["total_s"]),
            fmt(r["playback_end_s"]),
            fmt(r["gap_s"]),
            str(r["max_parallel_tts"]),
            _runs(r["order"]),
        ]
        if any_skipped:
            cells.append(_runs(r["skipped"]))
        cells.append(f"{fmt(r['bound_first_audio_s'])}/{fmt(r['bound_total_s'])}")
        table.add_row(*cells)
    return table
