// Call page: the call's figures, then each turn — what the caller said (as heard), what the agent generated and
// what the caller actually heard (barge-in, DTMF marked) — with the turn's waterfall and its seed-format log.

import { apiFetch, apiFetchBlob, duration, el, label, pick, secs, statusBadge, when, withToken, wireLogout } from "./common.js";
import { logLines, renderWaterfall } from "./waterfall.js";

const sid = new URLSearchParams(location.search).get("sid") || "";
const authSlot = document.getElementById("auth");

function meta(call) {
  const p = call.providers || {};
  const pairs = [
    [label("발신", "from"), el("span", { class: "mono" }, call.from_masked || "—")],
    [label("수신", "to"), el("span", { class: "mono" }, call.to_masked || "—")],
    [label("시작", "started"), when(call.started_at)],
    [label("종료", "ended"), when(call.ended_at)],
    [label("상태", "status"), statusBadge(call.status)],
    [label("종료 사유", "end reason"), call.end_reason || "—"],
    [label("통화 시간", "duration"), secs(duration(call.started_at, call.ended_at), 1)],
    [label("공급자", "stt / llm / tts"), `${p.stt || "?"} / ${p.llm || "?"} / ${p.tts || "?"}`],
    [label("턴", "turns"), String(call.turn_count ?? (call.turns || []).length)],
    [label("스트림", "stream sid"), el("span", { class: "mono" }, call.stream_sid || "—")],
  ];
  return el("dl", { class: "meta" }, pairs.map(([k, v]) => [el("dt", {}, ...k), el("dd", {}, v)]));
}

function callerBubble(turn) {
  const heard = turn.heard_text || "";
  const dtmf = turn.dtmf || "";
  if (!heard && !dtmf) return "";
  return el(
    "div",
    { class: "bubble caller" },
    el("span", { class: "who" }, ...label("발신자 (인식된 말)", "caller, as heard by STT")),
    heard,
    dtmf ? [" ", el("span", { class: "badge dtmf", title: "DTMF" }, `DTMF ${dtmf}`)] : "",
  );
}

function agentBubble(turn) {
  const generated = turn.generated_text || "";
  const spoken = turn.spoken_text ?? generated;
  if (!generated && !spoken) return "";
  const differs = generated && generated.trim() !== (spoken || "").trim();
  return el(
    "div",
    { class: "bubble agent" },
    el("span", { class: "who" }, ...label("상담원 (발신자가 들은 말)", "agent, as heard by the caller")),
    spoken || el("span", { class: "muted" }, "(들리지 않음 · nothing played)"),
    turn.barge_in ? [" ", el("span", { class: "badge barge-in" }, "끼어들기 barge-in")] : "",
    differs
      ? el("span", { class: "generated" }, ...label("생성된 전체:", "generated in full"), " ", generated)
      : "",
  );
}

function figures(turn) {
  const m = turn.metrics || {};
  const parts = [
    ["첫 응답", pick(turn, "first_audio_s", "metrics.first_audio_s")],
    ["음성→음성", pick(turn, "voice_to_voice_s", "metrics.voice_to_voice_s")],
    ["전체", pick(turn, "total_s", "metrics.total_s")],
    ["재생 끝", m.playback_end_s],
    ["무음", m.gap_s],
  ].filter(([, v]) => v !== undefined && v !== null);
  const extra = [];
  if (Array.isArray(m.order)) extra.push(`순서 ${m.order.join(",")}`);
  if (Array.isArray(m.skipped) && m.skipped.length) extra.push(`건너뜀 ${m.skipped.join(",")}`);
  if (m.max_parallel_tts !== undefined) extra.push(`TTS 동시 ${m.max_parallel_tts}`);
  return el("span", { class: "figures" }, [...parts.map(([k, v]) => `${k} ${secs(v)}`), ...extra].join(" · "));
}

const GROUNDING_MODES = {
  answer: ["지식 답변", "knowledge answer"],
  grounded: ["지식 참고", "grounded in knowledge"],
  unknown: ["모름 · 직원 안내", "not in the knowledge"],
  open: ["관련 지식 없음", "no relevant knowledge"],
};

/** Which entries of the knowledge file grounded the answer (index, the question that matched, score). */
function groundingLine(turn) {
  const k = (turn.metrics || {}).knowledge;
  if (!k) return "";
  const [ko, en] = GROUNDING_MODES[k.mode] || [k.mode, k.mode];
  const entries = (k.entries || []).map((e) => {
    const what = e.kind === "fact" ? `사실 #${e.index}` : `#${e.index}${e.question ? ` ${e.question}` : ""}`;
    return `${what} (${Number(e.score).toFixed(2)})`;
  });
  return el(
    "div",
    { class: "grounding", dataset: { mode: k.mode } },
    el("span", { class: `badge ${k.grounded ? "ok" : "skipped"}` }, ...label(ko, en)),
    " ",
    entries.length ? entries.join(" · ") : el("span", { class: "muted" }, "—"),
  );
}

function turnSection(turn) {
  const events = turn.events || [];
  const hasSentences = events.some((e) => e.index !== undefined && e.index !== null && e.index >= 0);
  return el(
    "article",
    { class: "turn", dataset: { turn: String(turn.index) } },
    el("div", { class: "turn-head" }, el("h3", {}, `턴 ${turn.index}`), el("span", { class: "muted" }, when(turn.started_at)),
      figures(turn)),
    callerBubble(turn),
    agentBubble(turn),
    groundingLine(turn),
    hasSentences ? el("div", { class: "waterfall" }, renderWaterfall(events)) : "",
    events.length ? el("pre", { class: "log" }, logLines(events).join("\n")) : "",
  );
}

/** The stereo recording (caller left, agent right), fetched with the token: an <audio> tag cannot send it. */
function showRecording(call) {
  const slot = document.getElementById("recording");
  if (!call.has_recording) {
    slot.replaceChildren();
    return;
  }
  const button = el("button", { type: "button", id: "load-recording" }, ...label("녹음 듣기", "play recording"));
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const blob = await apiFetchBlob(`/api/calls/${encodeURIComponent(sid)}/recording`);
      slot.replaceChildren(el("audio", { controls: true, src: URL.createObjectURL(blob) }));
    } catch (err) {
      slot.replaceChildren(el("div", { class: "notice error" }, `녹음을 불러오지 못했습니다: ${err.message}`));
    }
  });
  slot.replaceChildren(button);
}

async function load() {
  if (!sid) throw new Error("sid 가 없습니다 (call.html?sid=…)");
  document.getElementById("call-sid").textContent = sid;
  const call = await apiFetch(`/api/calls/${encodeURIComponent(sid)}`);
  document.title = `통화 ${call.from_masked || sid} · hanmadi`;
  document.getElementById("call-meta").replaceChildren(meta(call));
  const turns = [...(call.turns || [])].sort((a, b) => a.index - b.index);
  document
    .getElementById("turns")
    .replaceChildren(
      ...(turns.length ? turns.map(turnSection) : [el("p", { class: "muted" }, "턴이 없습니다. (no turns)")]),
    );
  showRecording(call);
  const del = document.getElementById("delete");
  del.hidden = false;
  del.onclick = async () => {
    if (!confirm("이 통화 기록을 삭제할까요? (delete this call?)")) return;
    await apiFetch(`/api/calls/${encodeURIComponent(sid)}`, { method: "DELETE" });
    location.href = "./";
  };
  document.body.dataset.loaded = "1";
}

wireLogout();
withToken(authSlot, load).catch((err) => console.error(err));
