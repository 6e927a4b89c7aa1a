"""hanmadi dial: a real server on loopback places the call through its /api with the admin token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from actions_support import ACCOUNT_SID, TWILIO_TOKEN, ActionServers, action_servers
from hanmadi.cli import app
from hanmadi.loopback import serve_in_thread
from hanmadi.net import free_port
from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedTTS
from hanmadi.server import Providers
from loopback_support import loopback_settings

ADMIN_TOKEN = "dial-admin-token-0123456789abcdef"


@pytest.fixture(scope="module")
def servers() -> Iterator[ActionServers]:
    with action_servers() as s:
        yield s


def test_dial_places_the_call_with_context(
    tmp_path: Path, servers: ActionServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    settings = loopback_settings(
        tmp_path,
        port,
        twilio_auth_token=TWILIO_TOKEN,
        admin_token=ADMIN_TOKEN,
        twilio_account_sid=ACCOUNT_SID,
        twilio_api_base=servers.base,
    )
    providers = Providers(stt=SimulatedSTT(["..."]), llm=ScriptedLLM(), tts=SimulatedTTS())
    monkeypatch.setenv("HANMADI_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("HANMADI_PORT", str(port))
    with serve_in_thread(settings, port=port, providers=providers) as url:
        runner = CliRunner()
        ok = runner.invoke(app, ["dial", "+821012345678", "--from", "+8225550100", "--context", "name=김민수"])
        bad = runner.invoke(app, ["dial", "+821012345678", "--context", "name"])
        no_caller_id = runner.invoke(app, ["dial", "+821012345678", "--server", url])
        outbound = app_state_outbound(url)
    assert ok.exit_code == 0, ok.output
    call_sid = json.loads(ok.stdout)["call_sid"]
    (create,) = servers.rest  # the refused ones never reached Twilio
    assert create.form["From"] == "+8225550100" and create.form["AsyncAmd"] == "true"
    assert outbound[call_sid] == {"name": "김민수"}
    assert bad.exit_code == 2 and "expected key=value" in bad.output
    assert no_caller_id.exit_code == 1 and "HANMADI_TWILIO_FROM_NUMBER" in no_caller_id.output


def app_state_outbound(url: str) -> dict[str, dict[str, str]]:
    from hanmadi.loopback import _running

    state, _ = _running[url]
    assert state.actions is not None
    return {sid: call.context for sid, call in state.actions.outbound.items()}
