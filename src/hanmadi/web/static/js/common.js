// Shared by the pages: the admin token (asked once, kept in localStorage), /api calls, DOM and number helpers.
// Everything that came from a call (transcripts, numbers) goes into the page as text nodes, never as HTML.

const TOKEN_KEY = "hanmadi.adminToken";

export class AuthError extends Error {}

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** fetch with the admin token as Bearer; JSON in and out. Throws AuthError on 401/403. */
export async function apiFetch(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${getToken()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401 || res.status === 403) throw new AuthError(`${res.status}`);
  if (!res.ok) {
    let detail = "";
    try {
      detail = (await res.json()).detail || "";
    } catch {
      detail = res.statusText;
    }
    throw new Error(`${method} ${path}: ${res.status} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  if (res.status === 204) return null;
  return res.json();
}

/** GET a binary resource (a recording) with the admin token. */
export async function apiFetchBlob(path) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${getToken()}` } });
  if (res.status === 401 || res.status === 403) throw new AuthError(`${res.status}`);
  if (!res.ok) throw new Error(`GET ${path}: ${res.status}`);
  return res.blob();
}

/** Create an element: el("td", {class: "num"}, "1.2s", childNode, ...). Attributes set as attributes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A Korean label with its English name in small print. */
export function label(ko, en) {
  return [ko, el("span", { class: "en" }, en)];
}

/** The first defined value among several possible field names (the API may name latency fields variously). */
export function pick(obj, ...names) {
  if (!obj) return undefined;
  for (const name of names) {
    const value = name.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
    if (value !== undefined && value !== null) return value;
  }
  return undefined;
}

/** Seconds as "1.23초"; "—" when unknown. */
export function secs(value, digits = 2) {
  if (value === undefined || value === null || Number.isNaN(Number(value))) return "—";
  return `${Number(value).toFixed(digits)}초`;
}

/** An ISO timestamp (or epoch seconds) in the browser's local time, e.g. "2026-11-24 10:31:05". */
export function when(value) {
  if (value === undefined || value === null || value === "") return "—";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const p = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())} ` +
    `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`
  );
}

/** The call's length in seconds from its start and end timestamps, or undefined. */
export function duration(start, end) {
  if (!start || !end) return undefined;
  const a = new Date(start).getTime();
  const b = new Date(end).getTime();
  return Number.isNaN(a) || Number.isNaN(b) ? undefined : (b - a) / 1000;
}

export function median(values) {
  const xs = values.filter((v) => typeof v === "number" && !Number.isNaN(v)).sort((a, b) => a - b);
  if (xs.length === 0) return undefined;
  const mid = Math.floor(xs.length / 2);
  return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

const STATUS_KO = {
  active: "통화 중",
  "in-progress": "통화 중",
  in_progress: "통화 중",
  completed: "완료",
  ended: "종료",
  failed: "실패",
  error: "오류",
  busy: "통화 중 거절",
  rejected: "거절",
};

export function statusBadge(status) {
  const s = String(status || "unknown");
  return el("span", { class: `badge ${s.replace(/[^a-z_-]/gi, "")}`, title: s }, STATUS_KO[s] || s);
}

/**
 * Make sure an admin token is known before loading data: shows the token form in `slot` and resolves once the
 * user has entered one. `force` asks again (after a 401).
 */
export function ensureToken(slot, { force = false, message } = {}) {
  if (getToken() && !force) return Promise.resolve(getToken());
  return new Promise((resolve) => {
    const input = el("input", {
      type: "password",
      id: "admin-token",
      name: "token",
      autocomplete: "current-password",
      placeholder: "HANMADI_ADMIN_TOKEN",
      required: true,
    });
    const form = el(
      "form",
      { class: "token panel", id: "token-form" },
      el("label", { for: "admin-token" }, ...label("관리자 토큰", "admin token")),
      input,
      el("button", { class: "primary", type: "submit" }, "확인"),
    );
    slot.replaceChildren(
      message ? el("div", { class: "notice error", role: "alert" }, message) : "",
      form,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      setToken(input.value.trim());
      slot.replaceChildren();
      resolve(getToken());
    });
    input.focus();
  });
}

/** Run `load` with a token; on AuthError ask for the token again and retry. Other errors are shown in `slot`. */
export async function withToken(slot, load) {
  let message;
  for (;;) {
    await ensureToken(slot, { force: message !== undefined, message });
    try {
      return await load();
    } catch (err) {
      if (err instanceof AuthError) {
        message = "토큰이 맞지 않습니다. 다시 입력해 주세요. (invalid admin token)";
        continue;
      }
      slot.replaceChildren(el("div", { class: "notice error", role: "alert" }, `불러오지 못했습니다: ${err.message}`));
      throw err;
    }
  }
}

/** The "forget token" link in the header. */
export function wireLogout() {
  const button = document.getElementById("logout");
  if (!button) return;
  button.addEventListener("click", () => {
    setToken("");
    location.reload();
  });
}
