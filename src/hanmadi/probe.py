"""Child-process probes of the embedded stack: load a model and use it once, where a crash cannot hurt us.

A llama.cpp built for another CPU dies with SIGSEGV/SIGILL inside native code; no Python handler sees that. So the
local LLM (and espeak, and Vosk) are first exercised in a child interpreter (``python -m hanmadi.probe KIND``), and
the parent turns a dead child into one sentence with a remedy. ``hanmadi doctor`` shows every probe; ``hanmadi
serve`` and ``hanmadi demo`` run the LLM probe before loading the model in-process and refuse to start on failure.

A passing LLM probe is remembered in the model cache (keyed by the llama.cpp library, the model, the CPU's flags and
``HANMADI_LLM_ALLOW_AMX``), so a server restart on the same machine and build does not pay for it again.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

Kind = Literal["llm", "tts", "stt"]
PROBE_TIMEOUT_S: Final = 180.0
LLM_REMEDY: Final = (
    "rebuild the portable llama-cpp-python: `rm -rf .venv && make setup` (flags in scripts/setup-venv.sh); "
    "keep HANMADI_LLM_ALLOW_AMX=false; or use a vendor LLM (HANMADI_LLM=openai)"
)
_WHAT: Final = {"llm": "local LLM", "tts": "espeak TTS", "stt": "Vosk STT"}
_DOING: Final = {"llm": "generating", "tts": "speaking", "stt": "loading its model"}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe found: ``ok``, a one-line ``detail`` and, on failure, a ``remedy``."""

    kind: str
    ok: bool
    detail: str
    remedy: str = ""
    cached: bool = False


def describe_exit(kind: str, returncode: int, stderr: str) -> str:
    """One sentence for a child that failed: a signal by name, else the last line it printed."""
    what, doing = _WHAT.get(kind, kind), _DOING.get(kind, "running")
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"{what} crashed while {doing} (signal {-returncode}, {name})"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    return f"{what} failed while {doing} (exit {returncode}): {last[:300]}"


def run_child(kind: str, argv: list[str], timeout_s: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Run ``argv`` (a probe) and classify its end: JSON on stdout when it worked, a signal or an error if not."""
    remedy = LLM_REMEDY if kind == "llm" else "reinstall the embedded stack: `rm -rf .venv && make setup`"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return ProbeResult(kind, False, f"{_WHAT.get(kind, kind)} did not answer within {timeout_s:.0f} s", remedy)
    if done.returncode != 0:
        return ProbeResult(kind, False, describe_exit(kind, done.returncode, done.stderr), remedy)
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        if answer["ok"]:
            return ProbeResult(kind, True, str(answer["detail"]))
        what, doing = _WHAT.get(kind, kind), _DOING.get(kind, "running")
        return ProbeResult(kind, False, f"{what} failed while {doing}: {answer['detail']}", remedy)
    except (IndexError, KeyError, TypeError, ValueError):
        return ProbeResult(kind, False, f"{_WHAT.get(kind, kind)} probe printed no result", remedy)


def probe_argv(kind: Kind, cache_dir: Path, threads: int = 1, allow_amx: bool = False) -> list[str]:
    """The command line of one probe, run by this interpreter."""
    argv = [sys.executable, "-m", "hanmadi.probe", kind, "--cache-dir", str(cache_dir), "--threads", str(threads)]
    return [*argv, "--allow-amx"] if allow_amx else argv


def _llm_cache_key(cache_dir: Path, allow_amx: bool) -> str | None:
    from hanmadi.providers.local.llama_llm import cpu_flags

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    parts = [f"amx={allow_amx}", cpu_flags()]
    for lib in sorted(Path(next(iter(spec.submodule_search_locations))).glob("lib/*")):
        stat = lib.stat()
        parts.append(f"{lib.name}:{stat.st_size}:{stat.st_mtime_ns}")
    for marker in sorted(cache_dir.glob("*.gguf.verified")):
        parts.append(marker.read_text().strip())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def probe_local_llm(
    cache_dir: Path, threads: int = 1, allow_amx: bool = False, *, use_cache: bool = True
) -> ProbeResult:
    """Load the local LLM in a child process and generate one token there."""
    memo = cache_dir / "llm-probe.ok"
    key = _llm_cache_key(cache_dir, allow_amx) if use_cache else None
    if key is not None and memo.is_file() and memo.read_text().strip() == key:
        return ProbeResult("llm", True, "generated a token (checked before with this build and CPU)", cached=True)
    result = run_child("llm", probe_argv("llm", cache_dir, threads, allow_amx))
    if result.ok and use_cache:
        key = _llm_cache_key(cache_dir, allow_amx)  # the child may have just assembled the model
        if key is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            memo.write_text(key + "\n")
    return result


async def probe_local_llm_async(cache_dir: Path, threads: int = 1, allow_amx: bool = False) -> ProbeResult:
    """``probe_local_llm`` off the event loop."""
    return await asyncio.to_thread(probe_local_llm, cache_dir, threads, allow_amx)


# --- the child side ---------------------------------------------------------------------------------------------


def _child_llm(cache_dir: Path, threads: int, allow_amx: bool) -> str:
    from hanmadi.providers.base import Message
    from hanmadi.providers.local.llama_llm import LlamaLLM

    llm = LlamaLLM(threads=threads, max_tokens=8, cache_dir=cache_dir, allow_amx=allow_amx, seed=0)

    async def one_reply() -> str:
        chunks = [chunk async for chunk in llm.stream([Message("user", "안녕하세요")])]
        return "".join(chunks)

    reply = asyncio.run(one_reply())
    return f"generated {reply[:40]!r}"


def _child_tts() -> str:
    from hanmadi.providers.local.espeak_tts import EspeakTTS

    tts = EspeakTTS()

    async def speak() -> float:
        return sum([chunk.duration_s async for chunk in tts.synthesize("안녕하세요")])

    seconds = asyncio.run(speak())
    if seconds <= 0:
        raise RuntimeError("espeak produced no audio")
    return f"spoke '안녕하세요' ({seconds:.2f} s of audio)"


def _child_stt() -> str:
    from hanmadi.providers.local.vosk_stt import VoskSTT

    stt = VoskSTT()

    async def open_once() -> None:
        stream = await stt.open(8000)
        await stream.push(bytes(3200))
        await stream.finalize()
        await stream.aclose()

    asyncio.run(open_once())
    return "loaded the Korean model and recognised a frame"


def main(argv: list[str] | None = None) -> int:
    """``python -m hanmadi.probe KIND``: one JSON line ``{"ok", "detail"}``; a crash kills the process instead."""
    parser = argparse.ArgumentParser(prog="python -m hanmadi.probe")
    parser.add_argument("kind", choices=["llm", "tts", "stt"])
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "hanmadi")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--allow-amx", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.kind == "llm":
            detail = _child_llm(args.cache_dir, args.threads, args.allow_amx)
        elif args.kind == "tts":
            detail = _child_tts()
        else:
            detail = _child_stt()
    except Exception as exc:
        print(json.dumps({"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:400]}, ensure_ascii=False))
        return 0
    print(json.dumps({"ok": True, "detail": detail}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
