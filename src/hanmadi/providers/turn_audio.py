"""A turn's caller audio for an STT that keeps it (batch upload, resend after a reconnect), trimmed to the speech.

The call streams every caller frame to the STT — also while the bot is talking and the caller is silent. A vendor
that buffers the turn would upload that silence again with every final (and pay for it). This buffer keeps only a
short pre-roll before the first voiced frame, and a bounded length in all.
"""

from __future__ import annotations

import numpy as np

# Audio kept before the first voiced frame: the onset of the first syllable is often below the gate.
PREROLL_S = 0.3
# RMS (int16) that counts as voice: phone-line noise sits well below, speech well above.
VOICE_RMS = 300.0
# A turn longer than this keeps its last MAX_TURN_S (a stuck VAD must not grow it without bound).
MAX_TURN_S = 60.0


class TurnAudio:
    """PCM16 mono of the turn in progress: silence before the caller's voice is dropped (but for a pre-roll)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._pcm = bytearray()
        self.voiced = False

    def add(self, pcm: bytes) -> None:
        """Append caller audio, trimming what cannot belong to the speech."""
        self._pcm += pcm
        if not self.voiced:
            samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
            if samples.size and float(np.sqrt(np.mean(samples * samples))) >= VOICE_RMS:
                self.voiced = True
            else:
                self._keep_last(PREROLL_S)
        if len(self._pcm) > self._bytes(MAX_TURN_S):
            self._keep_last(MAX_TURN_S)

    def take(self) -> bytes:
        """The turn's audio; the buffer starts the next turn empty."""
        audio, self._pcm, self.voiced = bytes(self._pcm), bytearray(), False
        return audio

    @property
    def duration_s(self) -> float:
        return len(self._pcm) / 2 / self.sample_rate

    def __bytes__(self) -> bytes:
        return bytes(self._pcm)

    def __len__(self) -> int:
        return len(self._pcm)

    def _bytes(self, seconds: float) -> int:
        return round(seconds * self.sample_rate) * 2

    def _keep_last(self, seconds: float) -> None:
        excess = len(self._pcm) - self._bytes(seconds)
        if excess > 0:
            del self._pcm[:excess]
