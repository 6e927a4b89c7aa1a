"""The one model of Twilio's playback buffer: queueing, marks, and a clear that truncates."""

from __future__ import annotations

import pytest

from hanmadi.telephony.playback import PlaybackClock, playback_of


def test_audio_plays_after_what_is_queued_and_marks_fall_due_at_its_end() -> None:
    clock = PlaybackClock()
    first = clock.add_audio(10.0, 2.0, "a")
    second = clock.add_audio(10.5, 1.0, "b")  # arrives while the first plays: queued behind it
    assert (first.start_s, second.start_s) == (10.0, 12.0)
    clock.add_mark(10.5, "m")
    assert clock.next_due_s() == 13.0
    assert clock.pop_due(12.9) == []
    assert [m.name for m in clock.pop_due(13.0)] == ["m"]


def test_a_clear_cuts_what_plays_drops_the_rest_and_empties_the_queue() -> None:
    clock = PlaybackClock()
    clock.add_audio(0.0, 20.0, "long")
    clock.add_mark(0.0, "after-long")
    cleared = clock.clear(0.3)
    assert [m.name for m in cleared] == ["after-long"]  # every pending mark, at once
    assert clock.heard_s("long", 100.0) == pytest.approx(0.3)  # and never more
    nxt = clock.add_audio(0.4, 3.0, "next")
    assert nxt.start_s == 0.4  # plays on arrival, not after the 20 s that were cleared
    assert clock.heard_s("next", 1.4) == pytest.approx(1.0)
    assert not clock.playing(3.4) and clock.playing(3.39)


def test_a_clear_after_everything_played_changes_nothing() -> None:
    clock = PlaybackClock()
    clock.add_audio(0.0, 1.0, "a")
    clock.clear(5.0)
    assert clock.heard_s("a", 5.0) == 1.0
    assert clock.end_s == 1.0


def test_playback_of_a_reply_counts_the_silence_between_pieces() -> None:
    playback = playback_of([(1.0, 0.5), (1.2, 0.5), (3.0, 1.0)])
    assert playback.end_s == pytest.approx(4.0)
    assert playback.gap_s == pytest.approx(1.0)
    assert playback_of([]).end_s is None
