"""Optional per-call recording: a stereo WAV, caller on the left, bot on the right, 8 kHz PCM16. Off by default.

``add_caller`` and ``add_bot`` are cheap and never touch the disk: they append to a small per-channel run that
is handed, about once a second, to one background thread that writes it at its own offset (``os.pwrite``) into a
raw per-channel file beside the WAV. Memory per call is therefore about a second of audio, whatever the call's
length. ``await close()`` interleaves the two channels into the WAV in that same thread and removes the raw files.
Audio placed where the same channel already has audio overwrites it; gaps are silence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hanmadi.metrics import STORE_ERRORS

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
_SAMPLE_BYTES = 2
_FLUSH_SAMPLES = SAMPLE_RATE  # hand a run to the writer thread once it holds a second of audio
_INTERLEAVE_SAMPLES = 64 * 1024

# One thread for every recording in the process: writes stay in order, and 8 kHz audio is little I/O.
_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hanmadi-recording")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def recording_path(recordings_dir: Path, call_sid: str) -> Path:
    """Where a call's WAV goes: ``<recordings_dir>/<call_sid>.wav`` (sid reduced to safe characters)."""
    return recordings_dir / f"{_UNSAFE.sub('_', call_sid) or 'call'}.wav"


class CallRecording:
    """Collects one call's audio into ``path`` (a stereo WAV) while the call runs.

    ``at_s`` is the time the audio plays, in seconds since the call started (caller: when it was heard; bot:
    when it starts playing for the caller).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._raw = (self.path.with_name(self.path.name + ".left"), self.path.with_name(self.path.name + ".right"))
        self._fds: list[int] = []
        self._fd_lock = threading.Lock()
        self._runs: list[tuple[int, bytearray]] = [(0, bytearray()), (0, bytearray())]
        self._ends = [0, 0]  # samples written (or queued) per channel, for the WAV's length
        self._error: OSError | None = None
        self._closed = False

    def add_caller(self, pcm: bytes, at_s: float) -> None:
        """Caller audio (PCM16 little-endian, 8 kHz mono) heard at ``at_s``: the left channel."""
        self._add(0, pcm, at_s)

    def add_bot(self, pcm: bytes, at_s: float) -> None:
        """Bot audio (PCM16 little-endian, 8 kHz mono) playing from ``at_s``: the right channel."""
        self._add(1, pcm, at_s)

    def _add(self, channel: int, pcm: bytes, at_s: float) -> None:
        if self._closed or not pcm:
            return
        pcm = pcm[: len(pcm) - len(pcm) % _SAMPLE_BYTES]
        start = max(0, round(at_s * SAMPLE_RATE))
        run_start, run = self._runs[channel]
        if run and start != run_start + len(run) // _SAMPLE_BYTES:
            self._submit(channel)
            run_start, run = self._runs[channel]
        if not run:
            run_start = start
        run += pcm
        self._runs[channel] = (run_start, run)
        self._ends[channel] = max(self._ends[channel], start + len(pcm) // _SAMPLE_BYTES)
        if len(run) >= _FLUSH_SAMPLES * _SAMPLE_BYTES:
            self._submit(channel)

    def _submit(self, channel: int) -> None:
        start, run = self._runs[channel]
        self._runs[channel] = (0, bytearray())
        if run:
            _EXECUTOR.submit(self._write, channel, start, bytes(run))

    def _open(self) -> None:
        with self._fd_lock:
            if not self._fds:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
                self._fds = [os.open(p, flags, 0o600) for p in self._raw]

    def _write(self, channel: int, start: int, data: bytes) -> None:
        if self._error is not None:
            return
        try:
            self._open()
            os.pwrite(self._fds[channel], data, start * _SAMPLE_BYTES)
        except OSError as exc:
            self._error = exc
            STORE_ERRORS.labels(op="recording").inc()
            log.error("recording %s: write failed, recording abandoned: %s", self.path, exc)

    def _finish(self) -> Path:
        if self._error is not None:
            raise self._error
        self._open()
        frames = max(self._ends)
        tmp = self.path.with_name(self.path.name + ".part")
        try:
            with wave.open(str(tmp), "wb") as wav:
                wav.setnchannels(2)
                wav.setsampwidth(_SAMPLE_BYTES)
                wav.setframerate(SAMPLE_RATE)
                for first in range(0, frames, _INTERLEAVE_SAMPLES):
                    count = min(_INTERLEAVE_SAMPLES, frames - first)
                    stereo = np.zeros((count, 2), dtype="<i2")
                    for channel, fd in enumerate(self._fds):
                        data = os.pread(fd, count * _SAMPLE_BYTES, first * _SAMPLE_BYTES)
                        samples = np.frombuffer(data, dtype="<i2")
                        stereo[: len(samples), channel] = samples
                    wav.writeframes(stereo.tobytes())
            tmp.replace(self.path)
        except OSError:
            STORE_ERRORS.labels(op="recording").inc()
            raise
        finally:
            for fd in self._fds:
                os.close(fd)
            for raw in self._raw:
                raw.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)
        return self.path

    async def close(self) -> Path:
        """Write the WAV (in the recording thread) and return its path. Raises OSError if writing failed."""
        if self._closed:
            return self.path
        self._closed = True
        self._submit(0)
        self._submit(1)
        return await asyncio.wrap_future(_EXECUTOR.submit(self._finish))
