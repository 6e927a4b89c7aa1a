"""The strategies bench: scenario files, the analytic bound, and the three strategies' relative order."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hanmadi.bench.strategies import (
    SCENARIOS_DIR,
    SEED_SCENARIO,
    Scenario,
    ScenarioError,
    ScenarioSentence,
    analytic_bound,
    load_scenario,
    long_scenario,
    parse_scenario,
    render_table,
    run_strategies,
)

EPS = 0.005  # clock resolution: a measured time can never beat the bound by more than this


def test_seed_bound_is_the_seeds_realtime_row() -> None:
    # seed: realtime ≈ 1.0 / 2.3 s plus the 0.07 s send
    assert analytic_bound(SEED_SCENARIO) == pytest.approx((1.10, 2.39))


def test_bound_with_streaming_tts() -> None:
    streaming = load_scenario(SCENARIOS_DIR / "seed_streaming.json")
    # first chunk of sentence 0 at 0.50 + 0.18, sent 0.07 later; the last sentence's audio is complete at 2.32
    assert analytic_bound(streaming) == pytest.approx((0.75, 2.32))


def test_bound_with_a_failing_sentence() -> None:
    s = [
        ScenarioSentence("a", emit_s=0.5, tts_s=0.5, audio_s=1.0),
        ScenarioSentence("b", emit_s=1.0, tts_s=0.4, audio_s=1.0, fail=True),
        ScenarioSentence("c", emit_s=1.5, tts_s=0.6, audio_s=1.0),
    ]
    sc = Scenario("flaky", 0.1, tuple(s))
    assert analytic_bound(sc, tts_retries=0) == pytest.approx((1.1, 2.2))
    # with one retry "b" is known to fail at 1.0 + 2 × 0.4 = 1.8, still before "c" is ready
    assert analytic_bound(sc, tts_retries=1) == pytest.approx((1.1, 2.2))
    assert analytic_bound(sc, tts_retries=3) == pytest.approx((1.1, 2.7))
    assert analytic_bound(Scenario("none", 0.1, (s[1],))) == (0.0, 0.0)


def test_bound_is_limited_by_serial_sends() -> None:
    same_time = tuple(ScenarioSentence(f"{i}", emit_s=0.0, tts_s=0.1, audio_s=1.0) for i in range(5))
    assert analytic_bound(Scenario("burst", 0.2, same_time)) == pytest.approx((0.3, 1.1))


def test_shipped_scenarios_load() -> None:
    files = sorted(SCENARIOS_DIR.glob("*.json"))
    assert {f.stem for f in files} >= {"seed", "seed_streaming", "long50"}
    for f in files:
        assert load_scenario(f).name == f.stem
    assert load_scenario(SCENARIOS_DIR / "seed.json") == SEED_SCENARIO
    assert load_scenario(SCENARIOS_DIR / "long50.json") == long_scenario(50)
    assert len(long_scenario(50).sentences) == 50


def _seed_dict() -> dict[str, Any]:
    return SEED_SCENARIO.to_dict()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("name"), "name: must be a non-empty string"),
        (lambda d: d.pop("send_s"), "send_s: missing"),
        (lambda d: d.update(send_s="fast"), "send_s: must be a number, got 'fast'"),
        (lambda d: d.update(send_s=-1), "send_s: must be >= 0"),
        (lambda d: d.update(sentences=[]), "sentences: must be a non-empty list"),
        (lambda d: d.update(extra=1), "unknown field(s) extra"),
        (lambda d: d["sentences"][1].pop("tts_s"), "sentences[1].tts_s: missing"),
        (lambda d: d["sentences"][0].update(audio_s=0), "sentences[0].audio_s: must be > 0"),
        (lambda d: d["sentences"][0].update(emit_s=True), "sentences[0].emit_s: must be a number, got True"),
        (lambda d: d["sentences"][2].update(emit_s=0.1), "sentences[2].emit_s: 0.1 is before"),
        (lambda d: d["sentences"][0].update(ttfb_s=0.9), "sentences[0].ttfb_s: 0.9 is more than tts_s"),
        (lambda d: d["sentences"][0].update(fail="yes"), "sentences[0].fail: must be true or false"),
        (lambda d: d["sentences"][0].update(txt="x"), "sentences[0]: unknown field(s) txt"),
        (lambda d: d["sentences"][0].update(text=""), "sentences[0].text: must be a non-empty string"),
    ],
)
def test_bad_scenarios_say_which_field_and_why(mutate: Any, message: str) -> None:
    data = _seed_dict()
    mutate(data)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "bad.json")
    assert str(info.value).startswith("bad.json")
    assert message in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x",\n "send_s": }', encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"not valid JSON \(line 2"):
        load_scenario(broken)
    listed = tmp_path / "list.json"
    listed.write_text("[]", encoding="utf-8")
    with pytest.raises(ScenarioError, match="must be a JSON object"):
        load_scenario(listed)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_seed_dict(), ensure_ascii=False), encoding="utf-8")
    assert load_scenario(good) == SEED_SCENARIO


async def test_strategies_reproduce_the_seeds_ordering() -> None:
    scenario = SEED_SCENARIO.scaled(0.5)
    result = await run_strategies(scenario)
    assert result["scenario"] == "seedx0.5"
    r = result["strategies"]
    assert list(r) == ["realtime", "two_stage", "sequential"]
    for name in r:
        assert r[name]["order"] == [0, 1, 2]
        assert r[name]["skipped"] == []
        assert r[name]["first_audio_s"] >= r[name]["bound_first_audio_s"] - EPS
        assert r[name]["total_s"] >= r[name]["bound_total_s"] - EPS
        assert set(r[name]) >= {"playback_end_s", "gap_s", "max_parallel_tts"}
    # the seed's table: realtime answers first; two-stage ends before sequential
    assert r["realtime"]["first_audio_s"] < r["two_stage"]["first_audio_s"]
    assert r["realtime"]["first_audio_s"] < r["sequential"]["first_audio_s"]
    assert r["realtime"]["total_s"] < r["two_stage"]["total_s"] < r["sequential"]["total_s"]
    assert r["sequential"]["max_parallel_tts"] == 1
    assert r["realtime"]["max_parallel_tts"] >= 2

    table = render_table(result)
    assert table.row_count == 3
    console = Console(record=True, width=200)
    console.print(table)
    assert "two_stage" in console.export_text()


async def test_streaming_tts_and_failures_in_the_bench() -> None:
    streaming = load_scenario(SCENARIOS_DIR / "seed_streaming.json").scaled(0.5)
    plain = dataclasses.replace(
        streaming, sentences=tuple(dataclasses.replace(s, ttfb_s=None) for s in streaming.sentences)
    )
    fast = (await run_strategies(streaming, ("realtime",)))["strategies"]["realtime"]
    slow = (await run_strategies(plain, ("realtime",)))["strategies"]["realtime"]
    assert fast["first_audio_s"] < slow["first_audio_s"]
    assert fast["first_audio_s"] >= fast["bound_first_audio_s"] - EPS

    flaky = dataclasses.replace(
        SEED_SCENARIO.scaled(0.2),
        sentences=tuple(
            dataclasses.replace(s, fail=(i == 1)) for i, s in enumerate(SEED_SCENARIO.scaled(0.2).sentences)
        ),
    )
    r = (await run_strategies(flaky, ("realtime",)))["strategies"]["realtime"]
    assert r["order"] == [0, 2]
    assert r["skipped"] == [1]
