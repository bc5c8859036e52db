// The images table: filters, sortable headers and a virtual body. Only the rows on screen (and a few either
// side) exist in the DOM, so ten thousand images cost as much as forty.
(() => {
  "use strict";
  const A = window.attnviz;
  const el = A.el;
  const ROW = 44; // px; fixed, so a row's position is its index times ROW
  const OVERSCAN = 8;

  // `range` is a function returning the filter's [min, max]: a reset replaces the filters, not the controls.
  function numberInput(label, range, index, placeholder) {
    return el("input", {
      type: "number", step: "any", placeholder, "aria-label": label, class: "num",
      oninput: (event) => {
        const value = event.target.value.trim() === "" ? null : Number(event.target.value);
        range()[index] = Number.isFinite(value) ? value : null;
        A.update();
      },
    });
  }

  function rangeField(name, help, range, values) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) {
      if (typeof v === "number") { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    return el("fieldset", { class: "range", title: help || null, "data-filter": name },
      el("legend", {}, name),
      numberInput(name + " from", range, 0, lo <= hi ? A.fmt(lo, 2) : "min"), "–",
      numberInput(name + " to", range, 1, lo <= hi ? A.fmt(hi, 2) : "max"));
  }

  function select(name, key, options) {
    return el("label", {}, name, el("select", {
      name: key, "data-filter": key,
      onchange: (event) => { A.state.filters[key] = event.target.value; A.update(); },
    }, options.map(([value, text]) => el("option", { value }, text))));
  }

  function buildFilters() {
    const form = document.getElementById("filters");
    const classes = [...A.classes].sort((a, b) => String(a.label).localeCompare(String(b.label)));
    const clusters = [...new Set(A.records.map((r) => r.cluster))].sort((a, b) => a - b);
    form.replaceChildren(
      select("class", "cls", [["", "all classes"], ...classes.map((c) => [String(c.index), `${c.label} (${c.count})`])]),
      select("strategy", "cluster", [["", "any"],
        ...clusters.map((c) => [String(c), c < 0 ? "not clustered" : "strategy " + c])]),
      select("flag", "flag", [["", "any"], ["*any", "flagged"], ["*none", "not flagged"],
        ...A.flags.map((fl) => [fl.key, fl.label || fl.key])]),
      rangeField("p", "probability of the predicted class", () => A.state.filters.prob, A.records.map((r) => r.prob)),
      ...A.stats.map((s) => rangeField(s.label || s.key, s.help, () => A.state.filters.stats[s.key],
        A.records.map((r) => (r.stats ? r.stats[s.key] : null)))),
    );
    form.addEventListener("submit", (event) => event.preventDefault());
  }

  // Set the filter controls from A.state.filters (after a reset, or a click on a class in the overview).
  // After a paged report's records have all come: the strategy choices and the ranges' hints from all of them.
  A.rebuildFilters = () => {
    buildFilters();
    A.syncFilters();
  };

  A.syncFilters = () => {
    const form = document.getElementById("filters");
    for (const sel of form.querySelectorAll("select")) sel.value = A.state.filters[sel.name];
    const ranges = [A.state.filters.prob, ...A.stats.map((s) => A.state.filters.stats[s.key])];
    form.querySelectorAll("fieldset.range").forEach((fieldset, i) => {
      fieldset.querySelectorAll("input").forEach((input, j) => {
        input.value = ranges[i][j] === null ? "" : ranges[i][j];
      });
    });
  };

  function buildHead() {
    const cols = document.getElementById("grid-cols");
    cols.replaceChildren(...A.columns.map((c) => el("col", { class: "col-" + c.key.replace(":", "-") })));
    const row = el("tr", {}, A.columns.map((c) => {
      if (c.sortable === false) return el("th", { scope: "col" });
      return el("th", { scope: "col", "data-key": c.key, title: c.help || null, class: c.numeric ? "n" : null },
        el("button", { type: "button", onclick: () => sortBy(c.key) }, c.label));
    }));
    document.querySelector("#grid thead").replaceChildren(row);
  }

  function sortBy(key) {
    const sort = A.state.sort;
    sort.dir = sort.key === key ? -sort.dir : 1;
    sort.key = key;
    A.update();
  }

  function markSorted() {
    for (const th of document.querySelectorAll("#grid thead th[data-key]")) {
      const on = th.dataset.key === A.state.sort.key;
      th.setAttribute("aria-sort", on ? (A.state.sort.dir > 0 ? "ascending" : "descending") : "none");
    }
  }

  function cellFor(c, r) {
    if (c.key === "thumb") {
      return el("td", { class: "thumb" }, r.thumb ? el("img", {
        src: A.url(r.thumb), alt: "", loading: "lazy", decoding: "async", width: 48, height: 36,
      }) : "");
    }
    if (c.key === "flags") {
      return el("td", { class: "flags" }, (r.flags || []).map((f) => el("span", { class: "flag" }, A.flagLabel.get(f) || f)));
    }
    if (c.key === "input") return el("td", { title: r.input }, A.basename(r.input));
    if (c.key === "cluster") return el("td", { class: "n" }, r.cluster >= 0 ? r.cluster : "");
    const value = c.get(r);
    return el("td", { class: c.numeric ? "n" : null }, c.digits ? A.fmt(value, c.digits) : value);
  }

  function rowFor(r) {
    return el("tr", {
      class: "row", "data-id": r.id, tabindex: "0",
      onclick: () => A.openViewer(r.id),
      onkeydown: (event) => { if (event.key === "Enter") A.openViewer(r.id); },
    }, A.columns.map((c) => cellFor(c, r)));
  }

  const spacer = (height) => el("tr", { class: "spacer", "aria-hidden": "true" },
    el("td", { colspan: A.columns.length, style: `height:${height}px` }));

  let drawn = "";
  function renderRows(force) {
    const box = document.getElementById("table-scroll");
    const view = A.state.view;
    let first = Math.max(0, Math.floor(box.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(view.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW) + OVERSCAN);
    first = Math.min(first, last);
    const key = first + ":" + last;
    if (!force && key === drawn) return;
    drawn = key;
    const rows = view.slice(first, last).map(rowFor);
    const body = document.querySelector("#grid tbody");
    body.replaceChildren(spacer(first * ROW), ...rows, spacer((view.length - last) * ROW));
    if (!view.length) body.replaceChildren(el("tr", {}, el("td", { colspan: A.columns.length, class: "empty" },
      A.records.length ? "No image passes these filters." : "No images.")));
  }

  // Scroll the table so that record `id` is on screen (the viewer calls it, so closing it lands on that row).
  A.revealRow = (id) => {
    const box = document.getElementById("table-scroll");
    const index = A.state.view.findIndex((r) => r.id === id);
    if (index < 0) return;
    const top = index * ROW;
    if (top < box.scrollTop || top + ROW > box.scrollTop + box.clientHeight - ROW) {
      box.scrollTop = Math.max(0, top - box.clientHeight / 2);
    }
  };

  A.initTable = () => {
    buildFilters();
    buildHead();
    const box = document.getElementById("table-scroll");
    let pending = false;
    box.addEventListener("scroll", () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; renderRows(false); });
    });
    window.addEventListener("resize", () => renderRows(false));
    document.getElementById("reset").addEventListener("click", () => {
      A.resetFilters();
      A.syncFilters();
      A.update();
    });
    document.getElementById("export").addEventListener("click", A.downloadCsv);
    A.onUpdate(() => {
      document.getElementById("count").textContent = `${A.state.view.length} of ${A.records.length} images`;
      markSorted();
      document.getElementById("table-scroll").scrollTop = 0; // a new filter or order starts at its top
      renderRows(true);
    });
  };
})();
