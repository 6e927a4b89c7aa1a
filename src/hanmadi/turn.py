"""Turn taking: VAD + endpointing on 8 kHz 20 ms frames -> "caller started / stopped speaking" events.

The detector is pure and synchronous (a few microseconds per frame) so the call can run it inline on every frame.
Time is stream time: 20 ms per frame fed, so the decisions do not depend on how busy the machine is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import webrtcvad

FRAME_MS = 20
# webrtcvad keeps calling ~100 ms of silence "speech" after a voice stops (its hangover). In that tail a frame
# counts as voiced only if it carries energy near the caller's own speech level, so endpointing counts from the
# real end of the voice. Onsets are not gated: a caller who starts speaking more quietly is still heard.
_TAIL_MS = 300
_LEVEL_RATIO = 0.06  # about -24 dB under the caller's mean speech level
_MIN_RMS = 40.0  # about -58 dBFS: below this nothing is speech


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The caller has been speaking for ``min_speech_ms``; ``start_ms`` is when the voice began (stream time)."""

    start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """``endpointing_ms`` of silence followed the speech; ``end_ms`` is the end of the last voiced frame."""

    start_ms: int
    end_ms: int

    @property
    def speech_ms(self) -> int:
        return self.end_ms - self.start_ms


TurnEvent = SpeechStarted | SpeechStopped


class TurnDetector:
    """Endpointing over webrtcvad decisions.

    A run of voiced frames becomes speech once it holds ``min_speech_ms`` of voice (short silences inside it, shorter
    than the endpointing window, do not reset it); speech ends after ``endpointing_ms`` of continuous silence.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        aggressiveness: int = 2,
        endpointing_ms: int = 500,
        min_speech_ms: int = 200,
    ) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._rate = sample_rate
        self._frame_bytes = sample_rate * FRAME_MS // 1000 * 2
        self.endpointing_ms = endpointing_ms
        self.min_speech_ms = min_speech_ms
        self.now_ms = 0  # stream time at the end of the last frame fed
        self.speaking = False
        self._voiced_ms = 0  # voiced time in the current candidate/utterance
        self._start_ms: int | None = None
        self._last_voiced_end_ms = 0
        self._silence_ms = 0
        self._speech_level = 0.0  # mean RMS of voiced frames (exponential)
        self._since_voiced_ms = _TAIL_MS + FRAME_MS

    @property
    def silence_ms(self) -> int:
        """Silence since the last voiced frame of the utterance in progress (0 when nobody is speaking)."""
        return self._silence_ms if self._start_ms is not None else 0

    @property
    def speech_ms(self) -> int:
        """Voiced milliseconds of the utterance in progress (0 when nobody is speaking)."""
        return self._voiced_ms if self._start_ms is not None else 0

    def is_speech(self, pcm: bytes) -> bool:
        """The VAD decision for one 20 ms PCM16 frame (a short or odd frame counts as silence)."""
        self._since_voiced_ms += FRAME_MS
        if len(pcm) != self._frame_bytes or not self._vad.is_speech(pcm, self._rate):
            return False
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        rms = float(np.sqrt(np.mean(samples * samples)))
        in_tail = self._since_voiced_ms <= _TAIL_MS
        if rms < _MIN_RMS or (in_tail and rms < self._speech_level * _LEVEL_RATIO):
            return False  # webrtcvad's hangover or faint noise, not the caller's voice
        self._speech_level = rms if self._speech_level == 0 else 0.9 * self._speech_level + 0.1 * rms
        self._since_voiced_ms = 0
        return True

    def feed(self, pcm: bytes) -> TurnEvent | None:
        """Feed one 20 ms frame of PCM16; return an event when speech starts or stops."""
        voiced = self.is_speech(pcm)
        self.now_ms += FRAME_MS
        if voiced:
            if self._start_ms is None:
                self._start_ms = self.now_ms - FRAME_MS
                self._voiced_ms = 0
            self._voiced_ms += FRAME_MS
            self._silence_ms = 0
            self._last_voiced_end_ms = self.now_ms
            if not self.speaking and self._voiced_ms >= self.min_speech_ms:
                self.speaking = True
                return SpeechStarted(start_ms=self._start_ms)
            return None
        if self._start_ms is None:
            return None
        self._silence_ms += FRAME_MS
        if self._silence_ms < self.endpointing_ms:
            return None
        start = self._start_ms
        was_speaking = self.speaking
        self.reset()
        if was_speaking:
            return SpeechStopped(start_ms=start, end_ms=self._last_voiced_end_ms)
        return None  # a blip shorter than min_speech_ms: noise, not a turn

    def feed_silence(self, duration_ms: int) -> TurnEvent | None:
        """Account for lost packets (filled with silence) without running the VAD."""
        event: TurnEvent | None = None
        silence = bytes(self._frame_bytes)
        for _ in range(max(0, duration_ms) // FRAME_MS):
            event = self.feed(silence) or event
        return event

    def reset(self) -> None:
        """Forget the utterance in progress (after a turn ends)."""
        self.speaking = False
        self._start_ms = None
        self._voiced_ms = 0
        self._silence_ms = 0


_PUNCT = re.compile(r"[\s.,!?~…]+")


def is_backchannel(text: str, backchannels: list[str]) -> bool:
    """True when ``text`` is only a Korean backchannel (네, 예, 응, 아 네, 음 …), possibly repeated.

    Empty text is not a backchannel: it is "not known yet".
    """
    words = _PUNCT.sub(" ", text).split()
    if not words:
        return False
    singles = {w for b in backchannels for w in b.split()}
    return all(w in singles for w in words)
