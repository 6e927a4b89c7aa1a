"""Telephone audio: G.711 mu-law <-> PCM16 with numpy lookup tables, resampling, 20 ms framing.

``audioop`` is gone in Python 3.13, so the codec is two lookup tables: 256 entries to decode, 65536 to encode.
"""

from __future__ import annotations

import numpy as np
import soxr

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160
FRAME_BYTES_ULAW = FRAME_SAMPLES  # one byte a sample
ULAW_SILENCE = 0xFF

_BIAS = 0x84
_CLIP = 32635


def _build_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = ((mantissa << 3) + _BIAS) << exponent
    sample = magnitude - _BIAS
    return np.where(sign != 0, -sample, sample).astype(np.int16)


def _build_encode_table() -> np.ndarray:
    """G.711 mu-law for every int16 value; index = sample + 32768."""
    samples = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(samples < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(samples), _CLIP) + _BIAS
    # exponent = position of the highest set bit among bits 7..14, minus 7 (0 when none is set)
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    table: np.ndarray = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return table


_DECODE = _build_decode_table()
_ENCODE = _build_encode_table()
# The decode table as two byte-to-byte tables (low and high byte of each little-endian sample): per 20 ms frame,
# two bytes.translate calls beat a numpy round trip (about 1.2 µs against 2.8 µs for 160 samples).
_DECODE_LE = _DECODE.astype("<i2").tobytes()
_DECODE_LO = _DECODE_LE[0::2]
_DECODE_HI = _DECODE_LE[1::2]


def ulaw_to_pcm16(data: bytes) -> np.ndarray:
    """Decode mu-law bytes to int16 samples."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]


def pcm16_to_ulaw(samples: np.ndarray) -> bytes:
    """Encode int16 samples to mu-law bytes."""
    idx = samples.astype(np.int32) + 32768
    return bytes(_ENCODE[idx].tobytes())


def pcm_bytes_to_ulaw(pcm: bytes) -> bytes:
    """Encode little-endian PCM16 bytes to mu-law bytes."""
    return pcm16_to_ulaw(np.frombuffer(pcm, dtype="<i2"))


def ulaw_to_pcm_bytes(data: bytes) -> bytes:
    """Decode mu-law bytes to little-endian PCM16 bytes."""
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(_DECODE_LO)
    out[1::2] = data.translate(_DECODE_HI)
    return bytes(out)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample int16 mono audio with soxr (high quality)."""
    if from_rate == to_rate or samples.size == 0:
        return samples.astype(np.int16, copy=False)
    out: np.ndarray = soxr.resample(samples.astype(np.float32) / 32768.0, from_rate, to_rate, quality="HQ")
    return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)


def pcm_to_telephone(pcm: bytes, sample_rate: int) -> bytes:
    """PCM16 bytes at any rate -> 8 kHz mu-law bytes, ready for Twilio."""
    samples = np.frombuffer(pcm, dtype="<i2")
    return pcm16_to_ulaw(resample(samples, sample_rate, SAMPLE_RATE))


class TelephoneEncoder:
    """One stream of PCM16 at ``sample_rate`` -> 8 kHz mu-law, resampled as one signal (one ``soxr.ResampleStream``).

    Resampling each network chunk on its own gives every chunk its own filter edges: clicks at each boundary and
    a length that drifts. One encoder per sentence keeps the filter state across chunks; :meth:`flush` returns
    the filter's tail at the sentence's end.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._stream = (
            soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="int16", quality="HQ")
            if sample_rate != SAMPLE_RATE
            else None
        )

    def encode(self, pcm: bytes) -> bytes:
        """The mu-law for the next chunk of PCM16 bytes (a resampler may hold back a few samples)."""
        samples = np.frombuffer(pcm, dtype="<i2")
        if self._stream is None:
            return pcm16_to_ulaw(samples)
        return pcm16_to_ulaw(self._stream.resample_chunk(samples))

    def flush(self) -> bytes:
        """The mu-law of what the resampler still holds: call once, after the last chunk."""
        if self._stream is None:
            return b""
        return pcm16_to_ulaw(self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True))


def frames(data: bytes, frame_bytes: int = FRAME_BYTES_ULAW, pad: int | None = ULAW_SILENCE) -> list[bytes]:
    """Split into fixed-size frames; the last one is padded with ``pad`` (or left short when ``pad`` is None)."""
    out = [data[i : i + frame_bytes] for i in range(0, len(data), frame_bytes)]
    if out and pad is not None and len(out[-1]) < frame_bytes:
        out[-1] = out[-1] + bytes([pad]) * (frame_bytes - len(out[-1]))
    return out


def silence_ulaw(duration_s: float) -> bytes:
    """mu-law silence of the given length at 8 kHz."""
    return bytes([ULAW_SILENCE]) * round(duration_s * SAMPLE_RATE)
