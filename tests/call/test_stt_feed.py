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


async def test_audio_goes_to_the_stt_in_blocks_and_an_end_of_speech_hands_over_the_rest_first() -> None:
    feed = SttFeed(backlog_s=10.0, block_ms=100)  # five 20 ms frames a block
    frames = [bytes([n]) * 320 for n in range(7)]
    for frame in frames:
        feed.audio(frame)
    assert feed.queued == 1  # one block handed over, two frames still gathering
    end = EndOfSpeech(1.0, 0.3, "final")
    feed.end_of_speech(end)
    assert feed.queued == 2
    assert await feed.get() == b"".join(frames[:5])
    assert await feed.get() == b"".join(frames[5:])  # the partial block, before the end of speech it precedes
    assert await feed.get() is end
    feed.audio(frames[0])
    feed.close()  # the close hands over what is buffered too
    assert await feed.get() == frames[0]
    assert await feed.get() is None and feed.queued == 0


async def test_the_backlog_counts_frames_whether_they_wait_in_a_block_or_in_the_queue() -> None:
    before = dropped()
    feed = SttFeed(backlog_s=0.2, block_ms=60)  # ten frames of backlog, three frames a block
    for n in range(12):
        feed.audio(bytes([n]) * 320)
    assert dropped() == before + 2  # frames 10 and 11: nine queued in blocks and one gathering already
    assert await feed.get() == b"".join(bytes([n]) * 320 for n in range(3))
    feed.audio(b"\x0c" * 320)  # a block taken frees three frames of room
    assert dropped() == before + 2


def test_the_block_is_100_ms_but_20_for_the_local_stt_whose_whisper_pass_starts_at_the_first_pause_frame() -> None:
    from hanmadi.config import Settings

    assert Settings(stt="deepgram", _env_file=None).stt_block() == 100  # type: ignore[call-arg]
    assert Settings(stt="simulated", _env_file=None).stt_block() == 100  # type: ignore[call-arg]
    assert Settings(stt="local", _env_file=None).stt_block() == 20  # type: ignore[call-arg]
    assert Settings(stt="local", stt_block_ms=60, _env_file=None).stt_block() == 60  # type: ignore[call-arg]
