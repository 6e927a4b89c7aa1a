"""``hanmadi bench stt``: how well, and how fast, a recogniser hears a directory of recordings.

Each WAV in the directory is streamed through the STT the way a call feeds it — 20 ms frames, then the caller's
pause at the end of the turn (``endpointing_final_ms`` of silence, fed in real time so that a speculative final pass
gets the head start it has in a call) — and then finalized. ``final_latency_ms`` is the time from ``finalize()`` to
the final transcript. With ``phone`` the audio first takes the telephone path: 8 kHz μ-law, as a Twilio call delivers
it; without, it is fed at 16 kHz.

The character error rate (CER) is the edit distance between reference and transcript counted over characters,
spaces and punctuation removed, divided by the reference's length; the overall figure pools every file's edits and
characters. While the bench runs, a ticker measures the event loop's lag: a recogniser that blocks it shows there.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hanmadi.bench import percentile
from hanmadi.providers.base import STT, Lifecycle
from hanmadi.telephony import audio

FRAME_MS = 20
BENCH_RATE = 16000  # without --phone


class BenchError(Exception):
    """The inputs of the bench are unusable (no WAVs, a WAV without reference, an unreadable refs file)."""


def normalize(text: str) -> str:
    """The characters CER counts: NFC, no whitespace, no punctuation."""
    text = unicodedata.normalize("NFC", text)
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of ``hypothesis`` against ``reference`` (spaces and punctuation ignored)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def load_refs(path: Path) -> dict[str, str]:
    """``{"<file stem>": "<reference text>"}`` from a JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot read the references {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise BenchError(f"{path}: expected a JSON object of file stem -> reference text")
    return data


def load_audio(path: Path, *, phone: bool) -> tuple[bytes, int]:
    """A WAV as the recogniser will get it: 8 kHz PCM16 through μ-law (``phone``) or 16 kHz PCM16."""
    import wave

    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise BenchError(f"{path}: only 16-bit PCM WAV is supported")
            channels, rate = wav.getnchannels(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (OSError, wave.Error, EOFError) as exc:
        raise BenchError(f"{path}: not a readable WAV ({exc})") from exc
    samples = np.frombuffer(data, dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).round().astype(np.int16)
    if phone:
        narrow = audio.resample(samples, rate, audio.SAMPLE_RATE)
        return audio.ulaw_to_pcm_bytes(audio.pcm16_to_ulaw(narrow)), audio.SAMPLE_RATE
    return audio.resample(samples, rate, BENCH_RATE).astype("<i2").tobytes(), BENCH_RATE


@dataclass(frozen=True)
class FileResult:
    file: str
    cer: float
    text: str
    edits: int
    ref_chars: int
    final_latency_ms: float


async def transcribe_file(stt: STT, pcm: bytes, rate: int, pause_ms: int) -> tuple[str, float]:
    """Stream ``pcm`` in 20 ms frames, then ``pause_ms`` of silence in real time; the final text and its latency."""
    stream = await stt.open(rate)
    frame = rate * FRAME_MS // 1000 * 2
    try:
        for i in range(0, len(pcm), frame):
            await stream.push(pcm[i : i + frame])
        silence = bytes(frame)
        next_at = time.monotonic()
        for _ in range(max(1, pause_ms // FRAME_MS)):
            await stream.push(silence)
            next_at += FRAME_MS / 1000
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        started = time.monotonic()
        final = await stream.finalize()
        return final.text.strip(), (time.monotonic() - started) * 1000
    finally:
        await stream.aclose()


class LoopLag:
    """Measures how late a 10 ms ticker wakes up: the event loop's lag while the bench runs."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.lags_ms: list[float] = []

    async def run(self) -> None:
        while True:
            due = time.monotonic() + self.period_s
            await asyncio.sleep(self.period_s)
            self.lags_ms.append(max(0.0, (time.monotonic() - due) * 1000))

    def summary(self) -> dict[str, float | None]:
        if not self.lags_ms:
            return {"p50": None, "p99": None, "max": None}
        ordered = sorted(self.lags_ms)
        return {
            "p50": round(ordered[len(ordered) // 2], 1),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
            "max": round(ordered[-1], 1),
        }


def _wav_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() == ".wav") if directory.is_dir() else []


async def run_stt_bench(
    stt: STT, audio_dir: Path, refs_path: Path, *, phone: bool = False, pause_ms: int = 250
) -> dict[str, Any]:
    """Transcribe every WAV of ``audio_dir`` with ``stt`` and score it against ``refs_path``."""
    refs = await asyncio.to_thread(load_refs, refs_path)
    wavs = await asyncio.to_thread(_wav_files, audio_dir)
    if not wavs:
        raise BenchError(f"no .wav files in {audio_dir}")
    missing = [p.name for p in wavs if p.stem not in refs]
    if missing:
        raise BenchError(f"no reference in {refs_path} for {', '.join(missing)}")
    if isinstance(stt, Lifecycle):
        await stt.warm_up()
    lag = LoopLag()
    results: list[FileResult] = []
    async with asyncio.TaskGroup() as tg:
        ticker = tg.create_task(lag.run())
        try:
            for path in wavs:
                pcm, rate = await asyncio.to_thread(load_audio, path, phone=phone)
                text, latency_ms = await transcribe_file(stt, pcm, rate, pause_ms)
                ref = normalize(refs[path.stem])
                edits = edit_distance(ref, normalize(text)) if ref else len(normalize(text))
                results.append(
                    FileResult(path.name, round(cer(refs[path.stem], text), 3), text, edits, len(ref), latency_ms)
                )
        finally:
            ticker.cancel()
    ref_chars = sum(r.ref_chars for r in results)
    latencies = [r.final_latency_ms for r in results]
    return {
        "provider": stt.name,
        "files": len(results),
        "cer": round(sum(r.edits for r in results) / ref_chars, 3) if ref_chars else None,
        "final_latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        "per_file": [{"file": r.file, "cer": r.cer, "text": r.text} for r in results],
        "phone": phone,
        "loop_lag_ms": lag.summary(),
        "mean_file_cer": round(statistics.fmean(r.cer for r in results), 3),
    }
