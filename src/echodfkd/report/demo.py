"""The demo's top-level report: settings, step times, Table 1/2-style results, alert, links."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from echodfkd.errors import EchoDFKDError
from echodfkd.io.atomic import load_json, save_text
from echodfkd.io.records import DemoMetrics, EvaluationMetrics
from echodfkd.pipeline import StepRunner


def _get(d: Any, path: str, default: Any = None) -> Any:
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _load(path: Path) -> dict[str, Any]:
    return load_json(path, EchoDFKDError) if path.is_file() else {}


def _evaluation(folder: Path) -> dict[str, Any]:
    """An evaluation's metrics.json as a dict ({} when the step has not written it)."""
    record = EvaluationMetrics.read_or_none(folder / EvaluationMetrics.FILE)
    return record.to_dict() if record is not None else {}


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * float(x):.1f}"


def _num(x: Any, digits: int = 2) -> str:
    return "—" if x is None else f"{float(x):.{digits}f}"


def _ci_pct(ci: Any) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def write_demo_report(out: Path, settings: dict[str, Any], runner: StepRunner, paths: dict[str, Path],
                      echoclip: str | None) -> dict[str, Any]:
    """Write out/report.md, out/metrics.json and out/figures/; print nothing, return the metrics."""
    student = _evaluation(paths["eval_student"])
    teacher = _evaluation(paths["eval_teacher"])
    steps = {k: r.summary for k, r in runner.records.items()}
    alerts = _alert_figures(paths)
    metrics = {
        "settings": settings, "step_seconds": runner.timings(), "total_seconds": sum(runner.timings().values()),
        "steps": steps, "student": student, "teacher": teacher, "alert": alerts,
        "echoclip": _load(paths["echoclip"] / "echoclip.json") if echoclip else {"skipped": "no --echoclip MODEL"},
    }
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    copied = []
    for who in ("student", "teacher"):
        src = paths[f"eval_{who}"] / "figures"
        for png in sorted(src.glob("*.png")) if src.is_dir() else []:
            dst = figures / f"{who}_{png.name}"
            shutil.copyfile(png, dst)
            copied.append(dst.name)
    DemoMetrics.parse(metrics, out / DemoMetrics.FILE).write(out / DemoMetrics.FILE)
    save_text(out / "report.md", _markdown(metrics, copied, paths, out))
    return metrics


def _alert_figures(paths: dict[str, Path]) -> dict[str, Any]:
    """Alert recall on the phantom's corrupted-video TEST clips and false alarms on clean ones.

    Only video corruptions (blank stretches, noise) count as unusual input; clips whose only defect is
    in the tracings look normal to the model and are left out of both rates.
    """
    import csv

    from echodfkd.data.check import phantom_corrupted_path, read_corrupted
    from echodfkd.data.phantom.corrupt import VIDEO_KINDS

    alerts_csv = paths["pred_student"] / "alerts.csv"
    truth_csv = phantom_corrupted_path(paths["dynamic"])
    if not alerts_csv.is_file():
        return {}
    with open(alerts_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    kinds = read_corrupted(truth_csv, missing_ok=True)  # the phantom's list: FileName,kind
    flag_key = next((k for k in (rows[0] if rows else {}) if k.lower() in ("alert", "flag", "flagged")), None)
    if flag_key is None:
        return {"clips": len(rows)}
    flagged = {r["FileName"] for r in rows if str(r[flag_key]).strip().lower() in ("1", "true", "yes")}
    names = {r["FileName"] for r in rows}
    bad = {n for n in names if kinds.get(n) in VIDEO_KINDS}
    good = names - set(kinds)
    return {"clips": len(names), "corrupted_video": len(bad), "clean": len(good),
            "tracing_only_defects": len(names & set(kinds)) - len(bad),
            "recall": (len(flagged & bad) / len(bad)) if bad else None,
            "false_alarm_rate": (len(flagged & good) / len(good)) if good else None,
            "flagged": sorted(flagged)}


def _markdown(m: dict[str, Any], figures: list[str], paths: dict[str, Path], out: Path) -> str:
    s, st, te = m["settings"], m["student"], m["teacher"]
    steps = m["steps"]
    rel = lambda p: Path(p).relative_to(out).as_posix()  # noqa: E731
    lines = ["# EchoDFKD demo on the embedded phantom", "",
             "Everything below was measured in this run on phantom data whose truth is known. "
             "The *dynamic* phantom stands in for EchoNet-Dynamic (human-like tracings, TRAIN/VAL/TEST), the "
             "*synthetic* phantom for EchoNet-Synthetic (no tracings; the only data the student sees).", ""]
    lines += ["## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {'style default' if v is None else v} |" for k, v in s.items()]
    d = steps.get("distill", {})
    lines += [f"| student parameters | {d.get('params', '—')} |",
              f"| calibrated thresholds (VAL) | {d.get('thresholds', '—')} |", ""]
    lines += ["## Time per step", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in m["step_seconds"].items()]
    lines += [f"| **total** | **{m['total_seconds']:.1f}** |", ""]
    lines += _table1(st, te) + _table2(st, te) + _agreement(st, te) + _alert(m["alert"]) + _teacher(steps)
    lines += ["## EchoCLIP", ""]
    if isinstance(m["echoclip"], dict) and m["echoclip"].get("skipped"):
        lines += ["Skipped: no EchoCLIP model given. Enable it with `echodfkd demo --echoclip "
                  "hf-hub:mkaichristensen/echo-clip` (weights in the Hugging Face cache) or "
                  "`--echoclip local-dir:PATH`.", ""]
    else:
        lines += [f"See [{rel(paths['echoclip'] / 'echoclip.md')}]({rel(paths['echoclip'] / 'echoclip.md')}).", ""]
    lines += ["## Detailed reports", "",
              f"- student: [{rel(paths['eval_student'] / 'report.md')}]({rel(paths['eval_student'] / 'report.md')})",
              f"- teacher: [{rel(paths['eval_teacher'] / 'report.md')}]({rel(paths['eval_teacher'] / 'report.md')})",
              "", "## Figures", ""]
    lines += [f"![{f}](figures/{f})" for f in figures]
    return "\n".join(lines) + "\n"


def _table1(st: dict, te: dict) -> list[str]:
    lines = ["## Table 1 style — Dice / IoU (%) against the tracings at the traced ED and ES frames", "",
             "Per-video mean (the paper's Table 1) with a bootstrap 90 % interval, and EchoNet's pixel-pooled Dice.", "",
             "| model | Dice (per-video mean) | IoU (per-video mean) | Dice (pooled) |", "|---|---|---|---|"]
    for name, mt in (("student (4,1)", st), ("teacher", te)):
        seg = _get(mt, "segmentation.vs_tracings.overall") or _get(mt, "segmentation.vs_tracings") or {}
        lines.append(f"| {name} | {_pct(seg.get('dice_per_video_mean'))}{_ci_pct(seg.get('dice_per_video_mean_ci90'))} "
                     f"| {_pct(seg.get('iou_per_video_mean'))} | {_pct(seg.get('dice_pooled'))} |")
    gt = _get(st, "segmentation.vs_ground_truth") or {}
    lines += ["", f"Student Dice against the phantom's exact ground truth on every TEST frame: "
              f"{_pct(gt.get('dice_per_video_mean'))} % (per-video mean; {gt.get('n_frames', '—')} frames).", ""]
    return lines


def _table2(st: dict, te: dict) -> list[str]:
    lines = ["## Table 2 style — aFD (frames) of ED/ES found from the mask-area curve vs the traced frames", "",
             "Median-block method; no clip removed (full set) and without the clips `echodfkd check` flags (clean).", "",
             "| method | aFD ED (full) | aFD ES (full) | aFD ED (clean) | aFD ES (clean) |", "|---|---|---|---|---|"]
    rows = (("student (4,1), aFD method", _get(st, "afd")), ("teacher, aFD method", _get(te, "afd")),
            ("teacher, EchoNet find_peaks ES", _get(te, "es_baseline")))
    for name, a in rows:
        a = a or {}
        lines.append(f"| {name} | {_num(_get(a, 'full.aFD_ED'))} | {_num(_get(a, 'full.aFD_ES'))} "
                     f"| {_num(_get(a, 'clean.aFD_ED'))} | {_num(_get(a, 'clean.aFD_ES'))} |")
    return lines + [""]


def _agreement(st: dict, te: dict) -> list[str]:
    ag = _get(st, "segmentation.vs_teacher") or {}
    return ["## Student vs teacher agreement", "",
            f"Dice of the student's masks against the teacher's on every TEST frame: "
            f"{_pct(ag.get('dice_per_video_mean'))} % (per-video mean), {_pct(ag.get('dice_pooled'))} % (pooled).", ""]


def _alert(a: dict) -> list[str]:
    if not a:
        return []
    return ["## Unusual-input alert on TEST", "",
            f"{a.get('corrupted_video', 0)} clips with a corrupted video (blank stretch or noise) and "
            f"{a.get('clean', 0)} clean clips: recall {_pct(a.get('recall'))} %, false alarms "
            f"{_pct(a.get('false_alarm_rate'))} % (threshold set on clean VAL clips at a 5 % false-alarm "
            f"target). {a.get('tracing_only_defects', 0)} clips whose only defect is in the tracings are not "
            "counted. A demo TEST split holds few corrupted clips, so these rates are coarse.", ""]


def _teacher(steps: dict) -> list[str]:
    t = steps.get("teacher", {})
    if not t:
        return []
    return ["## Teacher", "", f"{t.get('arch')} trained on {t.get('train_frames')} traced TRAIN frames; best VAL "
            f"Dice {_pct(t.get('best_val_dice'))} % at epoch {t.get('best_epoch')} of {t.get('epochs_run')}.", ""]
