"""The top-level report of a reproduce run: OUT/metrics.json and OUT/report.md, linking every sub-report.

It only reads what the steps wrote (check summaries, run configs, evaluation metrics, the sweep and
EchoCLIP reports), so it can be rebuilt at any time. Paper values are shown beside ours for reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from echodfkd.io.atomic import save_text
from echodfkd.io.records import EvaluationMetrics, ReproduceMetrics, StudentConfig, TargetsMeta, overall
from echodfkd.report.tables import fmt, fmt_ci, fmt_params, markdown
from echodfkd.reproduce.inputs import Inputs, Settings
from echodfkd.reproduce.layout import Layout

#: Reported by the paper and the works it compares with (DESIGN.md part B), for reference only.
PAPER = {
    "dice_percent": {"DeepLabv3": 92.26, "SimLVSeg": 93.32, "nnU-Net": 92.86, "MU-UNet": 90.50},
    "afd_frames": {"DeepLabv3": [8.63, 3.66], "UVT-R": [7.88, 2.86], "UVT-M": [7.17, 3.35], "EchoGNN": [3.68, 4.15],
                   "DRNNEcho": [3.7, 4.1], "EchoDFKD (4,1), clean subset": [2.72, 2.83],
                   "EchoDFKD (4,1), full test set": [2.77, 2.83]},
}


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _metrics(folder: Path) -> dict[str, Any]:
    """An evaluation's metrics.json as a dict ({} when that step has not written it)."""
    record = EvaluationMetrics.read_or_none(folder / EvaluationMetrics.FILE)
    return record.to_dict() if record is not None else {}


def _seg(metrics: dict) -> dict[str, Any]:
    s = overall((metrics.get("segmentation") or {}).get("vs_tracings"))
    keys = ("dice_per_video_mean", "dice_per_video_mean_ci90", "dice_pooled", "iou_per_video_mean",
            "iou_per_video_mean_ci90", "iou_pooled", "n_videos")
    return {k: s.get(k) for k in keys}


def _afd(metrics: dict, key: str) -> dict[str, Any]:
    m = metrics.get(key) or {}
    return {subset: {k: (m.get(subset) or {}).get(k) for k in ("n_clips", "aFD_ED", "aFD_ED_ci90", "aFD_ES",
                                                                 "aFD_ES_ci90")}
            for subset in ("full", "clean")}


def _teacher_record(lay: Layout) -> dict[str, Any]:
    meta = TargetsMeta.read_or_none(lay.targets)
    rec = dict((meta.teacher if meta is not None else None) or {})
    if rec.get("arch"):
        try:
            from echodfkd.teacher.model import build_segmenter

            rec["params"] = int(sum(p.numel() for p in build_segmenter(rec["arch"]).parameters()))
        except Exception:  # noqa: BLE001 - an unknown arch only loses the parameter count
            pass
    return rec


def collect(st: Settings, inputs: Inputs, lay: Layout, timings: dict[str, float]) -> dict[str, Any]:
    """Gather every step's results into the top-level metrics dict."""
    teacher_m = _metrics(lay.evaluation / "teacher")
    teacher = _teacher_record(lay)
    students: dict[str, Any] = {}
    for b, l in st.grid:
        name = st.config_name(b, l)
        cfg, m = StudentConfig.read_or_none(lay.run(name)) or StudentConfig(), _metrics(lay.run_eval(name))
        run = cfg.run_summary()
        students[name] = {
            "blocks": b, "layers": l, "params": run["params"], "thresholds": run["thresholds"],
            "best_val_loss": run["best_val_loss"], "epochs_trained": run["epochs_trained"],
            "segmentation_vs_tracings": _seg(m), "afd": _afd(m, "afd"), "es_baseline": _afd(m, "es_baseline"),
            "agreement_with_teacher": ((m.get("segmentation") or {}).get("vs_teacher") or {}).get(
                "dice_per_video_mean"),
            "n_missing_predictions": m.get("n_missing_predictions"),
        }
    main = main_student(st, students)
    main_m = _metrics(lay.run_eval(main)) if main else {}
    sweep = _read(lay.evaluation / "sweep" / "sweep.json")
    clip = _read(lay.echoclip / "echoclip.json")
    arch = teacher.get("arch", "?")
    who = "DeepLabv3 teacher" if arch == "deeplabv3_resnet50" else f"Teacher ({arch})"
    table1 = [{"model": who, "params": teacher.get("params"), **_seg(teacher_m)}]
    table1 += [{"model": f"EchoDFKD ({s['blocks']},{s['layers']})", "params": s["params"],
                **s["segmentation_vs_tracings"]} for s in students.values()]
    table2 = [{"method": f"{who}, median-block method", "params": teacher.get("params"), **_afd(teacher_m, "afd")},
              {"method": f"{who}, EchoNet find_peaks ES rule", "params": teacher.get("params"),
               **_afd(teacher_m, "es_baseline")}]
    table2 += [{"method": f"EchoDFKD ({s['blocks']},{s['layers']})", "params": s["params"], **s["afd"]}
               for s in students.values()]
    an = main_m.get("analysis") or {}
    reports = {"teacher": "evaluation/teacher/report.md", "checks": "check/"}
    reports.update({n: f"runs/{n}/evaluation/report.md" for n in students})
    if sweep:
        reports["sweep"] = "evaluation/sweep/report.md"
    if clip:
        reports["echoclip"] = "echoclip/echoclip.md"
    figures = [f"runs/{main}/evaluation/{f}" for f in main_m.get("figures", [])
               if Path(f).stem in ("afd_vs_fps", "error_concentration")]
    figures += [f"evaluation/sweep/{f}" for f in sweep.get("figures", [])]
    return {
        "format": "echodfkd-reproduce", "version": 1,
        "inputs": {"dynamic": str(inputs.dynamic.root), "training": str(inputs.synthetic.root),
                   "teacher": {**teacher, "checkpoint": str(st.teacher)}, "echoclip": st.echoclip,
                   "grid": [list(g) for g in st.grid], "epochs_max": st.epochs, "frame_size": st.frame_size,
                   "infer_size": inputs.infer_size, "seq_len": st.seq_len, "batch_size": st.batch_size,
                   "compat": st.compat, "bootstrap_resamples": st.bootstrap},
        "checks": {"dynamic": _read(lay.check / "dynamic.json"), "training": _read(lay.check / "training.json")},
        "table1": table1, "table2": table2, "students": students, "main_student": main,
        "sampling_rate": an.get("afd_by_fps"), "error_concentration": an.get("error_concentration"),
        "scaling_laws": sweep.get("scaling_laws") if sweep else None,
        "echoclip": clip.get("summary") if clip else None,
        "paper": PAPER, "reports": reports, "figures": figures, "steps_seconds": timings,
        "notes": list(inputs.notes),
    }


def main_student(st: Settings, students: dict[str, Any]) -> str | None:
    """The paper's (4,1) when trained, else the student with the lowest validation loss."""
    if st.main_config and st.config_name(*st.main_config) in students:
        return st.config_name(*st.main_config)
    scored = [(s["best_val_loss"], n) for n, s in students.items() if s["best_val_loss"] is not None]
    return min(scored)[1] if scored else (next(iter(students)) if students else None)


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


def write_summary(st: Settings, inputs: Inputs, lay: Layout, timings: dict[str, float]) -> dict[str, Any]:
    """Write OUT/metrics.json and OUT/report.md; returns a short summary for steps.json."""
    m = collect(st, inputs, lay, timings)
    ReproduceMetrics.parse(m, lay.metrics).write(lay.metrics)
    save_text(lay.report, render(m))
    return {"main_student": m["main_student"], "students": len(m["students"])}
