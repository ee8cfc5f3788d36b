// Memories of a space: a paged list with filters, and one memory with its associations.
//
// Filters: type and metadata go to the server (memory_type, and filter as JSON: {"key": value} or
// operators $eq $ne $in $nin $gt $gte $lt $lte $exists with $and / $or); tags and time are matched
// here, page after page of the same API list, since the list API takes neither.

import { ApiError, call } from "/console/api.js";
import { clear, confirmButton, errorBox, fmtNum, fmtTime, h, notice, short, table } from "/console/dom.js";

const TYPES = ["episodic", "semantic", "procedural", "working"];

let filterSupport = null; // does this server's GET /api/v1/memories declare `filter`? (its /openapi.json)

async function serverFilters() {
  if (filterSupport === null) {
    try {
      const doc = await call("GET", "/openapi.json");
      const op = ((doc.paths || {})["/api/v1/memories"] || {}).get || {};
      filterSupport = (op.parameters || []).some((p) => p.name === "filter" && p.in === "query");
    } catch {
      filterSupport = false;
    }
  }
  return filterSupport;
}
const SCAN_PAGES = 20; // API pages read per "more" when tags/time filters skip memories

function filtersFrom(params) {
  return {
    type: params.get("type") || "",
    tags: params.get("tags") || "",
    from: params.get("from") || "",
    to: params.get("to") || "",
    meta: params.get("meta") || "",
    suppressed: params.get("suppressed") === "1",
    size: Math.min(Math.max(Number(params.get("size")) || 25, 1), 200),
  };
}

function localMatch(f) {
  const tags = f.tags.split(",").map((t) => t.trim()).filter(Boolean);
  const from = f.from ? new Date(f.from).getTime() : null;
  const to = f.to ? new Date(f.to).getTime() : null;
  if (!tags.length && from === null && to === null) return null;
  return (m) => {
    if (tags.some((t) => !m.tags.includes(t))) return false;
    const at = new Date(m.when || m.created_at).getTime();
    if (from !== null && at < from) return false;
    if (to !== null && at > to) return false;
    return true;
  };
}

function filterForm(ctx, f) {
  const type = h("select", { name: "type", id: "f-type" }, h("option", { value: "" }, "any type"),
    TYPES.map((t) => h("option", { value: t, selected: t === f.type }, t)));
  const tags = h("input", { name: "tags", id: "f-tags", value: f.tags, placeholder: "tag, tag", size: 14 });
  const from = h("input", { name: "from", id: "f-from", type: "datetime-local", value: f.from });
  const to = h("input", { name: "to", id: "f-to", type: "datetime-local", value: f.to });
  const meta = h("input", { name: "meta", id: "f-meta", value: f.meta, size: 30,
    placeholder: '{"project": "apollo"}' });
  const suppressed = h("input", { type: "checkbox", id: "f-suppressed", checked: f.suppressed });
  const size = h("input", { name: "size", id: "f-size", type: "number", min: 1, max: 200, value: f.size });
  const form = h("form.filters", { id: "memory-filters" },
    h("label", "type ", type), h("label", "tags ", tags), h("label", "from ", from), h("label", "to ", to),
    h("label", "metadata ", meta), h("label", suppressed, " suppressed"), h("label", "page ", size),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.go("memories", {
      space: ctx.space, type: type.value, tags: tags.value.trim(), from: from.value, to: to.value,
      meta: meta.value.trim(), suppressed: suppressed.checked ? "1" : "", size: size.value,
    });
  });
  return form;
}

function dropMeta(ctx) {
  return h("button", { type: "button", id: "drop-meta",
    on: { click: () => ctx.go("memories", { ...Object.fromEntries(ctx.params), meta: "" }) } },
  "List without the metadata filter");
}

function row(ctx, m) {
  const link = `#/memory?space=${encodeURIComponent(ctx.space)}&id=${encodeURIComponent(m.id)}`;
  return h("tr", { "data-memory": m.id },
    h("td", h("a", { href: link }, short(m.id, 40))),
    h("td.content", short(m.content || m.what || "", 160)),
    h("td", m.memory_type),
    h("td", m.tags.join(", ")),
    h("td", fmtTime(m.created_at)),
    h("td.num", fmtNum(m.confidence, 2)),
    h("td.num", String(m.lsn)),
    h("td", m.suppressed ? "suppressed" : ""));
}

export async function render(ctx) {
  const { main, space } = ctx;
  const f = filtersFrom(ctx.params);
  const status = h("div.status");
  const tbody = h("tbody");
  const summary = h("p.muted", { id: "memory-summary" });
  const more = h("button", { type: "button", id: "more" }, "More");
  main.append(h("h1", "Memories of ", h("span.space", space)), filterForm(ctx, f), status,
    h("table.memories", h("thead", h("tr", ["id", "content", "type", "tags", "created", "conf.", "LSN", ""]
      .map((x) => h("th", x)))), tbody), summary, more);

  let filter = null;
  if (f.meta) {
    try {
      filter = JSON.parse(f.meta);
    } catch (err) {
      status.append(notice("error", `The metadata filter is not JSON: ${err.message}`,
        'Write it as a JSON object, e.g. {"project": "apollo"} or {"score": {"$gte": 3}}.'));
      more.remove();
      return;
    }
  }
  if (filter !== null && !(await serverFilters())) {
    status.append(notice("error", "This server does not filter memories by metadata: its GET /api/v1/memories "
      + "takes no filter parameter (see /docs). Nothing is listed, rather than a list that only looks filtered."),
    dropMeta(ctx));
    more.remove();
    return;
  }
  const match = localMatch(f);
  const scan = { cursor: null, done: false, scanned: 0, shown: 0, total: 0 };

  async function loadMore() {
    more.disabled = true;
    let found = 0;
    for (let i = 0; i < SCAN_PAGES && !scan.done && found < f.size; i++) {
      let page;
      try {
        page = await call("GET", "/api/v1/memories", {
          space, signal: ctx.signal,
          params: {
            cursor: scan.cursor, limit: match ? 100 : f.size, memory_type: f.type || null,
            include_suppressed: f.suppressed ? "true" : null,
            filter: filter === null ? null : JSON.stringify(filter),
          },
        });
      } catch (err) {
        if (filter !== null && err instanceof ApiError && err.status === 400) {
          status.replaceChildren(notice("error", `The server rejected the metadata filter: ${err.message}`,
            err.suggestion || "Check the filter: {\"key\": value}, or operators such as {\"key\": {\"$gte\": 3}}."),
          dropMeta(ctx));
          more.remove();
          return;
        }
        throw err;
      }
      scan.cursor = page.next_cursor;
      scan.done = !page.next_cursor;
      scan.total = page.total;
      scan.scanned += page.memories.length;
      for (const m of page.memories) {
        if (match && !match(m)) continue;
        tbody.append(row(ctx, m));
        found += 1;
        scan.shown += 1;
      }
    }
    summary.textContent = `${scan.shown} shown` + (match ? `, ${scan.scanned} read (tags and time are matched `
      + "by the console)" : "") + ` · ${scan.total} in the space` + (scan.done ? " · end of list" : "");
    more.disabled = false;
    if (scan.done) more.remove();
  }
  more.addEventListener("click", () => loadMore().catch((err) => status.replaceChildren(errorBox(err))));
  await loadMore();
  if (!scan.shown && scan.done) tbody.append(h("tr", h("td", { colspan: 8 }, "No memories match.")));
}

function field(name, value) {
  if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) {
    return null;
  }
  const shown = Array.isArray(value) ? value.join(", ") : typeof value === "object" ? JSON.stringify(value)
    : typeof value === "number" ? fmtNum(value) : String(value);
  return [h("dt", name), h("dd", { "data-field": name }, shown)];
}

export async function renderDetail(ctx) {
  const { main, space } = ctx;
  const id = ctx.params.get("id") || "";
  const back = h("a", { href: `#/memories?space=${encodeURIComponent(space)}` }, "← memories");
  main.append(back);
  const [m, edges] = await Promise.all([
    call("GET", `/api/v1/memories/${encodeURIComponent(id)}`, { space, params: { include_embedding: "false" },
      signal: ctx.signal }),
    call("GET", "/api/v1/associations", { space, params: { memory_id: id, limit: 200 }, signal: ctx.signal }),
  ]);
  const status = h("div.status");
  main.append(h("h1", "Memory ", h("span.mono", m.id)), status,
    h("pre.content", { id: "memory-content" }, m.content),
    h("dl.fields",
      field("type", m.memory_type), field("tags", m.tags), field("confidence", m.confidence),
      field("activation", m.activation), field("decay rate", m.decay_rate), field("access count", m.access_count),
      field("created", fmtTime(m.created_at)), field("last access", fmtTime(m.last_access)),
      field("LSN", m.lsn), field("suppressed", m.suppressed ? "yes" : null),
      field("when", fmtTime(m.when)), field("what", m.what), field("where", m.where_location),
      field("who", m.who), field("why", m.why), field("how", m.how),
      field("valence", m.emotional_valence), field("importance", m.importance),
      field("consolidation", m.consolidation_state),
      Object.entries(m.metadata || {}).map(([k, v]) => field(`metadata.${k}`, v))));
  if (ctx.canWrite) {
    const forget = (mode) => async () => {
      try {
        await call("DELETE", `/api/v1/memories/${encodeURIComponent(id)}`, { space, params: { mode } });
        ctx.go("memories", { space });
      } catch (err) {
        status.replaceChildren(errorBox(err));
      }
    };
    main.append(h("p.actions", confirmButton("Suppress", "Suppress: click again", forget("suppress")), " ",
      confirmButton("Delete", "Delete for good: click again", forget("delete"))));
  }
  main.append(h("h2", "Associations"));
  const list = edges.associations;
  if (!list.length) {
    main.append(notice("info", "No associations."));
    return;
  }
  const link = (mid) => mid === id ? h("strong", short(mid, 40))
    : h("a", { href: `#/memory?space=${encodeURIComponent(space)}&id=${encodeURIComponent(mid)}` }, short(mid, 40));
  main.append(table(["from", "to", "strength", "kind", "LSN"], list.map((e) => h("tr",
    h("td", link(e.source_id)), h("td", link(e.target_id)),
    h("td.num", h("meter", { min: 0, max: 1, value: e.strength }), " ", fmtNum(e.strength)),
    h("td", e.kind), h("td.num", String(e.lsn)))), "edges"));
}
