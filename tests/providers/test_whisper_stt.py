"""The local STT's Whisper final pass: model files, the shared round-robin worker, speculation at pauses.

Most tests drive ``WhisperStream`` with a scripted partial recogniser and a gated transcriber (no model), so the
order of events is decided by the test: a pass starts when the caller pauses, is dropped when they resume, is awaited
at the end of the turn. One module-scoped fixture loads the real model (slow on two shared cores).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hanmadi.providers.base import STTStream, Transcript
from hanmadi.providers.local.espeak_tts import EspeakTTS
from hanmadi.providers.local.whisper_stt import (
    MODEL_SHA256,
    FairQueue,
    PassWorker,
    WhisperStream,
    WhisperSTT,
    ensure_model,
    whisper_model_status,
    window_frames,
)
from hanmadi.telephony import audio

FRAME = 160  # samples in 20 ms at 8 kHz


def voiced(ms: int) -> bytes:
    """A vowel-like harmonic signal the VAD calls speech, 8 kHz PCM16."""
    t = np.arange(8 * ms) / 8000
    sig = np.zeros_like(t)
    for k, f in enumerate([140, 280, 420, 700, 1100]):
        sig += np.sin(2 * np.pi * f * t) / (k + 1)
    return bytes((sig * 6000).astype("<i2").tobytes())


def silence(ms: int) -> bytes:
    return bytes(16 * ms)


class ScriptedPartials:
    """Stands in for Vosk: one partial per push once there is audio, a fixed rough final."""

    def __init__(self) -> None:
        self.pushed = 0
        self.finalized = 0
        self.resets = 0
        self.closed = False

    @property
    def audio_s(self) -> float:
        return self.pushed / 16000

    async def push(self, pcm: bytes) -> list[Transcript]:
        self.pushed += len(pcm)
        return [Transcript("대충", is_final=False, audio_s=self.audio_s)]

    async def finalize(self) -> Transcript:
        self.finalized += 1
        return Transcript("대충 들은 말", is_final=True)

    async def reset(self) -> None:
        self.resets += 1

    async def aclose(self) -> None:
        self.closed = True


class GatedTranscriber:
    """A transcriber that holds each pass until the test releases it; records what it was given."""

    def __init__(self, hold: bool = True) -> None:
        self.lengths: list[int] = []
        self.dropped_flags: list[threading.Event] = []
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, samples: np.ndarray, dropped: threading.Event) -> str:
        self.lengths.append(len(samples))
        self.dropped_flags.append(dropped)
        self.started.release()
        if not self.release.wait(10):  # a safety net: a blocked test fails instead of hanging
            return "never released"
        return f"{len(samples)} samples"


@pytest.fixture
def gate() -> GatedTranscriber:
    return GatedTranscriber()


@pytest.fixture
def worker(gate: GatedTranscriber) -> Iterator[PassWorker]:
    w = PassWorker(gate, name="test-whisper")
    yield w
    gate.release.set()
    w.close()


async def push_ms(stream: STTStream, pcm: bytes) -> None:
    for i in range(0, len(pcm), FRAME * 2):
        await stream.push(pcm[i : i + FRAME * 2])


async def started(gate: GatedTranscriber) -> None:
    """Wait (off the loop) until the worker has started one more pass."""
    assert await asyncio.to_thread(gate.started.acquire, True, 10)


def test_fair_queue_serves_owners_round_robin() -> None:
    q: FairQueue[str, str] = FairQueue()
    for job in ("a1", "a2", "a3"):
        q.put("a", job)
    q.put("b", "b1")
    q.put("c", "c1")
    q.put("b", "b2")
    assert q.remove("a", "a2") and not q.remove("a", "a2")
    assert [q.get(0) for _ in range(5)] == ["a1", "b1", "c1", "a3", "b2"]
    q.close()
    assert q.get() is None


def test_the_worker_does_not_let_one_call_hold_back_another(gate: GatedTranscriber, worker: PassWorker) -> None:
    first = worker.submit("x", np.zeros(1), 0)
    assert gate.started.acquire(timeout=10)  # the worker is busy with x's pass
    jobs = [worker.submit("a", np.zeros(n), 0) for n in (2, 3, 4)] + [worker.submit("b", np.zeros(5), 0)]
    gate.release.set()
    for job in (first, *jobs):
        job.future.result(10)
    # call a queued three passes before call b queued one: b is served second, not last
    assert gate.lengths == [1, 2, 5, 3, 4]


async def test_a_pause_starts_the_final_pass_which_the_turn_end_keeps(
    gate: GatedTranscriber, worker: PassWorker
) -> None:
    partials = ScriptedPartials()
    stream = WhisperStream(partials, worker, speculative_pause_ms=200)
    await push_ms(stream, silence(400) + voiced(800) + silence(180))
    assert not stream.speculating
    await push_ms(stream, silence(40))  # 220 ms of pause: the pass starts before the turn is over
    assert stream.speculating
    await started(gate)
    await push_ms(stream, silence(300))  # the caller stays silent: still the same pass
    assert len(gate.lengths) == 1
    gate.release.set()
    final = await stream.finalize()
    assert final.is_final and final.text == f"{gate.lengths[0]} samples"
    assert len(gate.lengths) == 1 and stream.stats.kept == 1
    # the pass heard the voice with 300 ms before it and the pause after it, at 16 kHz
    assert gate.lengths[0] == 16 * (300 + 800 + 200)
    assert (partials.resets, partials.finalized) == (1, 0)  # Vosk reset for the next turn, its final not decoded


async def test_a_caller_who_resumes_drops_the_speculative_pass(gate: GatedTranscriber, worker: PassWorker) -> None:
    stream = WhisperStream(ScriptedPartials(), worker, speculative_pause_ms=200)
    await push_ms(stream, voiced(600) + silence(240))
    await started(gate)
    first_dropped = gate.dropped_flags[0]
    await push_ms(stream, voiced(600))  # they had more to say
    assert first_dropped.is_set() and not stream.speculating and stream.stats.resumed == 1
    await push_ms(stream, silence(100))
    gate.release.set()
    final = await stream.finalize()  # the turn ends before the next pause: a fresh pass over all of it
    assert final.text == f"{gate.lengths[-1]} samples"
    assert gate.lengths[-1] > gate.lengths[0]
    assert stream.stats.unspeculated == 1


async def test_a_finished_speculative_pass_is_the_partial_the_turn_detector_reads(
    gate: GatedTranscriber, worker: PassWorker
) -> None:
    stream = WhisperStream(ScriptedPartials(), worker, speculative_pause_ms=200)
    await push_ms(stream, silence(200) + voiced(800) + silence(200))
    await started(gate)
    gate.release.set()
    await asyncio.wrap_future(stream._speculative.future)  # type: ignore[union-attr]
    results = await stream.push(silence(20))
    # Whisper's words, stamped with the stream time of the end of the voice they cover
    assert results == [Transcript(f"{gate.lengths[0]} samples", is_final=False, audio_s=1.0)]
    assert await stream.push(silence(20)) == []  # Vosk's rougher partials stay back while the caller is silent
    await push_ms(stream, voiced(100))
    assert (await stream.push(voiced(20)))[0].text == "대충"  # the caller resumed: Vosk again


class QuietPartials(ScriptedPartials):
    """Like Vosk: a partial only when the text changes — here once, at the first words."""

    async def push(self, pcm: bytes) -> list[Transcript]:
        first = self.pushed == 0
        self.pushed += len(pcm)
        return [Transcript("주차는 가능한가요", is_final=False, audio_s=self.audio_s)] if first else []


async def test_vosks_words_are_confirmed_once_the_caller_falls_silent(
    gate: GatedTranscriber, worker: PassWorker
) -> None:
    stream = WhisperStream(QuietPartials(), worker, speculative_pause_ms=400)
    results = [await stream.push(chunk) for chunk in (voiced(20), voiced(580))]
    assert [r.audio_s for batch in results for r in batch] == [0.02]  # the words, heard early in the voice
    confirmed = [r for _ in range(5) for r in await stream.push(silence(20))]
    # once past the end of the voice: the same words, now covering all of it (and only once)
    assert [(r.text, r.audio_s) for r in confirmed] == [("주차는 가능한가요", 0.62)]
    gate.release.set()


async def test_a_dropped_pass_still_queued_never_runs(gate: GatedTranscriber, worker: PassWorker) -> None:
    worker.submit("other call", np.zeros(7), 0)
    await started(gate)  # the worker is busy with another call
    stream = WhisperStream(ScriptedPartials(), worker, speculative_pause_ms=200)
    await push_ms(stream, voiced(600) + silence(240))
    assert stream.speculating and worker.queued == 1
    await push_ms(stream, voiced(400))
    assert worker.queued == 0  # taken back before it ran
    gate.release.set()
    await push_ms(stream, silence(100))
    await stream.finalize()
    assert len(gate.lengths) == 2  # the other call's pass and this turn's final one


async def test_the_event_loop_runs_while_a_pass_decodes(gate: GatedTranscriber, worker: PassWorker) -> None:
    stream = WhisperStream(ScriptedPartials(), worker, speculative_pause_ms=200)
    await push_ms(stream, voiced(600) + silence(100))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        await started(gate)
        while ticks < 5:  # the loop keeps turning while the worker holds the pass ...
            ticks += 1
            await asyncio.sleep(0)
        gate.release.set()  # ... and only then lets it finish

    async with asyncio.TaskGroup() as tg:
        tg.create_task(ticker())
        final = await stream.finalize()
    assert ticks == 5 and final.text.endswith("samples")


async def test_a_final_pass_too_slow_gives_way_to_vosks_words(gate: GatedTranscriber, worker: PassWorker) -> None:
    from hanmadi.metrics import REGISTRY

    def errors() -> float:
        labels = {"provider": "local", "reason": "stt_final_timeout"}
        return REGISTRY.get_sample_value("hanmadi_provider_errors_total", labels) or 0.0

    before = errors()
    stream = WhisperStream(ScriptedPartials(), worker, speculative_pause_ms=200, final_timeout_s=0.05)
    await push_ms(stream, voiced(600) + silence(100))
    final = await stream.finalize()  # the gate never opens: the pass cannot finish
    assert final.text == "대충" and final.is_final  # the call goes on with Vosk's latest partial
    assert stream.stats.fallback == 1 and errors() == before + 1
    assert gate.dropped_flags[0].is_set()  # and the pass is abandoned, not left to finish for nobody


async def test_speech_without_voice_costs_no_pass(gate: GatedTranscriber, worker: PassWorker) -> None:
    stream = WhisperStream(ScriptedPartials(), worker)
    await push_ms(stream, silence(2000))
    final = await stream.finalize()
    assert final.text == "대충 들은 말" and gate.lengths == []


async def test_a_hang_up_during_the_pass_drops_it(gate: GatedTranscriber, worker: PassWorker) -> None:
    partials = ScriptedPartials()
    stream = WhisperStream(partials, worker, speculative_pause_ms=200)
    await push_ms(stream, voiced(600) + silence(100))
    task = asyncio.create_task(stream.finalize())
    await started(gate)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.dropped_flags[0].is_set()
    await stream.aclose()
    assert partials.closed


def test_window_keeps_five_seconds_of_silence_after_the_voice() -> None:
    assert window_frames(1.5) == 1000 and window_frames(5.0) == 1000
    assert window_frames(5.1) == 2000 and window_frames(15.0) == 2000
    assert window_frames(15.1) == 3000 and window_frames(40) == 3000


# --- the real model ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def loaded(cache_dir: Path) -> WhisperSTT:
    stt = WhisperSTT(cache_dir=cache_dir)
    asyncio.run(stt.warm_up())
    return stt


@pytest.mark.local
def test_the_assembled_model_has_the_pinned_hash(loaded: WhisperSTT, cache_dir: Path) -> None:
    ok, detail = whisper_model_status(cache_dir)
    assert ok, detail
    model_bin = ensure_model(cache_dir) / "model.bin"
    assert model_bin.stat().st_size == 145_217_532
    assert not list(model_bin.parent.glob("*.part"))  # nothing half-written left behind


@pytest.mark.local
def test_a_damaged_model_fails_the_check_and_is_reassembled(tmp_path: Path) -> None:
    model_bin = ensure_model(tmp_path) / "model.bin"
    with model_bin.open("r+b") as f:
        f.truncate(1000)
    ok, detail = whisper_model_status(tmp_path)
    assert not ok and MODEL_SHA256 in detail
    ensure_model(tmp_path)  # the marker no longer matches: assembled again
    assert whisper_model_status(tmp_path)[0]


@pytest.mark.local
async def test_the_model_transcribes_a_turn_in_korean_off_the_loop(loaded: WhisperSTT) -> None:
    chunks = [c async for c in EspeakTTS().synthesize("주차는 가능한가요?")]
    pcm = b"".join(c.pcm for c in chunks)
    samples = audio.resample(np.frombuffer(pcm, dtype="<i2"), chunks[0].sample_rate, 8000).astype("<i2")
    stream = await loaded.open(8000)
    try:
        await push_ms(stream, silence(300) + samples.tobytes() + silence(400))
        assert stream.speculating  # the pause after the question started the pass
        final = await stream.finalize()
    finally:
        await stream.aclose()
    # espeak's Korean is not speech Whisper can read (the CER 0.9): only the mechanics are checked here
    assert final.is_final and isinstance(final.text, str)
    assert loaded.stats.kept + loaded.stats.unspeculated >= 1


def test_the_registry_names_the_accurate_and_the_fast_recogniser(tmp_path: Path) -> None:
    from hanmadi.config import Settings
    from hanmadi.providers.local.vosk_stt import VoskSTT
    from hanmadi.providers.registry import make_stt

    base = {"llm": "simulated", "tts": "simulated", "model_cache_dir": tmp_path, "_env_file": None}
    local = make_stt(Settings(stt="local", whisper_threads=1, stt_speculative_pause_ms=120, **base))  # type: ignore[arg-type]
    assert isinstance(local, WhisperSTT) and local.name == "local"
    assert (local.cache_dir, local.threads, local.speculative_pause_ms) == (tmp_path, 1, 120)
    vosk = make_stt(Settings(stt="vosk", **base))  # type: ignore[arg-type]
    assert isinstance(vosk, VoskSTT) and vosk.name == "vosk"
