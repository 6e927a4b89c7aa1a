"""Embedded TTS: espeak-ng (the library and data bundled by ``espeakng-loader``) through ctypes.

espeak-ng keeps global state (one voice, one callback, one synthesis at a time), so a process has one
``_Espeak`` and every call into it happens on one dedicated thread. The library runs in synchronous mode and
hands its 22.05 kHz samples to a callback buffer by buffer; each buffer is resampled to 8 kHz with a streaming
resampler (no clicks at buffer edges) and sent to the consumer at once, so the first audio arrives long before
the sentence is finished. The callback returns 1 — espeak's "abort" — as soon as the consumer has gone.

Two shapes share that engine:

- ``EspeakThreadTTS``: the library in this process, on its one worker thread. Streams; sentences are
  serialized.
- ``EspeakProcessPoolTTS``: one library per worker process, so sentences synthesize in parallel; a
  sentence's audio comes back whole.

``EspeakTTS`` is the default of the two; ``hanmadi.bench.providers`` measures both (the README section on
the embedded stack has the numbers behind the choice).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import multiprocessing
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Final

import numpy as np
import soxr

from hanmadi.providers.base import AudioChunk, ProviderError

OUTPUT_RATE: Final = 8000
# Length of the buffers espeak hands to the callback: the streaming granularity.
BUFFER_MS: Final = 100

_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_ESPEAK_RATE: Final = 1  # espeak_PARAMETER espeakRATE
_POS_CHARACTER: Final = 1
_CHARS_UTF8: Final = 1
_EE_OK: Final = 0

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); returns 1 to abort the synthesis
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

Sink = Callable[[bytes], bool]
"""Receives one buffer of 8 kHz PCM16; returns False to stop the synthesis."""


class _Espeak:
    """This process's espeak-ng library. Every method must be called from the same single thread."""

    def __init__(self) -> None:
        import espeakng_loader

        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as exc:
            raise ProviderError("local", "tts_library", str(exc)) from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, data_path.encode(), 0)
        if sample_rate <= 0:
            raise ProviderError("local", "tts_init", f"espeak_Initialize returned {sample_rate}")
        self._lib = lib
        self.sample_rate: int = sample_rate
        # kept referenced: the library holds only the C pointer
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._voice = ""
        self._rate = 0
        self._sink: Callable[[bytes], bool] | None = None
        self.samples_synthesized = 0

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], numsamples: int, _events: int | None) -> int:
        sink = self._sink
        if sink is None:
            return 1
        if numsamples <= 0 or not wav:
            return 0
        self.samples_synthesized += numsamples
        pcm = ctypes.string_at(wav, numsamples * 2)
        return 0 if sink(pcm) else 1

    def synthesize(self, text: str, voice: str, rate: int, sink: Sink) -> None:
        """Synthesize ``text``; ``sink`` gets 8 kHz PCM16 buffers as they are produced and may stop it."""
        if voice != self._voice:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise ProviderError("local", "tts_voice", f"espeak-ng has no voice {voice!r}")
            self._voice = voice
            self._rate = 0  # a new voice resets the rate
        if rate != self._rate:
            self._lib.espeak_SetParameter(_ESPEAK_RATE, rate, 0)
            self._rate = rate
        resampler = soxr.ResampleStream(self.sample_rate, OUTPUT_RATE, 1, dtype="int16", quality="HQ")
        stopped = False

        def to_telephone(pcm: bytes) -> bool:
            nonlocal stopped
            out = resampler.resample_chunk(np.frombuffer(pcm, dtype="<i2"), last=False)
            stopped = bool(out.size) and not sink(out.astype("<i2").tobytes())
            return not stopped

        data = text.encode()
        self._sink = to_telephone
        try:
            err = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        finally:
            self._sink = None
        if stopped:
            return
        if err != _EE_OK:
            raise ProviderError("local", "tts_synth", f"espeak_Synth returned {err}")
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        if tail.size:
            sink(tail.astype("<i2").tobytes())


_engine: _Espeak | None = None


def _process_engine() -> _Espeak:
    """The engine of this process; created on first use. Only ever called on the espeak thread."""
    global _engine
    if _engine is None:
        _engine = _Espeak()
    return _engine


def synthesized_audio_s() -> float:
    """Seconds of audio espeak-ng has produced in this process (an aborted sentence counts what it made)."""
    return 0.0 if _engine is None else _engine.samples_synthesized / _engine.sample_rate


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _espeak_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread of this process that talks to espeak-ng (shared by every ``EspeakThreadTTS``)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
        return _executor


def _as_provider_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    return ProviderError("local", "tts_failed", repr(exc))


class EspeakThreadTTS:
    """espeak-ng in this process on one worker thread: streams ~100 ms chunks, one sentence at a time."""

    name = "local"

    def __init__(self, voice: str = "ko", rate: int = 175) -> None:
        self.voice = voice
        self.rate = rate

    async def warm_up(self) -> None:
        """Load the library and the voice now rather than on the first sentence."""
        await asyncio.wrap_future(_espeak_thread().submit(self._load))

    def _load(self) -> None:
        _process_engine().synthesize("가", self.voice, self.rate, lambda _pcm: True)

    async def synthesize(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        """Yield 8 kHz chunks of ``text`` as espeak produces them; stopping early aborts the synthesis."""
        text = text.strip()
        if not text:
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: bytes | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                stop.set()

        def sink(pcm: bytes) -> bool:
            if stop.is_set():
                return False
            put(pcm)
            return True

        def job() -> None:
            if stop.is_set():  # cancelled while waiting for the thread
                return
            try:
                _process_engine().synthesize(text, self.voice, self.rate, sink)
            except BaseException as exc:
                put(exc)
            else:
                put(None)

        try:
            _espeak_thread().submit(job)
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise _as_provider_error(item) from item
                yield AudioChunk(item, OUTPUT_RATE)
        finally:
            stop.set()

    async def aclose(self) -> None:
        """Nothing to release: the espeak thread is shared by the process."""


def _synthesize_in_process(text: str, voice: str, rate: int) -> list[bytes]:
    """Run in a pool worker: the whole sentence as 8 kHz buffers."""
    chunks: list[bytes] = []

    def sink(pcm: bytes) -> bool:
        chunks.append(pcm)
        return True

    _process_engine().synthesize(text, voice, rate, sink)
    return chunks


def _load_in_process(voice: str, rate: int) -> int:
    _process_engine().synthesize("가", voice, rate, lambda _pcm: True)
    return 0


class EspeakProcessPoolTTS:
    """espeak-ng in ``processes`` worker processes: sentences in parallel, each one's audio returned whole.

    Workers start from a fresh interpreter (forkserver/spawn: never fork a process that runs threads), so a
    script using this class needs the ``if __name__ == "__main__":`` guard. Each worker initializes its own
    espeak-ng. A sentence already running in a worker finishes there when the consumer goes away (espeak
    synthesizes a sentence in milliseconds); one still queued is dropped.
    """

    name = "local"

    def __init__(self, voice: str = "ko", rate: int = 175, processes: int = 2) -> None:
        self.voice = voice
        self.rate = rate
        self.processes = processes
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _workers(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                methods = multiprocessing.get_all_start_methods()
                context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
                self._pool = concurrent.futures.ProcessPoolExecutor(self.processes, mp_context=context)
            return self._pool

    async def warm_up(self) -> None:
        """Start every worker process and load espeak-ng in each."""
        pool = self._workers()
        loads = [pool.submit(_load_in_process, self.voice, self.rate) for _ in range(self.processes * 2)]
        await asyncio.gather(*(asyncio.wrap_future(f) for f in loads))

    async def synthesize(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        """Yield the 8 kHz audio of ``text`` once its worker has synthesized it."""
        text = text.strip()
        if not text:
            return
        future = self._workers().submit(_synthesize_in_process, text, self.voice, self.rate)
        try:
            chunks = await asyncio.wrap_future(future)
        except concurrent.futures.process.BrokenProcessPool as exc:
            raise ProviderError("local", "tts_worker_died", str(exc)) from exc
        except ProviderError:
            raise
        except Exception as exc:
            raise _as_provider_error(exc) from exc
        finally:
            future.cancel()
        for pcm in chunks:
            yield AudioChunk(pcm, OUTPUT_RATE)

    async def aclose(self) -> None:
        """Stop the worker processes."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)


EspeakTTS = EspeakThreadTTS
