"""Sim-to-real: how the phantom-only teacher and the data-free student of `echodfkd demo` do on real clips.

Usage: python benchmarks/sim_to_real.py --demo DEMO_OUT [--run-demo] [--json] [--out FILE.json]
                                        [--fixtures ../shared/fixtures] [--overlays DIR]

In one run (stated CPU budget: the measurements below take ~1 minute on 2 cores; `--run-demo` first runs
or resumes `echodfkd demo DEMO_OUT`, ~6-10 minutes) it prints:
- Dice vs the released EchoNet DeepLabv3's masks on `fixtures/echonet_dev` (3 real EchoNet-Dynamic TEST
  clips, every frame; a development set, not a test set): for the demo's phantom-only teacher and for its
  data-free student. Per clip: the mean of per-frame Dice, and Dice pooled over frames; then the mean over
  clips (the headline) — and the same for the student vs the teacher (agreement);
- student-teacher agreement on every real clip in the fixtures (also the two without masks);
- the unusual-input alert on the clean real clips (how many of them it flags; they are all clean);
- the phantom TEST figures of the same demo run (its metrics.json).
Real clips are read the way `echodfkd predict` reads them (`prepare_clip(mode="auto")`: a scanner export is
framed like EchoNet first). Nothing here trains or tunes anything on the real clips.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"



def _round(value: float | None) -> str:
    """A duration to whole seconds, or 'n/a'."""
    return "n/a" if value is None else f"{value:.0f}"

def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def per_clip(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Mean per-frame Dice and Dice pooled over frames."""
    return {"dice_mean_frames": float(np.mean([dice(p, r) for p, r in zip(pred, ref)])),
            "dice_pooled": dice(pred, ref),
            "area_pred": float(pred.sum((1, 2)).mean()), "area_ref": float(ref.sum((1, 2)).mean())}


def real_clips(fixtures: Path) -> list[dict]:
    """Every real clip of the fixtures: name, path, and the DeepLabv3 masks when there are any."""
    clips = []
    dev = fixtures / "echonet_dev"
    for video in sorted((dev / "Videos").glob("*.avi")):
        ref = dev / "DeepLabv3" / f"{video.stem}.npz"
        with np.load(ref) as data:
            clips.append({"name": video.stem, "path": video, "reference": data["masks"] > 127})
    for name in ("a4c_112x112_50fps.avi", "a4c_582x582_30fps_ecg.mp4"):
        if (fixtures / name).is_file():
            clips.append({"name": name, "path": fixtures / name, "reference": None})
    return clips


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", required=True, type=Path, help="an `echodfkd demo` output folder")
    ap.add_argument("--run-demo", action="store_true", help="run (or resume) `echodfkd demo DEMO` first")
    ap.add_argument("--fixtures", type=Path, default=FIXTURES)
    ap.add_argument("--overlays", type=Path, default=None, help="write student/teacher overlay PNGs here")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument("--corrupted", type=int, default=20, help="corrupted phantom clips for the alert's recall")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    if not (args.fixtures / "echonet_dev").is_dir():
        print(f"{args.fixtures}: no echonet_dev fixtures; nothing to measure", file=sys.stderr)
        return 2
    start, cpu = time.perf_counter(), time.process_time()
    if args.run_demo:
        subprocess.run([sys.executable, "-m", "echodfkd", "demo", "--out", str(args.demo)], check=True)
    demo_seconds = time.perf_counter() - start

    import torch

    from echodfkd.data.convert import prepare_clip
    from echodfkd.teacher.model import load_teacher
    from echodfkd.stream import Predictor

    torch.set_flush_denormal(True)
    predictor = Predictor(args.demo / "student")
    teacher = load_teacher(args.demo / "teacher" / "teacher.pt").eval()
    t0, c0 = time.perf_counter(), time.process_time()
    rows = []
    for clip in real_clips(args.fixtures):
        prepared = prepare_clip(clip["path"], mode="auto")
        frames, fps = prepared.frames, prepared.fps
        result = predictor.predict_clip(frames, fps)
        student = result.masks >= round(255 * predictor.thresholds["dice"])
        with torch.inference_mode():
            teach = (teacher(frames) > 0).cpu().numpy()
        row = {"clip": clip["name"], "frames": int(len(frames)), "fps": float(fps),
               "alert": bool(result.alert.flagged), "alert_score": round(float(result.alert.score), 2),
               "alert_reasons": result.alert.reasons,
               "student_vs_teacher": per_clip(student, teach)}
        if clip["reference"] is not None:
            ref = clip["reference"]
            row["teacher_vs_deeplabv3"] = per_clip(teach, ref)
            row["student_vs_deeplabv3"] = per_clip(student, ref)
        rows.append(row)
        if args.overlays is not None:
            _overlay(args.overlays / f"{Path(clip['name']).stem}.png", frames, student, teach, clip["reference"])
    measure = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    recall = _corrupted_recall(predictor, args.corrupted)

    dev = [r for r in rows if "teacher_vs_deeplabv3" in r]
    summary = {
        "teacher_dice_vs_deeplabv3": float(np.mean([r["teacher_vs_deeplabv3"]["dice_mean_frames"] for r in dev])),
        "student_dice_vs_deeplabv3": float(np.mean([r["student_vs_deeplabv3"]["dice_mean_frames"] for r in dev])),
        "student_teacher_agreement_all_real": float(np.mean([r["student_vs_teacher"]["dice_mean_frames"]
                                                             for r in rows])),
        "alerts_on_clean_real": f"{sum(r['alert'] for r in rows)}/{len(rows)}",
        "dev_clips": len(dev), "real_clips": len(rows),
        "alert_recall_corrupted_phantom": recall,
    }
    phantom = _phantom_figures(args.demo)
    report = {"summary": summary, "clips": rows, "phantom_test": phantom, "timing": measure,
              "demo_seconds": demo_seconds if args.run_demo else None,
              "total_cpu_seconds": time.process_time() - cpu}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("| clip | teacher vs DeepLabv3 | student vs DeepLabv3 | student vs teacher | areas S/T/ref px | alert |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        t, s, st = r.get("teacher_vs_deeplabv3"), r.get("student_vs_deeplabv3"), r["student_vs_teacher"]
        ref_area = f"{t['area_ref']:.0f}" if t else "—"
        print(f"| {r['clip']} | {t['dice_mean_frames']:.3f} ({t['dice_pooled']:.3f})" if t else f"| {r['clip']} | —",
              end="")
        print(f" | {s['dice_mean_frames']:.3f} ({s['dice_pooled']:.3f})" if s else " | —", end="")
        print(f" | {st['dice_mean_frames']:.3f} | {st['area_pred']:.0f}/{st['area_ref']:.0f}/{ref_area}"
              f" | {'ALERT ' + str(r['alert_score']) if r['alert'] else 'ok ' + str(r['alert_score'])} |")
    print()
    print(f"Mean over the {len(dev)} echonet_dev clips (per-frame Dice averaged per clip; pooled in brackets above):")
    print(f"  phantom-only teacher vs DeepLabv3: {summary['teacher_dice_vs_deeplabv3']:.3f}")
    print(f"  data-free student vs DeepLabv3:    {summary['student_dice_vs_deeplabv3']:.3f}")
    print(f"  student vs teacher, all {len(rows)} real clips: {summary['student_teacher_agreement_all_real']:.3f}")
    print(f"  alerts on clean real clips: {summary['alerts_on_clean_real']}")
    print(f"  alert recall on {recall['clips']} corrupted phantom clips (blank stretches, noise): "
          f"{recall['recall']:.2f} ({', '.join(f'{k} {v}' for k, v in recall['by_kind'].items())})")
    if phantom:
        print(f"Phantom TEST (same demo): student Dice {phantom.get('student_dice')}, teacher Dice "
              f"{phantom.get('teacher_dice')} vs tracings; alert recall on corrupted clips {phantom.get('alert_recall')}, "
              f"false alarms {phantom.get('alert_false_alarm_rate')}; demo steps {_round(phantom.get('demo_seconds'))} s")
    print(f"Measured in {measure['seconds']:.1f} s ({measure['cpu_seconds']:.1f} CPU-s)"
          + (f"; the demo took {demo_seconds:.0f} s" if args.run_demo else ""))
    return 0


def _corrupted_recall(predictor, clips: int, seed: int = 4321) -> dict:
    """Share of freshly made corrupted phantom clips (half blank stretches, half noise) the alert flags."""
    from echodfkd.data.phantom import make_clip

    hits: dict[str, list[bool]] = {}
    for i in range(clips):
        kind = ("blank_frames", "noisy_video")[i % 2]
        clip = make_clip(seed, i, "dynamic", kind=kind)
        hits.setdefault(kind, []).append(bool(predictor.predict_clip(clip.frames, clip.fps).alert.flagged))
    flagged = sum(sum(h) for h in hits.values())
    return {"clips": clips, "recall": flagged / clips if clips else float("nan"),
            "by_kind": {k: f"{sum(h)}/{len(h)}" for k, h in hits.items()}}


def _phantom_figures(demo: Path) -> dict:
    """Phantom TEST Dice of student and teacher, and the alert's recall on corrupted clips, from the demo."""
    path = demo / "metrics.json"
    if not path.is_file():
        return {}
    from echodfkd.io.records import DemoMetrics

    record = DemoMetrics.read(path)
    metrics = record.to_dict()
    out = {}
    for who in ("student", "teacher"):
        evaluation = getattr(record, who)
        seg = evaluation.overall("vs_tracings") if evaluation is not None else {}
        if seg.get("dice_per_video_mean") is not None:
            out[f"{who}_dice"] = round(float(seg["dice_per_video_mean"]), 4)
    alert = metrics.get("alert") or {}
    for key in ("recall", "false_alarm_rate"):
        if alert.get(key) is not None:
            out[f"alert_{key}"] = round(float(alert[key]), 3)
    out["demo_seconds"] = metrics.get("total_seconds")
    return out


def _overlay(path: Path, frames: np.ndarray, student: np.ndarray, teacher: np.ndarray,
             reference: np.ndarray | None) -> None:
    """Six frames across the clip: student contour red, teacher green, DeepLabv3 blue (when known)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    tiles = []
    for i in np.linspace(0, len(frames) - 1, 6).astype(int):
        img = cv2.cvtColor(cv2.resize(frames[i], (224, 224), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
        for mask, colour in ((reference, (255, 128, 0)), (teacher, (0, 200, 0)), (student, (0, 0, 255))):
            if mask is None:
                continue
            big = cv2.resize(mask[i].astype(np.uint8), (224, 224), interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(img, contours, -1, colour, 1)
        tiles.append(img)
    cv2.imwrite(str(path), np.hstack(tiles))


if __name__ == "__main__":
    sys.exit(main())
