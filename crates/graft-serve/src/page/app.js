// The page's whole behaviour: pick or drop a photo, POST it to /predict, show the answer.
"use strict";

const $ = (id) => document.getElementById(id);
let authRequired = false;

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
}

async function classify(file) {
  if (!file) return;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("answer").hidden = true;
  setStatus("busy", "Classifying…");
  const form = new FormData();
  form.append("image", file, file.name || "photo");
  const headers = {};
  const key = $("key").value.trim();
  if (key) {
    headers["X-API-Key"] = key;
    localStorage.setItem("graft-api-key", key);
  }
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
