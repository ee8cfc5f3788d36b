// Spaces: id, memory count, last LSN, health, embedder, backlog; create and delete for admins.

import { call } from "/console/api.js";
import { confirmButton, errorBox, fmtTime, h, notice, table } from "/console/dom.js";

function embedder(e) {
  if (!e) return "none";
  return `${e.provider}${e.model ? " / " + e.model : ""}${e.dimension ? " (" + e.dimension + "-d)" : ""}`;
}

export async function render(ctx) {
  const { main } = ctx;
  const status = h("div.status");
  main.append(h("h1", "Spaces"), status);
  if (ctx.isAdmin) main.append(createForm(ctx, status));
  const rows = ctx.spaces.map((sp) => {
    const tr = h("tr", { "data-space": sp.id },
      h("td", h("a", { href: `#/memories?space=${encodeURIComponent(sp.id)}` }, sp.id)),
      h("td.num", String(sp.memory_count)),
      h("td.num", String(sp.last_lsn)),
      h("td", h(sp.healthy ? "span.ok" : "span.bad", sp.healthy ? "healthy" : `unhealthy: ${sp.reason || ""}`)),
      h("td", embedder(sp.embedder)),
      h("td.num", String(sp.embedding_backlog)),
      h("td", sp.loaded ? "loaded" : "idle"),
      h("td", fmtTime(sp.created_at)));
    if (ctx.isAdmin) {
      tr.append(h("td", sp.id === "default" ? "" : confirmButton("Delete", `Delete ${sp.id} and all its data?`,
        async () => {
          try {
            const res = await call("DELETE", `/api/v1/spaces/${encodeURIComponent(sp.id)}`);
            status.replaceChildren(notice("ok", `Deleted ${res.id}: ${res.memories_removed} memories removed.`));
            await ctx.refreshSpaces();
            ctx.go("spaces", {});
          } catch (err) {
            status.replaceChildren(errorBox(err));
          }
        })));
    }
    return tr;
  });
  const headers = ["id", "memories", "last LSN", "health", "embedder", "backlog", "state", "created"];
  if (ctx.isAdmin) headers.push("");
  main.append(rows.length ? table(headers, rows, "spaces") : notice("info", "No spaces are visible to this key."));
  main.append(h("p.muted", "Counts are as the space list reports them; a space is loaded on first use."));
}

function createForm(ctx, status) {
  const id = h("input", { name: "id", id: "new-space-id", placeholder: "new-space-id", required: true,
    pattern: "[a-z0-9][a-z0-9_\\-]{2,63}", size: 24 });
  const provider = h("select", { name: "provider", id: "new-space-embedder" },
    h("option", { value: "" }, "server default embedder"),
    ["local", "hash", "openai", "none"].map((p) => h("option", { value: p }, p)));
  const form = h("form.inline", { id: "create-space" }, h("strong", "Create a space "), id, " ", provider, " ",
    h("button", { type: "submit" }, "Create"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { id: id.value.trim() };
    if (provider.value) body.embedder = { provider: provider.value };
    try {
      const made = await call("POST", "/api/v1/spaces", { body });
      status.replaceChildren(notice("ok", `Space ${made.id} is ready.`));
      await ctx.refreshSpaces();
      ctx.go("spaces", {});
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  });
  return form;
}
