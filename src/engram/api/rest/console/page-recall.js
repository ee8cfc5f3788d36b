// The recall playground: a cue, mode and rank; each result with its per-signal breakdown (the
// recall answer's `signals`), and the activation path (trace_activation) drawn as a graph whose
// edges are weighted by the associations' strength (GET /api/v1/associations).

import { call } from "/console/api.js";
import { clear, fmtNum, h, notice, short } from "/console/dom.js";
import { build, draw } from "/console/graph.js";

// Signals in [0, 1] get a bar; ranks and counts are numbers.
const BARS = new Set(["relevance", "activation", "recency", "confidence", "vector", "text", "context", "spread"]);

function signals(sig) {
  const entries = Object.entries(sig || {});
  if (!entries.length) return h("span.muted", "no signals");
  return h("dl.signals", entries.map(([k, v]) => [
    h("dt", k),
    h("dd", { "data-signal": k }, BARS.has(k) && v >= 0 && v <= 1
      ? [h("meter", { min: 0, max: 1, value: v }), " "] : null, fmtNum(v)),
  ]));
}

export async function render(ctx) {
  const { main, space } = ctx;
  const query = h("input", { id: "r-query", name: "query", size: 40, placeholder: "what to recall",
    value: ctx.params.get("q") || "" });
  const mode = h("select", { id: "r-mode" }, ["hybrid", "similarity", "spreading"].map((m) => h("option", m)));
  const rank = h("select", { id: "r-rank" }, ["cognitive", "similarity"].map((m) => h("option", m)));
  const max = h("input", { id: "r-max", type: "number", min: 1, max: 100, value: 10 });
  const hops = h("input", { id: "r-hops", type: "number", min: 0, max: 10, placeholder: "server default" });
  const form = h("form.filters", { id: "recall-form" }, h("label", "query ", query), h("label", "mode ", mode),
    h("label", "rank ", rank), h("label", "results ", max), h("label", "max hops ", hops),
    h("button", { type: "submit" }, "Recall"));
  const out = h("div", { id: "recall-out" });
  main.append(h("h1", "Recall in ", h("span.space", space)), form, out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear(out).append(h("p.muted", "Recalling…"));
    const body = { query: query.value, mode: mode.value, rank: rank.value, max_results: Number(max.value) || 10,
      trace_activation: true };
    if (hops.value !== "") body.max_hops = Number(hops.value);
    try {
      const res = await call("POST", "/api/v1/memories/recall", { space, body, signal: ctx.signal });
      await show(ctx, out, res);
    } catch (err) {
      if (!ctx.signal.aborted) clear(out).append(notice("error", `${err.code || ""} ${err.message}`, err.suggestion || ""));
    }
  });
}

async function show(ctx, out, res) {
  clear(out);
  let items = [];
  const bucketOf = new Map();
  for (const bucket of ["vivid", "associated", "reconstructed"]) {
    for (const it of res.memories[bucket] || []) {
      bucketOf.set(it.memory.id, bucket);
      items.push({ ...it, bucket });
    }
  }
  if (Array.isArray(res.results) && res.results.length) { // the flat ranked list, where the server sends it
    items = res.results.map((it) => ({ ...it, bucket: bucketOf.get(it.memory.id) || "" }));
  }
  const meta = res.metadata || {};
  out.append(h("p.muted", { id: "recall-summary" }, `${items.length} result(s) · confidence `
    + `${fmtNum(res.recall_confidence.value, 2)} (${res.recall_confidence.category}) · ${meta.mode || ""} / `
    + `${meta.rank || ""} · ${fmtNum(meta.timing_ms, 1)} ms · ${meta.candidates ?? "?"} candidates`));
  if (!items.length) {
    out.append(notice("info", res.recall_confidence.reasoning || "Nothing matched."));
    return;
  }
  const rows = items.map((it, i) => h("tr", { "data-memory": it.memory.id },
    h("td.num", String(i + 1)),
    h("td", it.bucket),
    h("td", h("a", { href: `#/memory?space=${encodeURIComponent(ctx.space)}&id=${encodeURIComponent(it.memory.id)}` },
      short(it.memory.id, 32))),
    h("td.content", short(it.memory.content || it.memory.what || "", 200)),
    h("td.num", fmtNum(it.score)),
    h("td", it.source),
    h("td", signals(it.signals))));
  out.append(h("table.results", h("thead", h("tr", ["#", "bucket", "id", "content", "score", "source", "signals"]
    .map((x) => h("th", x)))), h("tbody", rows)));

  out.append(h("h2", "Activation path"));
  const graph = build(items);
  if (!graph.edges.length) {
    out.append(notice("info", "Activation crossed no association for these results (every result was found "
      + "directly). Use mode spreading or hybrid on memories that have associations."));
  }
  const ids = [...graph.nodes.keys()].slice(0, 100);
  const strengths = new Map();
  if (graph.edges.length) {
    const edges = await call("GET", "/api/v1/associations", { space: ctx.space, signal: ctx.signal,
      params: { memory_id: ids, limit: 1000 } });
    for (const e of edges.associations) strengths.set(`${e.source_id}\u0000${e.target_id}`, e.strength);
  }
  out.append(h("div.graph", draw(graph, strengths)),
    h("p.muted", "Circles: memories (filled: returned by this recall), size by activation. Arrows: the "
      + "associations activation crossed, as thick as their strength; columns are hops from the seeds."));
}
