"""``hanmadi ask`` and ``hanmadi bench knowledge`` through the command line (simulated LLM: no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hanmadi.cli import app
from hanmadi.knowledge import example_knowledge_path


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("HANMADI_LLM", "simulated")
    return CliRunner()


def test_ask_prints_each_turn_with_the_entries_that_grounded_it(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["ask", "주차 되나요?", "셔틀버스 있어요?", "--knowledge", str(example_knowledge_path()), "--json"]
    )
    assert result.exit_code == 0, result.output
    turns = json.loads(result.stdout)["turns"]
    assert [t["caller"] for t in turns] == ["주차 되나요?", "셔틀버스 있어요?"]
    assert turns[0]["grounded"] is True and turns[0]["entries"][0]["index"] == 8
    assert set(turns[0]["entries"][0]) >= {"index", "score"}
    assert turns[1]["grounded"] is False and turns[1]["entries"] == []
    assert all(t["reply"] for t in turns)


def test_ask_refuses_a_bad_knowledge_file_clearly(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("entries:\n  - answer: 네\n", encoding="utf-8")
    result = runner.invoke(app, ["ask", "주차 되나요?", "--knowledge", str(bad)])
    assert result.exit_code == 2
    assert "bad knowledge file" in result.output and "entries[0].questions" in result.output


def test_bench_knowledge_reports_retrieval_accuracy(runner: CliRunner) -> None:
    result = runner.invoke(app, ["bench", "knowledge", "--retrieval-only", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["paraphrases"] >= 100
    assert report["retrieval"]["top1_accuracy"] >= 0.9
    assert set(report["retrieval"]["query_us"]) == {"p50", "p95"}
