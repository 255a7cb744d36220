"""`echodfkd predict DATA --student RUN --out PRED`: stream clips through a trained student."""

from __future__ import annotations

import argparse
import json
import sys

from echodfkd.commands import _flags

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
    _flags.add_data(parser, help="a video, a folder of videos, or a dataset folder")
    _flags.add_student(parser)
    _flags.add_out(parser, "predictions", required=False, note="required unless --calibrate-alert")
    parser.add_argument("--overlay", action="store_true", help="also write PRED/overlays/<FileName>.avi")
    parser.add_argument("--warmup", type=_flags.nonnegative_int, default=None, metavar="K",
                        help="feed the first frame K extra times before the clip (default: the run's, else 0)")
    parser.add_argument("--largest-component", action=argparse.BooleanOptionalAction, default=None,
                        help="keep only the largest connected region of each mask (default: the run's, else off)")
    parser.add_argument("--threshold", type=_flags.unit_float, default=None,
                        help="binarisation threshold in [0, 1] for masks and areas (default: the run's calibrated ones)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--onnx", type=_flags.file_path, default=None,
                        help="ONNX file for --backend onnx (default: RUN/student.onnx)")
    _flags.add_device(parser)
    _flags.add_precision(parser, extra=("mixed",), help="torch engine precision: fp32; mixed (bf16 convolutions, "
                         "fp32 state); bf16 (all bf16; faster on CPUs with AMX/AVX512-BF16, least accurate); "
                         "auto = the fastest within mask Dice 0.995 of fp32 on the first 3 clips (chosen once, "
                         "cached in PRED/precision.json)")
    _flags.add_compile(parser, help="CPU: run the ahead-of-time compiled engine (needs a C++ compiler; built once "
                       "per model/size/precision in ~10-30 s and cached in $ECHODFKD_CACHE/compiled, "
                       "default ~/.cache/echodfkd/compiled; fastest with --precision bf16)")
    parser.add_argument("--threads", type=_flags.positive_int, default=None,
                        help="CPU threads for torch / ONNX Runtime (default: theirs)")
    parser.add_argument("--streams", type=_flags.positive_int, default=1, metavar="N",
                        help="folder input: stream N clips at once through one batched engine (torch backend; "
                             "outputs equal to N=1)")
    parser.add_argument("--size", type=_flags.frame_size, default=None,
                        help="model frame size (default: the run's, else 112)")
    parser.add_argument("--split", default=None, help="TRAIN, VAL, TEST or a comma list, for a dataset folder")
    parser.add_argument("--convert", choices=("auto", "on", "off"), default="auto",
                        help="frame DICOM cines and scanner videos like EchoNet first (as `echodfkd convert` "
                             "does, in memory; masks/areas stay at the source size): auto = DICOM and videos "
                             "not already 112x112 or EchoNet-framed; on = always; off = never")
    parser.add_argument("--calibrate-alert", action="store_true",
                        help="set the alert threshold from the clean clips of --split (default VAL) and exit")
    parser.add_argument("--false-alarm-rate", type=_flags.float_in(0.0, 1.0), default=0.05,
                        help="target false-alarm rate on clean clips for --calibrate-alert")
    parser.add_argument("--alert-augment", type=_flags.float_in(0.0, 2.0), default=1.0, metavar="STRENGTH",
                        help="--calibrate-alert also scores one augmented copy of each clean clip (another zoom, "
                             "grey map, noise, sector edge), so the alert tolerates other scanners; 0 = off")
    _flags.add_skip_bad(parser)
    _flags.add_json(parser, help="print the run's summary (meta.json) as JSON")


def run(args: argparse.Namespace) -> int:
    """Predict (or calibrate the alert) and print a summary; --out is locked for the whole run."""
    import contextlib

    from echodfkd.io.lock import output_lock

    from echodfkd.errors import EchoDFKDError

    if not args.calibrate_alert:
        if not args.out:
            raise EchoDFKDError("--out PRED is required (unless --calibrate-alert)")
        _flags.check_writable_dir(args.out, keep=False)
    with output_lock(args.out) if args.out and not args.calibrate_alert else contextlib.nullcontext():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from echodfkd.errors import EchoDFKDError

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from echodfkd.stream import Predictor
    from echodfkd.stream.batch import clean_clips, find_clips, predict_to_folder

    say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else \
        (lambda line: print(line, flush=True))  # --json: stdout holds the JSON only
    # Check the input before loading (and perhaps compiling) the model.
    if args.calibrate_alert:
        root = Path(args.data)
        if not (root / "FileList.csv").is_file():
            raise EchoDFKDError(f"{root}: --calibrate-alert needs a dataset folder (FileList.csv + Videos/)")
    else:
        sources = find_clips(args.data, args.split, convert=args.convert)
        if Path(args.data).is_file() and sources[0].convert is None:  # one plain video: unreadable = refused
            from echodfkd.io.video import video_info

            video_info(sources[0].path)
        if args.streams > 1 and args.backend != "torch":
            raise EchoDFKDError("--streams N > 1 needs --backend torch (ONNX Runtime steps one stream at a time)")
    def build(precision: str) -> Predictor:
        return Predictor(args.student, device=args.device, backend=args.backend, warmup=args.warmup,
                         largest_component=args.largest_component, threshold=args.threshold,
                         onnx_path=args.onnx, size=args.size, threads=args.threads, precision=precision,
                         compile=args.compile, log=say)

    if args.precision == "auto" and args.backend == "torch" and not args.calibrate_alert:
        from echodfkd.stream.precision import auto_precision

        predictor = auto_precision(build, sources, args.out, log=say)[1]
    else:  # the ONNX graph is fp32; the alert is calibrated on fp32 masks
        predictor = build("fp32" if args.precision == "auto" else args.precision)
    if args.calibrate_alert:
        config = predictor.calibrate_alert(clean_clips(root, args.split or "VAL"), args.false_alarm_rate,
                                           augment=args.alert_augment)
        print(f"alert calibrated on {config.clips} clean {args.split or 'VAL'} clips: threshold "
              f"{config.threshold:.2f} at a target false-alarm rate of {config.false_alarm_rate:.0%}; "
              f"saved to {predictor.run_dir / 'alert.json'}")
        return 0
    meta = predict_to_folder(predictor, sources, args.out, overlay=args.overlay, echo=say,
                             skip_unreadable=Path(args.data).is_dir(), streams=args.streams)
    if args.json:
        print(json.dumps(meta, indent=2, default=str))
        return _flags.partial_exit(meta["failed"], args.skip_bad, NAME)
    speed = f", {meta['stream_fps']} frames/s" if meta.get("stream_fps") else ""
    print(f"{meta['clips']} clip(s) predicted into {args.out}{speed}; {len(meta['flagged'])} flagged by the "
          f"alert{'' if predictor.alert_config.calibrated else ' (uncalibrated)'}; thresholds dice "
          f"{predictor.thresholds['dice']:.3f} / afd {predictor.thresholds['afd']:.3f}; warm-up "
          f"{predictor.warmup}, largest component {'on' if predictor.largest_component else 'off'}")
    return _flags.partial_exit(meta["failed"], args.skip_bad, NAME)
