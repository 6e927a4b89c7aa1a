"""Settings: every knob, from ``HANMADI_*`` environment variables or a ``.env`` file, validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLang = Literal["ko", "en"]
Strategy = Literal["realtime", "two_stage", "sequential"]

DEFAULT_SYSTEM_PROMPT = (
    "당신은 한국어 전화 상담원입니다. 고객의 말에 짧고 친절하게, 한두 문장으로 답하세요. "
    "전화 통화이므로 목록이나 기호 없이 자연스러운 말로 답하세요."
)
DEFAULT_GREETING = "안녕하세요, 한마디 상담원입니다. 무엇을 도와드릴까요?"


class Settings(BaseSettings):
    """All of hanmadi's configuration. Environment: ``HANMADI_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="HANMADI_", env_file=".env", extra="ignore")

    # --- server / telephony -------------------------------------------------------------------------
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    public_url: str = Field("", description="https base URL as Twilio sees this server, e.g. https://bot.example.com")
    twilio_auth_token: SecretStr | None = None
    dev: bool = Field(False, description="development mode: no auth token needed, loopback only")
    max_calls: int = Field(200, ge=1)
    max_bad_frames: int = Field(50, ge=1)
    max_message_bytes: int = Field(64 * 1024, ge=1024)
    stream_token_ttl_s: float = Field(60.0, gt=0)
    drain_timeout_s: float = Field(30.0, ge=0)
    busy_message: str = "죄송합니다. 지금은 모든 상담원이 통화 중입니다. 잠시 후 다시 걸어 주세요."

    # --- turn taking ---------------------------------------------------------------------------------
    vad_aggressiveness: int = Field(2, ge=0, le=3)
    endpointing_ms: int = Field(500, ge=100, le=5000)
    min_speech_ms: int = Field(200, ge=20)
    barge_in_min_speech_ms: int = Field(300, ge=20)
    backchannels: list[str] = ["네", "예", "응", "아 네", "음", "네네", "어", "아"]

    # --- agent ---------------------------------------------------------------------------------------
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    greeting: str = DEFAULT_GREETING
    llm_fallback: str = "죄송합니다, 잠시 문제가 생겼어요. 다시 한 번 말씀해 주시겠어요?"
    max_history_turns: int = Field(8, ge=0)
    preemptive_generation: bool = False
    preemptive_pause_ms: int = Field(200, ge=60, description="caller's pause that starts a preemptive LLM answer")

    # --- engine ------------------------------------------------------------------------------------
    strategy: Strategy = "realtime"
    max_parallel_tts: int = Field(4, ge=1, le=64)
    max_buffered_audio_s: float = Field(30.0, gt=0)
    tts_timeout_s: float = Field(5.0, gt=0)
    tts_retries: int = Field(1, ge=0, le=5)
    llm_timeout_s: float = Field(10.0, gt=0, description="no LLM text for this long: the reply falls back")
    first_clause_split: bool = True
    first_clause_min_chars: int = Field(25, ge=5)
    max_sentence_chars: int = Field(120, ge=20)
    log_lang: LogLang = "ko"

    # --- providers -----------------------------------------------------------------------------------
    stt: str = "local"
    llm: str = "local"
    tts: str = "local"
    model_cache_dir: Path = Path.home() / ".cache" / "hanmadi"
    # one llama.cpp thread: two are ~1.4x faster on an idle 2-core box but ~10x slower when the cores are shared
    llm_threads: int = Field(1, ge=1)
    llm_max_tokens: int = Field(96, ge=8)
    tts_voice: str = "ko"
    tts_rate: int = Field(175, ge=80, le=450)

    # OpenAI-compatible (OpenAI, vLLM, Ollama, llama.cpp server)
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    openai_tts_model: str = "gpt-4o-mini-tts"
    openai_tts_voice: str = "alloy"
    openai_stt_model: str = "gpt-4o-mini-transcribe"
    # ElevenLabs
    elevenlabs_api_key: SecretStr | None = None
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    elevenlabs_voice_id: str = ""
    elevenlabs_model: str = "eleven_multilingual_v2"
    # Google Cloud Text-to-Speech
    google_api_key: SecretStr | None = None
    google_tts_base_url: str = "https://texttospeech.googleapis.com"
    google_tts_voice: str = "ko-KR-Standard-A"
    # Naver CLOVA Voice
    clova_client_id: str = ""
    clova_client_secret: SecretStr | None = None
    clova_base_url: str = "https://naveropenapi.apigw.ntruss.com"
    clova_speaker: str = "nara"
    # Deepgram
    deepgram_api_key: SecretStr | None = None
    deepgram_base_url: str = "wss://api.deepgram.com"
    deepgram_model: str = "nova-2"
    provider_timeout_s: float = Field(10.0, gt=0)

    # --- records -------------------------------------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///hanmadi.db"
    admin_token: SecretStr | None = None
    record_audio: bool = False
    recordings_dir: Path = Path("recordings")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not v.startswith(("https://", "http://")):
            raise ValueError("public_url must start with https:// (or http:// for local testing)")
        return v

    @field_validator("stt", "llm", "tts")
    @classmethod
    def _provider_name(cls, v: str) -> str:
        return v.strip().lower()

    @model_validator(mode="after")
    def _speech_lengths(self) -> Settings:
        if self.barge_in_min_speech_ms < self.min_speech_ms:
            raise ValueError("barge_in_min_speech_ms must be >= min_speech_ms")
        if self.preemptive_pause_ms >= self.endpointing_ms:
            raise ValueError("preemptive_pause_ms must be shorter than endpointing_ms")
        return self

    def auth_token(self) -> str:
        """The Twilio auth token, or '' when none is configured (dev mode)."""
        return self.twilio_auth_token.get_secret_value() if self.twilio_auth_token else ""
