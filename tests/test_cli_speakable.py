"""hanmadi speakable and hanmadi bench speakable: the result on stdout, a bad lexicon refused with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hanmadi.cli import app

runner = CliRunner()


def test_speakable_prints_the_spoken_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HANMADI_LEXICON", raising=False)
    result = runner.invoke(app, ["speakable", "내일 오후 3시 30분에 4명, 총 12,500원입니다."])
    assert result.exit_code == 0
    assert result.stdout == "내일 오후 세 시 삼십 분에 네 명, 총 만 이천오백 원입니다.\n"


def test_speakable_in_english() -> None:
    result = runner.invoke(app, ["speakable", "--lang", "en", "Table for 4 at 7:30 pm"])
    assert result.exit_code == 0
    assert result.stdout == "Table for four at seven thirty p.m.\n"


def test_speakable_with_a_lexicon_file(tmp_path: Path) -> None:
    lexicon = tmp_path / "lexicon.tsv"
    lexicon.write_text("한마디\t한마디 상담원\n", encoding="utf-8")
    result = runner.invoke(app, ["speakable", "--lexicon", str(lexicon), "한마디 2명"])
    assert result.exit_code == 0
    assert result.stdout == "한마디 상담원 두 명\n"


def test_speakable_uses_hanmadi_lexicon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lexicon = tmp_path / "lexicon.json"
    lexicon.write_text(json.dumps({"KTX": "고속열차"}), encoding="utf-8")
    monkeypatch.setenv("HANMADI_LEXICON", str(lexicon))
    result = runner.invoke(app, ["speakable", "KTX 2장"])
    assert result.exit_code == 0
    assert result.stdout == "고속열차 두 장\n"


def test_speakable_refuses_a_bad_lexicon(tmp_path: Path) -> None:
    lexicon = tmp_path / "bad.tsv"
    lexicon.write_text("no tab\n", encoding="utf-8")
    result = runner.invoke(app, ["speakable", "--lexicon", str(lexicon), "3명"])
    assert result.exit_code == 2
    assert "line 1" in " ".join(result.output.split())


def test_serve_refuses_a_bad_hanmadi_lexicon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lexicon = tmp_path / "bad.json"
    lexicon.write_text("{oops", encoding="utf-8")
    monkeypatch.setenv("HANMADI_LEXICON", str(lexicon))
    monkeypatch.setenv("HANMADI_TWILIO_AUTH_TOKEN", "x")
    result = runner.invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # the console wraps long lines
    assert "lexicon" in output and "not valid JSON" in output


def test_bench_speakable_prints_json() -> None:
    result = runner.invoke(app, ["bench", "speakable", "--sentences", "200"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["lang"] == "ko" and data["sentences"] == 200
    assert data["sentences_per_s"] > 0 and data["rewritten_sentences_per_s"] > 0
    assert 0 < data["corpus_rewritten"] < data["corpus"]
