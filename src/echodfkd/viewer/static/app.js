// EchoDFKD viewer: uploads a clip, then plays it with the mask overlaid, synced to the LV area curve.
// No external assets: frames arrive as PNG sprite sheets and everything is drawn on <canvas>.
import { COLORS, colourMask, drawCurve, drawLatency, drawPlayer, fitCanvas, fmt, loadImage, markerList } from "./draw.js";

const $ = (id) => document.getElementById(id);
const state = {
  info: null, result: null, frame: 0, playing: true, speed: 1, overlay: true,
  sheet: null, masks: {}, lastTime: null, clock: 0, curveBox: null,
};

// ---------- small helpers ----------
function setStatus(text, busy) {
  $("status").textContent = text || "";
  $("status").classList.toggle("busy", !!busy);
}
function showError(message) {
  const el = $("error");
  el.textContent = message || "";
  el.hidden = !message;
  document.body.dataset.state = message ? "error" : document.body.dataset.state;
}
function seconds(frame) { return state.result ? frame / state.result.fps : 0; }

function resizeCharts() {
  if (!state.result) return;
  state.curve = fitCanvas($("curve"));
  state.lat = fitCanvas($("latency-plot"));
}

// ---------- server calls ----------
async function callApi(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error("The viewer's server did not answer (" + err.message + "). Is `echodfkd serve` still running?");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) {
    const msg = body && (body.error || body.detail);
    throw new Error(msg ? String(msg) : "The server answered " + response.status + " " + response.statusText + ".");
  }
  return body;
}

async function loadInfo() {
  try {
    const info = await callApi("/api/info");
    state.info = info;
    const cfg = info.config || {};
    const arch = cfg.blocks ? ` (B=${cfg.blocks}, l=${cfg.layers}${cfg.params ? ", " + cfg.params.toLocaleString() + " params" : ""})` : "";
    $("model-info").textContent = `Student run ${info.model}${arch}` + (info.teacher ? " · teacher loaded" : "") +
      ` · uploads up to ${info.max_upload_mb} MB`;
    const sel = $("example");
    sel.innerHTML = "";
    for (const ex of info.examples) {
      const opt = document.createElement("option");
      opt.value = ex.name; opt.textContent = ex.label;
      sel.appendChild(opt);
    }
  } catch (err) {
    $("model-info").textContent = "";
    showError(err.message);
  }
}

// Forget the shown clip, so a refused upload never leaves the previous clip's results on screen.
function clearResult() {
  state.result = null; state.sheet = null; state.masks = {}; state.players = [];
  $("result").hidden = true;
  for (const id of ["markers", "clip-info", "latency", "alert", "alert-detail", "ef", "ef-detail", "beats-note"]) {
    $(id).textContent = "";
  }
  $("beats").querySelector("tbody").textContent = "";
}

async function analyse(request, label) {
  showError("");
  clearResult();
  document.body.dataset.state = "busy";
  setStatus(label, true);
  $("example-run").disabled = true;
  try {
    const result = await request();
    await show(result);
    setStatus(`${result.name}: ${result.frames} frames analysed in ${fmt(result.wall_s, 2)} s`);
    document.body.dataset.state = "ready";
  } catch (err) {
    clearResult();
    setStatus("");
    showError(err.message);
  } finally {
    $("example-run").disabled = false;
  }
}

function uploadFile(file) {
  const maxMb = state.info ? state.info.max_upload_mb : null;
  if (maxMb && file.size > maxMb * 1024 * 1024) {  // the server checks too; this just saves the upload
    clearResult();
    showError(`The file is too large: ${(file.size / 1048576).toFixed(1)} MB, the limit is ${maxMb} MB.`);
    document.body.dataset.state = "error";
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  analyse(() => callApi("/api/analyze", { method: "POST", body: form }), `Uploading and analysing ${file.name}…`);
}

function runExample() {
  const name = $("example").value;
  analyse(() => callApi("/api/examples/" + encodeURIComponent(name), { method: "POST" }),
    "Analysing the example (generated on first use)…");
}

// ---------- showing a result ----------
async function show(result) {
  const sheet = result.sheet;
  const frames = await loadImage(sheet.png);
  const masks = { student: await colourMask(sheet.mask_png, COLORS.student) };
  if (sheet.teacher_mask_png) masks.teacher = await colourMask(sheet.teacher_mask_png, COLORS.teacher);
  if (sheet.rv_mask_png) masks.rv = await colourMask(sheet.rv_mask_png, COLORS.rv);  // LV+RV student
  state.result = result; state.sheet = frames; state.masks = masks;
  state.frame = 0; state.clock = 0; state.lastTime = null;
  $("result").hidden = false;
  $("teacher-player").hidden = !masks.teacher;
  $("seek").max = result.frames - 1;

  // Player size: as wide as the column allows (players side by side), at most 480 px, aspect ratio kept.
  const n = masks.teacher ? 2 : 1;
  const room = Math.max(240, ($("players").clientWidth - 14 * (n - 1)) / n);
  const width = Math.round(Math.min(480, room, 480 * result.width / result.height));
  const height = Math.round(width * result.height / result.width);
  state.players = [fitCanvas($("video-student"), width, height)];
  if (masks.teacher) state.players.push(fitCanvas($("video-teacher"), width, height));

  showMarkers(result);
  showCards(result);
  resizeCharts();
  drawFrame();
}

function showMarkers(result) {
  const ul = $("markers");
  ul.innerHTML = "";
  const markers = markerList(result);
  const curve = $("curve");
  curve.dataset.frames = result.frames;
  curve.dataset.ed = (result.phases.ED || []).join(",");
  curve.dataset.es = (result.phases.ES || []).join(",");
  if (!markers.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "No ED/ES found: the area curve shows no heartbeat.";
    ul.appendChild(li);
  }
  for (const m of markers) {
    const li = document.createElement("li");
    li.dataset.phase = m.phase; li.dataset.frame = m.frame;
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `${m.phase} · frame ${m.frame} · ${fmt(seconds(m.frame), 2)} s`;
    b.title = (m.phase === "ED" ? "End-diastole (largest LV)" : "End-systole (smallest LV)") + " — click to jump";
    b.addEventListener("click", () => seek(m.frame, true));
    li.appendChild(b);
    ul.appendChild(li);
  }
  const legend = ["dashed lines: ED/ES found on the student's curve"];
  if (result.sheet && result.sheet.rv_mask_png) legend.push("violet overlay: the student's RV");
  if (result.teacher) legend.unshift("student orange, teacher cyan dashed");
  if (result.truth) legend.push("▲ on the axis: the phantom's true ED/ES");
  $("curve-legend").textContent = "— " + legend.join(" · ");
}

function showCards(r) {
  const card = $("alert-card");
  card.classList.toggle("warn", r.alert.flag);
  card.classList.toggle("ok", !r.alert.flag);
  card.dataset.flag = r.alert.flag ? "1" : "0";
  $("alert").textContent = r.alert.message;
  $("alert-detail").textContent = `Score ${fmt(r.alert.score, 2)}; the alert fires above ${fmt(r.alert.threshold, 1)}.` +
    (r.alert.calibrated ? "" : " Not calibrated for this model: built-in reference values are used.");

  const ef = r.ef;
  const untrusted = ef.trusted === false;  // the alert fired: numbers from these masks are not reliable
  $("ef").textContent = ef.value === null ? "not available" : (untrusted ? "not reliable" : `${fmt(ef.value)} %`);
  $("ef").classList.toggle("untrusted", untrusted);
  const detail = [];
  if (untrusted && ef.value !== null) {
    detail.push(`Unusual input (see the alert above): the masks, and the EF of ${fmt(ef.value)} % computed from ` +
      "them, cannot be trusted.");
  }
  const used = ef.beats.filter((b) => b.used).length;
  if (ef.value === null) detail.push(ef.reason + ".");
  else {
    detail.push(`Mean of ${used} beat${used > 1 ? "s" : ""} (listed beside the clip); ` +
      `${ef.method.replace(", mean over beats", "")}. Fractional area change ${fmt(ef.fac)} %.`);
  }
  if (r.teacher && r.teacher.ef) detail.push(`Teacher: ${r.teacher.ef.value === null ? "n/a" : fmt(r.teacher.ef.value) + " %"}.`);
  if (r.truth && r.truth.ef !== null && r.truth.ef !== undefined) detail.push(`Phantom ground truth: ${fmt(r.truth.ef)} %.`);
  $("ef-detail").textContent = detail.join(" ");

  showBeats(r);

  const L = r.latency;
  $("latency").innerHTML = "";
  const p = $("latency");
  if (L.median === null) p.textContent = "not reported";
  else {
    p.textContent = `median ${fmt(L.median, 2)} ms · p95 ${fmt(L.p95, 2)} ms · max ${fmt(L.max, 2)} ms`;
    const line = document.createElement("span");
    line.className = "small muted";
    line.style.display = "block";
    line.textContent = L.budget ? `${L.realtime ? "Keeps up with" : "Slower than"} the clip's ${fmt(r.fps, 0)} frames/s ` +
      `(budget ${fmt(L.budget, 1)} ms per frame).` : "";
    p.appendChild(line);
    const cur = document.createElement("span");
    cur.id = "latency-now"; cur.className = "small mono"; cur.style.display = "block";
    p.appendChild(cur);
  }

  const lines = [`${r.name}`, `${r.frames} frames · ${r.width}×${r.height} px · ${fmt(r.fps, 1)} frames/s · ${fmt(r.duration_s, 2)} s`,
    `mask thresholds: outline ${fmt(r.thresholds.dice, 2)}, area curve ${fmt(r.thresholds.afd, 2)}`];
  if (r.truth) lines.push(`phantom truth: ED ${r.truth.ED.join(", ")} · ES ${r.truth.ES.join(", ")}`);
  for (const w of r.warnings || []) lines.push("⚠ " + w);
  $("clip-info").innerHTML = "";
  for (const l of lines) {
    const div = document.createElement("div");
    div.textContent = l;
    $("clip-info").appendChild(div);
  }
  if (r.conversion && r.conversion.preview_png) {  // the sector found in the source (outside it blanked)
    const c = r.conversion, g = c.geometry;
    const cap = document.createElement("div");
    cap.className = "small muted";
    cap.textContent = `sector found in the ${c.source_size[1]}×${c.source_size[0]} source (green), ` +
      `crop ${g.crop_side} px at (${g.crop_x}, ${g.crop_y}) (yellow); areas at source size in conversion.areas_source`;
    const img = document.createElement("img");
    img.src = "data:image/png;base64," + c.preview_png;
    img.alt = "detected imaging sector"; img.id = "sector-preview";
    img.style.maxWidth = "240px"; img.style.display = "block";
    $("clip-info").appendChild(cap);
    $("clip-info").appendChild(img);
  }
}

function frameButton(phase, frame) {
  const b = document.createElement("button");
  b.type = "button"; b.className = phase; b.textContent = String(frame);
  b.title = `jump to ${phase} frame ${frame}`;
  b.addEventListener("click", () => seek(frame, true));
  return b;
}

function showBeats(r) {
  const body = $("beats").querySelector("tbody");
  body.innerHTML = "";
  r.ef.beats.forEach((beat, i) => {
    const tr = document.createElement("tr");
    // Every beat the ED/ES chips make is listed; one that gives no EF (or is left out of the mean) says why.
    const ef = beat.ef === null ? "–" : `${fmt(beat.ef)} %`, fac = beat.fac === null ? "–" : `${fmt(beat.fac)} %`;
    const cells = [String(i + 1), frameButton("ED", beat.ed), frameButton("ES", beat.es), ef, fac];
    for (const c of cells) {
      const td = document.createElement("td");
      if (typeof c === "string") td.textContent = c; else td.appendChild(c);
      tr.appendChild(td);
    }
    tr.dataset.used = beat.used ? "1" : "0";
    if (!beat.used) { tr.className = "unused"; tr.title = beat.note || ""; }
    body.appendChild(tr);
  });
  const notes = r.ef.beats.filter((b) => !b.used).map((b) => `beat ${r.ef.beats.indexOf(b) + 1}: ${b.note}`);
  $("beats-note").textContent = (r.ef.beats.length ? "Click a frame number to jump to it. EF: area-length volumes; " +
    "FAC: fractional area change." : "No complete beat (an ED followed by an ES) was found.") +
    (notes.length ? " " + notes.join("; ") + "." : "") +
    (r.ef.trusted === false ? " Unusual input: these values cannot be trusted." : "");
}

// ---------- drawing ----------
function drawFrame() {
  if (!state.result) return;
  const view = { result: state.result, sheet: state.sheet, frame: state.frame, overlay: state.overlay };
  drawPlayer(state.players[0], view, state.masks.student, state.masks.rv);
  if (state.players[1]) drawPlayer(state.players[1], view, state.masks.teacher);
  state.curveBox = drawCurve(state.curve, state.result, state.frame);
  $("curve").dataset.cursor = state.frame;
  const ms = drawLatency(state.lat, state.result, state.frame);
  const now = $("latency-now");
  if (now && ms !== null) now.textContent = `frame ${state.frame}: ${fmt(ms, 2)} ms`;
  $("seek").value = state.frame;
  $("frame-label").textContent = `frame ${state.frame} / ${state.result.frames - 1} · ${fmt(seconds(state.frame), 2)} s`;
}

// ---------- playback ----------
function seek(frame, pause) {
  if (!state.result) return;
  const n = state.result.frames;
  state.frame = ((Math.round(frame) % n) + n) % n;
  state.clock = state.frame / state.result.fps;
  if (pause) setPlaying(false);
  drawFrame();
}

function setPlaying(on) {
  state.playing = on;
  state.lastTime = null;
  $("play").textContent = on ? "Pause" : "Play";
}

function tick(now) {
  if (state.result && state.playing) {
    if (state.lastTime !== null) state.clock += ((now - state.lastTime) / 1000) * state.speed;
    state.lastTime = now;
    const f = Math.floor(state.clock * state.result.fps) % state.result.frames;
    if (f !== state.frame) { state.frame = f; drawFrame(); }
  }
  requestAnimationFrame(tick);
}

function curveFrameAt(event) {
  const cb = state.curveBox;
  if (!cb) return null;
  const rect = $("curve").getBoundingClientRect();
  const x = event.clientX - rect.left;
  const t = (x - cb.box.l) / (cb.w - cb.box.l - cb.box.r);
  return Math.max(0, Math.min(cb.frames - 1, Math.round(t * (cb.frames - 1))));
}

// ---------- wiring ----------
function init() {
  $("file").addEventListener("change", (e) => { if (e.target.files.length) uploadFile(e.target.files[0]); e.target.value = ""; });
  $("example-run").addEventListener("click", runExample);
  $("play").addEventListener("click", () => setPlaying(!state.playing));
  $("prev").addEventListener("click", () => seek(state.frame - 1, true));
  $("next").addEventListener("click", () => seek(state.frame + 1, true));
  $("seek").addEventListener("input", (e) => seek(Number(e.target.value), true));
  $("speed").addEventListener("change", (e) => { state.speed = Number(e.target.value); });
  $("overlay").addEventListener("change", (e) => { state.overlay = e.target.checked; drawFrame(); });
  $("curve").addEventListener("click", (e) => { const f = curveFrameAt(e); if (f !== null) seek(f, true); });
  document.addEventListener("keydown", (e) => {
    if (!state.result || ["INPUT", "SELECT", "BUTTON"].includes(e.target.tagName)) return;
    if (e.key === " ") { e.preventDefault(); setPlaying(!state.playing); }
    if (e.key === "ArrowLeft") seek(state.frame - 1, true);
    if (e.key === "ArrowRight") seek(state.frame + 1, true);
  });
  // Drop a file anywhere on the page.
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) uploadFile(e.dataTransfer.files[0]);
  });
  window.addEventListener("resize", () => { resizeCharts(); drawFrame(); });
  loadInfo();
  requestAnimationFrame(tick);
}

init();
