// The activation path of a recall, drawn by hand in SVG: nodes are memories, edges the associations
// activation followed (seed first), each edge as thick as the association's strength. Columns are
// hops from the seeds. Labels are SVG text nodes (textContent), never markup.

import { fmtNum, s, short } from "/console/dom.js";

/**
 * build(items) -> {nodes: Map(id -> {id, hop, activation, content, result}), edges: [{from, to, activation}]}
 * from the results' activation_path (each a list of {memory_id, activation}, seed first).
 */
export function build(items) {
  const nodes = new Map();
  const edges = new Map();
  const content = new Map(items.map((it) => [it.memory.id, it.memory.content || it.memory.what || ""]));
  for (const it of items) {
    const path = it.activation_path || [];
    path.forEach((step, hop) => {
      const known = nodes.get(step.memory_id);
      if (!known || hop < known.hop) {
        nodes.set(step.memory_id, { id: step.memory_id, hop, activation: Math.max(step.activation,
          known ? known.activation : 0), content: content.get(step.memory_id) || "", result: false });
      } else {
        known.activation = Math.max(known.activation, step.activation);
      }
      if (hop > 0) {
        const from = path[hop - 1].memory_id;
        edges.set(`${from}\u0000${step.memory_id}`, { from, to: step.memory_id, activation: step.activation });
      }
    });
  }
  for (const it of items) {
    const n = nodes.get(it.memory.id);
    if (n) n.result = true;
  }
  return { nodes, edges: [...edges.values()] };
}

/** draw(graph, strengths: Map("from\0to" -> strength)) -> an <svg> element. */
export function draw(graph, strengths) {
  const byHop = new Map();
  for (const n of graph.nodes.values()) {
    if (!byHop.has(n.hop)) byHop.set(n.hop, []);
    byHop.get(n.hop).push(n);
  }
  const hops = [...byHop.keys()].sort((a, b) => a - b);
  const colW = 260;
  const rowH = 70;
  const rows = Math.max(1, ...[...byHop.values()].map((l) => l.length));
  const width = Math.max(1, hops.length) * colW + 40;
  const height = rows * rowH + 50;
  const pos = new Map();
  for (const hop of hops) {
    const list = byHop.get(hop).sort((a, b) => b.activation - a.activation || (a.id < b.id ? -1 : 1));
    list.forEach((n, i) => pos.set(n.id, { x: 40 + hop * colW, y: 40 + i * rowH + (rows - list.length) * rowH / 2 }));
  }
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", id: "activation-graph",
    "aria-label": "activation graph" });
  svg.append(s("defs", s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6,
    markerHeight: 6, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))));
  hops.forEach((hop) => svg.append(s("text", { x: 40 + hop * colW - 20, y: 18, class: "hop" },
    hop === 0 ? "seeds" : `hop ${hop}`)));
  for (const e of graph.edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const strength = strengths.get(`${e.from}\u0000${e.to}`);
    const width_ = strength === undefined ? 1 : 1 + 7 * strength;
    const r = 14;
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const len = Math.hypot(dx, dy) || 1;
    const line = s("line", {
      x1: a.x + (dx / len) * r, y1: a.y + (dy / len) * r, x2: b.x - (dx / len) * (r + 2), y2: b.y - (dy / len) * (r + 2),
      "stroke-width": width_.toFixed(2), class: strength === undefined ? "edge unknown" : "edge",
      "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to,
      "data-strength": strength === undefined ? "" : String(strength),
    }, s("title", `${e.from} → ${e.to}: strength ${strength === undefined ? "unknown" : fmtNum(strength)}, `
      + `activation on arrival ${fmtNum(e.activation)}`));
    svg.append(line);
    svg.append(s("text", { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 6, class: "edge-label" },
      strength === undefined ? "?" : fmtNum(strength, 2)));
  }
  for (const n of graph.nodes.values()) {
    const p = pos.get(n.id);
    const g = s("g", { class: n.result ? "node result" : "node", "data-memory": n.id },
      s("circle", { cx: p.x, cy: p.y, r: 8 + 8 * Math.min(1, n.activation) }),
      s("text", { x: p.x + 20, y: p.y - 2, class: "node-id" }, short(n.id, 28)),
      s("text", { x: p.x + 20, y: p.y + 13, class: "node-content" }, short(n.content, 30)),
      s("title", `${n.id}\nactivation ${fmtNum(n.activation)}\n${short(n.content, 300)}`));
    svg.append(g);
  }
  return svg;
}
