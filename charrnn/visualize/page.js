"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const $ = (id) => document.getElementById(id);
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function bytes(b64) {
    const s = atob(b64), a = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }
  function u16(b64) {  // little-endian, as written (every browser's typed arrays are)
    const b = bytes(b64);
    return new Uint16Array(b.buffer, 0, b.length >> 1);
  }
  const chars = Array.from(D.text);  // by code point, as Python counts
  const N = chars.length, K = D.top.k;
  const topIdx = D.top.dtype === "u8" ? bytes(D.top.idx) : u16(D.top.idx);
  const topP = u16(D.top.p), loss = u16(D.loss);
  const NO_LOSS = 65535, LOSS_MAX = 5000;  // millinats; colours saturate at 5 nats
  const codes = [];  // decoded lazily: a layer of H = 512 over 10,000 characters is 5 MB
  function arrayCodes(a) {
    if (!codes[a]) codes[a] = bytes(D.arrays[a].q);
    return codes[a];
  }
  function arrayName(a) {
    const A = D.arrays[a];
    return "layer " + A.layer + " " + (A.state === "h" ? "h (hidden state)" : A.state === "c" ? "c (cell state)" : A.state);
  }
  function shown(c) {
    return c === " " ? "\u2423 (space)" : c === "\n" ? "\u21b5 (line break)" : c === "\t" ? "\u21e5 (tab)" : c;
  }

  // Header
  $("title").textContent = "charrnn visualize \u2014 " + D.checkpoint;
  const meta = $("meta");
  const parts = [["model", D.model], ["step", String(D.step)], ["validation loss", D.val_loss], ["text", D.source], ["characters", N.toLocaleString("en")]];
  parts.forEach(([k, v], i) => {
    if (v === null || v === undefined) return;
    if (meta.childNodes.length) meta.appendChild(document.createTextNode("  \u00b7  "));
    meta.appendChild(document.createTextNode(k + " "));
    meta.appendChild(el("b", v));
  });

  // Colours: 256 for activation codes (blue - white - red), 256 for loss (white - purple)
  function mix(a, b, t) { return a.map((x, i) => Math.round(x + (b[i] - x) * t)); }
  const WHITE = [255, 255, 255], RED = [214, 40, 40], BLUE = [33, 102, 200], PURPLE = [123, 31, 162];
  // The text on each colour: black or white, whichever contrasts more (WCAG 2's relative
  // luminance and contrast ratio). One of them always reaches sqrt(21) = 4.58:1, above the
  // 4.5:1 of level AA: black text on the saturated blue, red or purple would not.
  function luminance(rgb) {
    const [r, g, b] = rgb.map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }
  function ink(rgb) { const L = luminance(rgb); return (L + 0.05) / 0.05 >= 1.05 / (L + 0.05) ? "#000" : "#fff"; }
  const actColour = [], lossColour = [], actInk = [], lossInk = [];
  for (let q = 0; q < 256; q++) {
    const v = Math.max(-1, Math.min(1, (q - 128) / 127));
    const c = v >= 0 ? mix(WHITE, RED, v * 0.85) : mix(WHITE, BLUE, -v * 0.85), p = mix(WHITE, PURPLE, 0.85 * q / 255);
    actColour.push("rgb(" + c + ")");
    actInk.push(ink(c));
    lossColour.push("rgb(" + p + ")");
    lossInk.push(ink(p));
  }

  // The text, one span per character, put on screen as text only
  const box = $("text"), spans = new Array(N), frag = document.createDocumentFragment();
  for (let i = 0; i < N; i++) {
    const c = chars[i], s = el("span", c === "\n" ? "\u21b5" : c);
    s.i = i;
    spans[i] = s;
    frag.appendChild(s);
    if (c === "\n") { s.className = "nl"; frag.appendChild(document.createTextNode("\n")); }
  }
  box.appendChild(frag);

  // Controls
  const arraySel = $("array"), unitIn = $("unit"), modeSel = $("mode");
  D.arrays.forEach((A, a) => { const o = el("option", arrayName(a)); o.value = a; arraySel.appendChild(o); });
  let cur = { a: 0, u: 0 };
  const present = D.features.map((f) => f.present);

  function paint() {
    const A = D.arrays[cur.a], H = A.H;
    if (modeSel.value === "loss") {
      for (let i = 0; i < N; i++) {
        const l = loss[i], k = Math.min(255, Math.round(255 * l / LOSS_MAX));
        spans[i].style.backgroundColor = l === NO_LOSS ? "" : lossColour[k];
        spans[i].style.color = l === NO_LOSS ? "#000" : lossInk[k];  // on the page's white where nothing is coloured
      }
      $("lo").textContent = "0 nats";
      $("hi").textContent = "\u2265 5 nats";
      $("bar").style.background = "linear-gradient(to right, " + lossColour[0] + ", " + lossColour[255] + ")";
    } else {
      const q = arrayCodes(cur.a), off = cur.u * N;
      for (let i = 0; i < N; i++) { spans[i].style.backgroundColor = actColour[q[off + i]]; spans[i].style.color = actInk[q[off + i]]; }
      const s = A.scale ? A.scale[cur.u] : 1;
      $("lo").textContent = (-s).toPrecision(2);
      $("hi").textContent = "+" + s.toPrecision(2);
      $("bar").style.background = "linear-gradient(to right, " + actColour[1] + ", " + actColour[128] + ", " + actColour[255] + ")";
    }
    const info = $("unitinfo");
    info.textContent = "";
    const row = A.corr[cur.u], bits = [];
    D.features.forEach((f, j) => { if (present[j] && row[j] !== null) bits.push(f.name + " " + (row[j] >= 0 ? "+" : "") + row[j].toFixed(2)); });
    info.textContent = arrayName(cur.a) + ", unit " + cur.u + " of " + H + ": r with " + (bits.length ? bits.join(", ") : "no feature present in this text");
    document.querySelectorAll("#ranking li").forEach((li) => li.classList.toggle("sel", +li.dataset.a === cur.a && +li.dataset.u === cur.u));
  }
  function select(a, u) {
    const H = D.arrays[a].H;
    cur = { a: a, u: ((u % H) + H) % H };
    arraySel.value = String(a);
    unitIn.max = H - 1;
    unitIn.value = cur.u;
    paint();
  }
  arraySel.addEventListener("change", () => select(+arraySel.value, cur.u));
  unitIn.addEventListener("change", () => select(cur.a, Math.floor(+unitIn.value) || 0));
  $("prev").addEventListener("click", () => select(cur.a, cur.u - 1));
  $("next").addEventListener("click", () => select(cur.a, cur.u + 1));
  modeSel.addEventListener("change", paint);
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "ArrowRight") select(cur.a, cur.u + 1);
    else if (e.key === "ArrowLeft") select(cur.a, cur.u - 1);
  });

  // Ranked units
  $("rankdoc").textContent = "Each unit's value over this text is correlated (Pearson r) with simple features of the text listed below; for each feature the " + D.per_feature + " units that follow it best are listed, all ordered by |r|. |r| near 1: the unit follows the feature closely; near 0: not at all. A high r says the unit goes with the feature here, not that this is all it does. Click one to colour the text by it.";
  const ol = $("ranking");
  if (!D.ranking.length) ol.appendChild(el("li", "none of the features occurs in this text"));
  D.ranking.forEach((p) => {
    const li = el("li");
    li.dataset.a = p.array;
    li.dataset.u = p.unit;
    li.appendChild(el("span", "L" + D.arrays[p.array].layer + " " + D.arrays[p.array].state + " unit " + p.unit + ": " + p.feature));
    li.appendChild(el("span", (p.r >= 0 ? "+" : "") + p.r.toFixed(2), "r"));
    li.addEventListener("click", () => { modeSel.value = "act"; select(p.array, p.unit); });
    ol.appendChild(li);
  });
  $("featdoc").textContent = D.features.map((f) => f.name + ": " + f.doc + (f.present ? "." : " (not in this text)."))
    .join(" ");

  // Tooltip: the character, the unit's value, its loss, the five likeliest next characters
  const tip = $("tip");
  let pinned = null, marked = null;
  function fmtP(p) { return (100 * p).toFixed(p < 0.001 ? 2 : 1) + "%"; }
  function show(i, x, y) {
    tip.textContent = "";
    const head = el("div");
    head.appendChild(el("span", shown(chars[i]), "ch"));
    head.appendChild(el("span", "  character " + (i + 1).toLocaleString("en") + " of " + N.toLocaleString("en"), "muted"));
    tip.appendChild(head);
    const A = D.arrays[cur.a], q = arrayCodes(cur.a)[cur.u * N + i];
    const v = (q - 128) / 127 * (A.scale ? A.scale[cur.u] : 1);
    tip.appendChild(el("div", "L" + A.layer + " " + A.state + " unit " + cur.u + ": " + (v >= 0 ? "+" : "") + v.toFixed(3)));
    const l = loss[i];
    tip.appendChild(el("div", l === NO_LOSS ? "loss: none (the first character; nothing predicted it)"
      : "loss here: " + (l / 1000).toFixed(3) + " nats (the model gave it " + fmtP(Math.exp(-l / 1000)) + ")"));
    tip.appendChild(el("div", "next character, the model's top " + K + ":", "muted"));
    const tb = el("table"), nextc = i + 1 < N ? chars[i + 1] : null;
    for (let k = 0; k < K; k++) {
      const c = D.vocab[topIdx[i * K + k]], p = topP[i * K + k] / 65535, tr = el("tr");
      tr.appendChild(el("td", shown(c), "c"));
      tr.appendChild(el("td", fmtP(p)));
      const bar = el("td"), b = el("span", undefined, "pbar");
      b.style.width = Math.max(1, Math.round(80 * p)) + "px";
      bar.appendChild(b);
      tr.appendChild(bar);
      if (c === nextc) tr.className = "hit";
      tb.appendChild(tr);
    }
    tip.appendChild(tb);
    if (nextc !== null) tip.appendChild(el("div", "actual next: " + shown(nextc), "muted"));
    tip.style.display = "block";
    const w = tip.offsetWidth, h = tip.offsetHeight;
    tip.style.left = Math.max(4, Math.min(x + 14, window.innerWidth - w - 4)) + "px";
    tip.style.top = (y + 18 + h > window.innerHeight ? Math.max(4, y - h - 10) : y + 18) + "px";
    if (marked) marked.classList.remove("cur");
    marked = spans[i];
    marked.classList.add("cur");
  }
  function hide() { tip.style.display = "none"; if (marked) marked.classList.remove("cur"); marked = null; }
  box.addEventListener("mousemove", (e) => { if (pinned === null && e.target.i !== undefined) show(e.target.i, e.clientX, e.clientY); });
  box.addEventListener("mouseleave", () => { if (pinned === null) hide(); });
  box.addEventListener("click", (e) => {  // a tap pins the tooltip; a tap elsewhere unpins it
    if (e.target.i !== undefined && pinned !== e.target.i) { pinned = e.target.i; show(pinned, e.clientX, e.clientY); }
    else { pinned = null; hide(); }
  });
  function showAt(i) {  // beside character i wherever it is on screen
    const r = spans[i].getBoundingClientRect();
    show(i, r.left, r.bottom - 14);
  }
  box.addEventListener("scroll", () => { if (pinned !== null) showAt(pinned); });  // a pinned tooltip follows its character

  // Start at the best-ranked unit, or where the address says: #a=ARRAY&u=UNIT&mode=loss&tip=CHAR
  // (numbers only are read from it), so that a view can be linked to.
  const first = D.ranking.length ? D.ranking[0] : { array: 0, unit: 0 };
  const want = {};
  location.hash.slice(1).split("&").forEach((kv) => { const [k, v] = kv.split("="); want[k] = v; });
  const num = (v, lo, hi, dflt) => { const n = parseInt(v, 10); return n >= lo && n <= hi ? n : dflt; };
  if (want.mode === "loss") modeSel.value = "loss";
  const a0 = num(want.a, 0, D.arrays.length - 1, first.array);
  select(a0, num(want.u, 0, D.arrays[a0].H - 1, a0 === first.array ? first.unit : 0));
  const t0 = num(want.tip, 0, N - 1, -1);
  if (t0 >= 0) {
    box.scrollTop += spans[t0].getBoundingClientRect().top - box.getBoundingClientRect().top - box.clientHeight / 4;
    pinned = t0;
    showAt(t0);
  }
  document.body.dataset.readyMs = Math.round(performance.now());  // time to a painted page, for measuring
})();
