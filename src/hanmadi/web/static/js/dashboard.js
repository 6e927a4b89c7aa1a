// Dashboard: the latency summary on top, then the calls (filters, pagination); a row opens the call page.

import { apiFetch, el, label, pick, secs, statusBadge, when, withToken, wireLogout } from "./common.js";

const PAGE_SIZE = 25;
const state = { offset: 0, total: 0, q: "", status: "", refresh: 0 };

const authSlot = document.getElementById("auth");
const tbody = document.querySelector("#calls tbody");

function providersText(call) {
  const p = call.providers || {};
  return ["stt", "llm", "tts"].map((k) => p[k] || "?").join(" / ");
}

/** Per-call latency figures under whichever names the API uses. */
export function callFirstResponse(call) {
  return pick(call, "first_audio_p50_s", "mean_first_audio_s", "first_audio_s");
}
export function callVoiceToVoice(call) {
  return pick(call, "voice_to_voice_p50_s", "mean_voice_to_voice_s", "voice_to_voice_s");
}

function callRow(call) {
  const href = `call.html?sid=${encodeURIComponent(call.call_sid)}`;
  const row = el(
    "tr",
    { class: "call", dataset: { sid: call.call_sid } },
    el("td", {}, el("a", { href }, when(call.started_at))),
    el("td", { class: "mono" }, call.from_masked || "—"),
    el("td", {}, statusBadge(call.status)),
    el("td", {}, call.end_reason || "—"),
    el("td", { class: "num" }, call.turn_count ?? "—"),
    el("td", { class: "num" }, secs(callFirstResponse(call))),
    el("td", { class: "num" }, secs(callVoiceToVoice(call))),
    el("td", { class: "muted" }, providersText(call)),
  );
  row.addEventListener("click", (event) => {
    if (event.target.closest("a")) return;
    location.href = href;
  });
  return row;
}

function card(ko, en, value, sub) {
  return el(
    "div",
    { class: "card" },
    el("div", { class: "label" }, ...label(ko, en)),
    el("div", { class: "value" }, value),
    sub ? el("div", { class: "sub" }, sub) : "",
  );
}

/** p50/p95 of a metric, whether nested ({first_audio_s: {p50, p95}}) or flat (first_audio_p50_s). */
function percentiles(obj, ...stems) {
  for (const stem of stems) {
    const nested = obj?.[stem] ?? obj?.[`${stem}_s`];
    if (nested && typeof nested === "object") return { p50: nested.p50, p95: nested.p95 };
    const p50 = pick(obj, `${stem}_p50_s`, `${stem}_s_p50`, `${stem}_p50`);
    const p95 = pick(obj, `${stem}_p95_s`, `${stem}_s_p95`, `${stem}_p95`);
    if (p50 !== undefined || p95 !== undefined) return { p50, p95 };
  }
  return { p50: undefined, p95: undefined };
}

function renderSummary(summary) {
  const first = percentiles(summary, "first_audio", "first_response");
  const v2v = percentiles(summary, "voice_to_voice");
  const turns = pick(summary, "turns", "total_turns", "turn_count");
  const windowTurns = pick(summary, "window");
  document.getElementById("summary").replaceChildren(
    card("턴", "turns measured", turns ?? "—", windowTurns !== undefined ? `최근 ${windowTurns}턴 기준 · last ${windowTurns}` : ""),
    card("첫 응답 p50", "first response", secs(first.p50), `p95 ${secs(first.p95)}`),
    card("음성→음성 p50", "voice-to-voice", secs(v2v.p50), `p95 ${secs(v2v.p95)}`),
  );
  const groups = pick(summary, "by_providers", "providers", "per_providers", "groups");
  const table = document.getElementById("summary-providers");
  if (!Array.isArray(groups) || groups.length === 0) {
    table.hidden = true;
    return;
  }
  const head = el(
    "thead",
    {},
    el(
      "tr",
      {},
      el("th", {}, ...label("공급자 조합", "providers stt / llm / tts")),
      el("th", { class: "num" }, ...label("턴", "turns")),
      el("th", { class: "num" }, ...label("첫 응답 p50 / p95", "first response")),
      el("th", { class: "num" }, ...label("음성→음성 p50 / p95", "voice-to-voice")),
    ),
  );
  const rows = groups.map((g) => {
    const f = percentiles(g, "first_audio", "first_response");
    const v = percentiles(g, "voice_to_voice");
    const providers = g.providers && typeof g.providers === "object" ? providersText(g) : (g.providers ?? g.key ?? "");
    return el(
      "tr",
      {},
      el("td", {}, providers),
      el("td", { class: "num" }, pick(g, "turns", "calls", "count") ?? "—"),
      el("td", { class: "num" }, `${secs(f.p50)} / ${secs(f.p95)}`),
      el("td", { class: "num" }, `${secs(v.p50)} / ${secs(v.p95)}`),
    );
  });
  table.replaceChildren(head, el("tbody", {}, rows));
  table.hidden = false;
}

function renderCalls(page) {
  const items = page.items || [];
  state.total = page.total ?? items.length;
  document.getElementById("calls-total").textContent = String(state.total);
  tbody.replaceChildren(...items.map(callRow));
  document.getElementById("empty").hidden = items.length > 0;
  const from = items.length ? state.offset + 1 : 0;
  document.getElementById("page-info").textContent = `${from}–${state.offset + items.length} / ${state.total}`;
  document.getElementById("prev").disabled = state.offset === 0;
  document.getElementById("next").disabled = state.offset + items.length >= state.total;
}

async function load() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(state.offset) });
  if (state.q) params.set("q", state.q);
  if (state.status) params.set("status", state.status);
  const [summary, page] = await Promise.all([apiFetch("/api/summary"), apiFetch(`/api/calls?${params}`)]);
  renderSummary(summary);
  renderCalls(page);
  document.body.dataset.loaded = "1";
  // While a call is in progress, keep the list fresh.
  clearTimeout(state.refresh);
  if ((page.items || []).some((c) => c.status === "active")) state.refresh = setTimeout(reload, 5000);
}

function reload() {
  return withToken(authSlot, load).catch((err) => console.error(err));
}

document.getElementById("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.q = document.getElementById("q").value.trim();
  state.status = document.getElementById("status").value;
  state.offset = 0;
  reload();
});
document.getElementById("refresh").addEventListener("click", reload);
document.getElementById("prev").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE_SIZE);
  reload();
});
document.getElementById("next").addEventListener("click", () => {
  state.offset += PAGE_SIZE;
  reload();
});

wireLogout();
reload();
