// The model live in the page: charrnn/model.py's forward pass, one character at a time (B = 1),
// over the float32 weights of the document's "live" entry (charrnn/visualize/weights.py).
// The names and the order of operations are model.py's and charrnn/cells/*.py's; the equations
// are docs/math.md's ("Forward", "LSTM", "GRU", "Multiplicative integration", "Layer normalization",
// "minGRU and minLSTM", "Residual connections"). Numbers are
// JavaScript's float64 over the float32 weights. Text the user types is only ever data here:
// it is looked up in the vocabulary and shown through textContent, never as markup.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const $ = (id) => document.getElementById(id);
  const W = D.live;
  const note = $("live-note");
  if (!W || W.omitted) {  // too large (or a page without weights): say why, leave the box out
    note.textContent = "The live model is not in this page: " + (W ? W.omitted : "no weights in it") + ".";
    $("live-box").hidden = true;
    window.charrnn = { vocab: D.vocab.slice(), omitted: W ? W.omitted : "no weights" };
    return;
  }
  function floats(b64) {  // float32, little-endian, as weights.pack wrote them (every browser's typed arrays are)
    const s = atob(b64), b = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
    return new Float32Array(b.buffer, 0, b.length >> 2);
  }
  const params = {};
  for (const name in W.params) params[name] = floats(W.params[name].f32);
  const cell = W.cell, L = W.layers, H = W.H, V = W.V, MI = W.multiplicative, LN = !!W.layer_norm, RES = !!W.residual;
  const G = { rnn: 1, lstm: 4, gru: 3, mingru: 2, minlstm: 3 }[cell];  // the cell's GATES
  const vocab = D.vocab.slice();
  const index = new Map(vocab.map((c, i) => [c, i]));
  const pname = (base, layer) => (layer === 0 ? base : base + "_" + layer);  // model.pname

  // out[i] = Σ_j A[row0 + i, j] x[j] for rows row0 .. row0 + n - 1 of A (·, cols), row-major.
  function matvec(A, cols, row0, n, x, out) {
    for (let i = 0; i < n; i++) {
      let s = 0;
      const r = (row0 + i) * cols;
      for (let j = 0; j < cols; j++) s += A[r + j] * x[j];
      out[i] = s;
    }
    return out;
  }
  // Column v of A (rows, cols) plus b: Wxh x_t + bh for a one-hot x_t (model.prepare's xa_table row v).
  function column(A, b, rows, cols, v) {
    const out = new Float64Array(rows);
    for (let i = 0; i < rows; i++) out[i] = A[i * cols + v] + b[i];
    return out;
  }
  // charrnn/layernorm.py's forward, in place: each of the blocks of H values of a (from a[off])
  // normalized over its H units (mean 0, variance 1, ε = 1e-5 inside the root), times gain[goff ..].
  function layerNorm(a, off, blocks, gain, goff) {
    for (let k = 0; k < blocks; k++) {
      const o = off + k * H;
      let mu = 0, v = 0;
      for (let j = 0; j < H; j++) mu += a[o + j];
      mu /= H;
      for (let j = 0; j < H; j++) v += (a[o + j] - mu) * (a[o + j] - mu);
      const rstd = 1 / Math.sqrt(v / H + 1e-5);
      for (let j = 0; j < H; j++) a[o + j] = (a[o + j] - mu) * rstd * gain[goff + k * H + j];
    }
    return a;
  }
  // σ(a) as the cells compute it, 0.5 (1 + tanh(a/2)): never overflows.
  const sigmoid = (a) => 0.5 * (1 + Math.tanh(0.5 * a));
  // The paper's g of minGRU and minLSTM (cells/mingru.py): a + 0.5 for a ≥ 0, σ(a) below.
  const g = (a) => (a >= 0 ? a + 0.5 : sigmoid(a));
  // log σ(a) = min(a, 0) - log(1 + e^{-|a|}), without overflow (cells/mingru.py's log_sigmoid).
  const logSigmoid = (a) => Math.min(a, 0) - Math.log1p(Math.exp(-Math.abs(a)));

  // One step of each cell (charrnn/cells/*.py's forward loop body, B = 1). xa = Wxh x_t + bh
  // (gx ⊙ N(Wxh x_t) + bh with layer norm), xm = Wmx x_t + bm or null; s = the layer's state,
  // [h] or [h, c]; n = the layer's layer-norm parameters {gh, gc, bc} or null; returns the new state.
  const STEP = {
    rnn(xa, xm, s, Whh, n) {  // docs/math.md, Forward: h_t = tanh(m_t ⊙ (Whh h_{t-1}) + Wxh x_t + bh)
      const [hprev] = s;
      const a = matvec(Whh, H, 0, H, hprev, new Float64Array(H));  // Whh h_{t-1}
      if (xm) for (let k = 0; k < H; k++) a[k] *= xm[k];
      if (n) layerNorm(a, 0, 1, n.gh, 0);  // gh ⊙ N(·)
      const h = new Float64Array(H);
      for (let k = 0; k < H; k++) h[k] = Math.tanh(a[k] + xa[k]);
      return [h];
    },
    lstm(xa, xm, s, Whh, n) {  // docs/math.md, LSTM; blocks i, f, g, o
      const [hprev, cprev] = s;
      const a = matvec(Whh, H, 0, 4 * H, hprev, new Float64Array(4 * H));  // W h_{t-1}, all four blocks
      if (xm) for (let k = 0; k < 4 * H; k++) a[k] *= xm[k];  // m_t ⊙ W h_{t-1}
      if (n) layerNorm(a, 0, 4, n.gh, 0);  // gh ⊙ N(·), block by block
      for (let k = 0; k < 4 * H; k++) {
        a[k] += xa[k];  // + U x_t + b
        a[k] = k >= 2 * H && k < 3 * H ? Math.tanh(a[k]) : sigmoid(a[k]);  // g = tanh; i, f, o = σ
      }
      const c = new Float64Array(H), h = new Float64Array(H);
      for (let k = 0; k < H; k++) {
        const i = a[k], f = a[H + k], g = a[2 * H + k];
        c[k] = f * cprev[k] + i * g;  // c_t = f ⊙ c_{t-1} + i ⊙ g
      }
      // h_t = o ⊙ tanh(c_t), or with layer norm o ⊙ tanh(gc ⊙ N(c_t) + bc) (c_t itself is carried raw)
      const u = n ? layerNorm(Float64Array.from(c), 0, 1, n.gc, 0) : c;
      for (let k = 0; k < H; k++) h[k] = a[3 * H + k] * Math.tanh(n ? u[k] + n.bc[k] : u[k]);
      return [h, c];
    },
    gru(xa, xm, s, Whh, n) {  // docs/math.md, GRU; blocks r, z, h̃
      const [hprev] = s;
      const rz = matvec(Whh, H, 0, 2 * H, hprev, new Float64Array(2 * H));  // W_r h_{t-1}, W_z h_{t-1}
      if (xm) for (let k = 0; k < 2 * H; k++) rz[k] *= xm[k];
      if (n) layerNorm(rz, 0, 2, n.gh, 0);  // gh_rz ⊙ N(·), the r and z blocks each
      for (let k = 0; k < 2 * H; k++) rz[k] = sigmoid(rz[k] + xa[k]);  // r, z
      const rh = new Float64Array(H);
      for (let k = 0; k < H; k++) rh[k] = rz[k] * hprev[k];  // r ⊙ h_{t-1}
      const hc = matvec(Whh, H, 2 * H, H, rh, new Float64Array(H));  // W_h (r ⊙ h_{t-1})
      if (xm) for (let k = 0; k < H; k++) hc[k] *= xm[2 * H + k];
      if (n) layerNorm(hc, 0, 1, n.gh, 2 * H);  // gh_h ⊙ N(·)
      const h = new Float64Array(H);
      for (let k = 0; k < H; k++) {
        hc[k] = Math.tanh(hc[k] + xa[2 * H + k]);  // h̃
        h[k] = hc[k] + rz[H + k] * (hprev[k] - hc[k]);  // z ⊙ h_{t-1} + (1 - z) ⊙ h̃, as the cell writes it
      }
      return [h];
    },
    mingru(xa, xm, s) {  // docs/math.md, minGRU; blocks z, h̃; no recurrent weights
      const [hprev] = s;
      const h = new Float64Array(H);
      for (let k = 0; k < H; k++) {
        const z = sigmoid(xa[k]), hc = g(xa[H + k]);
        h[k] = (1 - z) * hprev[k] + z * hc;  // as the scan: a ⊙ h_{t-1} + b
      }
      return [h];
    },
    minlstm(xa, xm, s) {  // docs/math.md, minLSTM; blocks f, i, h̃; no recurrent weights
      const [hprev] = s;
      const h = new Float64Array(H);
      for (let k = 0; k < H; k++) {
        // f' = f / (f + i) = σ(d), d = log σ(a_f) - log σ(a_i), as the cell computes it
        const fn = sigmoid(logSigmoid(xa[k]) - logSigmoid(xa[H + k])), hc = g(xa[2 * H + k]);
        h[k] = fn * hprev[k] + (1 - fn) * hc;
      }
      return [h];
    },
  };

  function zeroState() {  // model.zero_state for one stream
    return Array.from({ length: L }, () => Array.from({ length: cell === "lstm" ? 2 : 1 }, () => new Float64Array(H)));
  }
  // model.forward for one character index v: each layer reads the layer below's output; returns the
  // new state, with the top layer's output as its .top.
  function step(state, v) {
    const next = [];
    let x = null;
    for (let layer = 0; layer < L; layer++) {
      // Whh is undefined for mingru and minlstm (weights.pack writes what model.param_shapes lists)
      const Wxh = params[pname("Wxh", layer)], Whh = params[pname("Whh", layer)], bh = params[pname("bh", layer)];
      const D_ = layer === 0 ? V : H;
      let xa, xm = null;
      if (layer === 0) {
        if (LN) {  // gx ⊙ N(Wxh x_t) + bh: model.prepare's table row v
          xa = layerNorm(column(Wxh, new Float64Array(G * H), G * H, D_, v), 0, G, params.gx, 0);
          for (let k = 0; k < G * H; k++) xa[k] += bh[k];
        } else xa = column(Wxh, bh, G * H, D_, v);  // Wxh x_t + bh: column x_t of Wxh
        if (MI) xm = column(params.Wmx, params.bm, G * H, D_, v);  // m_t = Wmx x_t + bm
      } else {
        xa = matvec(Wxh, D_, 0, G * H, x, new Float64Array(G * H));
        if (LN) layerNorm(xa, 0, G, params[pname("gx", layer)], 0);  // gx ⊙ N(Wxh x_t)
        for (let k = 0; k < G * H; k++) xa[k] += bh[k];
        if (MI) {
          const bm = params[pname("bm", layer)];
          xm = matvec(params[pname("Wmx", layer)], D_, 0, G * H, x, new Float64Array(G * H));
          for (let k = 0; k < G * H; k++) xm[k] += bm[k];
        }
      }
      const n = LN ? { gh: params[pname("gh", layer)], gc: params[pname("gc", layer)], bc: params[pname("bc", layer)] }
        : null;
      const s = STEP[cell](xa, xm, state[layer], Whh, n);
      next.push(s);
      if (RES && layer > 0) {  // y_l = h_l + x_l (model.py's residual connections); the state stays h_l
        const y = new Float64Array(H);
        for (let k = 0; k < H; k++) y[k] = s[0][k] + x[k];
        x = y;
      } else x = s[0];  // no dropout at inference
    }
    next.top = x;  // the top layer's output, which the softmax reads
    return next;
  }
  function logits(state) {  // Why y + by, of the top layer's output (h_t, or h_t + x_t with residual)
    const z = matvec(params.Why, H, 0, V, state.top, new Float64Array(V));
    for (let k = 0; k < V; k++) z[k] += params.by[k];
    return z;
  }
  // softmax(z / temperature), through the largest (model.target_log_probs, sampling.probabilities).
  function softmax(z, temperature) {
    const t = temperature === undefined ? 1 : temperature;
    let m = -Infinity;
    for (const v of z) m = Math.max(m, v);
    const e = new Float64Array(z.length);
    let s = 0;
    for (let k = 0; k < z.length; k++) { e[k] = Math.exp((z[k] - m) / t); s += e[k]; }
    for (let k = 0; k < z.length; k++) e[k] /= s;
    return e;
  }
  function encode(text) {  // data.encode: by code point; a character the model has not seen is an error
    return Array.from(String(text), (c) => {
      if (!index.has(c)) throw new Error("character " + JSON.stringify(c) + " is not in the model's vocabulary");
      return index.get(c);
    });
  }
  function read(text) {  // the state after reading text from the zero state
    let state = zeroState();
    for (const v of encode(text)) state = step(state, v);
    return state;
  }
  function probabilities(text) {
    const idx = encode(text);
    if (idx.length === 0) throw new Error("probabilities: give at least one character to read");
    return Array.from(softmax(logits(read(text))));
  }
  // evaluate.evaluate with its defaults (charrnn eval): characters 1..N-1 predicted from the ones
  // before them, in B = min(32, N - 1) streams of L = ceil((N - 1) / B) pairs, each from a zero state.
  function loss(text, batchSize) {
    const data = encode(text), pairs = data.length - 1;
    if (pairs < 1) throw new Error("loss: need at least two characters to evaluate");
    const B = Math.min(batchSize || 32, pairs), Lb = Math.ceil(pairs / B);
    let total = 0;
    for (let b = 0; b < B; b++) {
      let state = zeroState();
      for (let t = Lb * b; t < Math.min(Lb * (b + 1), pairs); t++) {
        state = step(state, data[t]);
        const z = logits(state);
        let m = -Infinity, s = 0;
        for (const v of z) m = Math.max(m, v);
        for (const v of z) s += Math.exp(v - m);
        total -= z[data[t + 1]] - m - Math.log(s);  // log p[y] = z[y] - log Σ e^z
      }
    }
    return total / pairs;
  }
  function mulberry32(seed) {  // a small seeded PRNG: the same seed, the same text
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6D2B79F5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function draw(p, u) {  // the index where the cumulative probability passes u
    let c = 0;
    for (let k = 0; k < p.length; k++) { c += p[k]; if (u < c) return k; }
    return p.length - 1;
  }
  // prime, then length characters drawn at temperature (0: the likeliest each time) with seed.
  function generate(prime, length, temperature, seed) {
    const rand = mulberry32(seed === undefined ? 0 : seed);
    if (encode(prime).length === 0) throw new Error("generate: give a prime of at least one character");
    let state = read(prime);
    let out = "";
    for (let n = 0; n < length; n++) {
      const z = logits(state);
      let v;
      if (temperature === 0) v = z.indexOf(Math.max(...z));
      else v = draw(softmax(z, temperature), rand());
      out += vocab[v];
      state = step(state, v);
    }
    return out;
  }
  function top(p, k) {  // the k likeliest indices, likeliest first
    return Array.from(p.keys()).sort((a, b) => p[b] - p[a] || a - b).slice(0, k);
  }
  window.charrnn = { vocab, cell, layers: L, H, V, multiplicative: MI, layer_norm: LN, residual: RES, probabilities, loss, generate,
    top };

  // The box: generate, or choose each next character from the top five.
  const shown = (c) => (c === " " ? "\u2423" : c === "\n" ? "\u21b5" : c === "\t" ? "\u21e5" : c);
  const out = $("live-out"), error = $("live-error"), choices = $("live-choices");
  function fail(e) { error.textContent = String(e.message || e); }
  function showChoices() {
    choices.replaceChildren();
    error.textContent = "";
    let p;
    try { p = probabilities(out.textContent); } catch (e) { fail(e); return; }
    for (const k of top(p, 5)) {
      const b = document.createElement("button");
      b.textContent = shown(vocab[k]) + " " + (100 * p[k]).toFixed(1) + "%";
      b.dataset.k = k;
      b.addEventListener("click", () => { out.textContent += vocab[k]; showChoices(); });
      choices.appendChild(b);
    }
  }
  $("live-generate").addEventListener("click", () => {
    error.textContent = "";
    choices.replaceChildren();
    const prime = $("live-prime").value, t0 = performance.now();
    try {
      const length = Math.max(0, Math.min(10000, parseInt($("live-length").value, 10) || 0));
      const text = generate(prime, length, Math.max(0, parseFloat($("live-temperature").value) || 0),
        parseInt($("live-seed").value, 10) || 0);
      out.textContent = prime + text;
      out.dataset.charsPerS = Math.round(length / Math.max(1e-3, (performance.now() - t0) / 1000));
    } catch (e) { fail(e); }
  });
  $("live-choose").addEventListener("click", () => { out.textContent = $("live-prime").value; showChoices(); });
  $("live-type").addEventListener("input", (ev) => {  // a typed character, as a click would add it
    const c = Array.from(ev.target.value)[0];
    ev.target.value = "";
    if (c === undefined) return;
    if (!index.has(c)) { fail(new Error("character " + JSON.stringify(c) + " is not in the model's vocabulary")); return; }
    out.textContent += c;
    showChoices();
  });
  note.textContent = "The model itself runs in this page (" + W.cell + ", " + L + " layer(s) of " + H +
    (MI ? ", multiplicative" : "") + (LN ? ", layer norm" : "") + (RES ? ", residual" : "") + "; " + (W.bytes / 1e6).toFixed(2) + " MB of float32 weights).";
})();
