"""Settings: every knob, from ``HANMADI_*`` environment variables or a ``.env`` file, validated at start-up."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hanmadi.engine.scheduler import EngineConfig
from hanmadi.text.lexicon import Lexicon
from hanmadi.text.speakable import speaker

LogLang = Literal["ko", "en"]
Strategy = Literal["realtime", "two_stage", "sequential"]

DEFAULT_SYSTEM_PROMPT = (
    "당신은 한국어 전화 상담원입니다. 고객의 말에 짧고 친절하게, 한두 문장으로 답하세요. "
    "전화 통화이므로 목록이나 기호 없이 자연스러운 말로 답하세요."
)
MIN_ADMIN_TOKEN_CHARS = 24
DEFAULT_GREETING = "안녕하세요, 한마디 상담원입니다. 무엇을 도와드릴까요?"


class Settings(BaseSettings):
    """All of hanmadi's configuration. Environment: ``HANMADI_<FIELD>`` (case-insensitive)."""

    _lexicon: Lexicon | None = PrivateAttr(None)
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
    max_call_s: float = Field(1800.0, gt=0, description="a call this long gets a polite goodbye, then is hung up")
    goodbye_message: str = "통화 가능 시간이 다 되어 이만 전화를 끊겠습니다. 이용해 주셔서 감사합니다."
    receive_timeout_s: float = Field(10.0, gt=0, description="no message from Twilio for this long: the call is over")
    stt_backlog_s: float = Field(10.0, gt=0, description="caller audio the STT may fall behind before frames drop")
    stt_block_ms: int | None = Field(
        None,
        ge=20,
        le=200,
        description="caller audio handed to the STT at a time; unset: 100 ms (Vosk decodes 100 ms blocks anyway), "
        "20 ms for STT=local, whose Whisper pass starts at the first pause frame; a partial may come up to this "
        "much less 20 ms later, an end of speech hands over what is buffered at once",
    )
    busy_message: str = "죄송합니다. 지금은 모든 상담원이 통화 중입니다. 잠시 후 다시 걸어 주세요."
    # limits before work (see limits.py): what a peer may cost before it has proved anything
    start_timeout_s: float = Field(5.0, gt=0, description="a media socket without a valid start by then is closed")
    max_pending_sockets_per_ip: int = Field(50, ge=1, description="media sockets per address not yet started")
    http_header_timeout_s: float = Field(10.0, gt=0, description="request headers must arrive within this")
    http_body_timeout_s: float = Field(10.0, gt=0, description="a request body must arrive within this")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="largest request body (webhooks are ~2 KB)")

    # --- turn taking ---------------------------------------------------------------------------------
    vad_aggressiveness: int = Field(2, ge=0, le=3)
    endpointing_ms: int = Field(500, ge=100, le=5000)
    # Korean end-of-turn: a sentence-final ending (…요, …니다, …까, ?) ends the turn sooner, a connective (…는데) later
    endpointing_final_ms: int = Field(250, ge=60, le=5000, description="silence after a sentence-final ending")
    endpointing_connective_ms: int = Field(900, ge=100, le=10000, description="silence after a connective ending")
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
    # the business's knowledge (knowledge.py): what the agent answers from; reloaded on change or SIGHUP
    knowledge_file: Path | None = Field(None, description="YAML or JSON: entries (questions, answer) and facts")
    knowledge_poll_s: float = Field(2.0, ge=0, description="how often the file is checked for changes (0: SIGHUP only)")
    knowledge_top_k: int = Field(3, ge=1, le=20, description="entries put in the LLM's prompt")
    knowledge_answer_score: float = Field(0.2, gt=0, le=1, description="a base model speaks the entry's answer")
    knowledge_min_score: float = Field(0.1, ge=0, le=1, description="below this an entry is not relevant")
    knowledge_unknown_reply: str = Field("", description="the honest 'I don't know' line ('' = built-in)")

    # --- actions: tools, phone control, outbound calls, call webhooks ----------------------------------
    tools_file: Path | None = Field(None, description="YAML or JSON file of the business's HTTP tools")
    builtin_tools: Annotated[list[str], NoDecode] = ["end_call", "transfer_call", "collect_digits"]
    transfer_numbers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="where transfer_call may send a caller: '+8221234567' or 'label=+82…'"
    )
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of tool calls and call webhooks")
    webhook_url: str = Field("", description="receives call.started / call.transferred / call.ended")
    tool_filler_after_ms: int = Field(300, ge=0, description="a tool slower than this gets its filler spoken")
    tool_filler: str = "잠시만요, 확인해 보겠습니다."
    goodbye: str = "전화 주셔서 감사합니다. 좋은 하루 보내세요."
    transfer_message: str = "담당자에게 연결해 드리겠습니다. 잠시만 기다려 주세요."
    idle_prompt_s: float = Field(8.0, gt=0, description="caller silence after our reply before we check on them")
    idle_prompts: int = Field(2, ge=0, description="unanswered idle prompts before the goodbye and hang-up")
    idle_prompt: str = "여보세요, 듣고 계신가요?"
    voicemail_message: str = "안녕하세요, 한마디 상담원입니다. 다시 연락드리겠습니다. 감사합니다."
    twilio_account_sid: str = ""
    twilio_api_base: str = "https://api.twilio.com"
    twilio_from_number: str = Field("", description="caller ID of outbound calls (hanmadi dial --from overrides)")

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
    # written → spoken text right before TTS (text/speakable.py): 3시 → 세 시, 12,500원 → 만 이천오백 원
    speakable: bool = Field(True, description="numbers, dates, money, phone numbers… in words before TTS")
    lexicon: Path | None = Field(None, description="TSV or JSON written→spoken pronunciations, applied first")
    log_lang: LogLang = "ko"
    log_format: Literal["text", "json"] = Field("text", description="text lines (escaped) or JSON lines")

    # --- providers -----------------------------------------------------------------------------------
    stt: str = "local"
    llm: str = "local"
    tts: str = "local"
    model_cache_dir: Path = Path.home() / ".cache" / "hanmadi"
    # local STT (Vosk partials + Whisper-base final): Whisper's threads; the caller's pause that starts the final
    # pass speculatively; a 10/20 s encoder window for short utterances instead of Whisper's 30 s (4x less encoder)
    whisper_threads: int = Field(2, ge=1)
    stt_speculative_pause_ms: int = Field(120, ge=40, le=2000)
    whisper_short_window: bool = True
    whisper_timeout_s: float = Field(3.0, gt=0, description="a slower final pass gives way to Vosk's words")
    # one llama.cpp thread: two are ~1.4x faster on an idle 2-core box but ~10x slower when the cores are shared
    llm_threads: int = Field(1, ge=1)
    llm_max_tokens: int = Field(96, ge=8)
    # llama.cpp's extra buffer types (weight repacking, AMX) on CPUs with AMX: a natively built llama.cpp crashed there
    llm_allow_amx: bool = False
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
    store_journal: Path = Field(
        Path("store-journal"), description="directory of the records journal kept while the database is away"
    )
    store_journal_max_mb: float = Field(
        1024.0, gt=0, description="the journal's cap: past it, records wait in memory, then are dropped and counted"
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not v.startswith(("https://", "http://")):
            raise ValueError("public_url must start with https:// (or http:// for local testing)")
        return v

    @field_validator("transfer_numbers", "builtin_tools", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        # HANMADI_TRANSFER_NUMBERS="예약팀=+8221234567,+8227654321"; a JSON list works too; "" is an empty list
        if isinstance(v, str):
            if v.lstrip().startswith("["):
                return json.loads(v)
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    @field_validator("builtin_tools")
    @classmethod
    def _known_builtins(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - {"end_call", "transfer_call", "collect_digits"})
        if unknown:
            raise ValueError(f"unknown built-in tool(s) {unknown}: choose from end_call, transfer_call, collect_digits")
        return v

    @field_validator("webhook_url", "twilio_api_base")
    @classmethod
    def _http_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return v

    @field_validator("admin_token")
    @classmethod
    def _admin_token_length(cls, v: SecretStr | None) -> SecretStr | None:
        # the admin token guards transcripts and recordings: long enough that guessing it over HTTP is hopeless
        if v is not None and v.get_secret_value() and len(v.get_secret_value()) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"admin_token must be at least {MIN_ADMIN_TOKEN_CHARS} characters (try: openssl rand -hex 24)"
            )
        return v

    @field_validator("stt", "llm", "tts")
    @classmethod
    def _provider_name(cls, v: str) -> str:
        return v.strip().lower()

    @model_validator(mode="after")
    def _load_lexicon(self) -> Settings:
        # read once at start-up: a bad file stops the server with its path and line, not the first call
        self._lexicon = Lexicon.load(self.lexicon) if self.lexicon is not None else None
        return self

    def pronunciations(self) -> Lexicon | None:
        """The deployment's lexicon (HANMADI_LEXICON), read at start-up."""
        return self._lexicon

    def speaker(self, lang: str = "ko") -> Callable[[str], str] | None:
        """The written → spoken text function the engine applies before TTS (None: HANMADI_SPEAKABLE=false)."""
        return speaker(lang, self._lexicon) if self.speakable else None

    def engine_config(self) -> EngineConfig:
        """The engine's part of the settings: the engine itself never sees ``Settings``."""
        return EngineConfig(
            strategy=self.strategy,
            max_parallel_tts=self.max_parallel_tts,
            max_buffered_audio_s=self.max_buffered_audio_s,
            tts_timeout_s=self.tts_timeout_s,
            tts_retries=self.tts_retries,
            first_clause_split=self.first_clause_split,
            first_clause_min_chars=self.first_clause_min_chars,
            max_sentence_chars=self.max_sentence_chars,
            fallback_text=self.llm_fallback,
            speakable=self.speaker(),
        )

    @model_validator(mode="after")
    def _speech_lengths(self) -> Settings:
        if self.barge_in_min_speech_ms < self.min_speech_ms:
            raise ValueError("barge_in_min_speech_ms must be >= min_speech_ms")
        if self.preemptive_pause_ms >= self.endpointing_ms:
            raise ValueError("preemptive_pause_ms must be shorter than endpointing_ms")
        if not self.endpointing_final_ms <= self.endpointing_ms <= self.endpointing_connective_ms:
            raise ValueError("endpointing_final_ms <= endpointing_ms <= endpointing_connective_ms must hold")
        return self

    def stt_block(self) -> int:
        """Milliseconds of caller audio handed to the STT at a time (``stt_block_ms``, else the STT's best)."""
        if self.stt_block_ms is not None:
            return self.stt_block_ms
        return 20 if self.stt == "local" else 100

    def auth_token(self) -> str:
        """The Twilio auth token, or '' when none is configured (dev mode)."""
        return self.twilio_auth_token.get_secret_value() if self.twilio_auth_token else ""
