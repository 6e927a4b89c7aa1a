"""Call recording: a stereo WAV, caller left, bot right, each at its offset."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from hanmadi.store.recording import SAMPLE_RATE, CallRecording, recording_path


def _tone(value: int, seconds: float) -> bytes:
    return np.full(round(seconds * SAMPLE_RATE), value, dtype="<i2").tobytes()


async def test_stereo_wav_with_caller_left_and_bot_right_at_their_offsets(tmp_path: Path) -> None:
    path = recording_path(tmp_path / "rec", "CA/../1")
    assert path.parent == tmp_path / "rec" and "/" not in path.name
    rec = CallRecording(path)
    # Caller: 20 ms frames from 0 to 3 s (long enough for runs to be written while the call goes on).
    frame = _tone(1000, 0.02)
    for i in range(150):
        rec.add_caller(frame, i * 0.02)
    rec.add_bot(_tone(-2000, 0.5), 0.5)  # bot speaks 0.5–1.0 s
    rec.add_bot(_tone(3000, 0.25), 2.0)  # and 2.0–2.25 s
    rec.add_bot(_tone(-500, 0.5), 3.5)  # after the caller's audio ends: the file is as long as the longer channel
    assert await rec.close() == path
    assert not list(path.parent.glob("*.left")) and not list(path.parent.glob("*.right"))

    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, SAMPLE_RATE)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    assert len(frames) == 4 * SAMPLE_RATE
    left, right = frames[:, 0], frames[:, 1]

    def at(t: float) -> int:
        return round(t * SAMPLE_RATE)

    assert (left[: at(3.0)] == 1000).all() and (left[at(3.0) :] == 0).all()
    assert (right[: at(0.5)] == 0).all()
    assert (right[at(0.5) : at(1.0)] == -2000).all()
    assert (right[at(1.0) : at(2.0)] == 0).all()
    assert (right[at(2.0) : at(2.25)] == 3000).all()
    assert (right[at(2.25) : at(3.5)] == 0).all()
    assert (right[at(3.5) :] == -500).all()


async def test_close_twice_and_ignore_audio_after_close(tmp_path: Path) -> None:
    rec = CallRecording(tmp_path / "a.wav")
    rec.add_bot(_tone(1, 0.1), 0.0)
    path = await rec.close()
    rec.add_caller(_tone(1, 0.1), 0.0)
    assert await rec.close() == path
    with wave.open(str(path), "rb") as wav:
        assert wav.getnframes() == round(0.1 * SAMPLE_RATE)
