// DOM helpers. Everything that reaches the page goes through here: strings become text nodes
// (never HTML), attributes are set one by one (never event handlers), links stay on this origin.
// The page's Content-Security-Policy requires Trusted Types, so even a mistaken innerHTML throws.

const SVG_NS = "http://www.w3.org/2000/svg";

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
      continue;
    }
    if (/^on/i.test(name) || name === "style" || name === "srcdoc") {
      throw new Error(`refusing attribute ${name}`);
    }
    if ((name === "href" || name === "src") && !/^(#|\/(?!\/))/.test(String(value))) {
      throw new Error(`refusing ${name} outside this origin`);
    }
    if (name === "value" && "value" in el) el.value = String(value);
    else if (name === "checked" || name === "disabled" || name === "selected") el[name] = Boolean(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("tag.class", {attrs}, ...children): an element; children strings are text, never markup. */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (attrs instanceof Node || typeof attrs !== "object" || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  setAttrs(el, attrs);
  return append(el, children);
}

/** An SVG element (the activation graph). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  return append(el, children);
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function fmtNum(value, digits = 3) {
  if (typeof value !== "number") return value === undefined || value === null ? "" : String(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

export function short(text, n = 120) {
  const t = String(text ?? "");
  return t.length > n ? t.slice(0, n - 1) + "…" : t;
}

/** A message box (errors from the API show their code, message and suggestion as text). */
export function notice(kind, ...lines) {
  return h(`div.notice.${kind}`, { role: kind === "error" ? "alert" : "status" }, lines.map((l) => h("p", l)));
}

export function errorBox(err) {
  const lines = [err.code ? `${err.code}: ${err.message}` : String(err.message || err)];
  if (err.suggestion) lines.push(err.suggestion);
  return notice("error", ...lines);
}

/** A button that needs a second click to act (no native dialogs anywhere in the console). */
export function confirmButton(label, confirmLabel, action) {
  let armed = false;
  let timer = null;
  const btn = h("button.danger", { type: "button" }, label);
  btn.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      btn.textContent = confirmLabel;
      btn.classList.add("armed");
      timer = setTimeout(() => {
        armed = false;
        btn.textContent = label;
        btn.classList.remove("armed");
      }, 4000);
      return;
    }
    clearTimeout(timer);
    btn.disabled = true;
    try {
      await action();
    } finally {
      btn.disabled = false;
      armed = false;
      btn.textContent = label;
      btn.classList.remove("armed");
    }
  });
  return btn;
}

export function table(headers, rows, cls = "") {
  return h(`table${cls ? "." + cls : ""}`,
    h("thead", h("tr", headers.map((x) => h("th", x)))),
    h("tbody", rows));
}
