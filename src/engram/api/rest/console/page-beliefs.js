// Beliefs: what consolidation made of the space's episodes, each with the episodes it cites.

import { call } from "/console/api.js";
import { errorBox, fmtNum, fmtTime, h, notice, short } from "/console/dom.js";

function belief(ctx, b) {
  const cites = b.citations.map((c) => h("li", { "data-episode": c.episode_id },
    h("a", { href: `#/memory?space=${encodeURIComponent(ctx.space)}&id=${encodeURIComponent(c.episode_id)}` },
      short(c.episode_id, 40)),
    " ", h("span.muted", `similarity ${fmtNum(c.similarity, 2)}`), " ", h("q", short(c.preview, 200))));
  return h("article.belief", { "data-belief": b.id },
    h("h3", h("span.mono", short(b.id, 40))),
    h("p.content", b.content),
    h("p.muted", `strength ${fmtNum(b.strength, 2)} · schema confidence ${fmtNum(b.schema_confidence, 2)} · `
      + `${b.citations.length} episode(s) · run ${b.run_id} · updated ${fmtTime(b.updated_at)} · LSN ${b.lsn}`),
    h("details", { open: b.citations.length <= 5 }, h("summary", `Cited episodes (${b.citations.length})`),
      h("ul.citations", cites)));
}

export async function render(ctx) {
  const { main, space } = ctx;
  const status = h("div.status");
  const list = h("div", { id: "beliefs" });
  const more = h("button", { type: "button", id: "more" }, "More");
  main.append(h("h1", "Beliefs of ", h("span.space", space)), status);
  if (ctx.canWrite) {
    const run = h("button", { type: "button", id: "consolidate" }, "Consolidate now");
    run.addEventListener("click", async () => {
      run.disabled = true;
      try {
        const rep = await call("POST", "/api/v1/consolidate", { space, body: {} });
        status.replaceChildren(notice("ok", `Consolidation ${rep.run_id}: ${rep.beliefs.length} belief(s) from `
          + `${rep.episodes_consolidated} of ${rep.episodes_considered} episode(s) in ${fmtNum(rep.duration_ms, 1)} ms.`));
        ctx.go("beliefs", { space });
      } catch (err) {
        status.replaceChildren(errorBox(err));
      } finally {
        run.disabled = false;
      }
    });
    main.append(h("p.actions", run));
  }
  main.append(list, more);
  let cursor = null;
  async function load() {
    const page = await call("GET", "/api/v1/consolidations", { space, params: { cursor, limit: 20 },
      signal: ctx.signal });
    if (cursor === null) {
      list.before(h("p.muted", page.last_consolidation ? `Last consolidation ${fmtTime(page.last_consolidation)}.`
        : "No consolidation has run in this space yet."));
    }
    for (const b of page.beliefs) list.append(belief(ctx, b));
    if (cursor === null && !page.beliefs.length) list.append(notice("info", "No beliefs yet."));
    cursor = page.next_cursor;
    if (!cursor) more.remove();
  }
  more.addEventListener("click", () => load().catch((err) => status.replaceChildren(errorBox(err))));
  await load();
}
