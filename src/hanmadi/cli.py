"""The ``hanmadi`` command: serve, demo, call, bench, load."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from hanmadi.config import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="hanmadi (한마디): Korean phone voice-agent server",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: print numbers (JSON with --json)")
app.add_typer(bench_app, name="bench")
console = Console(stderr=True)


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        console.print(f"[red]invalid configuration:[/red]\n{exc}")
        raise typer.Exit(2) from exc


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _refuse_broken_local_llm(settings: Settings) -> None:
    """The local LLM must generate in a child process first: a CPU the build cannot run would segfault us."""
    if settings.llm != "local":
        return
    from hanmadi.probe import probe_local_llm

    result = probe_local_llm(settings.model_cache_dir, settings.llm_threads, settings.llm_allow_amx)
    if not result.ok:
        console.print(f"[red]cannot start:[/red] {result.detail}\n[yellow]remedy:[/yellow] {result.remedy}")
        console.print("run `hanmadi doctor` for the whole picture")
        raise typer.Exit(2)


def _setup_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Logs on stderr: escaped text lines, or JSON lines with HANMADI_LOG_FORMAT=json (``fmt`` overrides)."""
    from hanmadi.logs import setup

    chosen = (fmt or os.environ.get("HANMADI_LOG_FORMAT", "text")).strip().lower()
    setup(level, "json" if chosen == "json" else "text")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default HANMADI_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default HANMADI_PORT)")] = None,
    dev: Annotated[bool, typer.Option("--dev", help="no auth token needed; binds loopback only")] = False,
    log_level: Annotated[str, typer.Option(help="logging level")] = "INFO",
) -> None:
    """Run the server (uvicorn) with the configured providers."""
    from hanmadi.limits import uvicorn_config
    from hanmadi.providers.base import ConfigError
    from hanmadi.server import DrainingServer, create_app

    _setup_logging(log_level)
    settings = _settings(host=host, port=port)
    _setup_logging(log_level, settings.log_format)  # the format may come from .env too
    if dev:
        settings = settings.model_copy(update={"dev": True})
    if settings.dev and not settings.auth_token():
        if settings.host not in ("127.0.0.1", "localhost", "::1"):
            console.print("[yellow]--dev without an auth token: binding 127.0.0.1 only[/yellow]")
            settings = settings.model_copy(update={"host": "127.0.0.1"})
    try:
        application = create_app(settings)
    except (ConfigError, RuntimeError) as exc:
        console.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from exc
    _refuse_broken_local_llm(settings)
    # log_config=None: uvicorn's loggers (request paths included) go through our escaping / JSON handler
    config = uvicorn_config(
        application, settings, host=settings.host, port=settings.port, log_level=log_level.lower(), log_config=None
    )
    DrainingServer(config, application.state.hanmadi, freeze_heap=True).run()


@app.command()
def demo(
    turns: Annotated[int, typer.Option(help="caller turns (1-3)", min=1, max=3)] = 3,
    out: Annotated[Path, typer.Option(help="stereo WAV of the conversation")] = Path("artifacts/demo-call.wav"),
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """A whole offline call on the embedded stack: server on loopback, simulated caller, timeline, WAV."""
    from hanmadi.demo import run_demo

    _setup_logging("WARNING")
    settings = _settings()
    _refuse_broken_local_llm(settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run_demo(settings, turns=turns, out=out, console=console))
    if json_out:
        _print_json(result)


@app.command()
def call(
    url: Annotated[str, typer.Argument(help="http(s)://host[:port] (webhook first) or ws(s)://…/twilio/media")],
    audio: Annotated[Path | None, typer.Option("--audio", help="WAV file the caller says (each turn)")] = None,
    say: Annotated[list[str] | None, typer.Option("--say", help="text the caller says (repeat for turns)")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="custom parameter k=v")] = None,
    auth_token: Annotated[str | None, typer.Option("--auth-token", help="sign the webhook like Twilio")] = None,
    turns: Annotated[
        int | None, typer.Option(help="caller turns (default: one per --say, or 1 with --audio)", min=1)
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print measurements as JSON")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="save the bot's audio as a WAV")] = None,
) -> None:
    """Place a simulated Twilio call against a running server."""
    from hanmadi.telephony.caller import CallerConfig, load_wav_8k, place_call, tts_utterance, write_wav

    if (audio is None) == (not say):
        console.print("[red]give exactly one of --audio WAV or --say TEXT[/red]")
        raise typer.Exit(2)
    params: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            console.print(f"[red]--param wants k=v, got {item!r}[/red]")
            raise typer.Exit(2)
        params[key] = value
    if audio is not None:
        utterances = [load_wav_8k(audio)]
    else:
        from hanmadi.providers.registry import make_tts

        tts = make_tts(_settings())
        utterances = [asyncio.run(tts_utterance(tts, text)) for text in say or []]
    count = turns if turns is not None else len(utterances)
    plan = [utterances[i % len(utterances)] for i in range(count)]
    config = CallerConfig(url=url, utterances=plan, turns=count, params=params, auth_token=auth_token)
    result = asyncio.run(place_call(config))
    if out is not None:
        write_wav(out, result.reply_pcm)
    if json_out:
        _print_json(result.to_json())
    else:
        for i, turn in enumerate(result.to_json()["turns"]):
            console.print(f"turn {i}: first audio {turn['first_audio_ms']} ms, reply {turn['reply_audio_s']} s")


@bench_app.command("strategies")
def bench_strategies(
    scenario: Annotated[Path | None, typer.Option(help="scenario JSON file (default: the seed's)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The three response strategies (sequential, two_stage, realtime) on one scenario, in real time."""
    from hanmadi.bench.strategies import SEED_SCENARIO, ScenarioError, load_scenario, render_table, run_strategies

    try:
        chosen = load_scenario(scenario) if scenario else SEED_SCENARIO
    except ScenarioError as exc:
        console.print(f"[red]bad scenario:[/red] {exc}")
        raise typer.Exit(2) from exc
    result = asyncio.run(run_strategies(chosen))
    if json_out:
        _print_json(result)
    else:
        Console().print(render_table(result))


@bench_app.command("segmenter")
def bench_segmenter(tokens: Annotated[int, typer.Option(help="tokens to stream")] = 200_000) -> None:
    """Sentence segmenter throughput (tokens/s)."""
    from hanmadi.bench.segmenter import run

    _print_json(run(tokens))


@bench_app.command("providers")
def bench_providers() -> None:
    """The embedded stack alone: espeak, vosk, llama timings."""
    from hanmadi.bench.providers import run

    _print_json(asyncio.run(run()))


@bench_app.command("e2e")
def bench_e2e(
    turns: Annotated[int, typer.Option(help="caller turns to measure", min=1)] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    preemptive: Annotated[bool, typer.Option(help="start the LLM on the STT partial at pauses")] = False,
) -> None:
    """Voice-to-voice latency through the real server and socket on the embedded stack."""
    from hanmadi.bench.e2e import render_table, run_e2e

    settings = _settings()
    if preemptive:
        settings = settings.model_copy(update={"preemptive_generation": True})
    result = asyncio.run(run_e2e(settings, turns=turns, console=console))
    if json_out:
        _print_json(result)
    else:
        Console().print(render_table(result))


@app.command()
def load(
    calls: Annotated[int, typer.Option(help="concurrent simulated calls", min=1, max=1000)] = 200,
    ramp: Annotated[float, typer.Option(help="seconds over which the calls start", min=0)] = 10.0,
    duration: Annotated[float, typer.Option(help="seconds each call lasts", min=5, max=600)] = 30.0,
    url: Annotated[str | None, typer.Option(help="a running server (default: start one on loopback)")] = None,
    auth_token: Annotated[str | None, typer.Option("--auth-token", help="the running server's Twilio token")] = None,
    workers: Annotated[int | None, typer.Option(help="caller processes (default one per 50 calls)", min=1)] = None,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="record every call to SQLite, as in production")
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Many concurrent simulated callers against one server on loopback (seed latency profile, recorder on)."""
    from hanmadi.bench.load import run_load

    if url is not None and not url.startswith(("http://127.", "http://localhost", "http://[::1]", "ws://127.")):
        console.print("[red]load tests only target loopback (127.0.0.0/8, localhost, ::1)[/red]")
        raise typer.Exit(2)
    result = asyncio.run(run_load(calls, ramp, duration, url, auth_token=auth_token, workers=workers, record=record))
    if json_out:
        _print_json(result)
    else:
        for key, value in result.items():
            console.print(f"{key}: {value}")


@app.command()
def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="print the checks as JSON")] = False,
    dev: Annotated[bool, typer.Option("--dev", help="judge as a development setup (http, no token)")] = False,
) -> None:
    """Check this machine's install and configuration: one row per check, a remedy where it fails; exit 1 on failure."""
    from rich.table import Table

    from hanmadi.doctor import as_json, run_checks

    settings = _settings()
    checks = run_checks(settings, dev=dev or settings.dev)
    report = as_json(checks)
    if json_out:
        _print_json(report)
    else:
        colours = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
        table = Table(title="hanmadi doctor")
        for column in ("check", "status", "detail", "remedy"):
            table.add_column(column, overflow="fold")
        for check in checks:
            colour = colours[check.status]
            table.add_row(check.name, f"[{colour}]{check.status}[/{colour}]", check.detail, check.remedy)
        Console().print(table)
    if not report["ok"]:
        raise typer.Exit(1)


def _knowledge_source(path: Path | None) -> Any:
    """The knowledge of ``path`` (or ``None``); a file that cannot be used is a clear error, exit 2."""
    from hanmadi.knowledge import KnowledgeError, source_from_settings

    try:
        return source_from_settings(path)
    except KnowledgeError as exc:
        console.print(f"[red]bad knowledge file:[/red] {exc}")
        raise typer.Exit(2) from exc


async def _warm_llm(settings: Settings) -> Any:
    from hanmadi.providers.base import ConfigError, Lifecycle
    from hanmadi.providers.registry import make_llm

    try:
        llm = make_llm(settings)
    except ConfigError as exc:
        console.print(f"[red]cannot build the LLM:[/red] {exc}")
        raise typer.Exit(2) from exc
    if isinstance(llm, Lifecycle):
        await llm.warm_up()
    return llm


@app.command()
def ask(
    texts: Annotated[list[str], typer.Argument(help="what the caller says, one turn per argument")],
    knowledge: Annotated[Path | None, typer.Option(help="knowledge file (default HANMADI_KNOWLEDGE_FILE)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the turns as JSON")] = False,
) -> None:
    """Talk to the agent in text: settings, knowledge, LLM and tools as in a call, without audio."""
    from hanmadi.ask import ask as run_ask

    _setup_logging("WARNING")
    settings = _settings(knowledge_file=knowledge)
    source = _knowledge_source(settings.knowledge_file)
    _refuse_broken_local_llm(settings)

    async def run() -> list[Any]:
        return await run_ask(settings, texts, await _warm_llm(settings), source)

    turns = asyncio.run(run())
    if json_out:
        _print_json({"turns": [t.to_dict() for t in turns]})
        return
    out = Console()
    for turn in turns:
        entries = ", ".join(f"#{h.index} {h.score:.2f}" for h in turn.grounding.hits)
        out.print(f"[bold]고객:[/bold] {turn.caller}", highlight=False)
        out.print(f"[bold]상담원:[/bold] {turn.reply}", highlight=False)
        out.print(f"[dim]  {turn.grounding.mode}{' · ' + entries if entries else ''}[/dim]", highlight=False)


@bench_app.command("knowledge")
def bench_knowledge(
    knowledge: Annotated[Path | None, typer.Option(help="knowledge file (default: the example restaurant's)")] = None,
    paraphrases: Annotated[Path | None, typer.Option("--set", help="paraphrase set JSON (default: shipped)")] = None,
    retrieval_only: Annotated[bool, typer.Option("--retrieval-only", help="no LLM: retrieval only")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Retrieval top-1 accuracy and answer accuracy (the reply has the key fact) over Korean paraphrases."""
    from hanmadi.bench.knowledge import default_set_path, load_set, run_knowledge_bench
    from hanmadi.knowledge import KnowledgeError, example_knowledge_path

    _setup_logging("WARNING")
    try:
        path = knowledge or example_knowledge_path()
    except KnowledgeError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    settings = _settings(knowledge_file=path)
    source = _knowledge_source(path)
    cases = load_set(paraphrases or default_set_path())
    if not retrieval_only:
        _refuse_broken_local_llm(settings)

    async def run() -> dict[str, Any]:
        llm = None if retrieval_only else await _warm_llm(settings)
        return await run_knowledge_bench(settings, source, cases, llm)

    result = asyncio.run(run())
    if json_out:
        _print_json(result)
        return
    retrieved = result["retrieval"]
    console.print(f"paraphrases: {result['paraphrases']} over {result['entries']} entries ({result['knowledge']})")
    console.print(f"retrieval top-1: {retrieved['top1_accuracy']:.1%}  top-3: {retrieved['top3_accuracy']:.1%}")
    console.print(f"query: p50 {retrieved['query_us']['p50']} µs, p95 {retrieved['query_us']['p95']} µs")
    if "answer" in result:
        answer = result["answer"]
        console.print(f"answer accuracy ({result['llm']}): {answer['accuracy']:.1%} {answer['modes']}")
        console.print(f"unknown questions declined: {result['unknown']['declined']}")


@bench_app.command("stt")
def bench_stt(
    audio_dir: Annotated[Path, typer.Option("--audio", help="directory of 16-bit WAV recordings")],
    refs: Annotated[Path, typer.Option("--refs", help='JSON {"<file stem>": "<reference text>"}')],
    stt: Annotated[str | None, typer.Option("--stt", help="STT provider (default: HANMADI_STT)")] = None,
    phone: Annotated[bool, typer.Option("--phone", help="first pass the audio through 8 kHz mu-law")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Character error rate and final-transcript latency of a recogniser over recordings with references."""
    from hanmadi.bench.stt import BenchError, run_stt_bench
    from hanmadi.providers.base import ConfigError, ProviderError
    from hanmadi.providers.registry import make_stt

    settings = _settings(stt=stt)
    try:
        recogniser = make_stt(settings)
        result = asyncio.run(
            run_stt_bench(recogniser, audio_dir, refs, phone=phone, pause_ms=settings.endpointing_final_ms)
        )
    except (BenchError, ConfigError, ProviderError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if json_out:
        _print_json(result)
        return
    console.print(f"{result['provider']}: {result['files']} files, CER {result['cer']}, phone={result['phone']}")
    latency = result["final_latency_ms"]
    console.print(f"final transcript: p50 {latency['p50']} ms, p95 {latency['p95']} ms")
    console.print(f"event loop lag: {result['loop_lag_ms']} ms")
    for row in result["per_file"]:
        console.print(f"  {row['file']}: CER {row['cer']}  {row['text']}")


@app.command("speakable")
def speakable_command(
    text: Annotated[str, typer.Argument(help="written text, as the LLM would write it")],
    lexicon: Annotated[
        Path | None, typer.Option(help="TSV or JSON written→spoken lexicon (default: HANMADI_LEXICON)")
    ] = None,
    lang: Annotated[str, typer.Option(help="language of the rules: ko or en")] = "ko",
) -> None:
    """Print what the TTS is given for TEXT: numbers, dates, times, money, phone numbers, units… in words."""
    from hanmadi.text import Lexicon, LexiconError, speakable

    if lexicon is not None:
        try:
            table: Lexicon | None = Lexicon.load(lexicon)
        except LexiconError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
    else:
        table = _settings().pronunciations()
    sys.stdout.write(speakable(text, lang, table) + "\n")


@bench_app.command("speakable")
def bench_speakable(
    sentences: Annotated[int, typer.Option(help="sentences to normalise", min=1)] = 200_000,
    lang: Annotated[str, typer.Option(help="ko or en")] = "ko",
) -> None:
    """Written → spoken text throughput on one core (sentences/s, JSON)."""
    from hanmadi.bench.speakable import run

    _print_json(run(sentences, lang))


@bench_app.command("abuse")
def bench_abuse(
    sockets: Annotated[int, typer.Option(help="sockets sending one large frame each", min=1, max=200)] = 40,
    frame_mb: Annotated[float, typer.Option(help="size of that frame, MB", min=0.1, max=64)] = 16.0,
    idle: Annotated[int, typer.Option(help="sockets that never send a start", min=1, max=500)] = 50,
    start_timeout: Annotated[float, typer.Option(help="the server's HANMADI_START_TIMEOUT_S", min=0.1)] = 5.0,
) -> None:
    """What unauthenticated sockets cost a server on loopback: RSS under large frames, idle sockets closed (JSON)."""
    from hanmadi.bench.abuse import run_abuse

    _print_json(asyncio.run(run_abuse(sockets, frame_mb, idle, start_timeout)))


@app.command()
def dial(
    to: Annotated[str, typer.Argument(help="the number to call, E.164 (+821012345678)")],
    from_: Annotated[str | None, typer.Option("--from", help="caller ID (default HANMADI_TWILIO_FROM_NUMBER)")] = None,
    context: Annotated[
        list[str] | None, typer.Option("--context", help="what the agent should know, k=v (repeat)")
    ] = None,
    server: Annotated[
        str | None, typer.Option(help="the running hanmadi server (default http://127.0.0.1:HANMADI_PORT)")
    ] = None,
) -> None:
    """Place an outbound call through a running server (POST /api/calls with the admin token); print its call_sid."""
    import httpx

    from hanmadi.actions import parse_context

    settings = _settings()
    try:
        values = parse_context(context or [])
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if not settings.admin_token:
        console.print("[red]HANMADI_ADMIN_TOKEN is not set: the server's /api needs it[/red]")
        raise typer.Exit(2)
    base = (server or f"http://127.0.0.1:{settings.port}").rstrip("/")
    body: dict[str, Any] = {"to": to, "context": values}
    if from_:
        body["from"] = from_
    headers = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    try:
        response = httpx.post(f"{base}/api/calls", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {base}: {exc}[/red]")
        raise typer.Exit(1) from exc
    if response.status_code != 201:
        console.print(f"[red]{base} refused the call (HTTP {response.status_code}): {response.text[:300]}[/red]")
        raise typer.Exit(1)
    _print_json(response.json())


if __name__ == "__main__":
    app()
