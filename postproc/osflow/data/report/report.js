// osflow's HTML report (osflow/render/html.py): folding, the pair a click shows, the diagrams.
// Text goes into the page with textContent only; the data is the JSON in #osflow-data.
window.addEventListener("error", function (e) { document.body.dataset.scriptError = e.message; });  // for tests
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("osflow-data").textContent);
  var rows = Array.prototype.slice.call(document.querySelectorAll(".wf-row"));
  var body = document.body;

  // the critical path's outline
  var crit = document.getElementById("show-critical");
  function critical() { body.classList.toggle("critical", crit.checked); }
  crit.addEventListener("change", critical);
  critical();

  // folding: a row's descendants are the rows after it that are deeper
  function fold(i, folded) {
    var row = rows[i], depth = +row.dataset.depth;
    row.querySelector(".tw").setAttribute("aria-expanded", folded ? "false" : "true");
    row.querySelector(".tw").textContent = folded ? "▸" : "▾";
    row.classList.toggle("folded", folded);
    var hiddenBelow = -1;
    for (var k = i + 1; k < rows.length && +rows[k].dataset.depth > depth; k++) {
      var r = rows[k], d = +r.dataset.depth;
      if (folded) { r.classList.add("folded-away"); continue; }
      if (hiddenBelow >= 0 && d > hiddenBelow) { r.classList.add("folded-away"); continue; }
      hiddenBelow = -1;
      r.classList.remove("folded-away");
      if (r.classList.contains("folded")) hiddenBelow = d;
    }
  }

  // the pair a click shows
  var detail = document.getElementById("detail"), detailBody = document.getElementById("detail-body");
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function show(i) {
    var s = data.steps[i];
    rows.forEach(function (r) { r.classList.remove("selected"); });
    rows[i].classList.add("selected");
    detailBody.textContent = "";
    detailBody.appendChild(el("h3", "Step " + s.n + ": " + s.client + " → " + s.server));
    var dl = el("dl");
    function item(k, v) { if (v === undefined || v === null || v === "") return; dl.appendChild(el("dt", k)); dl.appendChild(el("dd", v)); }
    item("protocol", s.protocol + (s.kind ? " (" + s.kind + ")" : ""));
    item(s.pairs ? "requests" : "request", s.request);
    item(s.pairs ? "responses" : "response", s.response);
    item("start", s.start + " s");
    item("latency", s.ms + " ms");
    item("children until", s.children_until ? s.children_until + " s" : "");
    item("on the critical path", s.critical ? "yes" : "");
    item("error", s.error === "error" ? "yes" : s.error === "client" ? "client error (4xx)" : "");
    item("client", s.client + " (" + s.client_address + ")");
    item("client evidence", s.client_evidence);
    item("server", s.server + " (" + s.server_address + ")");
    item("server evidence", s.server_evidence);
    item("via", s.via);
    item("tokens", s.tokens ? s.tokens.join(", ") : "");
    item("notes", s.notes ? s.notes.join("; ") : "");
    item("stream", s.stream);
    item("connections", s.connections);
    item("frames", s.frames);
    detailBody.appendChild(dl);
    if (s.pairs) {
      var t = el("table"), head = el("tr");
      ["pair", "start (s)", "ms", "request", "response", "frames"].forEach(function (h) { head.appendChild(el("th", h)); });
      t.appendChild(head);
      s.pairs.forEach(function (p) {
        var tr = el("tr", null, p[6] ? "bad-" + p[6] : "");
        for (var k = 0; k < 6; k++) tr.appendChild(el("td", p[k]));
        t.appendChild(tr);
      });
      detailBody.appendChild(t);
      if (s.pair_count > s.pairs.length) detailBody.appendChild(el("p", "… and " + (s.pair_count - s.pairs.length) + " more pairs"));
    }
    var zoomTo = el("button", "zoom the waterfall to this step and its calls");
    zoomTo.type = "button";
    zoomTo.addEventListener("click", function () { zoom(i); });
    detailBody.appendChild(zoomTo);
    detail.hidden = false;
  }

  // zoom: the waterfall's axis from a step's start to the end of its children (and back)
  var axis = document.querySelector(".wf-axis .wf-track"), axisTicks = axis.innerHTML;
  var unzoom = document.getElementById("unzoom");
  function place(span, t0, t1, start, end) {
    span.style.left = ((start - t0) / (t1 - t0) * 100).toFixed(3) + "%";
    span.style.width = ((end - start) / (t1 - t0) * 100).toFixed(3) + "%";
  }
  function zoom(i) {
    var s = data.steps[i], t0 = +s.start, t1 = Math.max(+(s.children_until || 0), t0 + s.ms / 1000);
    if (t1 <= t0) t1 = t0 + 0.0001;
    data.steps.forEach(function (d, k) {
      var track = rows[k].querySelector(".wf-track"), start = +d.start, end = start + d.ms / 1000;
      place(track.querySelector(".bar"), t0, t1, start, end);
      var tail = track.querySelector(".tail");
      if (tail) place(tail, t0, t1, end, +d.children_until);
      var ticks = track.querySelectorAll("i.tick");
      for (var j = 0; j < ticks.length && d.pairs; j++) place(ticks[j], t0, t1, +d.pairs[j][1], +d.pairs[j][1] + d.pairs[j][2] / 1000);
    });
    var total = (t1 - t0) * 1000, raw = total / 10, base = Math.pow(10, Math.floor(Math.log10(raw))), step = 10 * base;
    [1, 2, 5].some(function (m) { if (m * base >= raw) { step = m * base; return true; } return false; });
    axis.textContent = "";
    for (var t = Math.ceil(t0 * 1000 / step) * step; t <= t1 * 1000 + 1e-9; t += step) {
      var tick = el("span", +t.toFixed(6), "tick");
      tick.style.left = ((t / 1000 - t0) / (t1 - t0) * 100).toFixed(3) + "%";
      axis.appendChild(tick);
    }
    var depth = +rows[i].dataset.depth, k = i + 1;  // only the step and what it called
    while (k < rows.length && +rows[k].dataset.depth > depth) k++;
    rows.forEach(function (row, j) { row.classList.toggle("zoomed-away", j < i || j >= k); });
    document.querySelector(".wf").classList.add("zoomed");
    unzoom.hidden = false;
    unzoom.textContent = "back to the whole capture (zoomed to step " + s.n + ")";
  }
  unzoom.addEventListener("click", function () {
    rows.forEach(function (row) {
      row.classList.remove("zoomed-away");
      row.querySelectorAll(".wf-track > *").forEach(function (e) { e.style.cssText = e.dataset.style; });
    });
    axis.innerHTML = axisTicks;
    document.querySelector(".wf").classList.remove("zoomed");
    unzoom.hidden = true;
  });
  rows.forEach(function (row) {
    row.querySelectorAll(".wf-track > *").forEach(function (e) { e.dataset.style = e.style.cssText; });
  });

  // drill-down: a step's own diagram (its Mermaid source is in the data, made by osflow), its callers above it
  var drillBox = document.getElementById("drill"), crumbs = document.getElementById("crumbs");
  var drillParts = document.getElementById("drill-parts"), drawDrill = null, drillWaiting = null;
  function drill(i) {
    var s = data.steps[i], chain = [], k = i;
    while (k !== null) { chain.unshift(k); k = data.steps[k].parent ? data.steps[k].parent - 1 : null; }
    crumbs.textContent = "";
    var whole = el("a", "the whole flow");
    whole.href = "#diagram";
    whole.addEventListener("click", function () { drillBox.hidden = true; delete body.dataset.drill; });
    crumbs.appendChild(whole);
    chain.forEach(function (j) {
      var d = data.steps[j], label = d.n + ". " + d.client + " → " + d.server + ": " + d.request;
      crumbs.appendChild(el("span", " › ", "sep"));
      if (j === i) { crumbs.appendChild(el("b", label, "here")); return; }
      var a = el("a", label);
      a.href = "#step=" + d.n;
      crumbs.appendChild(a);
    });
    drillParts.textContent = "";
    var pres = s.diagram.map(function (source) {
      var box = el("div", null, "scroll"), pre = el("pre", source, drillBox.dataset.class);
      box.appendChild(pre);
      drillParts.appendChild(box);
      return pre;
    });
    drillBox.hidden = false;
    drillBox.dataset.step = s.n;
    body.dataset.drill = "pending";
    if (drillBox.dataset.class !== "mermaid") body.dataset.drill = "source";
    else if (drawDrill) drawDrill(pres);
    else drillWaiting = pres;
  }
  fromHash();
  detail.querySelector(".close").addEventListener("click", function () {
    detail.hidden = true;
    rows.forEach(function (r) { r.classList.remove("selected"); });
  });
  rows.forEach(function (row, i) {
    row.addEventListener("click", function (ev) {
      if (ev.target.classList.contains("tw")) { fold(i, !row.classList.contains("folded")); return; }
      show(i);
      drill(i);
      if (history.replaceState) history.replaceState(null, "", "#step=" + data.steps[i].n);
    });
    row.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); show(i); } });
  });

  // the address's fragment, parts joined with "&": "w<step>" (the timeline's links) shows that step's
  // pair, "step=<step>" that too and the step's own diagram, "zoom" with either zooms the waterfall to it, "fit" fits the diagrams to the window's width,
  // "only-<section>" shows that section alone
  // (scripts/screenshots.sh frames its pictures so)
  function hashPart(re) {
    var parts = location.hash.slice(1).split("&");
    for (var k = 0; k < parts.length; k++) { var m = re.exec(parts[k]); if (m) return m[1]; }
    return null;
  }
  function fromHash() {
    var n = hashPart(/^w(\d+)$/), step = hashPart(/^step=(\d+)$/);
    if (n === null) n = step;
    var i = n === null ? -1 : +n - 1;
    if (i < 0 || i >= rows.length) return;
    for (var k = i - 1, d = +rows[i].dataset.depth; k >= 0 && d > 0; k--) {  // unfold its callers
      if (+rows[k].dataset.depth < d) { d = +rows[k].dataset.depth; if (rows[k].classList.contains("folded")) fold(k, false); }
    }
    show(i);
    if (hashPart(/^(zoom)$/)) zoom(i);
    if (step !== null) { drill(i); drillBox.scrollIntoView(); } else rows[i].scrollIntoView({ block: "nearest" });
  }
  window.addEventListener("hashchange", fromHash);

  var only = hashPart(/^only-([a-z]+)$/);
  if (only && document.getElementById(only)) {
    body.classList.add("only");
    document.getElementById(only).classList.add("shown");
  }

  // the diagrams: drawn by mermaid's own build, inlined in this file (when osflow found one)
  function keepAnchor() {  // the diagrams' height moved what the address points at
    var target = /^#[a-z]+$/.test(location.hash) && document.getElementById(location.hash.slice(1));
    if (hashPart(/^(step=\d+)$/) && !drillBox.hidden) target = drillBox;
    if (target) target.scrollIntoView();
  }
  if (!window.mermaid) { keepAnchor(); return; }
  var failed = document.getElementById("mermaid-failed"), fit = document.getElementById("fit");
  function fitted() { document.getElementById("diagram").classList.toggle("fit", fit.checked); }
  fit.addEventListener("change", fitted);
  if (hashPart(/^(fit)$/)) fit.checked = true;
  fitted();
  window.mermaid.initialize({
    startOnLoad: false, securityLevel: "strict", theme: "default", maxTextSize: 100000,
    sequence: { useMaxWidth: false, showSequenceNumbers: true }  // no wrap: it breaks entity codes (#amp;)
  });
  function draw(nodes) {
    return window.mermaid.run({ nodes: nodes }).catch(function (e) {
      failed.textContent = "mermaid could not draw this diagram: " + (e && e.message ? e.message : e) + " (its source is below)";
      failed.hidden = false;
      body.dataset.mermaid = "failed";
    });
  }
  var parts = Array.prototype.slice.call(document.querySelectorAll("details.diagram"));
  // a closed part is drawn when it is first opened: mermaid measures text in the page, a closed one has no size
  parts.forEach(function (d) {
    d.addEventListener("toggle", function () {
      var pre = d.querySelector("pre.mermaid:not([data-processed])");
      if (d.open && pre) draw([pre]);
    });
  });
  drawDrill = function (pres) {
    var n = drillBox.dataset.step;
    window.mermaid.run({ nodes: pres }).then(function () {
      if (drillBox.dataset.step === n) body.dataset.drill = "drawn";
      keepAnchor();
    }).catch(function (e) {
      failed.textContent = "mermaid could not draw this step's diagram: " + (e && e.message ? e.message : e);
      failed.hidden = false;
      body.dataset.drill = "failed";
    });
  };
  var open = parts.filter(function (d) { return d.open; }).map(function (d) { return d.querySelector("pre.mermaid"); });
  var map = document.getElementById("map-diagram");
  if (map && map.classList.contains("mermaid")) open.unshift(map);
  if (drillWaiting) { drawDrill(drillWaiting); drillWaiting = null; }
  draw(open).then(function () {
    if (body.dataset.mermaid !== "failed") body.dataset.mermaid = "drawn";
    keepAnchor();
  });
})();
