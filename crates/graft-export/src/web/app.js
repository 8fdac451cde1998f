// The offline page: the model runs in the browser (ONNX Runtime Web, WebAssembly), with the
// same preprocessing as graft (shorter side resized with PIL's antialiased filter, centre
// crop, normalisation), so the answer matches `graft predict` on the same photo.
"use strict";

const $ = (id) => document.getElementById(id);
let meta = null;
let session = null;

function setStatus(state, text) {
  $("result").dataset.state = state;
  $("status").textContent = text;
}

function humanClass(name) {
  return name.replace(/_+/g, " ").trim();
}

function showNetwork() {
  $("network").textContent = navigator.onLine ? "online" : "offline: classifying on this device";
}

async function load() {
  showNetwork();
  try {
    meta = await (await fetch("model.json")).json();
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
    session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
    $("model").textContent =
      `${meta.name} · ${meta.encoder} · ${meta.classes.length} classes · confident above ` +
      `${Math.round(meta.threshold * 100)}% · runs on this device`;
    document.body.dataset.ready = "true";
    if (meta.api) $("sync").hidden = false;
  } catch (e) {
    $("model").textContent = `the model could not be loaded: ${e.message || e}`;
    document.body.dataset.ready = "error";
  }
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("sw.js").then(
      () => navigator.serviceWorker.ready.then(() => { document.body.dataset.offline = "ready"; }),
      (e) => { document.body.dataset.offline = `error: ${e.message}`; },
    );
  }
}

// PIL's resampling filters, by graft's names.
const FILTERS = {
  bilinear: { support: 1, f: (x) => Math.max(0, 1 - Math.abs(x)) },
  bicubic: {
    support: 2,
    f: (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
};

// Rust's f64::round: halves away from zero (JavaScript's Math.round takes them up).
const roundAway = (v) => Math.sign(v) * Math.round(Math.abs(v));

// For each output pixel, the first input pixel and integer weights with `precision` fraction
// bits: the fixed-point convolution graft's resizer (fast_image_resize, after Pillow-SIMD)
// runs on 8-bit images, reproduced step by step so the browser sees graft's pixels exactly.
function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const fscale = Math.max(scale, 1);
  const radius = filter.support * fscale;
  const recip = 1 / fscale;
  const rows = [];
  let maxW = 0;
  for (let i = 0; i < outSize; i++) {
    const inCentre = (i + 0.5) * scale;
    const lo = Math.max(Math.floor(inCentre - radius), 0);
    const hi = Math.min(Math.ceil(inCentre + radius), inSize);
    const centre = inCentre - 0.5;
    let start = lo;
    const w = [];
    let sum = 0;
    for (let x = lo; x < hi; x++) {
      const v = filter.f((x - centre) * recip);
      if (x === start && v === 0) {
        start += 1;
      } else {
        w.push(v);
        sum += v;
      }
    }
    let size = w.length;
    while (size > 0 && w[size - 1] === 0) size -= 1;
    const norm = sum !== 0 ? w.map((v) => v / sum) : w;
    for (const v of norm) maxW = Math.max(maxW, v);
    rows.push({ start, w: norm.slice(0, size) });
  }
  let precision = 0;
  for (let p = 0; p < 22; p++) {
    precision = p;
    if (roundAway(maxW * 2 ** (p + 1)) >= 1 << 15) break;
  }
  const k = rows.map((r) => ({ start: r.start, k: r.w.map((v) => roundAway(v * 2 ** precision)) }));
  return { precision, rows: k };
}

const clip8 = (v) => Math.min(255, Math.max(0, v));

// One pass along rows (`horizontal`) or columns of an RGB image (3 values a pixel).
function pass(src, w, h, coeffs, horizontal) {
  const { precision, rows } = coeffs;
  const initial = 1 << (precision - 1);
  const [ow, oh] = horizontal ? [rows.length, h] : [w, rows.length];
  const out = new Uint8Array(ow * oh * 3);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const { start, k } = rows[horizontal ? x : y];
      for (let c = 0; c < 3; c++) {
        let acc = initial;
        for (let j = 0; j < k.length; j++) {
          const at = horizontal ? (y * w + start + j) * 3 + c : ((start + j) * w + x) * 3 + c;
          acc += src[at] * k[j];
        }
        out[(y * ow + x) * 3 + c] = clip8(acc >> precision);
      }
    }
  }
  return out;
}

// Resize an RGB image to nw × nh: columns first, then rows, rounding to 8 bits in between.
function resize(rgb, w, h, nw, nh, filter) {
  let img = rgb;
  if (nh !== h) img = pass(img, w, h, coefficients(h, nh, filter), false);
  if (nw !== w) img = pass(img, w, nh, coefficients(w, nw, filter), true);
  return img;
}

// The model's input for a decoded photo: [1, 3, size, size], normalised.
async function tensorOf(file) {
  const bitmap = await createImageBitmap(file, { premultiplyAlpha: "none", colorSpaceConversion: "none" });
  const { width: w, height: h } = bitmap;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    rgb[i * 3] = rgba[i * 4];
    rgb[i * 3 + 1] = rgba[i * 4 + 1];
    rgb[i * 3 + 2] = rgba[i * 4 + 2];
  }
  const p = meta.preprocess;
  const s = Math.max(p.resize_shorter, p.size);
  // The same integer geometry as graft's Preprocess.
  const [nw, nh] = w <= h ? [s, Math.max(Math.floor((s * h) / w), s)] : [Math.max(Math.floor((s * w) / h), s), s];
  const resized = resize(rgb, w, h, nw, nh, FILTERS[p.filter] || FILTERS.bilinear);
  const c = p.size;
  const left = Math.round((nw - c) / 2);
  const top = Math.round((nh - c) / 2);
  const plane = c * c;
  const x = new Float32Array(3 * plane);
  for (let k = 0; k < 3; k++) {
    const scale = Math.fround(1 / (255 * p.std[k]));
    const shift = Math.fround(p.mean[k] / p.std[k]);
    for (let yy = 0; yy < c; yy++) {
      for (let xx = 0; xx < c; xx++) {
        const v = resized[((top + yy) * nw + left + xx) * 3 + k];
        x[k * plane + yy * c + xx] = Math.fround(Math.fround(v * scale) - shift);
      }
    }
  }
  return new ort.Tensor("float32", x, [1, 3, c, c]);
}

// An answer on the page: `top` as [class, probability] best first, where it was computed,
// and how long it took.
function render({ top, info, source, ms, warning }) {
  const [best, p] = top[0];
  const confident = p >= meta.threshold;
  $("badge").textContent = source === "server" ? "from server" : "on this device";
  $("badge").className = source === "server" ? "badge server" : "badge";
  $("latency").textContent = `${ms.toFixed(0)} ms`;
  $("prediction").textContent = humanClass(best);
  $("prediction").dataset.class = best;
  $("confidence").dataset.probability = String(p);
  $("confidence").textContent = `${(p * 100).toFixed(1)}% ${confident ? "confident" : "— uncertain"}`;
  $("warning").hidden = confident;
  $("warning").textContent = confident ? "" : warning ||
    `uncertain: ${Math.round(p * 100)}% is below the ${Math.round(meta.threshold * 100)}% threshold. ` +
    "Retake the photo (closer, in focus, good light, one subject) or have it checked by a person.";
  const bars = $("bars");
  bars.replaceChildren();
  for (const [cls, prob] of top) {
    const row = document.createElement("div");
    row.className = "bar";
    const name = document.createElement("span");
    name.textContent = humanClass(cls);
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${(prob * 100).toFixed(1)}%`;
    track.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(prob * 100).toFixed(1)}%`;
    row.append(name, track, pct);
    bars.append(row);
  }
  const table = $("info");
  table.replaceChildren();
  table.hidden = !info;
  for (const [k, v] of Object.entries(info || {})) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = k.replace(/_/g, " ");
    const td = document.createElement("td");
    td.textContent = typeof v === "string" ? v : JSON.stringify(v);
    tr.append(th, td);
    table.append(tr);
  }
  $("answer").dataset.source = source;
  $("answer").hidden = false;
}

// The on-device answer from every class's probability.
function show({ probs, ms }) {
  const order = [...probs.keys()].sort((a, b) => probs[b] - probs[a]).slice(0, meta.top);
  const top = order.map((i) => [meta.classes[i], probs[i]]);
  render({ top, info: meta.class_info[top[0][0]], source: "device", ms });
  // Every class's probability, for checks against `graft predict`.
  $("answer").dataset.probs = JSON.stringify(Object.fromEntries(meta.classes.map((c, i) => [c, probs[i]])));
}

function apiUrl(path) {
  const base = new URL(meta.api.endsWith("/") ? meta.api : `${meta.api}/`, location.href);
  return new URL(path, base);
}

// The API's model when it differs from the one on this device and is newer: then, online,
// photos go to the server (and its audit trail) instead.
let newerServer = null;
async function checkServer() {
  newerServer = null;
  if (meta && meta.api && navigator.onLine) {
    try {
      const v = await (await fetch(apiUrl("version"))).json();
      if (v.sha256 !== meta.sha256 && (v.trained_ms || 0) > (meta.trained_ms || 0)) newerServer = v;
    } catch (e) {
      // No server: this device's model answers.
    }
  }
  document.body.dataset.server = newerServer ? "newer" : "none";
}

// The server's answer for `file`, or null when it cannot give one (then the device answers).
async function askServer(file) {
  if (!newerServer || !navigator.onLine) return null;
  try {
    const started = performance.now();
    const form = new FormData();
    form.append("image", file, file.name || "photo");
    const r = await fetch(apiUrl("predict"), { method: "POST", body: form });
    if (!r.ok) return null;
    const a = await r.json();
    const top = a.top.map((t) => [t.class, t.probability]);
    return { top, info: a.top[0] && a.top[0].info, source: "server", ms: performance.now() - started, warning: a.warning };
  } catch (e) {
    return null;
  }
}

async function classify(file) {
  if (!file) return;
  if (!session) {
    setStatus("error", "the model is not loaded yet");
    return;
  }
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("answer").hidden = true;
  setStatus("busy", "Classifying…");
  const remote = await askServer(file);
  if (remote) {
    render(remote);
    setStatus("done", `Answered by the server (a newer model) in ${Math.round(remote.ms)} ms`);
    return;
  }
  try {
    const started = performance.now();
    const input = await tensorOf(file);
    const out = await session.run({ [meta.input]: input });
    const probs = Array.from(out[meta.output].data);
    const ms = performance.now() - started;
    show({ probs, ms });
    await enqueue({ probs, ms });
    flush();
    // The encoder's pooled features, for checks against graft's own run of the same file.
    if (out.features) $("answer").dataset.features = JSON.stringify(Array.from(out.features.data));
    setStatus("done", `Answered on this device in ${Math.round(ms)} ms`);
  } catch (e) {
    setStatus("error", `This photo could not be classified: ${e.message || e}`);
  }
}

// --- The queue of predictions made here, sent to the API (model.json's `api`) when online. ---

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

let database = null;
async function queueStore(mode) {
  if (!database) {
    const open = indexedDB.open("graft-queue", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("queue", { keyPath: "seq" });
    database = await request(open);
  }
  return database.transaction("queue", mode).objectStore("queue");
}

function clientId() {
  let id = localStorage.getItem("graft-client");
  if (!id) {
    id = crypto.randomUUID();
    localStorage.setItem("graft-client", id);
  }
  return id;
}

function nextSeq() {
  const n = Number(localStorage.getItem("graft-seq") || "0") + 1;
  localStorage.setItem("graft-seq", String(n));
  return n;
}

async function showQueue() {
  if (!meta || !meta.api) return;
  const n = await request((await queueStore("readonly")).count());
  document.body.dataset.queued = String(n);
  $("sync").textContent = n ? `${n} prediction${n === 1 ? "" : "s"} waiting to be sent` : "every prediction sent";
}

async function enqueue(answer) {
  if (!meta.api) return;
  const { probs, ms } = answer;
  const order = [...probs.keys()].sort((a, b) => probs[b] - probs[a]);
  const best = order[0];
  const item = {
    seq: nextSeq(),
    made_ms: Date.now(),
    sha256: meta.sha256,
    predicted: meta.classes[best],
    probability: probs[best],
    confident: probs[best] >= meta.threshold,
    top: order.slice(0, meta.top).map((i) => [meta.classes[i], probs[i]]),
    latency_ms: ms,
  };
  await request((await queueStore("readwrite")).put(item));
}

let flushing = false;
// Send what is queued; what the server acknowledged leaves the queue, the rest waits.
async function flush() {
  if (!meta || !meta.api) return;
  if (!flushing && navigator.onLine) {
    flushing = true;
    try {
      const items = (await request((await queueStore("readonly")).getAll())).slice(0, 500);
      if (items.length) {
        const r = await fetch(apiUrl("feedback"), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ client: clientId(), predictions: items }),
        });
        if (r.ok) {
          const store = await queueStore("readwrite");
          for (const it of items) store.delete(it.seq);
          await new Promise((done) => { store.transaction.oncomplete = done; });
        }
      }
    } catch (e) {
      // Offline, or the server is away: the predictions stay queued.
    }
    flushing = false;
  }
  await showQueue();
}

for (const id of ["file", "camera"]) {
  $(id).addEventListener("change", (e) => classify(e.target.files[0]));
}
const drop = $("drop");
for (const ev of ["dragenter", "dragover"]) {
  drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const ev of ["dragleave", "drop"]) {
  drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", (e) => classify(e.dataTransfer.files[0]));
window.addEventListener("online", () => { showNetwork(); flush(); checkServer(); });
window.addEventListener("offline", () => { newerServer = null; });
window.addEventListener("offline", showNetwork);
load().then(() => {
  checkServer();
  flush();
  setInterval(flush, 15000);
});
