// The viewer: the original with its overlay on top (an opacity slider between them), the record's numbers,
// arrows through the table's current order, and a deep link (#img=ID) that always names the image on screen.
(() => {
  "use strict";
  const A = window.attnviz;
  const el = A.el;
  const $ = (id) => document.getElementById(id);
  const viewer = $("viewer");
  const help = $("help");
  const HASH = /^#img=(-?\d+)$/;
  A.current = null;

  function setHash(hash) {
    if (location.hash === hash || (!hash && !location.hash)) return;
    const url = location.href.split("#")[0] + hash;
    try {
      history.replaceState(null, "", hash || url); // no history entry per image
    } catch (error) {
      location.replace(url);
    }
  }

  function info(r) {
    const cls = A.classByIndex.get(r.class);
    const strategy = cls && cls.strategies ? cls.strategies.find((s) => s.id === r.cluster) : null;
    const rows = [
      ["class", `${r.label} (${r.class})`],
      ["p", A.fmt(r.prob, 3)],
      ["strategy", r.cluster >= 0
        ? `${r.cluster}${strategy ? ` of ${cls.strategies.length}: ${A.count(strategy.size, "image", "images")}, ${A.pct(strategy.share)}` : ""}`
        : "not clustered (too few images in the class)"],
      ...A.stats.map((s) => [s.label || s.key, A.fmt(r.stats ? r.stats[s.key] : null, 3), s.help]),
    ];
    const flags = (r.flags || []).map((f) => el("span", { class: "flag", title: (A.flags.find((x) => x.key === f) || {}).help },
      A.flagLabel.get(f) || f));
    return [
      el("dl", {}, rows.map(([term, value, title]) => [el("dt", { title }, term), el("dd", {}, value)])),
      el("p", { class: "flags" }, flags.length ? flags : "no flags"),
      el("p", { class: "path" }, r.input),
      el("p", {}, el("a", { href: A.url(r.image), target: "_blank" }, "original"), " · ",
        r.overlay ? el("a", { href: A.url(r.overlay), target: "_blank" }, "overlay") : "no overlay"),
    ];
  }

  A.openViewer = (id) => {
    const r = A.byId.get(Number(id));
    if (!r) return false;
    A.current = r.id;
    $("v-original").src = A.url(r.image || r.thumb);
    const overlay = $("v-overlay");
    overlay.hidden = !r.overlay;
    if (r.overlay) overlay.src = A.url(r.overlay);
    $("v-title").textContent = `#${r.id} ${A.basename(r.input)}`;
    $("v-info").replaceChildren(...info(r));
    const index = A.state.view.indexOf(r);
    $("v-position").textContent = index >= 0 ? `${index + 1} / ${A.state.view.length}` : "not in the filtered table";
    const last = A.state.view.length - 1;
    $("v-prev").disabled = last < 0 || index === 0;
    $("v-next").disabled = last < 0 || index === last;
    const opening = viewer.hidden;
    viewer.hidden = false;
    document.body.classList.add("modal");
    if (opening) viewer.focus();
    setHash("#img=" + r.id);
    return true;
  };

  A.closeViewer = () => {
    if (viewer.hidden) return;
    viewer.hidden = true;
    document.body.classList.remove("modal");
    const id = A.current;
    A.current = null;
    setHash("");
    A.revealRow(id);
  };

  // One step through the table's filtered, sorted order; from an image outside it, to the order's first or last.
  A.step = (delta) => {
    const view = A.state.view;
    if (!view.length || A.current === null) return;
    const index = view.indexOf(A.byId.get(A.current));
    const next = index < 0 ? (delta > 0 ? 0 : view.length - 1) : Math.min(view.length - 1, Math.max(0, index + delta));
    if (next !== index) A.openViewer(view[next].id);
  };

  A.toggleHelp = (show) => {
    help.hidden = show === undefined ? !help.hidden : !show;
  };

  A.fromHash = () => {
    const match = HASH.exec(location.hash);
    if (match) A.openViewer(Number(match[1]));
    else A.closeViewer();
  };

  function onKey(event) {
    const field = /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName);
    if (event.key === "Escape") {
      if (!help.hidden) A.toggleHelp(false);
      else A.closeViewer();
    } else if (event.ctrlKey || event.metaKey || event.altKey) {
      return;
    } else if (event.key === "?" && !(field && event.target.type !== "range")) {
      A.toggleHelp();
    } else if (!viewer.hidden && !field && (event.key === "ArrowLeft" || event.key === "ArrowRight")) {
      A.step(event.key === "ArrowLeft" ? -1 : 1); // on the slider, arrows move the slider
    } else {
      return;
    }
    event.preventDefault();
  }

  A.initViewer = () => {
    const slider = $("v-opacity");
    const overlay = $("v-overlay");
    slider.addEventListener("input", () => { overlay.style.opacity = slider.value / 100; });
    $("v-prev").addEventListener("click", () => A.step(-1));
    $("v-next").addEventListener("click", () => A.step(1));
    $("v-close").addEventListener("click", A.closeViewer);
    $("v-help").addEventListener("click", () => A.toggleHelp());
    $("help-open").addEventListener("click", () => A.toggleHelp());
    $("help-close").addEventListener("click", () => A.toggleHelp(false));
    viewer.addEventListener("click", (event) => { if (event.target === viewer) A.closeViewer(); });
    document.addEventListener("keydown", onKey);
    window.addEventListener("hashchange", A.fromHash);
    A.onUpdate(() => { if (A.current !== null) A.openViewer(A.current); }); // position within the new order
  };
})();
