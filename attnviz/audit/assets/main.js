// The static parts (header, overview, strategy cards, failures), then the live ones (table, scatter, viewer).
(() => {
  "use strict";
  const A = window.attnviz;
  const el = A.el;
  const d = A.data;
  const $ = (id) => document.getElementById(id);
  const OPEN_CLASSES = 6; // strategy cards of the largest classes are shown at once; the rest on request
  const OPEN_AT_MOST = 24; // ... and those of classes with a small strategy, up to this many in all

  const flaggedBy = (records) => {
    const counts = Object.fromEntries(A.flags.map((f) => [f.key, 0]));
    for (const r of records) for (const f of r.flags || []) if (f in counts) counts[f] += 1;
    return counts;
  };
  const byClass = new Map();
  const indexClasses = () => {
    byClass.clear();
    for (const r of A.records) {
      if (!byClass.has(r.class)) byClass.set(r.class, []);
      byClass.get(r.class).push(r);
    }
  };
  indexClasses();
  const classesBySize = [...A.classes].sort((a, b) => b.count - a.count || a.index - b.index);

  // Show the table with one class (and strategy) selected: from the overview and the strategy cards.
  function showInTable(cls, cluster) {
    A.resetFilters();
    A.state.filters.cls = String(cls);
    if (cluster !== undefined) A.state.filters.cluster = String(cluster);
    A.syncFilters();
    A.update();
    $("images").scrollIntoView();
  }

  function header() {
    $("title").textContent = d.title || "attnviz audit";
    const parts = [d.encoder && `encoder ${d.encoder}`, d.mode && `mode ${d.mode}`, d.created];
    $("meta").replaceChildren(parts.filter(Boolean).join(" · "), d.command ? el("code", {}, d.command) : "");
  }

  function overview() {
    const flagged = A.records.filter((r) => (r.flags || []).length).length;
    const counts = flaggedBy(A.records);
    const tile = (value, label, help, href) => el(href ? "a" : "div", { class: "tile", title: help, href },
      el("b", {}, value), el("span", {}, label));
    $("tiles").replaceChildren(
      tile(A.loading ? `${A.records.length} of ${A.total}` : A.records.length, "images"),
      tile(A.classes.length, "classes"),
      tile(A.classes.reduce((n, c) => n + (c.strategies || []).length, 0), "strategies"),
      tile(flagged, "flagged images", "images with at least one flag"),
      ...A.flags.map((f) => tile(counts[f.key], f.label || f.key, f.help)),
      tile((d.errors || []).length, "failures", "inputs that could not be explained", "#errors"),
    );
    const head = el("tr", {}, el("th", {}, "class"), el("th", { class: "n" }, "images"),
      el("th", { class: "n" }, "strategies"), el("th", { class: "n", title: "strategies flagged as small" }, "small"),
      A.flags.map((f) => el("th", { class: "n", title: f.help }, f.label || f.key)));
    const rows = classesBySize.map((c) => {
      const flags = flaggedBy(byClass.get(c.index) || []);
      const strategies = c.strategies || [];
      return el("tr", { class: "link-row", tabindex: "0", onclick: () => showInTable(c.index),
        onkeydown: (event) => { if (event.key === "Enter") showInTable(c.index); } },
      el("td", {}, el("i", { class: "dot", style: "background:" + A.classColor(c.index) }), c.label,
        el("small", {}, " " + c.index)),
      el("td", { class: "n" }, c.count),
      el("td", { class: "n" }, c.clustered ? strategies.length : "–"),
      el("td", { class: "n" }, strategies.filter((s) => s.small).length || ""),
      A.flags.map((f) => el("td", { class: "n" }, flags[f.key] || "")));
    });
    $("class-table").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
    $("definition-list").replaceChildren(...[...A.stats, ...A.flags].map((x) =>
      [el("dt", {}, x.label || x.key), el("dd", {}, x.help || "")]).flat());
  }

  function thumb(id) {
    const r = A.byId.get(id);
    if (!r) return null;
    return el("button", { type: "button", class: "exemplar", title: `#${r.id} ${A.basename(r.input)}`,
      onclick: () => A.openViewer(r.id) },
    el("img", { src: A.url(r.thumb || r.image), alt: `#${r.id}`, loading: "lazy", decoding: "async" }));
  }

  // Cards come in the class's order of suspicion (the data lists them so): the one to look at first is first.
  function card(c, s) {
    return el("article", { class: "card" + (s.small ? " small" : "") + (s.suspect ? " suspect" : ""),
      "data-class": c.index, "data-strategy": s.id },
      el("img", { class: "mean", src: A.url(s.mean_map), alt: `mean map of strategy ${s.id}`, loading: "lazy" }),
      el("h4", {}, `strategy ${s.id}`, s.suspect ? el("span", { class: "badge suspect", title: "its evidence " +
        "stays in one place from image to image, unlike an object's: look here first" }, "fixed place") : "",
      s.small ? el("span", { class: "badge small", title: "a small strategy " +
        "of its class: possibly a shortcut" }, "small") : ""),
      el("p", {}, `${A.count(s.size, "image", "images")} · ${A.pct(s.share)}`),
      s.why ? el("p", { class: "why" }, s.why) : "",
      el("div", { class: "exemplars" }, (s.exemplars || []).map(thumb)),
      el("button", { type: "button", class: "link", onclick: () => showInTable(c.index, s.id) }, "show in table"));
  }

  function classCards(c) {
    if (!c.clustered || !(c.strategies || []).length) {
      const some = (byClass.get(c.index) || []).slice(0, 6).map((r) => thumb(r.id));
      return [el("p", { class: "hint" }, "Too few images to cluster."), el("div", { class: "exemplars" }, some)];
    }
    return [el("div", { class: "cards" }, c.strategies.map((s) => card(c, s)))];
  }

  // One <details> per class; its cards are built the first time it opens, so a thousand classes stay cheap.
  function strategies() {
    const list = $("strategy-list");
    if (!classesBySize.length) list.replaceChildren(el("p", { class: "hint" }, "No classes."));
    let opened = 0;
    classesBySize.forEach((c, i) => {
      const strategies = c.strategies || [];
      const small = strategies.filter((s) => s.small).length;
      const suspect = strategies.some((s) => s.suspect);
      const details = el("details", { class: "class", "data-class": c.index },
        el("summary", {}, el("i", { class: "dot", style: "background:" + A.classColor(c.index) }),
          el("b", {}, c.label), ` ${A.count(c.count, "image", "images")}`,
          c.clustered ? ` · ${A.count(strategies.length, "strategy", "strategies")}` : " · not clustered",
          suspect ? el("span", { class: "badge suspect" }, "fixed place") : "",
          small ? el("span", { class: "badge small" }, `${small} small`) : ""));
      details.addEventListener("toggle", () => {
        if (details.open && details.children.length === 1) details.append(...classCards(c));
      });
      list.append(details);
      if ((i < OPEN_CLASSES || small || suspect) && opened < OPEN_AT_MOST) {
        details.open = true;
        opened += 1;
      }
    });
  }

  function errors() {
    const errs = d.errors || [];
    $("errors-title").textContent = `Failures (${errs.length})`;
    $("error-list").replaceChildren(...(errs.length ? errs.map((e) => el("li", {}, el("code", {}, e.input), " ",
      e.error)) : [el("li", { class: "hint" }, "None: every input was explained.")]));
  }

  // A broken part must not take the others with it, and a test must see it: errors go to the console.
  for (const [name, build] of [["header", header], ["overview", overview], ["strategies", strategies],
    ["errors", errors], ["table", A.initTable], ["scatter", A.initScatter], ["viewer", A.initViewer]]) {
    try {
      build();
    } catch (error) {
      console.error(`attnviz report: ${name}:`, error);
    }
  }
  A.update();
  A.fromHash();
  A.loadMs = performance.now();
  A.ready = true;
  // The parts come after the page's load event: a script added before it would hold that event (the browser's
  // "loading" and a driver's navigation) until every part had come, 12 s for a million images.
  const afterLoad = (start) =>
    document.readyState === "complete" ? start() : window.addEventListener("load", start, { once: true });
  if (A.loading) {
    $("count").textContent = `loading ${A.total} images…`;
    afterLoad(() => A.loadParts((done, parts) => {
      if (done === 1) A.update(); // the first part in the table at once; the rest when all have come
      $("count").textContent = `${A.state.view.length} shown · loading: ${A.records.length} of ${A.total} images`;
    }, () => {
      indexClasses();
      const deepLink = () => { if (A.current === null && /img=/.test(location.hash)) A.fromHash(); };
      for (const build of [overview, A.rebuildFilters, A.update, deepLink]) {
        try {
          build();
        } catch (error) {
          console.error("attnviz report: after loading:", error);
        }
      }
      A.loaded = true;
    }));
  } else {
    A.loaded = true;
  }
})();
