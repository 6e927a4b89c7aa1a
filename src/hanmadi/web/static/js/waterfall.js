// One turn's timeline as a waterfall (one row per sentence: generated, TTS start→done, send, caller playback) and
// as the seed-format log. Pure functions of the turn's events; plain SVG, no library.
//
// Event: {t, kind, index, text, duration_s, audio_s, reason}, t = seconds since the end of the caller's speech.

const SVG_NS = "http://www.w3.org/2000/svg";

function num(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function fmt(t) {
  return Number(t || 0).toFixed(2);
}

const PIPELINE = {
  realtime: "실시간 하이브리드 파이프라인 시작",
  two_stage: "2단계 하이브리드 파이프라인 시작",
  sequential: "순차 파이프라인 시작",
};

/** The seed's log line for one event (as hanmadi.engine.timeline.format_event writes it, Korean). */
export function logLine(ev) {
  if (typeof ev.line === "string" && ev.line) return ev.line;
  const at = `[+${fmt(ev.t)}초]`;
  const s = `문장[${ev.index}]`;
  const reason = ev.reason || "";
  switch (ev.kind) {
    case "turn_start":
      return `[발화 종료 +${fmt(ev.t)}초] ${PIPELINE[ev.text || "realtime"] || `${ev.text} 파이프라인 시작`}`;
    case "sentence":
      return `${at} ${s} 생성${ev.final || ev.last ? "(마지막)" : ""}: ${ev.text ?? ""}`;
    case "tts_start":
      return `${at} ${s} TTS 시작`;
    case "tts_retry":
      return `${at} ${s} TTS 재시도 (사유: ${reason})`;
    case "tts_done":
      return `${at} ${s} TTS 완료 (${fmt(ev.duration_s)}초 소요)`;
    case "send_start":
      return `${at} ${s} 전송 시작`;
    case "chunk_sent":
      return `${at} ${s} 오디오 조각 전송 (${fmt(ev.audio_s)}초)`;
    case "send_done":
      return `${at} ${s} 전송 완료 (재생: ${fmt(ev.audio_s)}초)`;
    case "skip":
      return `${at} ${s} 건너뜀 (사유: ${reason})`;
    case "llm_error":
      return `${at} LLM 오류로 응답 중단 (사유: ${reason})`;
    case "cancel":
      return `${at} 응답 취소 (사유: ${reason}, 전송된 재생시간: ${fmt(ev.audio_s)}초)`;
    case "done":
      return `${at} 전체 완료 (재생시간: ${fmt(ev.audio_s)}초)`;
    case "tool_start":
      return `${at} 도구 호출: ${ev.text || ""}`;
    case "tool_end":
      return `${at} 도구 응답: ${ev.text || ""} (${reason}, ${fmt(ev.duration_s)}초 소요)`;
    default:
      return `${at} ${`${ev.kind} ${ev.text || ""}`.trim()}`;
  }
}

/** The turn's log in event order (per-chunk lines left out, as the engine's log does by default). */
export function logLines(events) {
  return ordered(events)
    .filter((e) => e.kind !== "chunk_sent")
    .map(logLine);
}

function ordered(events) {
  return [...(events || [])].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0) || (a.t ?? 0) - (b.t ?? 0));
}

/**
 * One row per sentence index, with the times of each step, and the caller's playback as Twilio plays it: a
 * sentence plays from when it arrived (send done) or when the previous one ended, whichever is later, and
 * stops at a cancel (barge-in clears the caller's buffer).
 */
export function sentenceRows(events) {
  const rows = new Map();
  const row = (index) => {
    if (!rows.has(index)) rows.set(index, { index, text: "" });
    return rows.get(index);
  };
  let cancelAt;
  let cancelReason;
  for (const ev of events || []) {
    const t = num(ev.t);
    if (ev.kind === "cancel") {
      if (cancelAt === undefined || (t !== undefined && t < cancelAt)) {
        cancelAt = t;
        cancelReason = ev.reason;
      }
      continue;
    }
    if (ev.index === undefined || ev.index === null || ev.index < 0) continue;
    const r = row(ev.index);
    switch (ev.kind) {
      case "sentence":
        r.generated = t;
        r.text = ev.text ?? r.text;
        break;
      case "tts_start":
        r.ttsStart ??= t;
        break;
      case "tts_done":
        r.ttsDone = t;
        r.ttsSeconds = num(ev.duration_s);
        break;
      case "send_start":
        r.sendStart ??= t;
        break;
      case "send_done":
        r.sendDone = t;
        r.audio = num(ev.audio_s);
        break;
      case "skip":
        r.skipped = { t, reason: ev.reason || "" };
        break;
      default:
        break;
    }
  }
  const list = [...rows.values()].sort((a, b) => a.index - b.index);
  // The caller's playback: each piece of audio plays from when it arrived or when the previous one ended,
  // whichever is later (per chunk with a streaming TTS, else per sentence at its send_done); a cancel stops it.
  const chunks = ordered(events).filter((e) => e.kind === "chunk_sent" && rows.has(e.index));
  const arrivals = (chunks.length ? chunks : ordered(events).filter((e) => e.kind === "send_done" && rows.has(e.index)))
    .map((e) => ({ r: rows.get(e.index), t: num(e.t) ?? 0, audio: num(e.audio_s) ?? 0 }))
    .sort((a, b) => a.t - b.t);
  let cursor = 0;
  for (const { r, t, audio } of arrivals) {
    const start = Math.max(t, cursor);
    let end = start + audio;
    if (cancelAt !== undefined && end > cancelAt) {
      r.cut = true;
      end = Math.max(start, cancelAt);
    }
    if (cancelAt === undefined || start < cancelAt) {
      r.playStart ??= start;
      r.playEnd = end;
    }
    cursor = end;
  }
  for (const r of list) {
    r.cancelled = cancelAt !== undefined && !r.skipped && (r.sendDone === undefined || r.cut === true);
  }
  return { rows: list, cancelAt, cancelReason };
}

function niceStep(span) {
  for (const step of [0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 30, 60]) if (span / step <= 10) return step;
  return Math.ceil(span / 10);
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function titled(node, text) {
  node.append(svg("title", {}, text));
  return node;
}

function clip(text, max) {
  const chars = [...(text || "")];
  return chars.length > max ? `${chars.slice(0, max - 1).join("")}…` : chars.join("");
}

/** The turn's tool calls: each tool_start, closed by the next tool_end of the same tool (status in ``reason``). */
export function toolRows(events) {
  const rows = [];
  for (const ev of ordered(events)) {
    if (ev.kind === "tool_start") {
      rows.push({ name: ev.text || "", start: num(ev.t), end: undefined, status: "" });
    } else if (ev.kind === "tool_end") {
      const open = rows.find((r) => r.name === (ev.text || "") && r.end === undefined);
      if (open) {
        open.end = num(ev.t);
        open.status = ev.reason || "";
      }
    }
  }
  return rows;
}

/** The waterfall SVG for one turn's events (tool calls first, then one row per sentence). */
export function renderWaterfall(events) {
  const { rows, cancelAt, cancelReason } = sentenceRows(events);
  const tools = toolRows(events);
  const labelW = 250;
  const plotW = 640;
  const rowH = 34;
  const top = 26;
  const bottom = 8;
  const times = [0, cancelAt];
  for (const r of rows) {
    times.push(r.generated, r.ttsStart, r.ttsDone, r.sendStart, r.sendDone, r.playEnd, r.skipped?.t);
  }
  for (const ev of events || []) times.push(num(ev.t));
  const tMax = Math.max(0.5, ...times.filter((t) => num(t) !== undefined));
  const step = niceStep(tMax);
  const axisMax = Math.ceil(tMax / step - 1e-9) * step;
  const x = (t) => labelW + (Math.max(0, t) / axisMax) * plotW;
  const height = top + (tools.length + rows.length) * rowH + bottom;
  const width = labelW + plotW + 120;

  const root = svg("svg", {
    class: "waterfall-svg",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": "문장별 타임라인 (waterfall)",
  });
  // Axis: seconds since the end of the caller's speech.
  for (let i = 0; i * step <= axisMax + 1e-9; i++) {
    const t = i * step;
    root.append(svg("line", { class: i === 0 ? "zero" : "grid", x1: x(t), x2: x(t), y1: top - 6, y2: height - bottom }));
    root.append(svg("text", { class: "axis", x: x(t), y: top - 10, "text-anchor": "middle" }, `${+t.toFixed(2)}초`));
  }
  tools.forEach((tool, i) => {
    const y = top + i * rowH;
    const failed = tool.end !== undefined && tool.status !== "ok";
    const g = svg("g", { class: "wf-tool", "data-tool": tool.name, "data-status": tool.status || "pending" });
    g.append(titled(svg("text", { x: 4, y: y + rowH / 2 + 4 }, `도구 ${clip(tool.name, 28)}`), tool.name));
    const end = tool.end ?? cancelAt ?? tool.start;
    const tip = `도구 ${tool.name} ${fmt(tool.start)}→${fmt(tool.end)}초 ${tool.status || "응답 없음"}`;
    g.append(
      titled(
        svg("rect", {
          class: `tool${failed ? " failed" : ""}`,
          x: x(tool.start ?? 0),
          y: y + 10,
          width: Math.max(2, x(end ?? 0) - x(tool.start ?? 0)),
          height: 12,
          rx: 2,
        }),
        tip,
      ),
    );
    root.append(g);
  });
  rows.forEach((r, i) => {
    const y = top + (tools.length + i) * rowH;
    const g = svg("g", {
      class: "wf-row",
      "data-index": r.index,
      "data-skipped": r.skipped ? "1" : "0",
      "data-cancelled": r.cancelled ? "1" : "0",
    });
    if (r.skipped) g.append(svg("rect", { class: "row-skipped", x: 0, y: y + 1, width, height: rowH - 2, rx: 3 }));
    g.append(titled(svg("text", { x: 4, y: y + rowH / 2 + 4 }, `[${r.index}] ${clip(r.text, 17)}`), r.text || ""));
    const bar = (cls, a, b, lane, tip) => {
      if (a === undefined) return;
      const end = b ?? cancelAt ?? a;
      g.append(
        titled(
          svg("rect", {
            class: cls,
            x: x(a),
            y: y + 5 + lane * 9,
            width: Math.max(2, x(end) - x(a)),
            height: 7,
            rx: 2,
          }),
          tip,
        ),
      );
    };
    if (r.skipped && r.ttsDone === undefined) {
      // TTS failed or timed out: the bar runs until the sentence was given up.
      bar("tts failed", r.ttsStart, r.skipped.t, 0, `TTS ${fmt(r.ttsStart)}→${fmt(r.skipped.t)}초 실패`);
    } else {
      bar("tts", r.ttsStart, r.ttsDone, 0, `TTS ${fmt(r.ttsStart)}→${fmt(r.ttsDone)}초`);
    }
    bar("send", r.sendStart, r.sendDone, 1, `전송 ${fmt(r.sendStart)}→${fmt(r.sendDone)}초`);
    bar(`play${r.cut ? " cut" : ""}`, r.playStart, r.playEnd, 2, `재생 ${fmt(r.playStart)}→${fmt(r.playEnd)}초`);
    if (r.generated !== undefined) {
      g.append(titled(svg("circle", { class: "gen", cx: x(r.generated), cy: y + 8.5, r: 4.5 }), `생성 ${fmt(r.generated)}초`));
    }
    if (r.skipped) {
      const sx = x(r.skipped.t ?? r.ttsDone ?? r.ttsStart ?? 0);
      g.append(svg("path", { class: "skip", d: `M${sx - 5} ${y + 9} l10 10 m0 -10 l-10 10` }));
      g.append(
        titled(
          svg("text", { class: "mark-skip", x: sx + 9, y: y + 19 }, "건너뜀 skipped"),
          `건너뜀 ${fmt(r.skipped.t)}초 ${r.skipped.reason}`,
        ),
      );
    } else if (r.cancelled) {
      const cx = x(Math.max(cancelAt ?? 0, r.playEnd ?? r.sendDone ?? r.ttsDone ?? r.ttsStart ?? 0));
      g.append(svg("text", { class: "mark-cancel", x: cx + 6, y: y + 28 }, "취소 cancelled"));
    }
    root.append(g);
  });
  if (cancelAt !== undefined) {
    root.append(
      titled(
        svg("line", { class: "cancel", x1: x(cancelAt), x2: x(cancelAt), y1: top - 4, y2: height - bottom }),
        `취소 ${fmt(cancelAt)}초 ${cancelReason || ""}`,
      ),
    );
  }
  return root;
}
