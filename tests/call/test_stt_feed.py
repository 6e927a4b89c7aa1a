"""The STT feed is bounded: a stalled STT drops caller frames (counted), never an end of speech."""

from __future__ import annotations

from hanmadi.metrics import REGISTRY
from hanmadi.stt_feed import EndOfSpeech, SttFeed


def dropped() -> float:
    return REGISTRY.get_sample_value("hanmadi_stt_frames_dropped_total") or 0.0


async def test_a_stt_that_falls_behind_loses_frames_not_ends_of_speech() -> None:
    before = dropped()
    feed = SttFeed(backlog_s=0.1)  # five 20 ms frames
    for n in range(8):
        feed.audio(bytes([n]) * 320)
    end = EndOfSpeech(1.0, 0.3)
    feed.end_of_speech(end)
    assert dropped() == before + 3
    got = [await feed.get() for _ in range(6)]
    assert got[:5] == [bytes([n]) * 320 for n in range(5)] and got[5] is end  # in order, the newest frames dropped
    feed.audio(b"\x09" * 320)  # room again once the worker caught up
    feed.close()
    assert await feed.get() == b"\x09" * 320
    assert await feed.get() is None
    assert dropped() == before + 3
