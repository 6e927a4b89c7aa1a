"""Fuzzing the Media Streams parser: >= 10,000 mutated and random messages; only ``BadFrame`` ever escapes.

Each hypothesis example is a batch of messages, so the count is reached in a few seconds; every test asserts how
many messages it really fed.
"""

from __future__ import annotations

import json

from fuzz_support import CALL_SID, STREAM_SID, mutated_message, random_message, valid_messages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hanmadi.telephony import twilio as tw

MAX_BYTES = 64 * 1024
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def parse_or_refuse(raw: str | bytes) -> tw.InboundEvent | None:
    """Parse ``raw``; a refusal must be a ``BadFrame`` with a known reason. Any other exception fails the test."""
    try:
        event = tw.parse_message(raw, max_bytes=MAX_BYTES)
    except tw.BadFrame as exc:
        assert exc.reason in tw.BAD_FRAME_REASONS, exc.reason
        return None
    check_event(event)
    return event


def check_event(event: tw.InboundEvent) -> None:
    """What the parser accepts has the types the call relies on."""
    if isinstance(event, tw.Media):
        assert isinstance(event.payload, bytes) and isinstance(event.stream_sid, str)
        assert isinstance(event.chunk, int) and event.chunk >= 0
        assert isinstance(event.timestamp_ms, int) and event.timestamp_ms >= 0
    elif isinstance(event, tw.Start):
        assert event.stream_sid and isinstance(event.call_sid, str)
        assert all(isinstance(v, str) for v in event.custom_parameters.values())
        assert event.media_format == tw.MediaFormat("audio/x-mulaw", 8000, 1)
    elif isinstance(event, tw.Dtmf):
        assert len(event.digit) == 1 and event.digit in "0123456789*#ABCD"
    elif isinstance(event, tw.Mark | tw.Stop):
        assert isinstance(event.stream_sid, str)


def test_valid_messages_parse() -> None:
    kinds = [type(parse_or_refuse(json.dumps(m))).__name__ for m in valid_messages()]
    assert kinds == ["Connected", "Start", "Media", "Mark", "Dtmf", "Stop"]


def test_mutated_valid_messages_only_raise_bad_frame() -> None:
    fed: list[int] = []

    @FUZZ
    @given(st.lists(mutated_message(), min_size=25, max_size=25))
    def run(batch: list[str | bytes]) -> None:
        guard = tw.StreamGuard()
        for raw in batch:
            event = parse_or_refuse(raw)
            if event is not None:
                try:
                    guard.check(event)
                except tw.BadFrame as exc:
                    assert exc.reason in tw.BAD_FRAME_REASONS
        fed.append(len(batch))

    run()
    assert sum(fed) >= 7_500


def test_random_messages_only_raise_bad_frame() -> None:
    fed: list[int] = []

    @FUZZ
    @given(st.lists(random_message, min_size=10, max_size=10))
    def run(batch: list[str | bytes]) -> None:
        for raw in batch:
            parse_or_refuse(raw)
        fed.append(len(batch))

    run()
    assert sum(fed) >= 3_000


def test_edge_cases_found_by_fuzzing() -> None:
    """Regressions: digit strings int() refuses, huge numbers, deep nesting, oversized UTF-8."""
    media = valid_messages()[2]
    for chunk in ("9" * 5000, 10**30, "1" * 19, -1, "１２"):
        raw = json.dumps({**media, "media": {**media["media"], "chunk": chunk}})
        assert parse_or_refuse(raw) is None
    assert parse_or_refuse("[" * 100_000) is None
    assert (
        parse_or_refuse(json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "가" * 30_000}})) is None
    )
    assert parse_or_refuse(json.dumps({"event": "stop", "streamSid": STREAM_SID, "stop": CALL_SID})) is not None
