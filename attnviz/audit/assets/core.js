// The data, the table's view (filtered, then sorted) and the helpers every part of the page shares.
// Everything lives on window.attnviz, so the tests (and a curious reader in the console) can reach it.
(() => {
  "use strict";
  const A = (window.attnviz = window.attnviz || {});
  const data = JSON.parse(document.getElementById("data").textContent);
  A.data = data;
  A.records = data.records || [];
  A.stats = data.stats || [];
  A.flags = data.flags || [];
  A.classes = data.classes || [];
  A.byId = new Map(A.records.map((r) => [r.id, r]));
  // A large report pages its records from data/part-NNNN.js beside it (script tags load from file://, fetch does
  // not): the page opens on what is inline (the cards' exemplars) and takes the parts one after another.
  A.total = typeof data.count === "number" ? data.count : A.records.length;
  A.loading = (data.parts || []).length > 0;
  A.addRecords = (rows) => {
    for (const r of rows) {
      if (!A.byId.has(r.id)) {
        A.records.push(r);
        A.byId.set(r.id, r);
      }
    }
  };
  A.loadParts = (onPart, onDone) => {
    const parts = data.parts || [];
    let next = 0;
    window.attnvizPart = A.addRecords;
    const finish = () => {
      A.loading = false;
      A.records.sort((a, b) => a.id - b.id);
      onDone();
    };
    const load = () => {
      if (next >= parts.length) return finish();
      const script = document.createElement("script");
      script.src = A.url(parts[next]);
      script.onload = () => {
        script.remove();
        next += 1;
        onPart(next, parts.length);
        setTimeout(load, 0); // the page stays responsive between parts
      };
      script.onerror = () => {
        console.error(`attnviz report: cannot load ${parts[next]}`);
        finish();
      };
      document.head.append(script);
    };
    load();
  };
  A.classByIndex = new Map(A.classes.map((c) => [c.index, c]));
  A.flagLabel = new Map(A.flags.map((f) => [f.key, f.label || f.key]));

  // DOM without innerHTML: every text from the data goes in as text, never as markup.
  A.el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child !== null && child !== undefined && child !== false) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  };

  // Paths in the data are relative to the report, with any character a file name may hold: encode each part.
  A.url = (path) => (path ? String(path).split("/").map(encodeURIComponent).join("/") : "");
  A.fmt = (value, digits = 3) => (typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "");
  A.pct = (share) => (typeof share === "number" ? Math.round(share * 100) + "%" : "");
  // "1 image", "2 images", "1 strategy": a count with its noun
  A.count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  A.basename = (path) => String(path || "").split("/").pop();
  A.classLabel = (index) => {
    const cls = A.classByIndex.get(index);
    return cls ? cls.label : String(index);
  };

  // Colours: the ten Tableau colours, then hues spread by the golden angle, so a thousand classes stay apart.
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  const classRank = new Map([...A.classes].sort((a, b) => b.count - a.count).map((c, i) => [c.index, i]));
  const paletteColor = (i) => (i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.508) % 360}, 60%, 50%)`);
  A.classColor = (index) => paletteColor(classRank.has(index) ? classRank.get(index) : classRank.size + 1);
  A.strategyColor = (cluster) => (cluster < 0 ? "#9a9a9a" : paletteColor(cluster));

  // The table's columns, built from the stats and flags the data declares.
  const text = (get) => ({ get, cmp: (a, b) => String(a).localeCompare(String(b)) });
  const num = (get) => ({ get, cmp: (a, b) => a - b, numeric: true });
  A.columns = [
    { key: "thumb", label: "", sortable: false },
    { key: "id", label: "id", ...num((r) => r.id) },
    { key: "input", label: "image", ...text((r) => r.input) },
    { key: "label", label: "class", ...text((r) => r.label) },
    { key: "prob", label: "p", help: "probability of the predicted class", ...num((r) => r.prob), digits: 3 },
    { key: "cluster", label: "strategy", help: "strategy within its class; blank: class too small to cluster",
      ...num((r) => r.cluster) },
    ...A.stats.map((s) => ({ key: "stat:" + s.key, label: s.label || s.key, help: s.help, stat: s.key,
      ...num((r) => (r.stats ? r.stats[s.key] : null)), digits: 3 })),
    { key: "flags", label: "flags", help: "number of flags, then their names", ...num((r) => (r.flags || []).length) },
  ];
  A.column = (key) => A.columns.find((c) => c.key === key);

  // The view: which records pass the filters, in which order. Listeners redraw what depends on it.
  A.state = { filters: emptyFilters(), sort: { key: "id", dir: 1 }, view: A.records.slice() };
  function emptyFilters() {
    const stats = {};
    for (const s of A.stats) stats[s.key] = [null, null];
    return { cls: "", cluster: "", flag: "", prob: [null, null], stats };
  }
  A.resetFilters = () => { A.state.filters = emptyFilters(); };

  const inRange = (value, [lo, hi]) => {
    if (lo === null && hi === null) return true;
    if (typeof value !== "number") return false;
    return (lo === null || value >= lo) && (hi === null || value <= hi);
  };
  A.passes = (r) => {
    const f = A.state.filters;
    if (f.cls !== "" && String(r.class) !== f.cls) return false;
    if (f.cluster !== "" && String(r.cluster) !== f.cluster) return false;
    const flags = r.flags || [];
    if (f.flag === "*any" && !flags.length) return false;
    if (f.flag === "*none" && flags.length) return false;
    if (f.flag !== "" && !f.flag.startsWith("*") && !flags.includes(f.flag)) return false;
    if (!inRange(r.prob, f.prob)) return false;
    for (const s of A.stats) if (!inRange(r.stats ? r.stats[s.key] : null, f.stats[s.key])) return false;
    return true;
  };

  const listeners = [];
  A.onUpdate = (fn) => listeners.push(fn);
  A.inIdOrder = () => {
    if (A.idOrderOf !== A.records.length) { // checked again when records have come
      A.idOrdered = A.records.every((r, i, all) => i === 0 || all[i - 1].id < r.id);
      A.idOrderOf = A.records.length;
    }
    return A.idOrdered;
  };
  A.update = () => {
    const col = A.column(A.state.sort.key);
    const dir = A.state.sort.dir;
    const view = A.records.filter(A.passes);
    if (col.key === "id" && A.inIdOrder()) {
      if (dir < 0) view.reverse(); // the records' own order: no comparator over a million of them
    } else view.sort((a, b) => {
      const va = col.get(a);
      const vb = col.get(b);
      const missingA = va === null || va === undefined;
      const missingB = vb === null || vb === undefined;
      if (missingA || missingB) return missingA === missingB ? a.id - b.id : missingA ? 1 : -1; // blanks last
      return dir * col.cmp(va, vb) || a.id - b.id;
    });
    A.state.view = view;
    for (const fn of listeners) fn();
  };
  A.viewIds = () => A.state.view.map((r) => r.id);

  // CSV of the filtered, sorted table: full precision, one column per statistic, flags joined by ";".
  const cell = (value) => {
    if (value === null || value === undefined) return "";
    let s = String(value);
    if (typeof value === "string" && /^[=+\-@\t\r]/.test(s)) s = "'" + s; // no formulas when a spreadsheet opens it
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  };
  A.csv = () => {
    const head = ["id", "input", "image", "overlay", "class", "label", "prob", "cluster",
      ...A.stats.map((s) => s.key), "flags"];
    const rows = A.state.view.map((r) => [r.id, r.input, r.image, r.overlay, r.class, r.label, r.prob, r.cluster,
      ...A.stats.map((s) => (r.stats ? r.stats[s.key] : null)), (r.flags || []).join(";")]);
    return [head, ...rows].map((row) => row.map(cell).join(",")).join("\r\n") + "\r\n";
  };
  A.downloadCsv = () => {
    const blob = new Blob([A.csv()], { type: "text/csv;charset=utf-8" });
    const link = A.el("a", { href: URL.createObjectURL(blob), download: "attnviz-audit.csv" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  };
})();
