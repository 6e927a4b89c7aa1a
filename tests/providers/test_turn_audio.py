"""The turn audio an STT keeps is the caller's speech, not the silence while the bot spoke."""

from __future__ import annotations

from hanmadi.providers.turn_audio import MAX_TURN_S, PREROLL_S, TurnAudio
from loopback_support import voice


def silence(seconds: float) -> bytes:
    return bytes(int(8000 * seconds) * 2)


def test_silence_before_the_voice_is_dropped_but_for_a_preroll() -> None:
    turn = TurnAudio(8000)
    for _ in range(500):  # ten seconds of 20 ms frames while the bot talks
        turn.add(silence(0.02))
    assert turn.duration_s <= PREROLL_S
    speech = voice(1.0)
    for i in range(0, len(speech), 320):
        turn.add(speech[i : i + 320])
    turn.add(silence(0.5))  # the pause after the voice is part of the turn
    assert 1.5 <= turn.duration_s <= 1.5 + PREROLL_S
    assert turn.take().endswith(silence(0.5))
    assert len(turn) == 0 and not turn.voiced


def test_a_turn_never_outgrows_its_bound() -> None:
    turn = TurnAudio(8000)
    turn.add(voice(1.0))
    for _ in range(int(MAX_TURN_S) + 5):
        turn.add(silence(1.0))
    assert turn.duration_s == MAX_TURN_S
