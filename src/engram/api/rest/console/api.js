// The console's only way to the server: the public REST API, with the key entered in this tab.
// The key lives in sessionStorage (this tab only, gone when it closes) and is sent as
// Authorization: Bearer on every call, SSE included (fetch streaming: EventSource sends no headers).

const KEY = "engram.key";

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || `HTTP_${status}`;
    this.suggestion = err.suggestion || "";
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

function headers(space, extra) {
  const out = { Accept: "application/json", ...(extra || {}) };
  const key = getKey();
  if (key) out.Authorization = `Bearer ${key}`;
  if (space) out["X-Memory-Space"] = space;
  return out;
}

function url(path, params) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    for (const item of Array.isArray(v) ? v : [v]) u.searchParams.append(k, String(item));
  }
  return u.pathname + u.search;
}

/** call("GET", "/api/v1/spaces", {space, params, body}) -> parsed JSON, or throws ApiError. */
export async function call(method, path, { space, params, body, signal } = {}) {
  const init = { method, headers: headers(space), signal, cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(url(path, params), init);
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export async function config() {
  const resp = await fetch("/console/config.json", { cache: "no-store" });
  return resp.json();
}

/**
 * Follow a space's SSE stream: onEvent({event, id, data, receivedAt}) per frame, until
 * signal aborts or the server ends it. Resolves with the reason it ended.
 */
export async function stream(path, { space, params, signal, onEvent, onOpen }) {
  const resp = await fetch(url(path, params), {
    headers: headers(space, { Accept: "text/event-stream" }), signal, cache: "no-store",
  });
  if (!resp.ok) {
    let data = null;
    try {
      data = await resp.json();
    } catch {
      data = null;
    }
    throw new ApiError(resp.status, data);
  }
  if (onOpen) onOpen();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return "the server closed the stream";
    buf += value;
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
      const frame = buf.slice(0, cut);
      buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
      const ev = { event: "message", id: null, data: "", receivedAt: Date.now() };
      const data = [];
      for (const line of frame.split(/\r?\n/)) {
        if (!line || line.startsWith(":")) continue; // comments: heartbeats
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") ev.event = val;
        else if (field === "id") ev.id = val;
        else if (field === "data") data.push(val);
      }
      if (!data.length) continue;
      try {
        ev.data = JSON.parse(data.join("\n"));
      } catch {
        ev.data = data.join("\n");
      }
      onEvent(ev);
    }
  }
}
