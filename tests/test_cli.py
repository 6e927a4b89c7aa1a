"""The command line refuses bad input with a clear message and exit code 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hanmadi.cli import app

runner = CliRunner()


def test_serve_without_auth_token_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HANMADI_TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HANMADI_STT", "simulated")
    monkeypatch.setenv("HANMADI_LLM", "simulated")
    monkeypatch.setenv("HANMADI_TTS", "simulated")
    result = runner.invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 2
    assert "HANMADI_TWILIO_AUTH_TOKEN" in result.output
    assert "--dev" in result.output


def test_unknown_provider_is_a_start_up_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANMADI_TWILIO_AUTH_TOKEN", "x")
    monkeypatch.setenv("HANMADI_TTS", "nosuchvendor")
    result = runner.invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 2
    assert "nosuchvendor" in result.output


def test_invalid_setting_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANMADI_ENDPOINTING_MS", "not-a-number")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "endpointing_ms" in result.output


def test_bench_rejects_a_bad_scenario_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "send_s": 0.07, "sentences": [{"text": "a", "emit_s": "soon"}]}))
    result = runner.invoke(app, ["bench", "strategies", "--scenario", str(bad)])
    assert result.exit_code == 2
    assert "bad scenario" in result.output


def test_call_needs_exactly_one_voice_source() -> None:
    result = runner.invoke(app, ["call", "http://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "--audio" in result.output


def test_call_param_must_be_key_value(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    from hanmadi.telephony.caller import write_wav

    write_wav(wav, bytes(1600))
    result = runner.invoke(app, ["call", "ws://127.0.0.1:1/twilio/media", "--audio", str(wav), "--param", "novalue"])
    assert result.exit_code == 2
    assert "k=v" in result.output
