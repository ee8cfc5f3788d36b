// Live: the space's event stream (SSE over fetch, so the key travels in a header), pausable.
// Lag: how long after the event's timestamp it reached this page; `lagged` frames (events the
// server dropped for a slow reader) are counted and shown.

import { ApiError, stream } from "/console/api.js";
import { fmtNum, fmtTime, h, notice, short } from "/console/dom.js";

const KEEP = 500; // rows kept on the page
const BUFFER = 5000; // events held while paused; beyond it they are counted as dropped here

function summary(ev) {
  const d = (ev.data && ev.data.data) || {};
  if (typeof d.content === "string") return d.content;
  if (d.memory_id) return `${d.memory_id}${d.mode ? " (" + d.mode + ")" : ""}`;
  if (Array.isArray(d.top)) return `${d.results} result(s): ${d.top.join(", ")}`;
  return JSON.stringify(d);
}

export async function render(ctx) {
  const { main, space } = ctx;
  const state = h("span", { id: "live-state" }, "connecting…");
  const lag = h("span", { id: "live-lag" }, "–");
  const counts = h("span", { id: "live-counts" }, "0 events");
  const pause = h("button", { type: "button", id: "live-pause" }, "Pause");
  const tbody = h("tbody", { id: "live-events" });
  const status = h("div.status");
  main.append(h("h1", "Live events of ", h("span.space", space)),
    h("p.live-bar", state, " · lag ", lag, " · ", counts, " ", pause), status,
    h("table.live", h("thead", h("tr", ["received", "type", "LSN", "lag", "what"].map((x) => h("th", x)))), tbody));

  let paused = false;
  let held = [];
  let dropped = 0;
  let total = 0;
  let missed = 0;
  let lastLsn = 0;

  function show(ev) {
    const d = ev.data || {};
    const ms = typeof d.timestamp === "number" ? Math.max(0, ev.receivedAt - d.timestamp * 1000) : null;
    if (ms !== null) lag.textContent = `${fmtNum(ms, 0)} ms`;
    if (ev.event === "lagged") {
      missed += Number(d.missed) || 0;
      status.replaceChildren(notice("warn", `This page fell behind: the server skipped ${missed} event(s) so far `
        + `(last LSN ${d.last_lsn}).`));
    }
    if (ev.event === "end") status.replaceChildren(notice("info", `The server ended the stream: ${d.reason}`));
    if (typeof d.lsn === "number") lastLsn = Math.max(lastLsn, d.lsn);
    const tr = h("tr", { "data-type": ev.event, "data-lsn": d.lsn ?? "" },
      h("td", fmtTime(ev.receivedAt / 1000)), h("td", ev.event), h("td.num", d.lsn ?? ""),
      h("td.num", ms === null ? "" : `${fmtNum(ms, 0)} ms`), h("td.content", short(summary(ev), 200)));
    tbody.prepend(tr);
    while (tbody.children.length > KEEP) tbody.lastChild.remove();
  }

  function updateCounts() {
    counts.textContent = `${total} event(s) · last LSN ${lastLsn}` + (paused ? ` · ${held.length} held` : "")
      + (dropped ? ` · ${dropped} not kept while paused` : "") + (missed ? ` · ${missed} skipped by the server` : "");
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    state.textContent = paused ? "paused (still receiving)" : "live";
    if (!paused) {
      for (const ev of held) show(ev);
      held = [];
    }
    updateCounts();
  });

  const onEvent = (ev) => {
    total += 1;
    if (paused) {
      if (held.length < BUFFER) held.push(ev);
      else dropped += 1;
      const d = ev.data || {};
      if (typeof d.lsn === "number") lastLsn = Math.max(lastLsn, d.lsn);
    } else {
      show(ev);
    }
    updateCounts();
  };
  // The stream runs until the page is left (ctx.signal); render returns at once.
  stream("/api/v1/stream/activities", { space, signal: ctx.signal, onEvent,
    onOpen: () => { state.textContent = "live"; } })
    .then((why) => { state.textContent = `ended: ${why}`; })
    .catch((err) => {
      if (ctx.signal.aborted) return;
      state.textContent = "disconnected";
      status.replaceChildren(notice("error", err instanceof ApiError ? `${err.code}: ${err.message}` : String(err)));
    });
}
