// The scatter: every image's 2-D embedding on one canvas (not one DOM node per point), coloured by class or by
// strategy, for all classes or one. Points outside the table's filters are drawn grey, under the others.
(() => {
  "use strict";
  const A = window.attnviz;
  const HEIGHT = 460; // css px
  const PAD = 14;
  const RADIUS = 3.5;
  const HIT = 7; // how far from a point (css px) a click or hover still finds it
  const canvas = document.getElementById("scatter");
  const tooltip = document.getElementById("tooltip");
  const opts = { colorBy: "class", cls: "" };
  let placed = []; // [{r, x, y, on}] in drawing order, css px within the canvas

  const hasXY = (r) => Array.isArray(r.xy) && typeof r.xy[0] === "number" && typeof r.xy[1] === "number";
  const colorOf = (r) => (opts.colorBy === "class" ? A.classColor(r.class) : A.strategyColor(r.cluster));

  // At most this many points are drawn (an even sample beyond): a million arcs would take seconds a redraw.
  const MAX_POINTS = A.data.scatter_max || 60000; // scatter_max: a test's smaller cap
  const evenly = (list, room) => {
    if (list.length <= room) return list;
    const out = [];
    for (let i = 0; i < room; i++) out.push(list[Math.floor((i * list.length) / room)]);
    return out;
  };

  function layout() {
    const scope = A.records.filter((r) => hasXY(r) && (opts.cls === "" || String(r.class) === opts.cls));
    const width = canvas.parentElement.clientWidth || 800;
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const r of scope) {
      x0 = Math.min(x0, r.xy[0]); x1 = Math.max(x1, r.xy[0]);
      y0 = Math.min(y0, r.xy[1]); y1 = Math.max(y1, r.xy[1]);
    }
    const sx = (width - 2 * PAD) / (x1 - x0 || 1);
    const sy = (HEIGHT - 2 * PAD) / (y1 - y0 || 1);
    const shown = new Set(A.state.view.map((r) => r.id));
    const on = [];
    const off = [];
    for (const r of scope) (shown.has(r.id) ? on : off).push(r);
    const place = (r, isOn) => ({
      r, on: isOn,
      x: x1 > x0 ? PAD + (r.xy[0] - x0) * sx : width / 2,
      y: y1 > y0 ? HEIGHT - PAD - (r.xy[1] - y0) * sy : HEIGHT / 2, // up is up
    });
    const kept = evenly(on, MAX_POINTS);
    const rest = evenly(off, Math.max(MAX_POINTS - kept.length, MAX_POINTS / 4));
    placed = [...rest.map((r) => place(r, false)), ...kept.map((r) => place(r, true))];
    A.scatterDrawn = { on: kept.length, off: rest.length };
    return width;
  }

  function draw() {
    const width = layout();
    const ratio = window.devicePixelRatio || 1;
    canvas.style.width = width + "px";
    canvas.style.height = HEIGHT + "px";
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(HEIGHT * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, HEIGHT);
    if (!placed.length) {
      ctx.fillStyle = "#888";
      ctx.font = "14px system-ui, sans-serif";
      ctx.fillText("No images with an embedding to show.", PAD, PAD + 14);
    }
    for (const p of placed) {
      ctx.globalAlpha = p.on ? 0.85 : 0.35;
      ctx.fillStyle = p.on ? colorOf(p.r) : "#c4c4c4";
      ctx.beginPath();
      ctx.arc(p.x, p.y, RADIUS, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    drawLegend();
  }

  function drawLegend() {
    const counts = new Map();
    for (const p of placed) {
      const key = opts.colorBy === "class" ? p.r.class : p.r.cluster;
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    const keys = [...counts.keys()].sort((a, b) => counts.get(b) - counts.get(a));
    const shown = keys.slice(0, 16).map((key) => {
      const [color, name] = opts.colorBy === "class" ? [A.classColor(key), A.classLabel(key)]
        : [A.strategyColor(key), key < 0 ? "not clustered" : "strategy " + key];
      return A.el("span", { class: "key" }, A.el("i", { style: "background:" + color }), `${name} (${counts.get(key)})`);
    });
    if (keys.length > shown.length) shown.push(A.el("span", { class: "key" }, `and ${keys.length - shown.length} more`));
    document.getElementById("legend").replaceChildren(...shown);
  }

  // The point under (x, y), in css px within the canvas: the nearest within HIT, the one drawn last on a tie.
  function pick(x, y) {
    let best = null;
    let bestD = HIT * HIT;
    for (const p of placed) {
      const d = (p.x - x) ** 2 + (p.y - y) ** 2;
      if (d <= bestD) { best = p; bestD = d; }
    }
    return best;
  }

  const local = (event) => {
    const box = canvas.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  };

  function hover(event) {
    const [x, y] = local(event);
    const p = pick(x, y);
    canvas.style.cursor = p ? "pointer" : "default";
    if (!p) { tooltip.hidden = true; return; }
    const r = p.r;
    tooltip.replaceChildren(A.el("b", {}, r.label), ` p ${A.fmt(r.prob, 2)}`,
      r.cluster >= 0 ? ` · strategy ${r.cluster}` : "", A.el("br"), `#${r.id} ${A.basename(r.input)}`);
    tooltip.hidden = false;
    tooltip.style.left = Math.min(x + 12, canvas.clientWidth - tooltip.offsetWidth) + "px";
    tooltip.style.top = y + 12 + "px";
  }

  // Where record `id` is drawn, in viewport px (for a click in the tests); null when it is not drawn.
  A.pointPosition = (id) => {
    const p = placed.find((q) => q.r.id === id);
    if (!p) return null;
    const box = canvas.getBoundingClientRect();
    return { x: box.left + p.x, y: box.top + p.y };
  };

  A.initScatter = () => {
    const classSelect = document.getElementById("scatter-class");
    const classes = [...A.classes].sort((a, b) => String(a.label).localeCompare(String(b.label)));
    classSelect.replaceChildren(A.el("option", { value: "" }, "all classes"),
      ...classes.map((c) => A.el("option", { value: String(c.index) }, c.label)));
    classSelect.addEventListener("change", () => {
      opts.cls = classSelect.value;
      if (opts.cls !== "") { opts.colorBy = "strategy"; document.getElementById("color-by").value = "strategy"; }
      draw();
    });
    document.getElementById("color-by").addEventListener("change", (event) => {
      opts.colorBy = event.target.value;
      draw();
    });
    canvas.addEventListener("mousemove", hover);
    canvas.addEventListener("mouseleave", () => { tooltip.hidden = true; });
    canvas.addEventListener("click", (event) => {
      const p = pick(...local(event));
      if (p) A.openViewer(p.r.id);
    });
    let timer = 0;
    window.addEventListener("resize", () => { clearTimeout(timer); timer = setTimeout(draw, 100); });
    A.onUpdate(draw);
  };
})();
