// Keys (admin): create with a role and spaces (the token is shown once), list, revoke.

import { call } from "/console/api.js";
import { confirmButton, errorBox, fmtTime, h, notice, table } from "/console/dom.js";

export async function render(ctx) {
  const { main } = ctx;
  const status = h("div.status");
  const created = h("div", { id: "key-created" });
  main.append(h("h1", "API keys"));
  if (!ctx.auth) {
    main.append(notice("info", "This server checks no keys (auth disabled): keys made here take effect when "
      + "it runs with auth = \"required\"."));
  }
  const name = h("input", { id: "k-name", name: "name", placeholder: "who uses it", size: 20 });
  const role = h("select", { id: "k-role" }, ["reader", "writer", "admin"].map((r) => h("option", r)));
  const all = h("input", { type: "checkbox", id: "k-all" });
  const boxes = ctx.spaces.map((sp) => h("label.space-box", h("input", { type: "checkbox", value: sp.id,
    "data-space": sp.id }), " ", sp.id));
  const expires = h("input", { id: "k-expires", type: "number", min: 1, placeholder: "never", size: 10 });
  const form = h("form.filters", { id: "create-key" }, h("label", "name ", name), h("label", "role ", role),
    h("fieldset", h("legend", "spaces"), h("label", all, " all spaces"), boxes),
    h("label", "expires in (s) ", expires), h("button", { type: "submit" }, "Create key"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const spaces = all.checked ? null
      : boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    if (spaces !== null && !spaces.length) {
      status.replaceChildren(notice("error", "Pick at least one space, or all spaces."));
      return;
    }
    const body = { name: name.value.trim(), role: role.value, spaces };
    if (expires.value) body.expires_in_seconds = Number(expires.value);
    try {
      const k = await call("POST", "/api/v1/keys", { body });
      status.replaceChildren();
      const token = h("code", { id: "new-token" }, k.key);
      created.replaceChildren(h("div.notice.ok", { role: "status" },
        h("p", `Key ${k.key_id} (${k.role}) created. Its token is shown only now: store it.`),
        h("p", token),
        h("button", { type: "button", on: { click: () => created.replaceChildren() } }, "I stored it")));
      await list();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  });
  const listing = h("div", { id: "key-list" });
  main.append(form, status, created, h("h2", "Keys"), listing);

  async function list() {
    const res = await call("GET", "/api/v1/keys", { signal: ctx.signal });
    const rows = res.keys.map((k) => h("tr", { "data-key": k.key_id },
      h("td.mono", k.key_id), h("td", k.name), h("td", k.role),
      h("td", k.spaces === null ? "all" : k.spaces.join(", ")),
      h("td", fmtTime(k.created_at)), h("td", k.expires_at ? fmtTime(k.expires_at) : "never"),
      h("td", k.revoked_at ? `revoked ${fmtTime(k.revoked_at)}` : "active"),
      h("td", k.revoked_at || k.key_id === ctx.self.key_id ? "" : confirmButton("Revoke", "Revoke: click again",
        async () => {
          try {
            await call("DELETE", `/api/v1/keys/${encodeURIComponent(k.key_id)}`);
            await list();
          } catch (err) {
            status.replaceChildren(errorBox(err));
          }
        }))));
    listing.replaceChildren(rows.length ? table(["id", "name", "role", "spaces", "created", "expires", "state", ""],
      rows, "keys") : notice("info", "No keys yet."));
  }
  await list();
}
