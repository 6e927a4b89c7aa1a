"""Turn taking: VAD + endpointing on 8 kHz 20 ms frames -> "caller started / stopped speaking" events.

The detector is pure and synchronous (a few microseconds per frame) so the call can run it inline on every frame.
Time is stream time: 20 ms per frame fed, so the decisions do not depend on how busy the machine is.

Korean end-of-turn: the silence that ends a turn depends on how the words heard so far end (``hear()`` takes
the STT's partials, from any provider). A sentence-final ending or a question (…요, …니다, …까, …죠, …나요, ``?``)
ends the turn after ``final_endpointing_ms``; a connective ending (…는데, …고, …서, …면) or a filler waits
``connective_endpointing_ms``, the caller has more to say; anything else waits ``endpointing_ms``. A partial counts
only if it covers the voice up to its end: a recogniser lagging behind the caller must not end a turn on words from
before the last ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import webrtcvad

FRAME_MS = 20
# webrtcvad keeps calling ~100 ms of silence "speech" after a voice stops (its hangover). In that tail a frame
# counts as voiced only if it carries energy near the caller's own speech level, so endpointing counts from the
# real end of the voice. Onsets are not gated: a caller who starts speaking more quietly is still heard.
_TAIL_MS = 300
_LEVEL_RATIO = 0.06  # about -24 dB under the caller's mean speech level
_MIN_RMS = 40.0  # about -58 dBFS: below this nothing is speech
# A caller who keeps talking this long over our audio barges in even if STT has produced no partial yet.
_BARGE_IN_WITHOUT_TEXT_MS = 600


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The caller has been speaking for ``min_speech_ms``; ``start_ms`` is when the voice began (stream time)."""

    start_ms: int


EndRule = Literal["final", "connective", "default"]


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """Enough silence followed the speech; ``end_ms`` is the end of the last voiced frame.

    ``rule`` says which silence ended it: ``final`` (the words ended a sentence; the shorter wait), ``connective``
    (the longer wait) or ``default`` (``endpointing_ms``).
    """

    start_ms: int
    end_ms: int
    rule: EndRule = "default"

    @property
    def speech_ms(self) -> int:
        return self.end_ms - self.start_ms


TurnEvent = SpeechStarted | SpeechStopped


class TurnDetector:
    """Endpointing over webrtcvad decisions.

    A run of voiced frames becomes speech once it holds ``min_speech_ms`` of voice (short silences inside it, shorter
    than the endpointing window, do not reset it); speech ends after ``endpointing_ms`` of continuous silence — or
    after ``final_endpointing_ms`` / ``connective_endpointing_ms`` when the words heard (``hear()``) end that way.
    Both default to ``endpointing_ms`` (no Korean rule).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        aggressiveness: int = 2,
        endpointing_ms: int = 500,
        min_speech_ms: int = 200,
        final_endpointing_ms: int | None = None,
        connective_endpointing_ms: int | None = None,
    ) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._rate = sample_rate
        self._frame_bytes = sample_rate * FRAME_MS // 1000 * 2
        self.endpointing_ms = endpointing_ms
        self.final_endpointing_ms = endpointing_ms if final_endpointing_ms is None else final_endpointing_ms
        self.connective_endpointing_ms = (
            endpointing_ms if connective_endpointing_ms is None else connective_endpointing_ms
        )
        self.min_speech_ms = min_speech_ms
        self._words = ""  # the latest partial transcript of the utterance in progress
        self._words_until_ms = -1  # stream time up to which that partial has heard the audio
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

    def hear(self, text: str, audio_s: float = 0.0) -> None:
        """The STT's latest words for the utterance in progress.

        ``audio_s`` is how much of the stream the recogniser had consumed (``Transcript.audio_s``); a provider that
        does not say (0) is taken to have heard everything up to now.
        """
        self._words = text
        self._words_until_ms = round(audio_s * 1000) if audio_s > 0 else self.now_ms

    @property
    def words(self) -> str:
        """The words heard so far in the utterance in progress ('' when none)."""
        return self._words

    def end_rule(self) -> EndRule:
        """Which silence would end the utterance now: by the words' ending, if they cover the voice to its end."""
        if not self._words or self._words_until_ms < self._last_voiced_end_ms - _PARTIAL_SLACK_MS:
            return "default"
        kind = korean_ending(self._words)
        if kind == "final":
            return "final"
        if kind == "connective":
            return "connective"
        return "default"

    def silence_needed_ms(self) -> int:
        """The silence that ends the utterance in progress, given the words heard so far."""
        rule = self.end_rule()
        if rule == "final":
            return self.final_endpointing_ms
        if rule == "connective":
            return self.connective_endpointing_ms
        return self.endpointing_ms

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
        rule = self.end_rule() if self.speaking else "default"
        needed = self.silence_needed_ms() if self.speaking else self.endpointing_ms
        if self._silence_ms < needed:
            return None
        start = self._start_ms
        was_speaking = self.speaking
        self.reset()
        if was_speaking:
            return SpeechStopped(start_ms=start, end_ms=self._last_voiced_end_ms, rule=rule)
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
        self._words = ""
        self._words_until_ms = -1


_PUNCT = re.compile(r"[\s.,!?~…]+")

# A partial decoded from audio up to this much before the end of the voice still counts as covering it (the STT
# reports its progress in blocks; the last voiced frame may sit inside a block's trailing edge).
_PARTIAL_SLACK_MS = 40
Ending = Literal["final", "connective", "other"]
# Sentence-final endings of spoken Korean (polite and formal registers, questions and suggestions).
_FINAL_ENDINGS = ("요", "니다", "까", "죠")
# Nouns and adverbs that merely end in a final ending's syllable.
_NOT_FINAL = frozenset({"필요", "중요", "주요", "소요", "수요", "강요", "동요", "요요", "아까", "불필요"})
# Connective endings: the caller is in the middle of a sentence.
_CONNECTIVE_ENDINGS = ("데", "고", "서", "면", "지만", "려고", "도록", "거나", "든지")
# Hesitations: the caller is looking for words.
_FILLERS = frozenset({"음", "어", "으음", "그", "저", "저기", "뭐", "아"})
_TRAILING = re.compile(r"[\s.,!~…\"'”’)\]]+$")


def korean_ending(text: str) -> Ending:
    """How ``text`` ends: a finished sentence or question (``final``), mid-sentence (``connective``), or ``other``.

    ``…니까`` is a formal question after ㅂ (``입니까``, ``합니까``) but "because" otherwise (``있으니까``).
    """
    text = _TRAILING.sub("", text)
    if not text:
        return "other"
    if text.endswith("?"):
        return "final"
    last = text.split()[-1]
    if last in _FILLERS:
        return "connective"
    if last.endswith("니까") and len(last) >= 3:
        return "final" if _has_final_b(last[-3]) else "connective"
    if last not in _NOT_FINAL and last.endswith(_FINAL_ENDINGS):
        return "final"
    if last.endswith(_CONNECTIVE_ENDINGS):
        return "connective"
    return "other"


def _has_final_b(syllable: str) -> bool:
    """The Hangul syllable ends in ㅂ (합, 입, 됩, 습 …)."""
    code = ord(syllable) - 0xAC00
    return 0 <= code < 11172 and code % 28 == 17


def is_backchannel(text: str, backchannels: list[str]) -> bool:
    """True when ``text`` is only a Korean backchannel (네, 예, 응, 아 네, 음 …), possibly repeated.

    Empty text is not a backchannel: it is "not known yet".
    """
    words = _PUNCT.sub(" ", text).split()
    if not words:
        return False
    singles = {w for b in backchannels for w in b.split()}
    return all(w in singles for w in words)


def barge_in_due(speech_ms: int, partial: str, min_speech_ms: int, backchannels: list[str]) -> bool:
    """The caller talking over our audio interrupts it: ``min_speech_ms`` of speech whose words so far (the partial
    transcript) are not a backchannel ("네", "음"), or a little longer when the STT has no words yet."""
    if speech_ms < min_speech_ms:
        return False
    if partial:
        return not is_backchannel(partial, backchannels)
    return speech_ms >= min_speech_ms + _BARGE_IN_WITHOUT_TEXT_MS
