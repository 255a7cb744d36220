"""Warm-up, largest-component and unusual-input alert figures of a trained student on a phantom set.

    python benchmarks/measure_warmup_alert.py RUN PHANTOM_DIR [--split TEST] [--warmups 0,4,8,16]
        [--calibration-split VAL] [--false-alarm-rate 0.05] [--size S] [--json OUT.json] [--write-defaults]

PHANTOM_DIR is a dataset folder with GroundTruth/<FileName>.npz (exact LV masks) and
GroundTruth/corrupted.csv. Prints:
- Dice against the exact masks on frames 0-9 (mean over clean clips of the split) for every warm-up K,
  with the largest-component filter off and on, and the steady-state Dice (frames >= 10, K = 0);
- the alert calibrated on the clean clips of --calibration-split (clips not in corrupted.csv that pass
  the video checks) at --false-alarm-rate, then its recall on the split's video-corrupted clips
  (blank_frames, noisy_video) and its false-alarm rate on the clean ones (annotation-only corruptions have
  clean videos and are counted with the clean clips, and also shown apart).
--write-defaults stores the best warm-up / largest-component choice in RUN/stream.json and the alert
calibration in RUN/alert.json (choose them on VAL, report on TEST).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from echodfkd.data import open_dataset
from echodfkd.io.atomic import save_json
from echodfkd.measures.masks import binarize, dice
from echodfkd.stream import Predictor
from echodfkd.stream.batch import clean_clips
from echodfkd.stream.predictor import STREAM_FILE

VIDEO_KINDS = ("blank_frames", "noisy_video")
EARLY = 10
RANGES = ((0, 10), (10, 25), (25, 50), (50, 100), (100, 200), (200, 10**6))


def _kinds(root: Path) -> dict[str, str]:
    path = root / "GroundTruth" / "corrupted.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {row["FileName"]: row["kind"] for row in csv.DictReader(fh)}


def measure_warmup(run: Path, ds, names: list[str], warmups: list[int], size: int | None = None) -> dict:
    """Mean Dice on frames 0-9 per (K, largest component) and the steady-state Dice."""
    clips = []
    for n in names:
        frames, _ = ds.video(n)
        gt = ds.ground_truth(n)
        clips.append((frames, gt["lv"].astype(bool)))
    table: dict = {}
    for lc in (False, True):
        for k in warmups:
            pred = Predictor(run, warmup=k, largest_component=lc, size=size)
            t = pred.thresholds["dice"]
            scores = []
            for frames, lv in clips:
                # No look-ahead: frames 0-9 only need frames 0-9 streamed.
                soft = np.stack([r.soft for r in pred.stream_clip(frames[:EARLY])])
                scores.append(dice(binarize(soft, t), lv[:EARLY], reduction="none"))
            per_frame = np.mean(np.stack(scores), axis=0)
            table[f"K={k} lc={'on' if lc else 'off'}"] = {
                "warmup": k, "largest_component": lc, "dice_frames_0_9": float(per_frame.mean()),
                "dice_per_frame": [round(float(v), 4) for v in per_frame]}
    steady, by_range = {}, {}
    for lc in (False, True):
        pred = Predictor(run, warmup=0, largest_component=lc, size=size)
        per_clip = [dice(binarize(pred.predict_clip(f, 50).masks, pred.thresholds["dice"]), lv, reduction="none")
                    for f, lv in clips]
        key = f"lc={'on' if lc else 'off'}"
        steady[key] = float(np.mean([d[EARLY:].mean() for d in per_clip if len(d) > EARLY]))
        # Dice by position in the stream: does the state drift beyond the training window length?
        by_range[key] = {f"{a}-{b - 1}": float(np.mean(np.concatenate([d[a:b] for d in per_clip if len(d) > a])))
                         for a, b in RANGES if any(len(d) > a for d in per_clip)}
    return {"clips": len(clips), "table": table, "steady_dice_frames_10_plus": steady, "dice_by_frame_range": by_range}


def measure_alert(run: Path, root: Path, ds, names: list[str], kinds: dict[str, str], cal_split: str,
                  rate: float, save: bool, size: int | None = None) -> dict:
    """Calibrate on clean clips of `cal_split`, then recall / false alarms on `names`."""
    pred = Predictor(run, size=size)
    config = pred.calibrate_alert(clean_clips(root, cal_split), rate, save=save)
    rows = []
    for n in names:
        frames, fps = ds.video(n)
        a = pred.predict_clip(frames, fps).alert
        rows.append({"name": n, "kind": kinds.get(n, "clean"), "score": a.score, "flagged": a.flagged,
                     "reasons": a.reasons})
    bad = [r for r in rows if r["kind"] in VIDEO_KINDS]
    clean = [r for r in rows if r["kind"] not in VIDEO_KINDS]
    trace_only = [r for r in rows if r["kind"] not in VIDEO_KINDS and r["kind"] != "clean"]
    return {"threshold": config.threshold, "calibration_clips": config.clips, "target_false_alarm_rate": rate,
            "corrupted_video_clips": len(bad), "recall": float(np.mean([r["flagged"] for r in bad])) if bad else None,
            "clean_video_clips": len(clean),
            "false_alarm_rate": float(np.mean([r["flagged"] for r in clean])) if clean else None,
            "annotation_only_corrupted": len(trace_only),
            "annotation_only_flagged": int(sum(r["flagged"] for r in trace_only)),
            "missed": [r["name"] for r in bad if not r["flagged"]],
            "false_alarms": [{"name": r["name"], "score": round(r["score"], 2), "reasons": r["reasons"]}
                             for r in clean if r["flagged"]]}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure, print (and optionally store defaults)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--split", default="TEST")
    ap.add_argument("--calibration-split", default="VAL")
    ap.add_argument("--warmups", default="0,4,8,16")
    ap.add_argument("--false-alarm-rate", type=float, default=0.05)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write-defaults", action="store_true")
    ap.add_argument("--size", type=int, default=None, help="model frame size (default: the run's, else 112)")
    args = ap.parse_args(argv)
    start = time.time()
    ds = open_dataset(args.data)
    if not ds.has_ground_truth:
        print(f"{args.data}: no GroundTruth/ folder (a phantom dataset is needed)", file=sys.stderr)
        return 2
    kinds = _kinds(args.data)
    names = ds.names(args.split)
    clean_names = [n for n in names if kinds.get(n) not in VIDEO_KINDS]
    warm = measure_warmup(args.run, ds, clean_names, [int(k) for k in args.warmups.split(",")], args.size)
    alert = measure_alert(args.run, args.data, ds, names, kinds, args.calibration_split, args.false_alarm_rate,
                          save=args.write_defaults, size=args.size)
    print(f"Dice vs exact LV masks, {args.split} clean clips ({warm['clips']}), frames 0-{EARLY - 1}:")
    for key, row in warm["table"].items():
        print(f"  {key:16s} {row['dice_frames_0_9']:.4f}   per frame {row['dice_per_frame']}")
    print(f"  steady state (frames >= {EARLY}, K=0): " +
          ", ".join(f"{k} {v:.4f}" for k, v in warm["steady_dice_frames_10_plus"].items()))
    for key, ranges in warm["dice_by_frame_range"].items():
        print(f"  Dice by frame range (K=0, {key}): " + ", ".join(f"{r} {v:.4f}" for r, v in ranges.items()))
    best_key = max(warm["table"], key=lambda k: warm["table"][k]["dice_frames_0_9"])
    rows = list(warm["table"].values())
    best_off = max(r["dice_frames_0_9"] for r in rows if not r["largest_component"])
    best_on = max(r["dice_frames_0_9"] for r in rows if r["largest_component"])
    lc = best_on > best_off + 0.002  # the filter costs time per frame: only on for a real gain
    top = best_on if lc else best_off
    # The smallest K within 0.002 of the best: warm-up delays the first output.
    choice = min((r for r in rows if r["largest_component"] == lc and r["dice_frames_0_9"] >= top - 0.002),
                 key=lambda r: r["warmup"])
    print(f"  best: {best_key}; suggested default: warmup {choice['warmup']}, largest component "
          f"{'on' if choice['largest_component'] else 'off'} (smallest K within 0.002 Dice of the best; the filter "
          f"only if it gains > 0.002)")
    print(f"Alert (calibrated on clean {args.calibration_split} clips: {alert['calibration_clips']}, threshold "
          f"{alert['threshold']:.2f}, target false alarms {args.false_alarm_rate:.0%}) on {args.split}:")
    print(f"  recall on video-corrupted clips: {alert['recall']} ({alert['corrupted_video_clips']} clips; missed "
          f"{alert['missed']})")
    print(f"  false-alarm rate on clean-video clips: {alert['false_alarm_rate']} ({alert['clean_video_clips']} "
          f"clips; annotation-only corrupted {alert['annotation_only_flagged']}/{alert['annotation_only_corrupted']}"
          f" flagged)")
    result = {"run": str(args.run), "data": str(args.data), "split": args.split, "warmup": warm, "alert": alert,
              "suggested": {"warmup": choice["warmup"], "largest_component": choice["largest_component"]},
              "seconds": round(time.time() - start, 1)}
    if args.write_defaults:
        save_json(args.run / STREAM_FILE, dict(result["suggested"], measured_on=args.split))
        print(f"wrote {args.run / STREAM_FILE} and {args.run / 'alert.json'}")
    if args.json:
        save_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
