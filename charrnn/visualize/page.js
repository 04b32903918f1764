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
  // A model of bytes: one cell per byte (render.byte_cells), the character on its first byte
  const BYTES = D.unit === "bytes";
  const chars = BYTES ? D.cells : Array.from(D.text);  // by code point, as Python counts
  const N = chars.length, K = D.top.k;
  const raw = BYTES ? bytes(D.raw) : null, isStart = new Uint8Array(N);
  if (BYTES) D.char_start.forEach((s) => { if (s < N) isStart[s] = 1; });
  function hex(b) { return "0x" + (b < 16 ? "0" : "") + b.toString(16); }
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
  const parts = [["model", D.model], ["step", String(D.step)], ["validation loss", D.val_loss], ["text", D.source], [BYTES ? "bytes" : "characters", N.toLocaleString("en")]];
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
    if (BYTES && !isStart[i]) s.className = "cont";  // a character's later bytes
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

  // Compare with a second unit (of any array: another layer, or h against c): a band under each
  // character in that unit's colour, the character's background staying the first unit's.
  const cmpSel = $("cmp-array"), cmpIn = $("cmp-unit");
  D.arrays.forEach((A, a) => { const o = el("option", arrayName(a)); o.value = a; cmpSel.appendChild(o); });
  let cmp = { a: -1, u: 0 };  // a = -1: none
  function paintCompare() {
    if (cmp.a < 0) {
      for (let i = 0; i < N; i++) { spans[i].classList.remove("band"); spans[i].style.borderBottomColor = ""; }
      return;
    }
    const q = arrayCodes(cmp.a), off = cmp.u * N;
    for (let i = 0; i < N; i++) { spans[i].classList.add("band"); spans[i].style.borderBottomColor = actColour[q[off + i]]; }
  }
  function compare(a, u) {
    if (!(a >= 0 && a < D.arrays.length)) a = -1;
    const H = a >= 0 ? D.arrays[a].H : 1;
    cmp = { a: a, u: ((u % H) + H) % H };
    cmpSel.value = String(a);
    cmpIn.max = H - 1;
    cmpIn.value = cmp.u;
    cmpIn.disabled = a < 0;
    paintCompare();
  }
  cmpSel.addEventListener("change", () => compare(+cmpSel.value, cmp.u));
  cmpIn.addEventListener("change", () => compare(cmp.a, Math.floor(+cmpIn.value) || 0));
  cmpIn.disabled = true;

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
    head.appendChild(el("span", "  " + (BYTES ? "byte " : "character ") + (i + 1).toLocaleString("en") + " of " + N.toLocaleString("en"), "muted"));
    tip.appendChild(head);
    if (BYTES) {  // the byte itself, and the character it is part of
      let s = i;
      while (s > 0 && !isStart[s]) s--;
      tip.appendChild(el("div", "byte " + hex(raw[i]) + (isStart[i] ? "" : ", part of " + shown(chars[s]) + " from byte " + (s + 1))));
    }
    const A = D.arrays[cur.a], q = arrayCodes(cur.a)[cur.u * N + i];
    const v = (q - 128) / 127 * (A.scale ? A.scale[cur.u] : 1);
    tip.appendChild(el("div", "L" + A.layer + " " + A.state + " unit " + cur.u + ": " + (v >= 0 ? "+" : "") + v.toFixed(3)));
    if (cmp.a >= 0) {
      const B = D.arrays[cmp.a], w = (arrayCodes(cmp.a)[cmp.u * N + i] - 128) / 127 * (B.scale ? B.scale[cmp.u] : 1);
      tip.appendChild(el("div", "band: L" + B.layer + " " + B.state + " unit " + cmp.u + ": " + (w >= 0 ? "+" : "") + w.toFixed(3)));
    }
    const l = loss[i];
    tip.appendChild(el("div", l === NO_LOSS ? "loss: none (the first character; nothing predicted it)"
      : "loss here: " + (l / 1000).toFixed(3) + " nats (the model gave it " + fmtP(Math.exp(-l / 1000)) + ")"));
    tip.appendChild(el("div", "next " + (BYTES ? "byte" : "character") + ", the model's top " + K + ":", "muted"));
    const tb = el("table"), nextc = i + 1 < N ? (BYTES ? raw[i + 1] : chars[i + 1]) : null;
    for (let k = 0; k < K; k++) {
      const c = D.vocab[topIdx[i * K + k]], p = topP[i * K + k] / 65535, tr = el("tr");
      tr.appendChild(el("td", shown(c), "c"));
      tr.appendChild(el("td", fmtP(p)));
      const bar = el("td"), b = el("span", undefined, "pbar");
      b.style.width = Math.max(1, Math.round(80 * p)) + "px";
      bar.appendChild(b);
      tr.appendChild(bar);
      if ((BYTES ? D.vocab_bytes[topIdx[i * K + k]] : c) === nextc) tr.className = "hit";
      tb.appendChild(tr);
    }
    tip.appendChild(tb);
    if (nextc !== null) tip.appendChild(el("div", "actual next: " + (BYTES ? shown(byteName(nextc)) : shown(nextc)), "muted"));
    tip.style.display = "block";
    const w = tip.offsetWidth, h = tip.offsetHeight;
    tip.style.left = Math.max(4, Math.min(x + 14, window.innerWidth - w - 4)) + "px";
    tip.style.top = (y + 18 + h > window.innerHeight ? Math.max(4, y - h - 10) : y + 18) + "px";
    if (marked) marked.classList.remove("cur");
    marked = spans[i];
    marked.classList.add("cur");
  }
  function byteName(b) { return (b >= 0x20 && b < 0x7f) || b === 9 || b === 10 ? String.fromCharCode(b) : hex(b); }  // render.byte_name
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

  // Select, Match, Search (LSTMVis's Select and Match views, and a search): computed here, over
  // the 8-bit codes of the document (q = 128 + 127 · value / scale), the numbers Python stored.
  // A unit is "on" where its value ≥ t · its scale: on h (tanh's [-1, 1], scale 1) t itself; on
  // c, and on the h of mingru and minlstm (unbounded), t times that unit's largest |value| in this
  // text. On codes: q ≥ 128 + 127 · t.
  function onCode(t) { return 128 + 127 * t; }
  function value(a, u, q) { return (q - 128) / 127 * (D.arrays[a].scale ? D.arrays[a].scale[u] : 1); }
  function intIn(id, lo, hi, dflt) { const n = Math.floor(+$(id).value); return n >= lo && n <= hi ? n : dflt; }
  function numIn(id, lo, hi, dflt) { const n = +$(id).value; return $(id).value !== "" && n >= lo && n <= hi ? n : dflt; }
  // The units of array a on (≥ threshold t) over every character of [s, e) and off (< t) on
  // each of the m characters just before s and just after e (those inside the text); ranked by
  // their mean value inside minus their mean value on those outside characters, best first.
  function unitsOn(a, s, e, t, m) {
    const q = arrayCodes(a), H = D.arrays[a].H, T = onCode(t), out = [];
    const lo = Math.max(0, s - m), hi = Math.min(N, e + m);
    for (let u = 0; u < H; u++) {
      const off = u * N;
      let ok = true, sumIn = 0, sumOut = 0;
      for (let i = s; i < e; i++) { const c = q[off + i]; if (c < T) { ok = false; break; } sumIn += c; }
      if (!ok) continue;
      for (let i = lo; i < s; i++) { const c = q[off + i]; if (c >= T) { ok = false; break; } sumOut += c; }
      for (let i = e; ok && i < hi; i++) { const c = q[off + i]; if (c >= T) { ok = false; break; } sumOut += c; }
      if (!ok) continue;
      const nOut = (s - lo) + (hi - e), mIn = value(a, u, sumIn / (e - s));
      out.push({ u: u, score: mIn - (nOut ? value(a, u, sumOut / nOut) : value(a, u, 128 + 127 * t)) });
    }
    out.sort((x, y) => y.score - x.score || x.u - y.u);
    return out;
  }
  // Stretches where at least k of the units (of array a) are on together: for each character,
  // how many are on; the maximal runs with ≥ k, ranked by the mean number on, then by length.
  function matchRuns(a, units, t, k) {
    const q = arrayCodes(a), T = onCode(t), count = new Uint16Array(N), runs = [];
    units.forEach((u) => { const off = u * N; for (let i = 0; i < N; i++) if (q[off + i] >= T) count[i]++; });
    for (let i = 0; i < N;) {
      if (count[i] < k) { i++; continue; }
      let j = i, sum = 0;
      while (j < N && count[j] >= k) sum += count[j++];
      runs.push({ s: i, e: j, agree: sum / (j - i) });
      i = j;
    }
    runs.sort((x, y) => y.agree - x.agree || (y.e - y.s) - (x.e - x.s) || x.s - y.s);
    return runs;
  }
  // Code-unit offsets of JavaScript strings to characters (code points, as `chars` counts).
  let cuToCp = null;
  function charAt(cu) {
    if (!cuToCp) {
      cuToCp = new Int32Array(D.text.length + 1);
      let cp = 0;
      for (let i = 0; i < D.text.length; i++) {
        cuToCp[i] = cp;
        const h = D.text.charCodeAt(i);
        if (h >= 0xd800 && h < 0xdc00 && i + 1 < D.text.length) { cuToCp[++i] = cp; }
        cp++;
      }
      cuToCp[D.text.length] = cp;
    }
    return BYTES ? D.char_start[cuToCp[cu]] : cuToCp[cu];  // bytes: the character's first byte
  }
  // The occurrences of a string (or a regular expression) in the text, as character stretches
  // [s, e); an invalid expression throws a SyntaxError (its message is shown, one line).
  function occurrences(query, regex) {
    const found = [];
    if (!query) return found;
    if (regex) {
      const re = new RegExp(query, "gu");
      let m;
      while ((m = re.exec(D.text)) !== null) {
        if (m[0].length === 0) { re.lastIndex++; continue; }  // an empty match marks nothing
        found.push({ s: charAt(m.index), e: charAt(m.index + m[0].length) });
      }
    } else {
      for (let i = D.text.indexOf(query); i >= 0; i = D.text.indexOf(query, i + query.length))
        found.push({ s: charAt(i), e: charAt(i + query.length) });
    }
    return found;
  }
  // Every unit of every array ranked by |r|, r its Pearson correlation with the indicator of
  // "inside a stretch" (1 inside, 0 outside): the measure tracing.correlations gives the
  // built-in features (over the codes, an affine map of the values: r is the same). nan-free:
  // an indicator that is constant (nothing found, or all of the text) gives [].
  let codeStats = [];
  function stats(a) {  // per unit: the mean code and sqrt of the sum of squared deviations
    if (!codeStats[a]) {
      const q = arrayCodes(a), H = D.arrays[a].H, mean = new Float64Array(H), norm = new Float64Array(H);
      for (let u = 0; u < H; u++) {
        const off = u * N;
        let s = 0, ss = 0;
        for (let i = 0; i < N; i++) s += q[off + i];
        const mu = s / N;
        for (let i = 0; i < N; i++) { const d = q[off + i] - mu; ss += d * d; }
        mean[u] = mu;
        norm[u] = Math.sqrt(ss);
      }
      codeStats[a] = { mean: mean, norm: norm };
    }
    return codeStats[a];
  }
  function rankByIndicator(stretches, top) {
    const inside = new Uint8Array(N);
    stretches.forEach((r) => inside.fill(1, r.s, r.e));
    const idx = [];
    for (let i = 0; i < N; i++) if (inside[i]) idx.push(i);
    const M = idx.length, out = [];
    if (M === 0 || M === N) return out;
    const nf = Math.sqrt(M * (1 - M / N));  // the indicator's root sum of squared deviations
    D.arrays.forEach((A, a) => {
      const q = arrayCodes(a), st = stats(a);
      for (let u = 0; u < A.H; u++) {
        const off = u * N;
        let s = 0;
        for (let k = 0; k < M; k++) s += q[off + idx[k]];
        const r = st.norm[u] > 0 ? (s - M * st.mean[u]) / (st.norm[u] * nf) : 0;
        out.push({ a: a, u: u, r: r });
      }
    });
    out.sort((x, y) => Math.abs(y.r) - Math.abs(x.r) || x.a - y.a || x.u - y.u);
    return out.slice(0, top);
  }

  // Marks on the text: a CSS class on the character spans of some stretches.
  const marks = { match: [], found: [], chosen: [] };
  function mark(cls, stretches) {
    marks[cls].forEach((i) => spans[i].classList.remove(cls));
    marks[cls] = [];
    stretches.forEach((r) => { for (let i = r.s; i < r.e; i++) { spans[i].classList.add(cls); marks[cls].push(i); } });
  }
  function scrollTo(i) { box.scrollTop += spans[i].getBoundingClientRect().top - box.getBoundingClientRect().top - box.clientHeight / 4; }
  const SVG = $("svg").namespaceURI;  // the HTML parser gives <svg> its namespace: no address written here
  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach((k) => e.setAttribute(k, attrs[k]));
    return e;
  }
  // A unit's value over the stretch and CONTEXT characters either side: the stretch shaded, the
  // threshold a dashed line, the value a polyline on [-scale, +scale].
  const CONTEXT = 20, SW = 120, SH = 22;
  function sparkline(a, u, s, e, t) {
    const q = arrayCodes(a), lo = Math.max(0, s - CONTEXT), hi = Math.min(N, e + CONTEXT), n = hi - lo;
    const x = (i) => (n > 1 ? (i - lo) / (n - 1) * (SW - 2) + 1 : SW / 2), y = (c) => SH - 1 - (c - 1) / 254 * (SH - 2);
    const svg = svgEl("svg", { width: SW, height: SH, viewBox: "0 0 " + SW + " " + SH, "class": "spark" });
    svg.appendChild(svgEl("rect", { x: x(s) - 0.5, y: 0, width: Math.max(1, x(e - 1) - x(s) + 1), height: SH, fill: "#ffe0b2" }));
    svg.appendChild(svgEl("line", { x1: 0, x2: SW, y1: y(onCode(t)), y2: y(onCode(t)), stroke: "#888", "stroke-dasharray": "2,2" }));
    const pts = [];
    for (let i = lo; i < hi; i++) pts.push(x(i).toFixed(1) + "," + y(q[u * N + i]).toFixed(1));
    svg.appendChild(svgEl("polyline", { points: pts.join(" "), fill: "none", stroke: "#c62828", "stroke-width": 1.2 }));
    return svg;
  }
  function unitName(a, u) { return "L" + D.arrays[a].layer + " " + D.arrays[a].state + " unit " + u; }

  $("selectdoc").textContent = "Drag over a stretch of the text (or type its first and last character, counted from 1 as the tooltip does). "
    + "Units are listed that are on (value \u2265 threshold \u00d7 the unit's scale: on h, tanh's [\u22121, 1], the threshold itself; on c, and on the unbounded h of mingru and minlstm, times the unit's largest |value| here) "
    + "over every character of the stretch and off on the characters just outside it (as many each side as \u201coutside\u201d says), "
    + "in the layer chosen above, best first by their mean value inside minus their mean on those outside characters. "
    + "Match finds the other stretches where at least k of them are on together; Search ranks every unit by its correlation (r) with \u201cinside an occurrence\u201d, as the features below.";
  let found = { a: 0, units: [], t: 0.5 };
  function runSelect() {
    const note = $("sel-note"), list = $("sel-units");
    list.textContent = "";
    $("match-list").textContent = "";
    $("match-note").textContent = "";
    mark("match", []);
    const from = intIn("sel-from", 1, N, 1), to = intIn("sel-to", from, N, from);
    const t = numIn("sel-threshold", -1, 1, 0.5), m = intIn("sel-margin", 1, 3, 1), a = cur.a;
    const s = from - 1, e = to;
    const t0 = performance.now();
    const units = unitsOn(a, s, e, t, m);
    const ms = performance.now() - t0;
    found = { a: a, units: units.map((x) => x.u), t: t, s: s, e: e };
    mark("chosen", [{ s: s, e: e }]);
    note.textContent = units.length + " of the " + D.arrays[a].H + " units of " + arrayName(a) + " are on over characters "
      + from + " to " + to + " and off just outside (threshold " + t + ")" + (units.length > 50 ? "; the first 50:" : ".");
    units.slice(0, 50).forEach((x) => {
      const li = el("li");
      li.dataset.a = a;
      li.dataset.u = x.u;
      li.appendChild(el("span", unitName(a, x.u)));
      li.appendChild(sparkline(a, x.u, s, e, t));
      li.appendChild(el("span", (x.score >= 0 ? "+" : "") + x.score.toFixed(2), "r"));
      li.addEventListener("click", () => { modeSel.value = "act"; select(a, x.u); });
      list.appendChild(li);
    });
    $("match-n").textContent = String(units.length);
    $("match-k").max = Math.max(1, units.length);
    $("match-k").value = Math.max(1, units.length);  // all of them by default
    return ms;
  }
  function runMatch() {
    const note = $("match-note"), list = $("match-list");
    list.textContent = "";
    if (!found.units.length) { note.textContent = "no units to match: select a stretch first"; mark("match", []); return 0; }
    const n = found.units.length, k = intIn("match-k", 1, n, n);
    const t0 = performance.now();
    const runs = matchRuns(found.a, found.units, found.t, k);
    const ms = performance.now() - t0;
    mark("match", runs);
    note.textContent = runs.length + " stretches where at least " + k + " of the " + n + " units are on together"
      + (runs.length > 100 ? "; the first 100:" : ":");
    runs.slice(0, 100).forEach((r) => {
      const li = el("li"), ctx = el("span", undefined, "ctx"), flat = (x) => x.replace(/\n/g, "\u21b5");
      li.dataset.s = r.s;
      li.dataset.e = r.e;
      // 6 characters before, 12 after: in the panel's width the match itself must stay in sight
      // (the context is cut at its right end, never before the match begins)
      const self = r.s === found.s && r.e === found.e;
      ctx.appendChild(document.createTextNode(flat(chars.slice(Math.max(0, r.s - 6), r.s).join(""))));
      ctx.appendChild(el("b", flat(chars.slice(r.s, r.e).join(""))));
      ctx.appendChild(document.createTextNode(flat(chars.slice(r.e, r.e + 12).join(""))));
      li.appendChild(ctx);
      li.appendChild(el("span", r.agree.toFixed(1) + " on \u00b7 " + (r.e - r.s) + " ch", "r"));
      if (self) { li.classList.add("self"); li.title = "the selection itself"; }
      li.addEventListener("click", () => scrollTo(r.s));
      list.appendChild(li);
    });
    return ms;
  }
  function runSearch() {
    const note = $("search-note"), list = $("search-units");
    list.textContent = "";
    note.className = "";
    let occ;
    const t0 = performance.now();
    try {
      occ = occurrences($("search-q").value, $("search-regex").checked);
    } catch (err) {
      mark("found", []);
      note.className = "bad";
      note.textContent = "not a regular expression: " + String(err.message).split("\n")[0];
      return 0;
    }
    const ranked = rankByIndicator(occ, 15), ms = performance.now() - t0;
    mark("found", occ);
    if (!occ.length) { note.textContent = "not found in this text"; return ms; }
    note.textContent = occ.length + " occurrences; the units whose value follows \u201cinside an occurrence\u201d best, by |r|"
      + (ranked.length ? ":" : ": none (the occurrences cover the whole text)");
    ranked.forEach((x) => {
      const li = el("li");
      li.dataset.a = x.a;
      li.dataset.u = x.u;
      li.appendChild(el("span", unitName(x.a, x.u)));
      li.appendChild(el("span", (x.r >= 0 ? "+" : "") + x.r.toFixed(2), "r"));
      li.addEventListener("click", () => { modeSel.value = "act"; select(x.a, x.u); });
      list.appendChild(li);
    });
    if (occ.length) scrollTo(occ[0].s);
    return ms;
  }
  $("sel-go").addEventListener("click", runSelect);
  $("match-go").addEventListener("click", runMatch);
  $("search-go").addEventListener("click", runSearch);
  $("search-q").addEventListener("keydown", (e) => { if (e.key === "Enter") runSearch(); });
  box.addEventListener("mouseup", () => {  // a drag over the text: the characters it covers become the stretch
    const sel = window.getSelection();
    if (!sel || sel.isCollapsed || !sel.rangeCount) return;
    const r = sel.getRangeAt(0);
    // a boundary inside character i's span: before it at offset 0, after it otherwise
    const at = (node, offset) => {
      let n = node;
      while (n && n.i === undefined && n !== box) n = n.parentNode;
      if (n && n.i !== undefined) return offset > 0 ? n.i + 1 : n.i;
      if (node === box) {  // between the box's children: the next span's index
        for (let k = offset; k < box.childNodes.length; k++) if (box.childNodes[k].i !== undefined) return box.childNodes[k].i;
        return N;
      }
      let p = node;  // a text node of the box (a line break's): after the span before it
      while (p && p.i === undefined) p = p.previousSibling;
      return p ? p.i + 1 : 0;
    };
    const s = at(r.startContainer, r.startOffset), e = at(r.endContainer, r.endOffset);
    if (e <= s) return;
    $("sel-from").value = s + 1;
    $("sel-to").value = e;
    runSelect();
  });
  $("sel-to").max = N;
  $("sel-from").max = N;
  // For tests and measurements: the computations alone, on plain arguments.
  window.charrnnColours = { act: actColour.slice() };  // code -> colour, for tests: what paint() and the band use
  window.charrnnFind = { unitsOn: unitsOn, matchRuns: matchRuns, occurrences: occurrences, rankByIndicator: rankByIndicator,
    runSelect: runSelect, runMatch: runMatch, runSearch: runSearch };

  // Start at the best-ranked unit, or where the address says: #a=ARRAY&u=UNIT&mode=loss&tip=CHAR,
  // and ca=ARRAY&cu=UNIT for the unit compared with
  // (numbers only are read from it), so that a view can be linked to.
  const first = D.ranking.length ? D.ranking[0] : { array: 0, unit: 0 };
  const want = {};
  location.hash.slice(1).split("&").forEach((kv) => { const [k, v] = kv.split("="); want[k] = v; });
  const num = (v, lo, hi, dflt) => { const n = parseInt(v, 10); return n >= lo && n <= hi ? n : dflt; };
  if (want.mode === "loss") modeSel.value = "loss";
  const a0 = num(want.a, 0, D.arrays.length - 1, first.array);
  select(a0, num(want.u, 0, D.arrays[a0].H - 1, a0 === first.array ? first.unit : 0));
  const ca = num(want.ca, 0, D.arrays.length - 1, -1);
  if (ca >= 0) compare(ca, num(want.cu, 0, D.arrays[ca].H - 1, 0));
  const t0 = num(want.tip, 0, N - 1, -1);
  if (t0 >= 0) {
    box.scrollTop += spans[t0].getBoundingClientRect().top - box.getBoundingClientRect().top - box.clientHeight / 4;
    pinned = t0;
    showAt(t0);
  }
  document.body.dataset.readyMs = Math.round(performance.now());  // time to a painted page, for measuring
})();
