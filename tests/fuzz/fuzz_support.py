"""Valid Media Streams messages and hypothesis strategies that mutate them (shared by the fuzz tests)."""

from __future__ import annotations

import base64
import copy
import json
import random
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from hanmadi.config import Settings
from loopback_support import loopback_settings

STREAM_SID = "MZ" + "a" * 32
CALL_SID = "CA" + "b" * 32
SILENCE_B64 = base64.b64encode(b"\xff" * 160).decode()


def valid_messages(stream_sid: str = STREAM_SID, call_sid: str = CALL_SID, token: str = "t") -> list[dict[str, Any]]:
    """One of each inbound event, as Twilio sends them."""
    return [
        {"event": "connected", "protocol": "Call", "version": "1.0.0"},
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "accountSid": "AC" + "c" * 32,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": {"token": token},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        },
        {
            "event": "media",
            "sequenceNumber": "2",
            "streamSid": stream_sid,
            "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": SILENCE_B64},
        },
        {"event": "mark", "sequenceNumber": "3", "streamSid": stream_sid, "mark": {"name": "t0s0"}},
        {
            "event": "dtmf",
            "sequenceNumber": "4",
            "streamSid": stream_sid,
            "dtmf": {"track": "inbound_track", "digit": "5"},
        },
        {"event": "stop", "sequenceNumber": "5", "streamSid": stream_sid, "stop": {"callSid": call_sid}},
    ]


# JSON values of every kind, including the ones that break naive code: huge and negative numbers, floats,
# non-ASCII and control characters, digit strings longer than int() accepts, deep nesting.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.text(alphabet="0123456789", min_size=1, max_size=30),
    st.sampled_from(["9" * 5000, "-1", "1e9", "٣", "１２", "", " ", "\x00", "null", "media", "start", "AAAA", "====="]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a message (dict keys and list indexes)."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


@st.composite
def mutated_message(draw: st.DrawFn) -> str | bytes:
    """A valid message with one to three mutations, serialised; sometimes truncated or sent as bytes."""
    message = copy.deepcopy(draw(st.sampled_from(valid_messages())))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(message)
        path = draw(st.sampled_from(paths))
        parent: Any = message
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "wrap", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "wrap":
            parent[path[-1]] = [parent[path[-1]]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
    text = json.dumps(message, ensure_ascii=draw(st.booleans()))
    form = draw(st.sampled_from(["text", "text", "text", "truncated", "bytes"]))
    if form == "truncated":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if form == "bytes":
        return text.encode()
    return text


random_message = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(json.dumps),
    st.builds(lambda v: json.dumps({"event": v}), json_values),
    st.builds(
        lambda e, v: json.dumps({"event": e, **v}),
        st.sampled_from(["media", "start", "mark", "dtmf", "stop"]),
        st.dictionaries(st.sampled_from(["streamSid", "media", "start", "mark", "dtmf", "stop"]), json_values),
    ),
)


AUTH_TOKEN = "fuzz-auth-token-0123456789abcdef"


def server_settings(tmp_path: Path, port: int, **overrides: object) -> Settings:
    """A loopback server on ``port`` with simulated providers and a SQLite file in ``tmp_path``."""
    return loopback_settings(tmp_path, port, **{"twilio_auth_token": AUTH_TOKEN, **overrides})


_NASTY = ["9" * 5000, "-1", "1e9", "٣", "１２", "", " ", "\x00", "null", "media", "start", "AAAA", "=====", "가" * 50]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value (cheap, for batches of thousands where hypothesis' own generation is too slow)."""
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, 10**30, -(10**30), rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.uniform(-1e12, 1e12)
    if kind == 4:
        return "".join(
            chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xAC00, 0xD7A4), rng.randrange(1, 32)]))
            for _ in range(rng.randrange(0, 20))
        )
    if kind in (5, 6):
        return rng.choice(_NASTY)
    if kind in (7, 8):
        return {str(rng.randrange(100)): random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))}
    return [random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]


def mutate(rng: random.Random) -> str | bytes:
    """The same mutations as ``mutated_message``, driven by ``rng``: a valid message with one to three faults."""
    message = copy.deepcopy(rng.choice(valid_messages()))
    for _ in range(rng.randrange(1, 4)):
        path = rng.choice(_paths(message))
        parent: Any = message
        for key in path[:-1]:
            parent = parent[key]
        action = rng.choice(["replace", "replace", "delete", "wrap", "add"])
        if action == "replace":
            parent[path[-1]] = random_json(rng)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "wrap":
            parent[path[-1]] = [parent[path[-1]]]
        elif isinstance(parent, dict):
            parent[str(random_json(rng))[:12]] = random_json(rng)
    text = json.dumps(message, ensure_ascii=rng.random() < 0.5)
    form = rng.random()
    if form < 0.15:
        return text[: rng.randrange(0, len(text))]
    if form < 0.2:
        return text.encode()
    if form < 0.25:
        return rng.randbytes(rng.randrange(0, 300))
    return text
