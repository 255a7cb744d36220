"""`echodfkd predict VIDEO_OR_DIR --model RUN --out PRED`: stream clips through a trained student."""

from __future__ import annotations

import argparse

NAME = "predict"
HELP = "run a trained student on videos frame by frame (masks, areas, ED/ES, alerts)"
DESCRIPTION = (
    "Streams every clip frame by frame through the student (no look-ahead) and writes PRED/<FileName>.npz "
    "(uint8 soft masks), PRED/areas.csv, PRED/phases.json (ED/ES of every beat, in frames and seconds), "
    "PRED/alerts.csv (unusual-input score per clip) and PRED/meta.json; --overlay adds overlay videos. "
    "The input is a video or DICOM cine, a folder of them, or a dataset folder (FileList.csv + Videos/). "
    "Finished clips are skipped on a rerun. With --calibrate-alert, the alert threshold is instead set "
    "from the clean clips of a dataset's VAL split and saved in RUN/alert.json.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `echodfkd predict`."""
    parser.add_argument("input", metavar="VIDEO_OR_DIR", help="a video, a folder of videos, or a dataset folder")
    parser.add_argument("--model", required=True, metavar="RUN", help="student run directory")
    parser.add_argument("--out", metavar="PRED", help="output folder (required unless --calibrate-alert)")
    parser.add_argument("--overlay", action="store_true", help="also write PRED/overlays/<FileName>.avi")
    parser.add_argument("--warmup", type=int, default=None, metavar="K",
                        help="feed the first frame K extra times before the clip (default: the run's, else 0)")
    parser.add_argument("--largest-component", action=argparse.BooleanOptionalAction, default=None,
                        help="keep only the largest connected region of each mask (default: the run's, else off)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="binarisation threshold in [0, 1] for masks and areas (default: the run's calibrated ones)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--onnx", default=None, help="ONNX file for --backend onnx (default: RUN/student.onnx)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="torch engine precision (bf16: faster on CPUs with AMX/AVX512-BF16)")
    parser.add_argument("--compile", action="store_true",
                        help="CPU: run the ahead-of-time compiled engine (needs a C++ compiler; built once per "
                             "model/size/precision in ~10-30 s and cached in $ECHODFKD_CACHE_DIR or "
                             "~/.cache/echodfkd/compiled; fastest with --precision bf16)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch / ONNX Runtime (default: theirs)")
    parser.add_argument("--size", type=int, default=None, help="model frame size (default: the run's, else 112)")
    parser.add_argument("--split", default=None, help="TRAIN, VAL, TEST or a comma list, for a dataset folder")
    parser.add_argument("--convert", choices=("auto", "on", "off"), default="auto",
                        help="frame DICOM cines and scanner videos like EchoNet first (as `echodfkd convert` "
                             "does, in memory; masks/areas stay at the source size): auto = DICOM and videos "
                             "not already 112x112 or EchoNet-framed; on = always; off = never")
    parser.add_argument("--calibrate-alert", action="store_true",
                        help="set the alert threshold from the clean clips of --split (default VAL) and exit")
    parser.add_argument("--false-alarm-rate", type=float, default=0.05,
                        help="target false-alarm rate on clean clips for --calibrate-alert")
    parser.add_argument("--alert-augment", type=float, default=1.0, metavar="STRENGTH",
                        help="--calibrate-alert also scores one augmented copy of each clean clip (another zoom, "
                             "grey map, noise, sector edge), so the alert tolerates other scanners; 0 = off")


def run(args: argparse.Namespace) -> int:
    """Predict (or calibrate the alert) and print a summary; --out is locked for the whole run."""
    import contextlib

    from echodfkd.io.lock import output_lock

    with output_lock(args.out) if args.out and not args.calibrate_alert else contextlib.nullcontext():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from echodfkd.errors import EchoDFKDError

    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise EchoDFKDError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    from echodfkd.stream import Predictor
    from echodfkd.stream.batch import clean_clips, find_clips, predict_to_folder

    # Check the input before loading (and perhaps compiling) the model.
    if args.calibrate_alert:
        root = Path(args.input)
        if not (root / "FileList.csv").is_file():
            raise EchoDFKDError(f"{root}: --calibrate-alert needs a dataset folder (FileList.csv + Videos/)")
    else:
        if not args.out:
            raise EchoDFKDError("--out PRED is required")
        sources = find_clips(args.input, args.split, convert=args.convert)
    predictor = Predictor(args.model, device=args.device, backend=args.backend, warmup=args.warmup,
                          largest_component=args.largest_component, threshold=args.threshold,
                          onnx_path=args.onnx, size=args.size, threads=args.threads, precision=args.precision,
                          compile=args.compile, log=lambda line: print(line, flush=True))
    if args.calibrate_alert:
        config = predictor.calibrate_alert(clean_clips(root, args.split or "VAL"), args.false_alarm_rate,
                                           augment=args.alert_augment)
        print(f"alert calibrated on {config.clips} clean {args.split or 'VAL'} clips: threshold "
              f"{config.threshold:.2f} at a target false-alarm rate of {config.false_alarm_rate:.0%}; "
              f"saved to {predictor.run_dir / 'alert.json'}")
        return 0
    meta = predict_to_folder(predictor, sources, args.out, overlay=args.overlay,
                             skip_unreadable=Path(args.input).is_dir())
    speed = f", {meta['stream_fps']} frames/s" if meta.get("stream_fps") else ""
    print(f"{meta['clips']} clip(s) predicted into {args.out}{speed}; {len(meta['flagged'])} flagged by the "
          f"alert{'' if predictor.alert_config.calibrated else ' (uncalibrated)'}; thresholds dice "
          f"{predictor.thresholds['dice']:.3f} / afd {predictor.thresholds['afd']:.3f}; warm-up "
          f"{predictor.warmup}, largest component {'on' if predictor.largest_component else 'off'}")
    if meta["failed"]:
        print(f"{len(meta['failed'])} clip(s) could not be read: {', '.join(sorted(meta['failed']))}")
        return 1
    return 0
