"""OUT/report.md of a reproduce run, rendered from its collected metrics (reproduce.summary.collect).

Takes only the metrics dict, so the report package needs nothing from the reproduce orchestrator.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from echodfkd.io.atomic import save_text
from echodfkd.report.tables import fmt, fmt_ci, fmt_params, markdown


def _afd_cells(row: dict) -> list[str]:
    full, clean = row.get("full") or {}, row.get("clean") or {}
    return [fmt_ci(full.get("aFD_ED"), full.get("aFD_ED_ci90")), fmt_ci(full.get("aFD_ES"), full.get("aFD_ES_ci90")),
            fmt(clean.get("aFD_ED")), fmt(clean.get("aFD_ES")), fmt(full.get("n_clips"), 0),
            fmt(clean.get("n_clips"), 0)]


def render(m: dict[str, Any]) -> str:
    """report.md from the collected metrics."""
    inp, checks = m["inputs"], m["checks"]
    lines = ["# EchoDFKD reproduction report", "",
             f"- EchoNet-Dynamic: `{inp['dynamic']}`; training clips: `{inp['training']}`",
             f"- Teacher: `{inp['teacher'].get('checkpoint')}` ({inp['teacher'].get('arch', '?')}, "
             f"{fmt_params(inp['teacher'].get('params'))})",
             f"- Students: {', '.join(f'({b},{l})' for b, l in inp['grid'])}; at most {inp['epochs_max']} epochs at "
             f"{inp['frame_size']} px, inference at {inp['infer_size']} px",
             f"- Main student: {m['main_student'] or '—'}", ""]
    for note in m["notes"]:
        lines += [f"> Note: {note}", ""]
    lines += ["## Dataset checks", "", markdown(["Folder", "Videos", "Without problems", "Problems by reason"], [
        [k, c.get("videos", "—"), c.get("usable", "—"),
         ", ".join(f"{r} {n}" for r, n in (c.get("by_reason") or {}).items()) or "none"]
        for k, c in checks.items()]),
        "The EchoNet-Dynamic problem clips (`check/dynamic.csv`) define the clean subset; no clip is removed "
        "from the full test set.", ""]
    lines += ["## Table 1: segmentation against human tracings (TEST, traced ED/ES frames)", "",
              markdown(["Model", "Params", "Dice % per-video mean [90 % CI]", "Dice % pooled", "IoU % per-video mean",
                        "Videos"],
                       [[r["model"], fmt_params(r.get("params")),
                         fmt_ci(r.get("dice_per_video_mean"), r.get("dice_per_video_mean_ci90"), 2, True),
                         fmt(r.get("dice_pooled"), 2, True), fmt(r.get("iou_per_video_mean"), 2, True),
                         fmt(r.get("n_videos"), 0)] for r in m["table1"]]),
              "Per-video mean over the two traced frames is the paper's figure; pooled is EchoNet's. Paper: "
              + ", ".join(f"{k} {v}" for k, v in m["paper"]["dice_percent"].items()) + " (Dice %).", ""]
    lines += ["## Table 2: aFD (frames) on TEST", "",
              markdown(["Method", "Params", "aFD ED full [90 % CI]", "aFD ES full [90 % CI]", "aFD ED clean",
                        "aFD ES clean", "Clips full", "Clips clean"],
                       [[r["method"], fmt_params(r.get("params")), *_afd_cells(r)] for r in m["table2"]]),
              "The find_peaks row is EchoNet's ES rule (ES only). Paper (ED, ES): "
              + "; ".join(f"{k} {v[0]}, {v[1]}" for k, v in m["paper"]["afd_frames"].items()) + ".", ""]
    if m.get("sampling_rate"):
        lines += ["## aFD against the sampling rate (main student)", "",
                  markdown(["FPS bin", "Clips", "aFD ED", "aFD ES"],
                           [[r.get("bin"), r.get("n"), fmt(r.get("aFD_ED")), fmt(r.get("aFD_ES"))]
                            for r in m["sampling_rate"]]), ""]
    if m.get("error_concentration"):
        lines += ["## Error concentration (main student)", "",
                  markdown(["Phase", "Clips", "Share of clips holding 50 % of the error", "… 80 %"],
                           [[p, c.get("n"), fmt(c.get("frac_50"), 1, True) + " %",
                             fmt(c.get("frac_80"), 1, True) + " %"]
                            for p, c in m["error_concentration"].items()]), ""]
    if m.get("scaling_laws"):
        lines += ["## Scaling laws", "", markdown(["Quantity", "Slope per ln(params)", "Saturation"], [
            [law.get("quantity"), fmt(law.get("slope"), 4),
             fmt_params((law.get("saturation") or {}).get("params")) if (law.get("saturation") or {}).get("params")
             else "not reached"] for law in m["scaling_laws"].values()]),
            "Details, Table 1 by B × l and the figure: [evaluation/sweep/report.md](evaluation/sweep/report.md).", ""]
    if m.get("echoclip"):
        e = m["echoclip"]
        eh = e.get("echoclip_vs_human") or {}
        lines += ["## EchoCLIP", "",
                  f"EchoCLIP phase frames vs humans: aFD ED {fmt(eh.get('ED'))}, ES {fmt(eh.get('ES'))}.",
                  "", markdown(["Model", "Combined mask score", "aFD ED vs EchoCLIP", "aFD ES vs EchoCLIP"], [
                      [n, fmt(s.get("combined"), 4), fmt((s.get("afd_vs_echoclip") or {}).get("ED")),
                       fmt((s.get("afd_vs_echoclip") or {}).get("ES"))] for n, s in (e.get("models") or {}).items()]),
                  ""]
    if m.get("figures"):
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in m["figures"]] + [""]
    lines += ["## Sub-reports", ""] + [f"- {k}: [{v}]({v})" for k, v in m["reports"].items()] + [""]
    lines += ["## Step timings", "", markdown(["Step", "Seconds"], [[k, f"{v:.1f}"] for k, v in
                                                                    m["steps_seconds"].items()])]
    return "\n".join(lines)


def write_reproduce_report(path: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write the reproduce run's report.md (atomically) from its metrics."""
    return save_text(Path(path), render(metrics))
