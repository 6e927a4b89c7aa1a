"""The Media Streams serializer, signatures, stream tokens and TwiML."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from hanmadi.telephony import twilio as tw

MAX = 64 * 1024
SID = "MZ" + "0" * 32
CALL = "CA" + "1" * 32
TOKEN = "auth-token-123"


def media(frame: bytes = b"\xff" * 160, **overrides: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "event": "media",
        "sequenceNumber": "3",
        "media": {"track": "inbound", "chunk": "2", "timestamp": "20", "payload": base64.b64encode(frame).decode()},
        "streamSid": SID,
    }
    msg["media"].update(overrides)
    return msg


def start(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "accountSid": "AC" + "2" * 32,
        "streamSid": SID,
        "callSid": CALL,
        "tracks": ["inbound"],
        "customParameters": {"token": "abc"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    body.update(overrides)
    return {"event": "start", "sequenceNumber": "1", "start": body, "streamSid": SID}


def parse(msg: Any) -> tw.InboundEvent:
    return tw.parse_message(json.dumps(msg), max_bytes=MAX)


def reason(raw: str | bytes) -> str:
    with pytest.raises(tw.BadFrame) as info:
        tw.parse_message(raw, max_bytes=MAX)
    assert info.value.reason in tw.BAD_FRAME_REASONS
    return info.value.reason


# --- valid inbound events ---------------------------------------------------------------------------------


def test_parse_connected() -> None:
    assert parse({"event": "connected", "protocol": "Call", "version": "1.0.0"}) == tw.Connected("Call", "1.0.0")


def test_parse_start() -> None:
    ev = parse(start())
    assert isinstance(ev, tw.Start)
    assert (ev.stream_sid, ev.call_sid, ev.custom_parameters) == (SID, CALL, {"token": "abc"})
    assert ev.media_format == tw.MediaFormat("audio/x-mulaw", 8000, 1)
    assert ev.tracks == ("inbound",)


def test_parse_media_decodes_payload_and_string_numbers() -> None:
    ev = parse(media(b"\x01\x02\x03"))
    assert ev == tw.Media(SID, "inbound", 2, 20, b"\x01\x02\x03")


def test_parse_media_accepts_json_numbers_and_extra_fields() -> None:
    msg = media(chunk=7, timestamp=140)
    msg["somethingNew"] = {"x": 1}
    ev = parse(msg)
    assert isinstance(ev, tw.Media) and (ev.chunk, ev.timestamp_ms) == (7, 140)


def test_parse_dtmf_mark_stop() -> None:
    dtmf = {"event": "dtmf", "streamSid": SID, "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": "#"}}
    assert parse(dtmf) == tw.Dtmf(SID, "#")
    assert parse({"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": "t1s0"}}) == tw.Mark(
        SID, "t1s0"
    )
    stop = {"event": "stop", "sequenceNumber": "9", "streamSid": SID, "stop": {"accountSid": "AC", "callSid": CALL}}
    assert parse(stop) == tw.Stop(SID, CALL)


# --- every bad-frame reason -------------------------------------------------------------------------------


def test_bad_frame_binary_frame() -> None:
    assert reason(b'{"event":"media"}') == "binary_frame"


def test_bad_frame_too_large() -> None:
    assert reason(json.dumps(media(b"\xff" * MAX))) == "too_large"


def test_bad_frame_too_large_counts_utf8_bytes() -> None:
    raw = json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": "한" * (MAX // 3)}}, ensure_ascii=False)
    assert len(raw) < MAX < len(raw.encode())
    assert reason(raw) == "too_large"


def test_bad_frame_invalid_json() -> None:
    assert reason('{"event": "media",') == "invalid_json"


def test_bad_frame_not_object() -> None:
    assert reason("[1, 2, 3]") == "not_object"


def test_bad_frame_unknown_event() -> None:
    assert reason(json.dumps({"event": "dance"})) == "unknown_event"


@pytest.mark.parametrize(
    "msg",
    [
        {"streamSid": SID},  # no event
        {"event": 3},
        {"event": "media", "streamSid": SID},  # no media object
        media(payload=None),
        media(timestamp="-20"),
        media(chunk="1.5"),
        media(timestamp=True),
        {**media(), "streamSid": None},
        start(callSid=None),
        start(customParameters={"token": 5}),
        {"event": "start", "streamSid": SID, "start": {"streamSid": SID, "callSid": CALL}},  # no mediaFormat
        {"event": "mark", "streamSid": SID, "mark": {}},
        {"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "x"}},
    ],
)
def test_bad_frame_missing_field(msg: dict[str, Any]) -> None:
    assert reason(json.dumps(msg)) == "missing_field"


def test_bad_frame_invalid_base64() -> None:
    msg = media()
    msg["media"]["payload"] = "not base64!!"
    assert reason(json.dumps(msg)) == "invalid_base64"
    msg["media"]["payload"] = "/w==\n/w=="  # lenient decoders would skip the newline
    assert reason(json.dumps(msg)) == "invalid_base64"


@pytest.mark.parametrize(
    "fmt",
    [
        {"encoding": "audio/l16", "sampleRate": 8000, "channels": 1},
        {"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1},
        {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2},
        {"encoding": "audio/x-mulaw", "sampleRate": "8000", "channels": 1},
    ],
)
def test_bad_frame_bad_media_format(fmt: dict[str, Any]) -> None:
    assert reason(json.dumps(start(mediaFormat=fmt))) == "bad_media_format"


def test_bad_frame_media_before_start() -> None:
    guard = tw.StreamGuard()
    guard.check(parse({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    with pytest.raises(tw.BadFrame) as info:
        guard.check(parse(media()))
    assert info.value.reason == "media_before_start"


def test_bad_frame_wrong_stream_sid() -> None:
    guard = tw.StreamGuard()
    guard.check(parse(start()))
    guard.check(parse(media()))
    other = media()
    other["streamSid"] = "MZother"
    with pytest.raises(tw.BadFrame) as info:
        guard.check(parse(other))
    assert info.value.reason == "wrong_stream_sid"


def test_bad_frame_duplicate_start() -> None:
    guard = tw.StreamGuard()
    guard.check(parse(start()))
    with pytest.raises(tw.BadFrame) as info:
        guard.check(parse(start()))
    assert info.value.reason == "duplicate_start"


def test_bad_frame_reasons_are_the_fixed_set() -> None:
    assert set(tw.BAD_FRAME_REASONS) == {
        "binary_frame",
        "too_large",
        "invalid_json",
        "not_object",
        "unknown_event",
        "missing_field",
        "invalid_base64",
        "bad_media_format",
        "media_before_start",
        "wrong_stream_sid",
        "duplicate_start",
    }


# --- outbound messages ------------------------------------------------------------------------------------


def test_media_message_shape() -> None:
    msg = json.loads(tw.media_message(SID, b"\x00\xff"))
    assert msg == {"event": "media", "streamSid": SID, "media": {"payload": base64.b64encode(b"\x00\xff").decode()}}


def test_media_messages_split_at_one_second() -> None:
    msgs = tw.media_messages(SID, b"\x7f" * 20000)
    sizes = [len(base64.b64decode(json.loads(m)["media"]["payload"])) for m in msgs]
    assert sizes == [8000, 8000, 4000]
    assert tw.media_messages(SID, b"") == []


def test_mark_and_clear_message_shape() -> None:
    assert json.loads(tw.mark_message(SID, "t3s1")) == {"event": "mark", "streamSid": SID, "mark": {"name": "t3s1"}}
    assert json.loads(tw.clear_message(SID)) == {"event": "clear", "streamSid": SID}


def test_mark_names() -> None:
    assert tw.mark_name(3, 1) == "t3s1"
    assert tw.parse_mark_name("t3s1") == (3, 1)
    assert tw.parse_mark_name(tw.mark_name(tw.GREETING_TURN, 12)) == (0, 12)
    for special in ("greeting", "t3", "t3s", "xt3s1", "t3s1x", "t-1s0", ""):
        assert tw.parse_mark_name(special) is None
    with pytest.raises(ValueError):
        tw.mark_name(-1, 0)


# --- packet loss ------------------------------------------------------------------------------------------


def test_media_clock_fills_lost_frames() -> None:
    clock = tw.MediaClock()
    assert [clock.gap_ms(ts) for ts in (0, 20, 40)] == [0, 0, 0]
    assert clock.gap_ms(100) == 40  # frames at 60 and 80 were lost
    assert clock.gap_ms(121) == 0  # 1 ms of jitter is not loss
    assert clock.gap_ms(80) == 0  # late/duplicate frame: nothing to fill, clock not moved back
    assert clock.gap_ms(141) == 0


def test_media_clock_caps_the_fill() -> None:
    clock = tw.MediaClock(max_fill_ms=1000)
    clock.gap_ms(0)
    assert clock.gap_ms(10_000_000) == 1000
    assert clock.gap_ms(10_000_020) == 0


# --- URLs and signatures ----------------------------------------------------------------------------------

PARAMS = {"CallSid": CALL, "From": "+821012345678", "To": "+8225550100", "CallStatus": "ringing"}
PUBLIC = "https://bot.example.com"


def twilio_signature(url: str, params: dict[str, str], token: str = TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


def test_webhook_and_stream_urls() -> None:
    assert tw.webhook_url(PUBLIC, "/twilio/voice") == "https://bot.example.com/twilio/voice"
    assert tw.webhook_url(PUBLIC + "/", "twilio/voice") == "https://bot.example.com/twilio/voice"
    assert tw.stream_url(PUBLIC) == "wss://bot.example.com/twilio/media"
    assert tw.stream_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/twilio/media"
    assert tw.stream_url("https://example.com/bot/") == "wss://example.com/bot/twilio/media"
    for bad in ("", "ftp://x", "https://x/?a=1"):
        with pytest.raises(ValueError):
            tw.stream_url(bad)


def test_signature_accepted() -> None:
    url = tw.webhook_url(PUBLIC, tw.VOICE_PATH)
    assert tw.validate_signature(TOKEN, url, PARAMS, twilio_signature(url, PARAMS))
    assert tw.compute_signature(TOKEN, url, PARAMS) == twilio_signature(url, PARAMS)


def test_signature_rejected_wrong_token() -> None:
    url = tw.webhook_url(PUBLIC, tw.VOICE_PATH)
    assert not tw.validate_signature(TOKEN, url, PARAMS, twilio_signature(url, PARAMS, token="other"))


def test_signature_rejected_altered_param() -> None:
    url = tw.webhook_url(PUBLIC, tw.VOICE_PATH)
    signature = twilio_signature(url, PARAMS)
    assert not tw.validate_signature(TOKEN, url, {**PARAMS, "From": "+821099999999"}, signature)
    assert not tw.validate_signature(TOKEN, url, {**PARAMS, "Extra": "1"}, signature)


def test_signature_missing_or_no_token() -> None:
    url = tw.webhook_url(PUBLIC, tw.VOICE_PATH)
    assert not tw.validate_signature(TOKEN, url, PARAMS, None)
    assert not tw.validate_signature(TOKEN, url, PARAMS, "")
    assert not tw.validate_signature("", url, PARAMS, twilio_signature(url, PARAMS, token=""))


def test_signature_behind_tls_proxy() -> None:
    # Twilio signs the https public URL; behind the proxy the request arrives as http://internal:8080/...
    signature = twilio_signature("https://bot.example.com/twilio/voice", PARAMS)
    seen_by_server = "http://10.0.0.5:8080/twilio/voice"
    assert not tw.validate_signature(TOKEN, seen_by_server, PARAMS, signature)
    assert not tw.validate_signature(TOKEN, "http://bot.example.com/twilio/voice", PARAMS, signature)
    assert tw.validate_signature(TOKEN, tw.webhook_url(PUBLIC, "/twilio/voice"), PARAMS, signature)


def test_signature_of_websocket_upgrade_uses_wss_url() -> None:
    signature = twilio_signature("wss://bot.example.com/twilio/media", {})
    assert tw.validate_signature(TOKEN, tw.stream_url(PUBLIC), {}, signature)
    assert not tw.validate_signature(TOKEN, "https://bot.example.com/twilio/media", {}, signature)


# --- stream tokens ----------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def token_reason(tokens: tw.StreamTokens, token: str | None, call_sid: str = CALL) -> str:
    with pytest.raises(tw.TokenError) as info:
        tokens.redeem(token, call_sid)
    assert info.value.reason in tw.TOKEN_ERROR_REASONS
    return info.value.reason


def test_token_issue_and_redeem() -> None:
    tokens = tw.StreamTokens(TOKEN, 60)
    token = tokens.issue(CALL)
    assert all(c.isalnum() or c in "-_." for c in token)
    tokens.redeem(token, CALL)


def test_token_reused() -> None:
    tokens = tw.StreamTokens(TOKEN, 60)
    token = tokens.issue(CALL)
    tokens.redeem(token, CALL)
    assert token_reason(tokens, token) == "reused"


def test_token_expired() -> None:
    clock = FakeClock()
    tokens = tw.StreamTokens(TOKEN, 60, clock=clock)
    token = tokens.issue(CALL)
    clock.now += 60.001
    assert token_reason(tokens, token) == "expired"


def test_token_redeemed_nonces_are_pruned_after_expiry() -> None:
    clock = FakeClock()
    tokens = tw.StreamTokens(TOKEN, 10, clock=clock)
    for i in range(5):
        tokens.redeem(tokens.issue(f"CA{i}"), f"CA{i}")
    assert len(tokens) == 5
    clock.now += 11
    tokens.redeem(tokens.issue("CAnew"), "CAnew")
    assert len(tokens) == 1


def test_token_wrong_call() -> None:
    tokens = tw.StreamTokens(TOKEN, 60)
    assert token_reason(tokens, tokens.issue(CALL), "CA" + "9" * 32) == "wrong_call"


def test_token_bad_signature() -> None:
    tokens = tw.StreamTokens(TOKEN, 60)
    token = tokens.issue(CALL)
    assert token_reason(tw.StreamTokens("another-secret", 60), token) == "bad_signature"
    tag, expiry, nonce, mac = token.split(".")
    assert token_reason(tokens, f"{tag}.{int(expiry) + 3_600_000}.{nonce}.{mac}") == "bad_signature"


def test_token_malformed() -> None:
    tokens = tw.StreamTokens(TOKEN, 60)
    for bad in ("abc", "a.b.c.d", tokens.issue(CALL) + "x", "../../etc/passwd"):
        assert token_reason(tokens, bad) == "malformed"


def test_token_missing() -> None:
    tokens = tw.StreamTokens(TOKEN, 60)
    assert token_reason(tokens, None) == "missing"
    assert token_reason(tokens, "") == "missing"


def test_token_dev_mode_uses_a_process_secret() -> None:
    tokens = tw.StreamTokens("", 60)
    tokens.redeem(tokens.issue(CALL), CALL)
    assert token_reason(tw.StreamTokens("", 60), tw.StreamTokens("x", 60).issue(CALL)) == "bad_signature"


# --- TwiML ------------------------------------------------------------------------------------------------


def test_connect_twiml() -> None:
    xml = tw.connect_twiml("wss://bot.example.com/twilio/media", {"token": "a.b-c_d", "lang": "ko"})
    root = ET.fromstring(xml.encode())
    assert root.tag == "Response"
    stream = root.find("./Connect/Stream")
    assert stream is not None
    url = stream.get("url")
    assert url == "wss://bot.example.com/twilio/media" and "?" not in url
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params == {"token": "a.b-c_d", "lang": "ko"}


def test_connect_twiml_refuses_a_query_string() -> None:
    with pytest.raises(ValueError):
        tw.connect_twiml("wss://bot.example.com/twilio/media?token=x", {})


def test_busy_twiml() -> None:
    root = ET.fromstring(tw.busy_twiml("죄송합니다. 지금은 통화 중입니다.").encode())
    say = root.find("./Say")
    assert say is not None and say.get("language") == "ko-KR" and say.text == "죄송합니다. 지금은 통화 중입니다."
    assert [child.tag for child in root] == ["Say", "Hangup"]
