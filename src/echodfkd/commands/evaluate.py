"""`echodfkd evaluate`: Dice/IoU, aFD and analyses of a prediction folder (or a per-frame signal CSV)."""

from __future__ import annotations

import argparse

from echodfkd.commands import _flags

NAME = "evaluate"
HELP = "score predictions: Dice/IoU vs tracings/ground truth/teacher, aFD ED/ES, analyses, report"
DESCRIPTION = (
    "Evaluate PRED/<FileName>.npz soft masks (uint8, key 'masks') on a dataset split: Dice and IoU against "
    "the human tracings at the traced ED/ES frames (per-video mean, the paper's, and pooled, EchoNet's, with "
    "bootstrap 90 % intervals), against phantom ground truth on every frame and against teacher targets; "
    "aFD_ED / aFD_ES from the mask-area curve with the paper's median-block method (full set and the "
    "subset without --corrupted clips), EchoNet's find_peaks ES baseline, aFD against FPS, error "
    "concentration, EF from areas and a frame-label noise fit. Writes REPORT/metrics.json, report.md, "
    "phases.csv and figures/*.png."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    _flags.add_data(parser, help="EchoNet-layout dataset folder", type=_flags.dir_path)
    parser.add_argument("--predictions", required=True, metavar="PRED", type=_flags.dir_path,
                        help="prediction folder: <FileName>.npz (masks), meta.json, areas.csv")
    parser.add_argument("--split", default="TEST", help="TRAIN, VAL, TEST, a comma list, or all")
    parser.add_argument("--teacher-predictions", metavar="TARGETS", type=_flags.dir_path,
                        help="teacher targets folder: adds agreement, teacher aFD and the DeepLabv3 ES baseline")
    parser.add_argument("--corrupted", metavar="CSV", type=_flags.file_path,
                        help="FileName,reason list (from `echodfkd check --csv`) excluded from the clean subset "
                             "(default: DATA/GroundTruth/corrupted.csv when present)")
    parser.add_argument("--signal", metavar="CSV", type=_flags.file_path, help="per-frame signal FileName,Frame,Value used for aFD "
                                                       "instead of the mask area")
    parser.add_argument("--threshold", type=_flags.unit_float, metavar="T",
                        help="binarisation threshold in [0, 1] (mask = soft >= T*255) for both Dice and aFD, "
                             "overriding PRED/meta.json")
    parser.add_argument("--compat", choices=("paper", "reference"), default="paper",
                        help="block distance rule of the aFD method (reference = the original code)")
    parser.add_argument("--bootstrap", type=_flags.positive_int, default=10000, metavar="N",
                        help="bootstrap resamples")
    parser.add_argument("--overlays", type=_flags.nonnegative_int, default=3, metavar="K",
                        help="clips (best/median/worst aFD) drawn as area curves and overlay GIFs")
    parser.add_argument("--allow-missing", action="store_true",
                        help="evaluate the clips that have predictions instead of failing on missing ones")
    _flags.add_out(parser, "report")
    _flags.add_json(parser, help="print the metrics (metrics.json) as JSON")


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the report, print the headline numbers."""
    from echodfkd.report.evaluation import evaluate_predictions
    from echodfkd.io.lock import output_lock
    from echodfkd.io.records import overall

    _flags.check_writable_dir(args.out, keep=False)
    with output_lock(args.out), _flags.stdout_for_json(args):
        m = evaluate_predictions(args.data, args.predictions, split=args.split,
                                 teacher_dir=args.teacher_predictions, corrupted=args.corrupted,
                                 signal_csv=args.signal, out=args.out, threshold=args.threshold, compat=args.compat,
                                 n_boot=args.bootstrap, allow_missing=args.allow_missing, overlays=args.overlays)
    if args.json:
        import json

        print(json.dumps(m, indent=2, default=str))
        return 0
    print(f"evaluated {m['n_clips']} clips of {m['split']}")
    for key, label in (("vs_tracings", "vs human tracings"), ("vs_ground_truth", "vs ground truth"),
                       ("vs_teacher", "vs teacher"), ("rv_vs_ground_truth", "RV vs ground truth"),
                       ("rv_vs_teacher", "RV vs RV teacher")):
        s = overall(m["segmentation"].get(key))
        if "dice_pooled" in s:
            print(f"  Dice {label}: {100 * s['dice_per_video_mean']:.2f} % per-video mean, "
                  f"{100 * s['dice_pooled']:.2f} % pooled")
    if "afd" in m:
        for subset in ("full", "clean"):
            s = m["afd"][subset]
            if s.get("n_clips"):
                print(f"  aFD ({subset}, {s['n_clips']} clips): ED {s['aFD_ED']:.2f}, ES {s['aFD_ES']:.2f} frames")
    print(f"report: {args.out}/report.md")
    return 0
