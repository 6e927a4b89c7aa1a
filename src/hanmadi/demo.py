"""``hanmadi demo``: a whole offline call on the embedded stack, end to end through the real server.

Loads the models (Rich progress), starts the server on loopback with a random Twilio auth token, lets the simulated
caller place a signed call and ask the example restaurant (``examples/restaurant-knowledge.yaml``, the agent's
knowledge unless ``HANMADI_KNOWLEDGE_FILE`` is set) a few questions in espeak's voice, then prints each turn's
seed-format timeline (from the call records) and a summary table, and saves the conversation as a stereo WAV.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import async_sessionmaker

from hanmadi.ask import ask
from hanmadi.config import Settings
from hanmadi.engine.timeline import TimelineEvent, format_event
from hanmadi.knowledge import example_knowledge_path, source_from_settings
from hanmadi.loopback import serve_in_thread
from hanmadi.net import free_port
from hanmadi.providers.base import Lifecycle
from hanmadi.server import Providers, build_providers
from hanmadi.store.records import CallDetail
from hanmadi.store.repository import create_engine_for, get_call
from hanmadi.telephony.caller import CallerConfig, CallResult, place_call, tts_utterance, write_wav

# What the caller says, turn by turn, to the example restaurant (examples/restaurant-knowledge.yaml).
DEMO_LINES = [
    "안녕하세요. 가장 가까운 지하철역이 어디예요?",
    "주차는 가능한가요?",
    "네, 감사합니다.",
]


async def load_providers(settings: Settings, console: Console) -> Providers:
    """Build the configured providers and load their models, with progress on the console."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False
    ) as progress:
        task = progress.add_task("providers: building", total=None)
        providers = build_providers(settings)
        for label, provider in (("STT", providers.stt), ("LLM", providers.llm), ("TTS", providers.tts)):
            progress.update(task, description=f"loading {label} ({type(provider).__name__})")
            if isinstance(provider, Lifecycle):
                await provider.warm_up()
        progress.update(task, description="models loaded")
    return providers


async def _read_call(database_url: str, call_sid: str) -> CallDetail | None:
    engine = create_engine_for(database_url)
    try:
        async with async_sessionmaker(engine)() as session:
            return await get_call(session, call_sid)
    finally:
        await engine.dispose()


def _event(e: Any) -> TimelineEvent:
    return TimelineEvent(
        t=e.t,
        kind=e.kind,
        index=e.index,
        text=e.text or "",
        duration_s=e.duration_s,
        audio_s=e.audio_s,
        reason=e.reason or "",
        final=bool(e.final) if hasattr(e, "final") else False,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


async def offline_call(
    settings: Settings, lines: list[str], console: Console, *, providers: Providers | None = None
) -> tuple[CallResult, CallDetail | None]:
    """Place one signed call through a loopback server; the caller speaks ``lines`` in the local TTS's voice."""
    providers = providers or await load_providers(settings, console)
    console.print("caller's voice: synthesizing the caller's lines with the TTS")
    utterances = [await tts_utterance(providers.tts, line) for line in lines]
    port = free_port()
    token = secrets.token_hex(16)
    server_settings = settings.model_copy(
        update={
            "twilio_auth_token": SecretStr(token),
            "public_url": f"http://127.0.0.1:{port}",
            "port": port,
            "host": "127.0.0.1",
            "dev": False,
        }
    )
    console.print(
        f"server: http://127.0.0.1:{port} (stt={providers.stt.name}, llm={providers.llm.name}, "
        f"tts={providers.tts.name}); placing a signed call"
    )
    with serve_in_thread(server_settings, port=port, providers=providers) as url:
        result: CallResult = await place_call(
            CallerConfig(
                url=url,
                utterances=utterances,
                auth_token=token,
                turns=len(utterances),
                answer_timeout_s=60.0,
                greeting_timeout_s=30.0,
                silence_after_s=1.2,
            )
        )
    return result, await _read_call(settings.database_url, result.call_sid)


async def run_demo(settings: Settings, *, turns: int, out: Path, console: Console) -> dict[str, Any]:
    """Run the demo call; print the timelines and the summary; return the summary as a dict."""
    started = time.monotonic()
    if settings.knowledge_file is None:  # the demo's agent knows the example restaurant
        settings = settings.model_copy(update={"knowledge_file": example_knowledge_path()})
        console.print(f"knowledge: {settings.knowledge_file} (HANMADI_KNOWLEDGE_FILE to use your own)")
    lines = DEMO_LINES[:turns]
    providers = await load_providers(settings, console)
    result, detail = await offline_call(settings, lines, console, providers=providers)
    write_wav(out, result.conversation_stereo(), channels=2)
    summary = _report(console, detail, result, lines, settings.log_lang)
    summary["ask"] = await _text_path(settings, lines, providers, console)
    summary["wav"] = str(out)
    summary["seconds"] = round(time.monotonic() - started, 1)
    console.print(f"\nconversation saved: {out} (stereo: caller left, agent right)")
    return summary


async def _text_path(settings: Settings, lines: list[str], providers: Providers, console: Console) -> list[Any]:
    """The same lines through the text path (``hanmadi ask``): what the agent answers when the words arrive intact.

    The caller's espeak voice is beyond any recogniser (see the README), so the call above shows the pipeline and
    its timing; this shows the answers the knowledge gives.
    """
    turns = await ask(settings, lines, providers.llm, source_from_settings(settings.knowledge_file))
    table = Table(title="the same lines as text (hanmadi ask)")
    for column in ("caller said", "agent said", "knowledge"):
        table.add_column(column)
    for turn in turns:
        entries = ", ".join(f"#{h.index} {h.score:.2f}" for h in turn.grounding.hits)
        table.add_row(turn.caller, turn.reply, f"{turn.grounding.mode} {entries}".strip())
    console.print(table)
    return [turn.to_dict() for turn in turns]


def _report(
    console: Console, detail: CallDetail | None, result: CallResult, lines: list[str], lang: str
) -> dict[str, Any]:
    caller_turns = result.to_json()["turns"]
    table = Table(title=f"call {result.call_sid}")
    for column in (
        "turn",
        "caller said",
        "STT heard",
        "agent said",
        "voice-to-voice ms",
        "first response ms",
        "total ms",
    ):
        table.add_column(column)
    rows: list[dict[str, Any]] = []
    stored = detail.turns if detail else []
    for turn in stored:
        console.rule(f"turn {turn.index}" + (" (greeting)" if turn.index == 0 else ""))
        for event in turn.events:
            if event.kind != "chunk_sent":
                console.print(format_event(_event(event), lang), highlight=False, markup=False)
        said = lines[turn.index - 1] if 0 < turn.index <= len(lines) else ""
        measured = caller_turns[turn.index - 1] if 0 < turn.index <= len(caller_turns) else {}
        v2v_ms = measured.get("first_audio_ms")
        row = {
            "turn": turn.index,
            "caller_said": said,
            "stt_heard": turn.heard_text,
            "agent_said": turn.spoken_text,
            "voice_to_voice_ms": v2v_ms,
            "first_response_ms": None if turn.first_audio_s is None else round(turn.first_audio_s * 1000),
            "total_ms": None if turn.total_s is None else round(turn.total_s * 1000),
        }
        rows.append(row)
        table.add_row(
            str(turn.index),
            said or "(greeting)",
            turn.heard_text or "-",
            turn.spoken_text or "-",
            "-" if v2v_ms is None else f"{v2v_ms:.0f}",
            _ms(turn.first_audio_s),
            _ms(turn.total_s),
        )
    console.print(table)
    if detail is None:
        console.print("[red]the call was not found in the records[/red]")
    return {"call_sid": result.call_sid, "turns": rows}
