"""`hanmadi call` against a real server: each --say is a turn, and --turns reaches the caller (issue 9 papercut)."""

from __future__ import annotations

import json

import pytest
from e2e_support import AUTH_TOKEN
from typer.testing import CliRunner

from hanmadi.cli import app
from hanmadi.config import Settings

pytestmark = pytest.mark.e2e
runner = CliRunner()


@pytest.fixture(autouse=True)
def simulated_voice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANMADI_TTS", "simulated")  # the caller's own voice for --say


def test_two_says_are_two_turns(server: tuple[str, Settings]) -> None:
    url, _ = server
    args = ["call", url, "--auth-token", AUTH_TOKEN, "--say", "예약하고 싶어요", "--say", "내일 저녁이요", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["turns"]) == 2


def test_turns_repeats_the_says(server: tuple[str, Settings]) -> None:
    url, _ = server
    args = ["call", url, "--auth-token", AUTH_TOKEN, "--say", "여보세요", "--turns", "3", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["turns"]) == 3
