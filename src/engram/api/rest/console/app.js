// The Engram console: a client of the public REST API, nothing more. Every call carries the key
// entered in this tab; what a key may not do is not offered (derived from GET /api/v1/keys/self),
// and the server checks every call anyway.

import { ApiError, call, config, getKey, setKey } from "/console/api.js";
import { clear, errorBox, h, notice } from "/console/dom.js";
import * as beliefs from "/console/page-beliefs.js";
import * as keys from "/console/page-keys.js";
import * as live from "/console/page-live.js";
import * as memories from "/console/page-memories.js";
import * as recall from "/console/page-recall.js";
import * as spaces from "/console/page-spaces.js";

const PAGES = {
  spaces: { title: "Spaces", module: spaces, space: false },
  memories: { title: "Memories", module: memories, space: true },
  memory: { title: "Memory", module: memories, space: true, hidden: true, render: "renderDetail" },
  recall: { title: "Recall", module: recall, space: true },
  beliefs: { title: "Beliefs", module: beliefs, space: true },
  live: { title: "Live", module: live, space: true },
  keys: { title: "Keys", module: keys, space: false, admin: true },
};

const state = { self: null, auth: true, spaces: [], controller: null };

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [name, query] = raw.split("?");
  return { name: name || "spaces", params: new URLSearchParams(query || "") };
}

export function go(name, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const hash = `#/${name}${q.toString() ? "?" + q.toString() : ""}`;
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function currentSpace(params) {
  const wanted = params.get("space") || sessionStorage.getItem("engram.space") || "";
  if (wanted) return wanted;
  return state.spaces.length ? state.spaces[0].id : "";
}

async function loadSpaces() {
  const out = [];
  let cursor = null;
  for (let i = 0; i < 100; i++) {
    const page = await call("GET", "/api/v1/spaces", { params: { cursor, limit: 100 } });
    out.push(...page.spaces);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  state.spaces = out;
  return out;
}

function renderHeader(active, space) {
  const isAdmin = state.self.role === "admin";
  const nav = clear(document.getElementById("nav"));
  for (const [name, page] of Object.entries(PAGES)) {
    if (page.hidden || (page.admin && !isAdmin)) continue;
    const params = page.space && space ? { space } : {};
    const q = new URLSearchParams(params).toString();
    nav.append(h("a", {
      href: `#/${name}${q ? "?" + q : ""}`,
      class: active === name || (active === "memory" && name === "memories") ? "active" : null,
      "data-page": name,
    }, page.title));
  }
  const pick = clear(document.getElementById("space-pick"));
  const select = h("select", { "aria-label": "memory space", id: "space-select" },
    state.spaces.map((sp) => h("option", { value: sp.id, selected: sp.id === space }, sp.id)));
  if (space && !state.spaces.some((sp) => sp.id === space)) {
    select.append(h("option", { value: space, selected: true }, space));
  }
  select.addEventListener("change", () => {
    sessionStorage.setItem("engram.space", select.value);
    const { name } = parseHash();
    go(PAGES[name] && PAGES[name].space && name !== "memory" ? name : "memories", { space: select.value });
  });
  pick.append(h("label", "space ", select));
  const who = clear(document.getElementById("who"));
  const self = state.self;
  const label = state.auth
    ? `${self.role} key ${self.name ? self.name + " " : ""}(${self.key_id})` : "no keys (auth disabled)";
  who.append(h("span.role", { "data-role": self.role, id: "who-role" }, label));
  if (state.auth) {
    who.append(h("button", { type: "button", id: "forget-key", on: { click: () => { setKey(""); start(); } } },
      "Forget key"));
  }
}

async function route() {
  if (!state.self) return;
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  const { name, params } = parseHash();
  const page = PAGES[name] || PAGES.spaces;
  const space = page.space ? currentSpace(params) : params.get("space") || currentSpace(params);
  if (space) sessionStorage.setItem("engram.space", space);
  renderHeader(name, space);
  const main = clear(document.getElementById("main"));
  main.dataset.page = name;
  document.title = `${page.title} · Engram console`;
  if (page.admin && state.self.role !== "admin") {
    main.append(notice("error", "This page needs an admin key."));
    return;
  }
  if (page.space && !space) {
    main.append(h("h1", page.title), notice("info", "No memory space is visible to this key."));
    return;
  }
  const ctx = {
    main, params, space, self: state.self, auth: state.auth, spaces: state.spaces,
    canWrite: state.self.role === "admin" || state.self.role === "writer",
    isAdmin: state.self.role === "admin",
    signal: controller.signal, go,
    refreshSpaces: async () => { await loadSpaces(); renderHeader(name, space); },
  };
  try {
    await page.module[page.render || "render"](ctx);
  } catch (err) {
    if (controller.signal.aborted) return;
    if (err instanceof ApiError && err.status === 401) {
      setKey("");
      return start("The key was refused (revoked or expired?): enter a key again.");
    }
    main.append(errorBox(err));
  }
}

function loginForm(message) {
  clear(document.getElementById("nav"));
  clear(document.getElementById("space-pick"));
  clear(document.getElementById("who"));
  const main = clear(document.getElementById("main"));
  main.dataset.page = "login";
  const input = h("input", { type: "password", id: "key-input", name: "key", autocomplete: "off",
    placeholder: "egk_…", size: 60, "aria-label": "API key" });
  const form = h("form", { id: "login" },
    h("h1", "Enter an API key"),
    h("p.muted", "This server requires an API key. It is kept in this browser tab only (session storage) "
      + "and sent as Authorization: Bearer with every call."),
    message ? notice("error", message) : null,
    input, " ", h("button", { type: "submit" }, "Use key"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    start();
  });
  main.append(form);
  input.focus();
}

export async function start(message) {
  state.self = null;
  let cfg;
  try {
    cfg = await config();
  } catch (err) {
    clear(document.getElementById("main")).append(errorBox(err));
    return;
  }
  state.auth = Boolean(cfg.auth_required);
  if (state.auth && !getKey()) return loginForm(message);
  try {
    state.self = await call("GET", "/api/v1/keys/self");
    await loadSpaces();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      setKey("");
      return loginForm("The server refused this key: " + err.message);
    }
    clear(document.getElementById("main")).append(errorBox(err));
    return;
  }
  route();
}

window.addEventListener("hashchange", route);
start();
