"use strict";
// The answers table and the gallery, paged client-side from the embedded JSON.
// Texts are only ever set with textContent (never innerHTML): an answer cannot inject markup.
(function () {
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var C = {};
  DATA.columns.forEach(function (name, i) { C[name] = i; });
  var PAGE = 50, GPAGE = 24;
  var STOP = new Set("the a an and or of to in on for with is are was were be by as at it this that what how why who which does do can from into about tell me".split(" "));

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"); }
  function topScore(r) {
    var s = r[C.sources];
    return s && s.length ? Math.max.apply(null, s.map(function (x) { return x[1]; })) : null;
  }
  function terms(text) {
    var seen = new Set();
    (String(text || "").toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || []).forEach(function (w) {
      if (!STOP.has(w)) seen.add(w);
    });
    return Array.from(seen);
  }
  function escapeRe(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }
  // The snippet with the question's words marked, built as text nodes and <mark> elements.
  function highlighted(text, words) {
    var p = el("p");
    if (!words.length) { p.textContent = text; return p; }
    var re = new RegExp("(" + words.map(escapeRe).join("|") + ")", "giu");
    var last = 0, m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) p.appendChild(document.createTextNode(text.slice(last, m.index)));
      p.appendChild(el("mark", null, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) p.appendChild(document.createTextNode(text.slice(last)));
    return p;
  }

  // --- answers table -------------------------------------------------------------------
  var table = document.getElementById("tasks");
  var body = table.querySelector("tbody");
  var all = DATA.rows.slice();
  var view = all, page = 0, sortCol = "task_id", sortDir = 1;
  var keyOf = {
    task_id: function (r) { return r[C.task_id] || ""; },
    status: function (r) { return r[C.status] || ""; },
    question: function (r) { return (r[C.question] || "").toLowerCase(); },
    tokens: function (r) { return r[C.tokens]; },
    latency_ms: function (r) { return r[C.latency_ms]; },
    score: topScore,
    cache_hit: function (r) { return r[C.cache_hit] ? 1 : 0; },
  };
  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;   // missing values last, either direction
    if (b === null || b === undefined) return -1;
    return (a < b ? -1 : 1) * sortDir;
  }
  function sortRows() {
    var key = keyOf[sortCol];
    view.sort(function (x, y) { return compare(key(x), key(y)) || (x[C.task_id] < y[C.task_id] ? -1 : 1); });
  }
  function filterRows() {
    var q = document.getElementById("q").value.trim().toLowerCase();
    var st = document.getElementById("status").value;
    view = all.filter(function (r) {
      if (st && r[C.status] !== st) return false;
      if (!q) return true;
      return [r[C.task_id], r[C.question], r[C.answer], r[C.error]].some(function (v) {
        return v && String(v).toLowerCase().indexOf(q) >= 0;
      });
    });
    sortRows();
    page = 0;
    draw();
  }
  function details(r) {
    var tr = el("tr", "more"), td = el("td");
    td.colSpan = 7;
    if (r[C.answer]) td.appendChild(el("div", "answer", r[C.answer]));
    if (r[C.error]) td.appendChild(el("div", "err", r[C.error]));
    var src = r[C.sources] || [];
    if (src.length) {
      var words = terms(r[C.question]), ul = el("ul", "sources");
      src.forEach(function (s, i) {
        var chunk = DATA.chunks[s[0]], li = el("li"), head = el("div", "src");
        head.appendChild(el("b", null, "[" + (i + 1) + "] " + (chunk[1] || "?")));
        head.appendChild(el("span", null, "score " + s[1]));
        head.appendChild(el("span", "mono", chunk[0]));
        li.appendChild(head);
        li.appendChild(chunk[2] ? highlighted(chunk[2], words) : el("p", "dim", "(snippet not embedded: see the chunks table)"));
        ul.appendChild(li);
      });
      td.appendChild(ul);
    }
    var meta = [r[C.model] ? "model " + r[C.model] : null, r[C.image] ? "image " + r[C.image] : null].filter(Boolean);
    if (meta.length) td.appendChild(el("div", "sub", meta.join(" · ")));
    tr.appendChild(td);
    return tr;
  }
  function row(r) {
    var tr = el("tr", "row");
    tr.appendChild(el("td", "tid", r[C.task_id]));
    var st = el("td");
    st.appendChild(el("span", "badge " + (r[C.status] === "ok" ? "ok" : "error"), r[C.status]));
    tr.appendChild(st);
    var q = el("td", "wide");
    q.appendChild(el("div", "q", r[C.question] || "(no question)"));
    tr.appendChild(q);
    tr.appendChild(el("td", "num", fmt(r[C.tokens])));
    tr.appendChild(el("td", "num", r[C.latency_ms] === null ? "—" : fmt(r[C.latency_ms]) + " ms"));
    var ts = topScore(r);
    tr.appendChild(el("td", "num", ts === null ? "—" : ts.toFixed(3)));
    var hit = el("td");
    if (r[C.cache_hit] === true) hit.appendChild(el("span", "badge hit", "hit"));
    else hit.textContent = r[C.cache_hit] === false ? "miss" : "—";
    tr.appendChild(hit);
    tr.addEventListener("click", function () {
      var next = tr.nextSibling;
      if (next && next.classList && next.classList.contains("more")) { next.remove(); tr.classList.remove("open"); }
      else { tr.after(details(r)); tr.classList.add("open"); }
    });
    return tr;
  }
  function draw() {
    var pages = Math.max(1, Math.ceil(view.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    var start = page * PAGE, slice = view.slice(start, start + PAGE);
    var frag = document.createDocumentFragment();
    slice.forEach(function (r) { frag.appendChild(row(r)); });
    if (!slice.length) {
      var tr = el("tr"), td = el("td", "empty", all.length ? "No task matches the filter." : "This run wrote no results.");
      td.colSpan = 7; tr.appendChild(td); frag.appendChild(tr);
    }
    body.replaceChildren(frag);
    document.getElementById("shown").textContent = view.length
      ? "Showing " + fmt(start + 1) + "–" + fmt(start + slice.length) + " of " + fmt(view.length) + (view.length < all.length ? " (filtered from " + fmt(all.length) + ")" : "")
      : "";
    document.getElementById("page").textContent = "page " + (page + 1) + " of " + pages;
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = page >= pages - 1;
  }
  table.querySelectorAll("th[data-col]").forEach(function (th) {
    th.addEventListener("click", function () {
      var col = th.getAttribute("data-col");
      sortDir = col === sortCol ? -sortDir : 1;
      sortCol = col;
      table.querySelectorAll("th[data-col]").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", sortDir === 1 ? "ascending" : "descending");
      sortRows(); page = 0; draw();
    });
  });
  document.getElementById("prev").addEventListener("click", function () { page -= 1; draw(); });
  document.getElementById("next").addEventListener("click", function () { page += 1; draw(); });
  var timer = null;
  document.getElementById("q").addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(filterRows, 150); });
  document.getElementById("status").addEventListener("change", filterRows);
  sortRows();
  draw();

  // --- gallery and lightbox ------------------------------------------------------------
  var gallery = document.getElementById("gallery"), gpage = 0;
  var box = document.getElementById("lightbox"), boxImg = document.getElementById("lb-img");
  function open(img) {
    boxImg.onerror = function () { if (img.thumb && boxImg.src !== img.thumb) boxImg.src = img.thumb; };
    boxImg.src = img.href || img.thumb;
    boxImg.alt = img.prompt || img.task_id;
    document.getElementById("lb-title").textContent = img.task_id + (img.width ? "  ·  " + img.width + "×" + img.height : "");
    document.getElementById("lb-prompt").textContent = img.prompt_used || img.prompt || "";
    var link = document.getElementById("lb-open");
    link.hidden = !img.href;
    if (img.href) link.href = img.href;
    box.hidden = false;
  }
  box.addEventListener("click", function (e) { if (e.target.id !== "lb-open") box.hidden = true; });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") box.hidden = true; });
  function tile(img) {
    var t = el("figure", "tile");
    t.style.margin = "0";
    var thumbSrc = img.thumb || img.href;
    var b;
    if (img.status === "ok" && thumbSrc) {
      b = el("button", "thumb");
      b.type = "button";
      b.title = "open full size";
      var im = el("img");
      im.loading = "lazy"; im.decoding = "async"; im.alt = img.prompt || img.task_id;
      im.onerror = function () {  // a linked file moved or deleted: say so instead of a broken icon
        b.replaceChildren(el("span", "missing", "image file not found: " + img.href));
        b.disabled = true;
      };
      im.src = thumbSrc;
      b.appendChild(im);
      b.addEventListener("click", function () { open(img); });
    } else {
      b = el("div", "thumb failed", img.error || img.status);
    }
    t.appendChild(b);
    var cap = el("figcaption", "cap");
    cap.appendChild(el("b", null, img.task_id));
    cap.appendChild(el("p", null, img.prompt || ""));
    if (img.prompt_used && img.prompt_used !== img.prompt) cap.appendChild(el("p", "used", "refined: " + img.prompt_used));
    t.appendChild(cap);
    return t;
  }
  function drawGallery() {
    var pages = Math.max(1, Math.ceil(DATA.images.length / GPAGE));
    gpage = Math.min(Math.max(gpage, 0), pages - 1);
    var frag = document.createDocumentFragment();
    DATA.images.slice(gpage * GPAGE, (gpage + 1) * GPAGE).forEach(function (img) { frag.appendChild(tile(img)); });
    gallery.replaceChildren(frag);
    document.getElementById("gpage").textContent = (gpage + 1) + " / " + pages;
    document.getElementById("gprev").disabled = gpage === 0;
    document.getElementById("gnext").disabled = gpage >= pages - 1;
  }
  if (gallery) {
    document.getElementById("gprev").addEventListener("click", function () { gpage -= 1; drawGallery(); });
    document.getElementById("gnext").addEventListener("click", function () { gpage += 1; drawGallery(); });
    drawGallery();
  }
})();
