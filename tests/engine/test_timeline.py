"""The seed-format log (ko/en) and the metrics derived from timeline events."""

from __future__ import annotations

import logging

import pytest

from hanmadi.engine.timeline import Timeline, TimelineEvent, audio_arrivals, compute_metrics, format_event
from hanmadi.telephony.playback import Playback, playback_of

LONG = "오늘 날씨가 정말 좋은데 산책하러 나가시는 건 어떠세요?"

SEED_EVENTS = [
    TimelineEvent(0.0, "turn_start", text="realtime"),
    TimelineEvent(0.52, "sentence", index=0, text="안녕하세요!"),
    TimelineEvent(0.52, "tts_start", index=0),
    TimelineEvent(1.05, "tts_done", index=0, duration_s=0.53, audio_s=0.52),
    TimelineEvent(1.05, "send_start", index=0),
    TimelineEvent(1.08, "sentence", index=1, text=LONG),
    TimelineEvent(1.08, "tts_start", index=1),
    TimelineEvent(1.12, "chunk_sent", index=0, audio_s=0.52),
    TimelineEvent(1.12, "send_done", index=0, audio_s=0.52),
    TimelineEvent(1.56, "sentence", index=2, text="기분이 좋아질 거예요!", final=True),
    TimelineEvent(1.56, "tts_start", index=2),
    TimelineEvent(2.28, "tts_done", index=1, duration_s=1.20, audio_s=1.18),
    TimelineEvent(2.28, "send_start", index=1),
    TimelineEvent(2.36, "chunk_sent", index=1, audio_s=1.18),
    TimelineEvent(2.36, "send_done", index=1, audio_s=1.18),
    TimelineEvent(2.38, "tts_done", index=2, duration_s=0.82, audio_s=0.80),
    TimelineEvent(2.38, "send_start", index=2),
    TimelineEvent(2.45, "chunk_sent", index=2, audio_s=0.80),
    TimelineEvent(2.45, "send_done", index=2, audio_s=0.80),
    TimelineEvent(2.45, "done", audio_s=2.50),
]

SEED_LOG_KO = [
    "[발화 종료 +0.00초] 실시간 하이브리드 파이프라인 시작",
    "[+0.52초] 문장[0] 생성: 안녕하세요!",
    "[+0.52초] 문장[0] TTS 시작",
    "[+1.05초] 문장[0] TTS 완료 (0.53초 소요)",
    "[+1.05초] 문장[0] 전송 시작",
    f"[+1.08초] 문장[1] 생성: {LONG}",
    "[+1.08초] 문장[1] TTS 시작",
    "[+1.12초] 문장[0] 전송 완료 (재생: 0.52초)",
    "[+1.56초] 문장[2] 생성(마지막): 기분이 좋아질 거예요!",
    "[+1.56초] 문장[2] TTS 시작",
    "[+2.28초] 문장[1] TTS 완료 (1.20초 소요)",
    "[+2.28초] 문장[1] 전송 시작",
    "[+2.36초] 문장[1] 전송 완료 (재생: 1.18초)",
    "[+2.38초] 문장[2] TTS 완료 (0.82초 소요)",
    "[+2.38초] 문장[2] 전송 시작",
    "[+2.45초] 문장[2] 전송 완료 (재생: 0.80초)",
    "[+2.45초] 전체 완료 (재생시간: 2.50초)",
]


def _timeline(events: list[TimelineEvent], lang: str) -> Timeline:
    tl = Timeline(t0=0.0, lang=lang)
    tl.events.extend(events)
    return tl


def test_seed_log_reproduced_in_korean() -> None:
    assert _timeline(SEED_EVENTS, "ko").lines() == SEED_LOG_KO


def test_seed_log_in_english() -> None:
    lines = _timeline(SEED_EVENTS, "en").lines()
    assert lines[:5] == [
        "[end of speech +0.00s] realtime hybrid pipeline started",
        "[+0.52s] sentence[0] generated: 안녕하세요!",
        "[+0.52s] sentence[0] TTS started",
        "[+1.05s] sentence[0] TTS done (0.53s)",
        "[+1.05s] sentence[0] send started",
    ]
    assert lines[7] == "[+1.12s] sentence[0] sent (playback: 0.52s)"
    assert lines[8] == "[+1.56s] sentence[2] generated (last): 기분이 좋아질 거예요!"
    assert lines[-1] == "[+2.45s] all done (playback: 2.50s)"


@pytest.mark.parametrize(
    ("event", "ko", "en"),
    [
        (
            TimelineEvent(1.5, "skip", index=1, reason="timeout"),
            "[+1.50초] 문장[1] 건너뜀 (사유: timeout)",
            "[+1.50s] sentence[1] skipped (reason: timeout)",
        ),
        (
            TimelineEvent(0.9, "tts_retry", index=0, reason="http_500"),
            "[+0.90초] 문장[0] TTS 재시도 (사유: http_500)",
            "[+0.90s] sentence[0] TTS retry (reason: http_500)",
        ),
        (
            TimelineEvent(0.7, "llm_error", reason="stream_broken"),
            "[+0.70초] LLM 오류로 응답 중단 (사유: stream_broken)",
            "[+0.70s] LLM error, answer cut short (reason: stream_broken)",
        ),
        (
            TimelineEvent(1.2, "cancel", reason="barge_in", audio_s=0.52),
            "[+1.20초] 응답 취소 (사유: barge_in, 전송된 재생시간: 0.52초)",
            "[+1.20s] reply cancelled (reason: barge_in, audio sent: 0.52s)",
        ),
        (
            TimelineEvent(0.0, "turn_start", text="sequential"),
            "[발화 종료 +0.00초] 순차 파이프라인 시작",
            "[end of speech +0.00s] sequential pipeline started",
        ),
    ],
)
def test_other_lines(event: TimelineEvent, ko: str, en: str) -> None:
    assert format_event(event, "ko") == ko
    assert format_event(event, "en") == en


def test_chunk_lines_only_when_verbose() -> None:
    tl = _timeline(SEED_EVENTS, "ko")
    verbose = tl.lines(verbose=True)
    assert len(verbose) == len(SEED_EVENTS)
    assert "[+1.12초] 문장[0] 오디오 조각 전송 (0.52초)" in verbose


def test_emit_records_logs_and_tells_listeners(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[TimelineEvent] = []
    tl = Timeline(lang="ko", listeners=[seen.append])
    with caplog.at_level(logging.INFO, logger="hanmadi.engine"):
        ev = tl.emit("sentence", index=0, text="안녕하세요!")
    assert tl.events == [ev] == seen
    assert 0.0 <= ev.t < 5.0
    assert caplog.messages == [format_event(ev, "ko")]
    assert ev.to_dict() == {"t": ev.t, "kind": "sentence", "index": 0, "text": "안녕하세요!"}


def test_metrics_of_the_seed_log() -> None:
    m = compute_metrics(SEED_EVENTS)
    assert m.first_audio_s == 1.12
    assert m.total_s == 2.45
    assert m.order == [0, 1, 2]
    assert m.skipped == []
    assert m.sentences == 3
    assert m.tts_s == {0: 0.53, 1: 1.20, 2: 0.82}
    assert m.max_parallel_tts == 2  # sentences 1 and 2 overlap; 0 was done before 1 started
    # caller hears 0 from 1.12 to 1.64, silence until 2.36, then 1 (to 3.54) and 2 right after (to 4.34)
    playback = playback_of(audio_arrivals(SEED_EVENTS))
    assert playback.gap_s == pytest.approx(0.72)
    assert playback.end_s == pytest.approx(4.34)


def test_playback_model_per_chunk() -> None:
    events = [
        TimelineEvent(1.0, "chunk_sent", index=0, audio_s=0.5),
        TimelineEvent(1.2, "chunk_sent", index=0, audio_s=0.5),  # arrives while the first plays: no gap
        TimelineEvent(3.0, "chunk_sent", index=1, audio_s=1.0),  # 1.0 s of silence before it
        TimelineEvent(3.1, "chunk_sent", index=2, audio_s=0.5),  # queued behind sentence 1
        TimelineEvent(3.1, "send_done", index=2, audio_s=0.5),
    ]
    m = compute_metrics(events)
    assert m.first_audio_s == 1.0
    assert m.total_s == 3.1
    playback = playback_of(audio_arrivals(events))
    assert playback.gap_s == pytest.approx(1.0)
    assert playback.end_s == pytest.approx(4.5)


def test_metrics_without_chunk_events_use_send_done() -> None:
    events = [
        TimelineEvent(1.0, "send_done", index=0, audio_s=2.0),
        TimelineEvent(2.0, "send_done", index=1, audio_s=1.0),
    ]
    m = compute_metrics(events)
    assert (m.first_audio_s, m.total_s) == (1.0, 2.0)
    assert playback_of(audio_arrivals(events)) == Playback(end_s=4.0, gap_s=0.0)


def test_skips_and_cancel_end_jobs_in_flight() -> None:
    events = [
        TimelineEvent(0.1, "tts_start", index=0),
        TimelineEvent(0.1, "tts_start", index=1),
        TimelineEvent(0.2, "skip", index=1, reason="timeout"),
        TimelineEvent(0.3, "tts_start", index=2),
        TimelineEvent(0.4, "cancel", reason="barge_in"),
        TimelineEvent(0.5, "tts_start", index=3),
    ]
    m = compute_metrics(events)
    assert m.max_parallel_tts == 2
    assert m.skipped == [1]
    assert m.first_audio_s is None and playback_of(audio_arrivals(events)).end_s is None
    assert m.to_dict()["skipped"] == [1]
