"""The mu-law codec, resampling and framing that every call's audio goes through."""

from __future__ import annotations

import numpy as np

from hanmadi.telephony import audio


def test_known_mulaw_values() -> None:
    pcm = np.array([0, 32767, -32768, 100, -100], dtype=np.int16)
    encoded = audio.pcm16_to_ulaw(pcm)
    assert encoded[0] == 0xFF  # digital silence
    assert encoded[1] == 0x80  # loudest positive
    assert encoded[2] == 0x00  # loudest negative
    assert encoded[3] & 0x80 and not encoded[4] & 0x80  # sign bit set for positive (bits are inverted)
    decoded = audio.ulaw_to_pcm16(bytes([0xFF, 0x7F, 0x80, 0x00]))
    assert decoded.tolist() == [0, 0, 32124, -32124]


def test_silence_byte() -> None:
    assert audio.ULAW_SILENCE == 0xFF
    assert audio.silence_ulaw(0.02) == b"\xff" * 160
    assert audio.ulaw_to_pcm16(audio.silence_ulaw(0.1)).tolist() == [0] * 800


def test_round_trip_is_stable_for_every_code() -> None:
    codes = bytes(range(256))
    pcm = audio.ulaw_to_pcm16(codes)
    again = audio.pcm16_to_ulaw(pcm)
    # 0x7F and 0xFF are both zero; every other code survives a decode/encode exactly
    assert np.array_equal(audio.ulaw_to_pcm16(again), pcm)
    assert sum(a != b for a, b in zip(codes, again, strict=True)) == 1


def test_round_trip_error_is_small() -> None:
    t = np.arange(8000) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    back = audio.ulaw_to_pcm16(audio.pcm16_to_ulaw(pcm)).astype(np.int32)
    assert np.max(np.abs(back - pcm)) <= 8000 // 16  # mu-law step at that level


def test_pcm_bytes_helpers_are_inverse_shapes() -> None:
    pcm = np.arange(-800, 800, 10, dtype="<i2").tobytes()
    ulaw = audio.pcm_bytes_to_ulaw(pcm)
    assert len(ulaw) == len(pcm) // 2
    assert len(audio.ulaw_to_pcm_bytes(ulaw)) == len(pcm)


def test_resample_lengths() -> None:
    one_second_16k = np.zeros(16000, dtype=np.int16)
    assert audio.resample(one_second_16k, 16000, 8000).size == 8000
    assert audio.resample(np.zeros(22050, dtype=np.int16), 22050, 8000).size == 8000
    assert audio.resample(np.zeros(0, dtype=np.int16), 16000, 8000).size == 0
    assert len(audio.pcm_to_telephone(one_second_16k.tobytes(), 16000)) == 8000


def test_framing_pads_the_last_frame_with_silence() -> None:
    chunks = audio.frames(b"\x01" * 350)
    assert [len(c) for c in chunks] == [160, 160, 160]
    assert chunks[-1] == b"\x01" * 30 + b"\xff" * 130
    assert audio.frames(b"\x01" * 350, pad=None)[-1] == b"\x01" * 30
    assert audio.frames(b"") == []
