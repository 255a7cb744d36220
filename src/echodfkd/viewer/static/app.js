// EchoDFKD viewer: uploads a clip, then plays it with the mask overlaid, synced to the LV area curve.
// No external assets: frames arrive as PNG sprite sheets and everything is drawn on <canvas>.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = {
  student: [255, 138, 61], teacher: [61, 214, 224],
  ED: "#6cb6ff", ES: "#ff6b8a", grid: "#2e343e", text: "#9aa3ad", line: "#ff8a3d", tline: "#3dd6e0",
  cursor: "#e6e8eb", budget: "#f2b233",
};
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
function fmt(x, digits = 1) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }
function seconds(frame) { return state.result ? frame / state.result.fps : 0; }

function fitCanvas(canvas, cssWidth, cssHeight) {
  // Back the canvas with device pixels so lines stay sharp on HiDPI screens.
  const dpr = window.devicePixelRatio || 1;
  if (cssWidth) canvas.style.width = cssWidth + "px";
  if (cssHeight) canvas.style.height = cssHeight + "px";
  const rect = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(rect.width * dpr));
  canvas.height = Math.max(1, Math.round(rect.height * dpr));
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w: rect.width, h: rect.height };
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not decode the frames"));
    img.src = src;
  });
}

// Turn a mask sheet (0 outside, 128 inside, 255 boundary) into a coloured, half-transparent sheet.
async function colourMask(src, rgb) {
  const img = await loadImage(src);
  const c = document.createElement("canvas");
  c.width = img.width; c.height = img.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, c.width, c.height);
  const px = data.data;
  for (let i = 0; i < px.length; i += 4) {
    const v = px[i];
    px[i] = rgb[0]; px[i + 1] = rgb[1]; px[i + 2] = rgb[2];
    px[i + 3] = v >= 192 ? 255 : v >= 64 ? 70 : 0;
  }
  ctx.putImageData(data, 0, 0);
  return c;
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
    $("model-info").textContent = `student ${info.model}${arch}` + (info.teacher ? " · teacher loaded" : "") +
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

async function analyse(request, label) {
  showError("");
  document.body.dataset.state = "busy";
  setStatus(label, true);
  $("example-run").disabled = true;
  try {
    const result = await request();
    await show(result);
    setStatus(`${result.name}: ${result.frames} frames analysed in ${fmt(result.wall_s, 2)} s`);
    document.body.dataset.state = "ready";
  } catch (err) {
    setStatus("");
    showError(err.message);
  } finally {
    $("example-run").disabled = false;
  }
}

function uploadFile(file) {
  const maxMb = state.info ? state.info.max_upload_mb : null;
  if (maxMb && file.size > maxMb * 1024 * 1024) {  // the server checks too; this just saves the upload
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

function markerList(result) {
  const list = [];
  for (const phase of ["ED", "ES"]) for (const f of result.phases[phase] || []) list.push({ phase, frame: f });
  return list.sort((a, b) => a.frame - b.frame);
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
  $("curve-legend").textContent = result.teacher ? "— student (orange), teacher (cyan, dashed)" : "";
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
  $("ef").textContent = ef.value === null ? "not available" : `${fmt(ef.value)} %`;
  const detail = [];
  if (ef.value === null) detail.push(ef.reason + ".");
  else {
    detail.push(`Mean of ${ef.beats.length} beat${ef.beats.length > 1 ? "s" : ""} (listed beside the clip); ` +
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
    const cells = [String(i + 1), frameButton("ED", beat.ed), frameButton("ES", beat.es), `${fmt(beat.ef)} %`, `${fmt(beat.fac)} %`];
    for (const c of cells) {
      const td = document.createElement("td");
      if (typeof c === "string") td.textContent = c; else td.appendChild(c);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  });
  $("beats-note").textContent = r.ef.beats.length ? "Click a frame number to jump to it. EF: area-length volumes; " +
    "FAC: fractional area change." : "No complete beat (an ED followed by an ES) was found.";
}

// ---------- drawing ----------
function drawPlayer(player, maskCanvas) {
  const r = state.result, s = r.sheet, f = state.frame;
  const sx = (f % s.columns) * s.tile_width, sy = Math.floor(f / s.columns) * s.tile_height;
  const { ctx, w, h } = player;
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(state.sheet, sx, sy, s.tile_width, s.tile_height, 0, 0, w, h);
  if (state.overlay && maskCanvas) ctx.drawImage(maskCanvas, sx, sy, s.tile_width, s.tile_height, 0, 0, w, h);
  const phase = phaseAt(f);
  ctx.font = "600 13px system-ui, sans-serif";
  ctx.fillStyle = "rgba(0,0,0,.55)";
  ctx.fillRect(6, 6, phase ? 118 : 78, 22);
  ctx.fillStyle = "#fff";
  ctx.fillText(`frame ${f}`, 12, 22);
  if (phase) { ctx.fillStyle = COLORS[phase]; ctx.fillText(phase, 88, 22); }
}

function phaseAt(f) {
  const p = state.result.phases;
  if ((p.ED || []).includes(f)) return "ED";
  if ((p.ES || []).includes(f)) return "ES";
  return null;
}

function resizeCharts() {
  if (!state.result) return;
  state.curve = fitCanvas($("curve"));
  state.lat = fitCanvas($("latency-plot"));
}

function drawCurve() {
  const r = state.result, { ctx, w, h } = state.curve;
  const series = [r.areas].concat(r.teacher ? [r.teacher.areas] : []);
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const v of s) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  const pad = (hi - lo) * 0.08 || 1;
  lo = Math.max(0, lo - pad); hi += pad;
  const box = { l: 74, r: 12, t: 22, b: 30 };
  const X = (i) => box.l + (r.frames > 1 ? i / (r.frames - 1) : 0.5) * (w - box.l - box.r);
  const Y = (v) => box.t + (1 - (v - lo) / (hi - lo)) * (h - box.t - box.b);
  state.curveBox = { box, w, frames: r.frames };
  ctx.clearRect(0, 0, w, h);

  // grid and axes
  ctx.strokeStyle = COLORS.grid; ctx.fillStyle = COLORS.text; ctx.lineWidth = 1;
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (let k = 0; k <= 4; k++) {
    const v = lo + (hi - lo) * k / 4, y = Y(v);
    ctx.beginPath(); ctx.moveTo(box.l, y); ctx.lineTo(w - box.r, y); ctx.stroke();
    ctx.fillText(Math.round(v).toLocaleString(), box.l - 6, y);
  }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  const step = Math.max(1, Math.ceil(r.frames / 10 / 5) * 5);
  for (let f = 0; f < r.frames; f += step) ctx.fillText(String(f), X(f), h - box.b + 6);
  ctx.save();
  ctx.translate(10, (box.t + h - box.b) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle"; ctx.fillText("area (pixels)", 0, 0);
  ctx.restore();
  ctx.textAlign = "right"; ctx.textBaseline = "top";
  ctx.fillText("frame", w - box.r, h - 12);

  // ED/ES markers: a vertical line and a label above the plot
  ctx.textAlign = "center"; ctx.textBaseline = "bottom"; ctx.font = "600 11px system-ui, sans-serif";
  let lastLabel = -Infinity;
  for (const m of markerList(r)) {
    ctx.strokeStyle = COLORS[m.phase]; ctx.fillStyle = COLORS[m.phase];
    ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(X(m.frame), box.t); ctx.lineTo(X(m.frame), h - box.b); ctx.stroke();
    ctx.setLineDash([]);
    if (X(m.frame) - lastLabel >= 20) { ctx.fillText(m.phase, X(m.frame), box.t - 3); lastLabel = X(m.frame); }
    ctx.beginPath(); ctx.arc(X(m.frame), Y(r.areas[m.frame]), 4, 0, 2 * Math.PI); ctx.fill();
  }
  // phantom ground truth as small ticks on the frame axis
  if (r.truth) {
    for (const phase of ["ED", "ES"]) for (const f of r.truth[phase] || []) {
      ctx.fillStyle = COLORS[phase];
      ctx.beginPath();
      ctx.moveTo(X(f), h - box.b); ctx.lineTo(X(f) - 4, h - box.b + 6); ctx.lineTo(X(f) + 4, h - box.b + 6);
      ctx.fill();
    }
  }

  // the curves
  const plot = (values, colour, dash) => {
    ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.setLineDash(dash);
    ctx.beginPath();
    values.forEach((v, i) => (i ? ctx.lineTo(X(i), Y(v)) : ctx.moveTo(X(i), Y(v))));
    ctx.stroke(); ctx.setLineDash([]);
  };
  if (r.teacher) plot(r.teacher.areas, COLORS.tline, [6, 4]);
  plot(r.areas, COLORS.line, []);

  // playback cursor
  const f = state.frame;
  ctx.strokeStyle = COLORS.cursor; ctx.lineWidth = 1.5;
  ctx.beginPath(); ctx.moveTo(X(f), box.t); ctx.lineTo(X(f), h - box.b); ctx.stroke();
  ctx.fillStyle = COLORS.cursor;
  ctx.beginPath(); ctx.arc(X(f), Y(r.areas[f]), 4.5, 0, 2 * Math.PI); ctx.fill();
  $("curve").dataset.cursor = f;
}

function drawLatency() {
  const r = state.result, { ctx, w, h } = state.lat, lat = r.latency_ms || [];
  ctx.clearRect(0, 0, w, h);
  if (!lat.length) return;
  const budget = r.latency.budget || 0;
  const hi = Math.max(...lat, budget) * 1.1 || 1;
  const X = (i) => (lat.length > 1 ? i / (lat.length - 1) : 0.5) * (w - 2) + 1;
  const Y = (v) => h - 2 - (v / hi) * (h - 6);
  ctx.strokeStyle = COLORS.line; ctx.lineWidth = 1.2;
  ctx.beginPath();
  lat.forEach((v, i) => (i ? ctx.lineTo(X(i), Y(v)) : ctx.moveTo(X(i), Y(v))));
  ctx.stroke();
  if (budget) {
    ctx.strokeStyle = COLORS.budget; ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(0, Y(budget)); ctx.lineTo(w, Y(budget)); ctx.stroke(); ctx.setLineDash([]);
    // label on a dark box just above the line (below it when the line is at the top)
    const label = `real-time budget ${fmt(budget, 0)} ms`, y = Y(budget);
    ctx.font = "10px system-ui, sans-serif";
    const tw = ctx.measureText(label).width, ty = y > 14 ? y - 13 : y + 2;
    ctx.fillStyle = "rgba(29,33,40,.85)"; ctx.fillRect(w - tw - 6, ty, tw + 6, 12);
    ctx.fillStyle = COLORS.budget; ctx.textAlign = "right"; ctx.textBaseline = "top";
    ctx.fillText(label, w - 3, ty + 1);
  }
  const f = Math.min(state.frame, lat.length - 1);
  ctx.fillStyle = COLORS.cursor;
  ctx.beginPath(); ctx.arc(X(f), Y(lat[f]), 3, 0, 2 * Math.PI); ctx.fill();
  const now = $("latency-now");
  if (now) now.textContent = `frame ${f}: ${fmt(lat[f], 2)} ms`;
}

function drawFrame() {
  if (!state.result) return;
  drawPlayer(state.players[0], state.masks.student);
  if (state.players[1]) drawPlayer(state.players[1], state.masks.teacher);
  drawCurve();
  drawLatency();
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
    if (!state.result || e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
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
