// The page's whole behaviour: pick or drop a photo, POST it to /predict, show the answer;
// on request, POST it to /explain and lay the heatmap over the photo.
"use strict";

const $ = (id) => document.getElementById(id);
let authRequired = false;
let canExplain = false;
// The photo shown, its object URL, and its explanation once fetched.
let current = { file: null, url: "", explained: null };

function setStatus(state, text) {
  $("result").dataset.state = state;
  $("status").textContent = text;
}

function humanClass(name) {
  return name.replace(/_+/g, " ").trim();
}

async function loadVersion() {
  try {
    const r = await fetch("/version");
    const v = await r.json();
    authRequired = v.auth_required;
    canExplain = Boolean(v.explain);
    $("model").textContent =
      `${v.model} · ${v.encoder} · ${v.classes.length} classes · confident above ${Math.round(v.threshold * 100)}%`;
    $("key-box").hidden = !authRequired;
    const saved = localStorage.getItem("graft-api-key");
    if (saved) $("key").value = saved;
  } catch (e) {
    $("model").textContent = "the server did not answer /version";
  }
}

function showAnswer(a) {
  $("prediction").textContent = humanClass(a.prediction);
  $("confidence").textContent = `${(a.probability * 100).toFixed(1)}% ${a.confident ? "confident" : "— uncertain"}`;
  $("warning").hidden = a.confident;
  $("warning").textContent = a.warning || "";
  const bars = $("bars");
  bars.replaceChildren();
  for (const t of a.top) {
    const row = document.createElement("div");
    row.className = "bar";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = humanClass(t.class);
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = `${(t.probability * 100).toFixed(1)}%`;
    track.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(t.probability * 100).toFixed(1)}%`;
    row.append(name, track, pct);
    bars.append(row);
  }
  const info = $("info");
  info.replaceChildren();
  const fields = a.top[0] && a.top[0].info;
  info.hidden = !fields;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = k.replace(/_/g, " ");
      const td = document.createElement("td");
      td.textContent = typeof v === "string" ? v : JSON.stringify(v);
      tr.append(th, td);
      info.append(tr);
    }
  }
  $("answer").hidden = false;
  $("explain-box").hidden = !canExplain;
}

function keyHeaders() {
  const headers = {};
  const key = $("key").value.trim();
  if (key) {
    headers["X-API-Key"] = key;
    localStorage.setItem("graft-api-key", key);
  }
  return headers;
}

function setExplainState(state, text, suspicious) {
  $("explain-box").dataset.state = state;
  const note = $("explain-note");
  note.textContent = text || "";
  note.hidden = !text;
  note.classList.toggle("suspicious", Boolean(suspicious));
}

function describe(e) {
  const m = e.metrics;
  const drop = Math.round(m.confidence_drop * 100);
  let text = `${e.method === "attention" ? "Attention" : "Grad-CAM"} for ${humanClass(e.explained)} ` +
    `(the model's ${e.layer}; it sees the centre crop). Hiding the hot region lowers its ` +
    `probability by ${drop}%; deletion AUC ${m.deletion_auc.toFixed(2)} (lower is better).`;
  if (e.suspicious) text += ` Suspicious: ${e.reasons.join("; ")}.`;
  return text;
}

async function toggleExplain() {
  const on = $("explain").checked;
  const preview = $("preview");
  if (!on) {
    preview.src = current.url;
    setExplainState("off", "");
    return;
  }
  if (!current.explained) {
    const file = current.file;
    setExplainState("busy", "Looking where the model looked…");
    const form = new FormData();
    form.append("image", file, file.name || "photo");
    try {
      const r = await fetch("/explain", { method: "POST", body: form, headers: keyHeaders() });
      const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
      if (file !== current.file) return; // another photo came meanwhile
      if (!r.ok) {
        $("explain").checked = false;
        setExplainState("error", body.error || `HTTP ${r.status}`);
        return;
      }
      current.explained = body;
    } catch (e) {
      $("explain").checked = false;
      setExplainState("error", `The server could not be reached: ${e.message}`);
      return;
    }
  }
  if (!$("explain").checked) return;
  preview.src = `data:image/png;base64,${current.explained.overlay_png}`;
  setExplainState("shown", describe(current.explained), current.explained.suspicious);
}

async function classify(file) {
  if (!file) return;
  const preview = $("preview");
  if (current.url) URL.revokeObjectURL(current.url);
  current = { file, url: URL.createObjectURL(file), explained: null };
  preview.src = current.url;
  preview.hidden = false;
  $("answer").hidden = true;
  $("explain").checked = false;
  setExplainState("off", "");
  setStatus("busy", "Classifying…");
  const form = new FormData();
  form.append("image", file, file.name || "photo");
  const headers = keyHeaders();
  try {
    const started = performance.now();
    const r = await fetch("/predict", { method: "POST", body: form, headers });
    const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) {
      if (r.status === 401) $("key-box").hidden = false;
      setStatus("error", body.error || `HTTP ${r.status}`);
      return;
    }
    showAnswer(body);
    setStatus("done", `Answered in ${Math.round(performance.now() - started)} ms`);
  } catch (e) {
    setStatus("error", `The server could not be reached: ${e.message}`);
  }
}

$("explain").addEventListener("change", toggleExplain);
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
document.addEventListener("paste", (e) => {
  const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item) classify(item.getAsFile());
});
loadVersion();
