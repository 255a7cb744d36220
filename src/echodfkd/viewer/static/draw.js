// Drawing for the EchoDFKD viewer: sprite-sheet frames with the mask overlaid, the area curve, latency.
// Pure functions of their arguments; app.js owns the state and calls them on every frame.

export const COLORS = {
  student: [255, 138, 61], teacher: [61, 214, 224], rv: [170, 120, 255],
  ED: "#6cb6ff", ES: "#ff6b8a", grid: "#2e343e", text: "#9aa3ad", line: "#ff8a3d", tline: "#3dd6e0",
  cursor: "#e6e8eb", budget: "#f2b233",
};

export function fmt(x, digits = 1) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }

export function fitCanvas(canvas, cssWidth, cssHeight) {
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

export function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not decode the frames"));
    img.src = src;
  });
}

// Turn a mask sheet (0 outside, 128 inside, 255 boundary) into a coloured, half-transparent sheet.
export async function colourMask(src, rgb) {
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

export function markerList(result) {
  const list = [];
  for (const phase of ["ED", "ES"]) for (const f of result.phases[phase] || []) list.push({ phase, frame: f });
  return list.sort((a, b) => a.frame - b.frame);
}

export function drawPlayer(player, view, maskCanvas, extraMask = null) {
  const r = view.result, s = r.sheet, f = view.frame;
  const sx = (f % s.columns) * s.tile_width, sy = Math.floor(f / s.columns) * s.tile_height;
  const { ctx, w, h } = player;
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(view.sheet, sx, sy, s.tile_width, s.tile_height, 0, 0, w, h);
  if (view.overlay && maskCanvas) ctx.drawImage(maskCanvas, sx, sy, s.tile_width, s.tile_height, 0, 0, w, h);
  if (view.overlay && extraMask) ctx.drawImage(extraMask, sx, sy, s.tile_width, s.tile_height, 0, 0, w, h);
  const phase = phaseAt(r, f);
  ctx.font = "600 13px system-ui, sans-serif";
  ctx.fillStyle = "rgba(0,0,0,.55)";
  ctx.fillRect(6, 6, phase ? 118 : 78, 22);
  ctx.fillStyle = "#fff";
  ctx.fillText(`frame ${f}`, 12, 22);
  if (phase) { ctx.fillStyle = COLORS[phase]; ctx.fillText(phase, 88, 22); }
}

function phaseAt(result, f) {
  const p = result.phases;
  if ((p.ED || []).includes(f)) return "ED";
  if ((p.ES || []).includes(f)) return "ES";
  return null;
}

// Draws the area curve(s), every ED/ES marker and the playback cursor; returns the plot box (for clicks).
export function drawCurve(curve, r, f) {
  const { ctx, w, h } = curve;
  const series = [r.areas].concat(r.teacher ? [r.teacher.areas] : []);
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const v of s) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  const pad = (hi - lo) * 0.08 || 1;
  lo = Math.max(0, lo - pad); hi += pad;
  const box = { l: 74, r: 12, t: 22, b: 30 };
  const X = (i) => box.l + (r.frames > 1 ? i / (r.frames - 1) : 0.5) * (w - box.l - box.r);
  const Y = (v) => box.t + (1 - (v - lo) / (hi - lo)) * (h - box.t - box.b);
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
  ctx.strokeStyle = COLORS.cursor; ctx.lineWidth = 1.5;
  ctx.beginPath(); ctx.moveTo(X(f), box.t); ctx.lineTo(X(f), h - box.b); ctx.stroke();
  ctx.fillStyle = COLORS.cursor;
  ctx.beginPath(); ctx.arc(X(f), Y(r.areas[f]), 4.5, 0, 2 * Math.PI); ctx.fill();
  return { box, w, frames: r.frames };
}

// Draws the per-frame latency with the real-time budget line; returns the current frame's latency.
export function drawLatency(plot, r, frame) {
  const { ctx, w, h } = plot, lat = r.latency_ms || [];
  ctx.clearRect(0, 0, w, h);
  if (!lat.length) return null;
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
  const f = Math.min(frame, lat.length - 1);
  ctx.fillStyle = COLORS.cursor;
  ctx.beginPath(); ctx.arc(X(f), Y(lat[f]), 3, 0, 2 * Math.PI); ctx.fill();
  return lat[f];
}
