"""Turn detection: VAD endpointing on 20 ms frames, and Korean backchannels."""

from __future__ import annotations

import numpy as np
import pytest

from hanmadi.turn import SpeechStarted, SpeechStopped, TurnDetector, barge_in_due, is_backchannel

FRAME = 160


def voiced(ms: int, amplitude: float = 6000) -> list[bytes]:
    """A vowel-like harmonic signal the VAD calls speech."""
    n = ms // 20
    t = np.arange(FRAME * n) / 8000
    sig = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate([140, 280, 420, 700, 1100]))
    pcm = (sig * amplitude).astype("<i2")
    return [pcm[i * FRAME : (i + 1) * FRAME].tobytes() for i in range(n)]


def silence(ms: int) -> list[bytes]:
    return [bytes(FRAME * 2)] * (ms // 20)


def run(detector: TurnDetector, frames: list[bytes]) -> list[tuple[int, object]]:
    out = []
    for f in frames:
        ev = detector.feed(f)
        if ev is not None:
            out.append((detector.now_ms, ev))
    return out


def test_speech_then_endpointing_silence_is_one_turn() -> None:
    d = TurnDetector(endpointing_ms=500, min_speech_ms=200)
    events = run(d, silence(200) + voiced(1000) + silence(800))
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, SpeechStopped]
    at_ms, stopped = events[1]
    assert isinstance(stopped, SpeechStopped)
    # the end of speech is where the voice stopped (not where webrtcvad's hangover ends) ...
    assert stopped.end_ms == 1200
    # ... and it is detected endpointing_ms later
    assert at_ms - stopped.end_ms == 500


def test_blip_shorter_than_min_speech_is_not_a_turn() -> None:
    d = TurnDetector(endpointing_ms=300, min_speech_ms=200)
    assert run(d, silence(100) + voiced(60) + silence(600)) == []


def test_short_pause_inside_speech_does_not_end_the_turn() -> None:
    d = TurnDetector(endpointing_ms=500, min_speech_ms=200)
    events = run(d, voiced(600) + silence(300) + voiced(600) + silence(700))
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechStopped]


def test_speech_ms_grows_while_speaking_and_resets_after() -> None:
    d = TurnDetector(endpointing_ms=300, min_speech_ms=100)
    run(d, voiced(400))
    assert d.speech_ms >= 300
    run(d, silence(700))  # webrtcvad keeps a short hangover after the voice
    assert d.speech_ms == 0


def test_lost_packets_count_as_silence() -> None:
    d = TurnDetector(endpointing_ms=300, min_speech_ms=100)
    run(d, voiced(400))
    ev = d.feed_silence(700)
    assert isinstance(ev, SpeechStopped)


def test_odd_sized_frame_is_silence_not_a_crash() -> None:
    d = TurnDetector()
    assert d.is_speech(b"\x00\x01\x02") is False


def test_korean_backchannels() -> None:
    chans = ["네", "예", "응", "아 네", "음"]
    for text in ["네", "네.", "네 네", "아 네", "음", "예!", "응 응"]:
        assert is_backchannel(text, chans), text
    for text in ["", "네 알겠습니다 그런데", "잠깐만요", "아니요"]:
        assert not is_backchannel(text, chans), text


def test_a_much_quieter_caller_is_still_heard_after_a_loud_turn() -> None:
    d = TurnDetector(endpointing_ms=300, min_speech_ms=100)
    first = run(d, voiced(800, amplitude=12000) + silence(600))
    second = run(d, voiced(800, amplitude=1000) + silence(600))  # about 22 dB quieter
    assert [type(e) for _, e in first] == [SpeechStarted, SpeechStopped]
    assert [type(e) for _, e in second] == [SpeechStarted, SpeechStopped]


@pytest.mark.parametrize(
    ("speech_ms", "partial", "due"),
    [
        (150, "잠깐만요", False),  # too short to be anything
        (250, "잠깐만요", True),  # words that are not a backchannel
        (400, "네", False),  # a backchannel never interrupts
        (400, "", False),  # no words yet: it may still be a backchannel
        (800, "", True),  # long enough without words
    ],
)
def test_barge_in_due(speech_ms: int, partial: str, due: bool) -> None:
    assert barge_in_due(speech_ms, partial, 200, ["네", "음"]) is due
