"""The call page's waterfall draws a turn's tool calls (run in Node against a minimal DOM: the module is pure)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

WATERFALL = Path(__file__).resolve().parents[2] / "src" / "hanmadi" / "web" / "static" / "js" / "waterfall.js"

# A turn that called two tools: the slow one got a filler (sentence 0), the answer (sentence 1) came after it.
EVENTS = [
    {"seq": 0, "t": 0.0, "kind": "turn_start", "text": "realtime"},
    {"seq": 1, "t": 0.1, "kind": "tool_start", "text": "check_availability"},
    {"seq": 2, "t": 0.1, "kind": "tool_start", "text": "menu"},
    {"seq": 3, "t": 0.2, "kind": "tool_end", "text": "menu", "reason": "http_5xx", "duration_s": 0.1},
    {"seq": 4, "t": 0.4, "kind": "sentence", "index": 0, "text": "잠시만요, 확인해 보겠습니다."},
    {"seq": 5, "t": 0.5, "kind": "tts_start", "index": 0},
    {"seq": 6, "t": 0.9, "kind": "tts_done", "index": 0, "duration_s": 0.4},
    {"seq": 7, "t": 0.9, "kind": "send_start", "index": 0},
    {"seq": 8, "t": 0.9, "kind": "send_done", "index": 0, "audio_s": 1.7},
    {"seq": 9, "t": 1.6, "kind": "tool_end", "text": "check_availability", "reason": "ok", "duration_s": 1.5},
    {"seq": 10, "t": 1.8, "kind": "sentence", "index": 1, "text": "네, 7시에 자리 있습니다.", "final": True},
    {"seq": 11, "t": 1.9, "kind": "tts_start", "index": 1},
    {"seq": 12, "t": 2.3, "kind": "tts_done", "index": 1, "duration_s": 0.4},
    {"seq": 13, "t": 2.3, "kind": "send_start", "index": 1},
    {"seq": 14, "t": 2.3, "kind": "send_done", "index": 1, "audio_s": 1.2},
    {"seq": 15, "t": 2.3, "kind": "done", "audio_s": 2.9},
]

# Just enough DOM for an SVG built with createElementNS/setAttribute/append.
SCRIPT = """
class Node {
  constructor(tag) { this.tag = tag; this.attrs = {}; this.children = []; }
  setAttribute(k, v) { this.attrs[k] = v; }
  append(c) { this.children.push(c); }
}
class Text extends Node { constructor(t) { super("#text"); this.text = t; } }
globalThis.Node = Node;
globalThis.document = { createElementNS: (_, tag) => new Node(tag), createTextNode: (t) => new Text(t) };
const { toolRows, logLines, renderWaterfall } = await import(process.argv[1]);
const events = JSON.parse(process.argv[2]);
const root = renderWaterfall(events);
const groups = root.children.filter((c) => c.tag === "g");
const text = (n) => (n.tag === "#text" ? n.text : n.children.map(text).join(""));
console.log(JSON.stringify({
  tools: toolRows(events),
  log: logLines(events),
  height: Number(root.attrs.height),
  groups: groups.map((g) => ({ cls: g.attrs.class, tool: g.attrs["data-tool"], status: g.attrs["data-status"],
    rects: g.children.filter((c) => c.tag === "rect").map((r) => r.attrs.class), label: text(g.children[0]) })),
}));
"""


def run_node(events: list[dict[str, Any]]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed for the waterfall test in CI")
        pytest.skip("needs node")
    out = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, WATERFALL.as_uri(), json.dumps(events, ensure_ascii=False)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return dict(json.loads(out.stdout))


def test_tool_calls_get_their_own_rows_above_the_sentences() -> None:
    result = run_node(EVENTS)
    assert result["tools"] == [
        {"name": "check_availability", "start": 0.1, "end": 1.6, "status": "ok"},
        {"name": "menu", "start": 0.1, "end": 0.2, "status": "http_5xx"},
    ]
    groups = result["groups"]
    assert [(g["cls"], g["tool"], g["status"]) for g in groups[:2]] == [
        ("wf-tool", "check_availability", "ok"),
        ("wf-tool", "menu", "http_5xx"),
    ]
    assert groups[0]["rects"] == ["tool"] and groups[1]["rects"] == ["tool failed"]
    assert groups[0]["label"].startswith("도구 check_availability")
    assert [g["cls"] for g in groups[2:]] == ["wf-row", "wf-row"]  # then the filler and the answer
    assert result["height"] == 26 + 4 * 34 + 8
    assert "[+0.10초] 도구 호출: check_availability" in result["log"]
    assert "[+1.60초] 도구 응답: check_availability (ok, 1.50초 소요)" in result["log"]


def test_a_turn_without_tools_draws_as_before() -> None:
    result = run_node([e for e in EVENTS if not e["kind"].startswith("tool_")])
    assert result["tools"] == [] and [g["cls"] for g in result["groups"]] == ["wf-row", "wf-row"]
    assert result["height"] == 26 + 2 * 34 + 8
