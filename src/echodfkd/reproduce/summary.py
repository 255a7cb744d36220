"""The top-level metrics of a reproduce run (OUT/metrics.json); report.reproduce writes OUT/report.md from them.

It only reads what the steps wrote (check summaries, run configs, evaluation metrics, the sweep and
EchoCLIP reports), so it can be rebuilt at any time. Paper values are shown beside ours for reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from echodfkd.io.atomic import load_json
from echodfkd.io.records import EvaluationMetrics, ReproduceMetrics, StudentConfig, TargetsMeta, overall
from echodfkd.report.reproduce import write_reproduce_report
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
    return load_json(path, default={})


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


def write_summary(st: Settings, inputs: Inputs, lay: Layout, timings: dict[str, float]) -> dict[str, Any]:
    """Write OUT/metrics.json and OUT/report.md; returns a short summary for steps.json."""
    m = collect(st, inputs, lay, timings)
    ReproduceMetrics.parse(m, lay.metrics).write(lay.metrics)
    write_reproduce_report(lay.report, m)
    return {"main_student": m["main_student"], "students": len(m["students"])}
