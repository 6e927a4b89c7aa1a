// Softphone: the browser plays Twilio's part of a Media Streams call. Microphone → AudioWorklet → 8 kHz → mu-law →
// 20 ms "media" frames over the WebSocket; the agent's mu-law audio is decoded and scheduled back to back on a
// Web Audio clock; each "mark" is echoed once the audio before it has played, and "clear" drops what is queued.

import { AuthError, apiFetch, el, ensureToken, label, wireLogout } from "./common.js";
import {
  Downsampler,
  Framer,
  SAMPLE_RATE,
  base64ToBytes,
  bytesToBase64,
  decodeToFloat,
  encodeFloat,
} from "./mulaw.js";

const $ = (id) => document.getElementById(id);
const authSlot = $("auth");
const LEAD_S = 0.05; // scheduling head-room for the first buffer after silence

const counters = { framesSent: 0, framesReceived: 0, audioReceived: 0, marksReceived: 0, marksEchoed: 0, clears: 0 };

function showCounters() {
  $("frames-sent").textContent = String(counters.framesSent);
  $("frames-received").textContent = String(counters.framesReceived);
  $("audio-received").textContent = `${counters.audioReceived.toFixed(2)}초`;
  $("marks-received").textContent = String(counters.marksReceived);
  $("marks-echoed").textContent = String(counters.marksEchoed);
  $("clears").textContent = String(counters.clears);
}

const STATES = {
  idle: "대기 중",
  connecting: "연결 중…",
  live: "통화 중",
  ended: "통화 종료",
  error: "오류",
};

function setState(name) {
  const node = $("state");
  node.dataset.state = name;
  node.textContent = STATES[name] || name;
  $("call").disabled = name === "connecting" || name === "live";
  $("hangup").disabled = !(name === "connecting" || name === "live");
}

function showMessage(text, kind = "") {
  const box = $("message");
  box.className = `notice ${kind}`;
  box.textContent = text;
  box.hidden = !text;
}

function randomHex(n) {
  const bytes = crypto.getRandomValues(new Uint8Array(n / 2));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Plays 8 kHz mu-law back to back and tells when a mark's audio has finished. */
class Player {
  constructor(ctx, onMarkPlayed) {
    this.ctx = ctx;
    this.onMarkPlayed = onMarkPlayed;
    this.playhead = 0; // context time at which the queued audio ends
    this.sources = new Set();
    this.marks = []; // [{name, at}] in arrival order
    this.timer = setInterval(() => this.tick(), 20);
  }

  enqueue(bytes) {
    const samples = decodeToFloat(bytes);
    const buffer = this.ctx.createBuffer(1, samples.length, SAMPLE_RATE);
    buffer.copyToChannel(samples, 0);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    const startAt = Math.max(this.playhead, this.ctx.currentTime + LEAD_S);
    source.start(startAt);
    this.playhead = startAt + buffer.duration;
    this.sources.add(source);
    source.onended = () => this.sources.delete(source);
    return buffer.duration;
  }

  /** A mark plays when everything queued before it has; with nothing queued, at once. */
  mark(name) {
    this.marks.push({ name, at: this.playhead });
    this.tick();
  }

  tick() {
    const now = this.ctx.currentTime;
    while (this.marks.length && this.marks[0].at <= now) this.onMarkPlayed(this.marks.shift().name);
  }

  /** Drop queued audio; the marks waiting on it are echoed now (as Twilio does). */
  clear() {
    for (const source of this.sources) {
      try {
        source.stop();
      } catch {
        // already stopped
      }
    }
    this.sources.clear();
    this.playhead = this.ctx.currentTime;
    const pending = this.marks;
    this.marks = [];
    for (const m of pending) this.onMarkPlayed(m.name);
  }

  close() {
    clearInterval(this.timer);
    this.clear();
  }
}

/** Microphone capture: float blocks at the context's rate → 160-sample frames at 8 kHz. */
class Capture {
  constructor(ctx, stream, onFrame, onLevel) {
    this.ctx = ctx;
    this.stream = stream;
    this.onFrame = onFrame;
    this.onLevel = onLevel;
    this.down = new Downsampler(ctx.sampleRate);
    this.framer = new Framer();
    this.nodes = [];
  }

  async start() {
    const source = this.ctx.createMediaStreamSource(this.stream);
    const handle = (block) => {
      let peak = 0;
      for (let i = 0; i < block.length; i++) peak = Math.max(peak, Math.abs(block[i]));
      this.onLevel(peak);
      for (const frame of this.framer.push(this.down.push(block))) this.onFrame(frame);
    };
    // A sink that keeps the graph pulling without sending the microphone to the speakers.
    const mute = this.ctx.createGain();
    mute.gain.value = 0;
    mute.connect(this.ctx.destination);
    let node;
    if (this.ctx.audioWorklet) {
      await this.ctx.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
      node = new AudioWorkletNode(this.ctx, "hanmadi-capture", { numberOfInputs: 1, numberOfOutputs: 1 });
      node.port.onmessage = (event) => handle(event.data);
    } else {
      // Older browsers: ScriptProcessor (deprecated, runs on the main thread).
      node = this.ctx.createScriptProcessor(1024, 1, 1);
      node.onaudioprocess = (event) => handle(event.inputBuffer.getChannelData(0).slice(0));
    }
    source.connect(node);
    node.connect(mute);
    this.nodes = [source, node, mute];
  }

  stop() {
    for (const node of this.nodes) node.disconnect();
    for (const track of this.stream.getTracks()) track.stop();
    this.nodes = [];
  }
}

function micErrorMessage(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "마이크 사용이 거부되었습니다. 브라우저의 사이트 권한에서 마이크를 허용해 주세요. (microphone permission denied)";
    case "NotFoundError":
    case "OverconstrainedError":
      return "마이크를 찾을 수 없습니다. (no microphone found)";
    case "NotReadableError":
      return "마이크를 열 수 없습니다. 다른 프로그램이 사용 중인지 확인해 주세요. (microphone busy)";
    default:
      return `마이크를 열지 못했습니다: ${err && err.message ? err.message : err}`;
  }
}

/** One browser call. */
class Call {
  constructor() {
    this.ws = null;
    this.ctx = null;
    this.player = null;
    this.capture = null;
    this.seq = 0;
    this.chunk = 0;
    this.streamSid = `MZ${randomHex(32)}`;
    this.callSid = "";
    this.hungUp = false;
    this.ended = false; // the socket closed after it had opened (its message is already shown)
    this.startedAt = 0;
    this.onEnded = () => {};
  }

  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  nextSeq() {
    this.seq += 1;
    return String(this.seq);
  }

  async start() {
    setState("connecting");
    showMessage("");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error(
        "이 페이지에서는 마이크를 쓸 수 없습니다: HTTPS 또는 localhost로 접속해 주세요. (needs a secure context)",
      );
    }
    // The AudioContext is created inside the click, so autoplay rules let it run.
    this.ctx = new AudioContext();
    await this.ctx.resume();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      throw new Error(micErrorMessage(err));
    }
    if (this.ended) {
      // hung up while the browser was asking for the microphone
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    this.capture = new Capture(
      this.ctx,
      stream,
      (frame) => this.sendFrame(frame),
      (peak) => {
        $("level").style.width = `${Math.min(100, Math.round(peak * 140))}%`;
      },
    );
    const session = await this.session();
    if (this.ended) return;
    this.callSid = session.call_sid;
    $("call-sid").textContent = this.callSid;
    this.player = new Player(this.ctx, (name) => this.echoMark(name));
    await this.capture.start(); // frames before the socket is open are dropped
    await this.open(session);
  }

  async session() {
    for (;;) {
      try {
        return await apiFetch("/web/softphone/session", { method: "POST" });
      } catch (err) {
        if (!(err instanceof AuthError)) throw err;
        await ensureToken(authSlot, { force: true, message: "토큰이 맞지 않습니다. 다시 입력해 주세요. (invalid admin token)" });
      }
    }
  }

  open(session) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(session.stream_url);
      this.ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.startedAt = performance.now();
        this.send({ event: "connected", protocol: "Call", version: "1.0.0" });
        this.send({
          event: "start",
          sequenceNumber: this.nextSeq(),
          streamSid: this.streamSid,
          start: {
            accountSid: `AC${"0".repeat(32)}`,
            streamSid: this.streamSid,
            callSid: session.call_sid,
            tracks: ["inbound"],
            customParameters: session.parameters || {},
            mediaFormat: { encoding: "audio/x-mulaw", sampleRate: SAMPLE_RATE, channels: 1 },
          },
        });
        setState("live");
        resolve();
      };
      ws.onmessage = (event) => this.onMessage(event.data);
      ws.onerror = () => {
        if (!opened) reject(new Error(`WebSocket 연결 실패: ${session.stream_url}`));
      };
      ws.onclose = (event) => {
        if (!opened) {
          reject(new Error(`WebSocket 연결 실패 (code ${event.code}${event.reason ? `: ${event.reason}` : ""})`));
          return;
        }
        this.closed(event);
      };
    });
  }

  sendFrame(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.chunk += 1;
    this.send({
      event: "media",
      sequenceNumber: this.nextSeq(),
      streamSid: this.streamSid,
      media: {
        track: "inbound",
        chunk: String(this.chunk),
        timestamp: String(Math.round(performance.now() - this.startedAt)),
        payload: bytesToBase64(encodeFloat(frame)),
      },
    });
    counters.framesSent += 1;
    if (counters.framesSent % 10 === 0) showCounters();
  }

  echoMark(name) {
    if (!this.send({ event: "mark", sequenceNumber: this.nextSeq(), streamSid: this.streamSid, mark: { name } })) return;
    counters.marksEchoed += 1;
    showCounters();
  }

  onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // not JSON: ignore, as Twilio would
    }
    switch (msg.event) {
      case "media": {
        const payload = msg.media && msg.media.payload;
        if (!payload || !this.player) return;
        counters.audioReceived += this.player.enqueue(base64ToBytes(payload));
        counters.framesReceived += 1;
        break;
      }
      case "mark":
        counters.marksReceived += 1;
        if (this.player) this.player.mark(msg.mark && msg.mark.name);
        break;
      case "clear":
        counters.clears += 1;
        if (this.player) this.player.clear();
        break;
      case "hanmadi.timeline": {
        const kind = msg.data && msg.data.kind;
        if (kind === "chunk_sent") return; // per-chunk detail: left out, as in the engine's log
        appendTimeline(msg.line || JSON.stringify(msg.data || {}), kind === "turn_start");
        return;
      }
      case "hanmadi.transcript":
        appendTranscript(msg.role, msg.text || "");
        return;
      default:
        return; // unknown events are ignored
    }
    showCounters();
  }

  hangup() {
    this.hungUp = true;
    this.ended = true;
    this.send({
      event: "stop",
      sequenceNumber: this.nextSeq(),
      streamSid: this.streamSid,
      stop: { accountSid: `AC${"0".repeat(32)}`, callSid: this.callSid },
    });
    if (this.ws) this.ws.close(1000, "hangup");
    this.teardown();
    setState("ended");
    showMessage("통화를 끊었습니다. (hung up)", "ok");
  }

  closed(event) {
    this.ended = true;
    this.teardown();
    if (this.hungUp) return;
    setState("ended");
    const reason = event.reason ? `: ${event.reason}` : "";
    const normal = event.code === 1000 || event.code === 1001;
    showMessage(
      normal
        ? `상대가 통화를 끝냈습니다${reason} (code ${event.code})`
        : `연결이 끊겼습니다${reason} (code ${event.code})`,
      normal ? "ok" : "error",
    );
  }

  teardown() {
    if (this.capture) this.capture.stop();
    this.capture = null;
    if (this.player) this.player.close();
    this.player = null;
    if (this.ctx && this.ctx.state !== "closed") this.ctx.close();
    this.ctx = null;
    $("level").style.width = "0";
    showCounters();
    this.onEnded();
  }
}

function appendTimeline(line, newTurn) {
  const pre = $("timeline");
  pre.append(`${newTurn && pre.textContent ? "\n" : ""}${line}\n`);
  pre.scrollTop = pre.scrollHeight;
}

function appendTranscript(role, text) {
  const caller = role === "caller";
  const box = $("transcript");
  box.append(
    el(
      "div",
      { class: `bubble ${caller ? "caller" : "agent"}`, dataset: { role: caller ? "caller" : "agent" } },
      el("span", { class: "who" }, ...(caller ? label("나", "caller") : label("상담원", "agent"))),
      text,
    ),
  );
  box.scrollTop = box.scrollHeight;
}

let current = null;

$("call").addEventListener("click", async () => {
  if (current) return;
  await ensureToken(authSlot);
  for (const key of Object.keys(counters)) counters[key] = 0;
  showCounters();
  $("timeline").replaceChildren();
  $("transcript").replaceChildren();
  const call = new Call();
  call.onEnded = () => {
    if (current === call) current = null;
  };
  current = call;
  try {
    await call.start();
  } catch (err) {
    if (call.ended) return;
    call.hungUp = true;
    if (call.ws) call.ws.close();
    call.teardown();
    setState("error");
    showMessage(err.message || String(err), "error");
  }
});

$("hangup").addEventListener("click", () => {
  if (current) current.hangup();
});

wireLogout();
setState("idle");
showCounters();
