"""`echodfkd camus --data CAMUS_DIR --student RUN|SWEEP --out REPORT`: the student on CAMUS (supp. Table 3)."""

from __future__ import annotations

import argparse

from echodfkd.commands._flags import (add_data, add_device, add_json, add_out, add_precision, add_student,
                                      dir_path, nonnegative_int, positive_int, stdout_for_json, unit_float)

NAME = "camus"
HELP = "score a student (or a sweep of students) on CAMUS half-sequences: Dice/IoU at ED/ES, EF, Table 3"
DESCRIPTION = (
    "Streams every half-sequence (ED -> ES) of a CAMUS folder (2023 NIfTI or 2019 MHD release; "
    "`echodfkd phantom OUT --layout camus` writes one) through the student, frame by frame with the warm-up, "
    "and scores the masks against label 1 (LV) of the ED/ES _gt files: Dice and IoU per view, per image "
    "quality, per-video mean and pooled, with bootstrap intervals; EF from the ED/ES masks (single-plane "
    "area-length) against the Info_<view>.cfg EF. Writes REPORT/report.md, metrics.json, per_view.csv, "
    "overlaps.csv and figures/. Given a sweep folder (one student run per sub-folder), each run gets "
    "REPORT/<run>/ and REPORT/report.md holds the supplement's Table 3; finished runs are kept on a rerun."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    add_data(parser, help="CAMUS folder: the release root, database_nifti/, or training/", type=dir_path)
    add_student(parser)
    add_out(parser, "report")
    parser.add_argument("--views", default="4CH,2CH", help="views to score, comma-separated (4CH, 2CH)")
    parser.add_argument("--warmup", type=nonnegative_int, default=None, metavar="K",
                        help="feed the first frame K extra times before each half-sequence "
                             "(default: the run's stream.json, else 0)")
    parser.add_argument("--largest-component", action=argparse.BooleanOptionalAction, default=None,
                        help="keep only the largest region of each mask (default: the run's, else off)")
    parser.add_argument("--threshold", type=unit_float, default=None, metavar="T",
                        help="binarisation threshold in [0, 1] (default: the run's calibrated Dice threshold)")
    parser.add_argument("--framing", choices=("box", "sector"), default="box",
                        help="square given to the model: 'box' = the square around the non-zero pixels (CAMUS "
                             "images hold only the fan); 'sector' = EchoNet's framing of the fan found from "
                             "motion, as `predict --convert` does")
    parser.add_argument("--bootstrap", type=positive_int, default=10000, metavar="N",
                        help="bootstrap resamples for the 90 %% intervals")
    add_device(parser)
    add_precision(parser)
    add_json(parser, help="print each run's Table 3 row as JSON")


def _resolve(device: str, precision: str) -> tuple[str, str]:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if precision == "auto":
        precision = "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32"
    return device, precision


def run(args: argparse.Namespace) -> int:
    """Check the folder and the run(s), score each run, write the report(s), print the headline numbers."""
    from pathlib import Path

    from echodfkd.commands._flags import check_writable_dir
    from echodfkd.data.camus import Camus
    from echodfkd.evaluate.camus import check_folder, parse_views, student_runs

    out = check_writable_dir(args.out, keep=False)  # first; the lock below creates it (and removes it if empty)
    views = parse_views(args.views)
    ds = Camus(args.data)
    items = check_folder(ds, views)  # the data is checked before any model is loaded
    runs, sweep = student_runs(args.student)
    print(f"camus: {len(items)} half-sequences ({', '.join(views)}) from {len(ds)} patients in {ds.root}; "
          f"{len(runs)} student run(s)", flush=True)

    from echodfkd.io.lock import output_lock

    with output_lock(out), stdout_for_json(args):  # one live run per report folder
        import torch

        torch.set_flush_denormal(True)  # as the CLI does for its other network commands
        device, precision = _resolve(args.device, args.precision)
        rows = []
        for k, run_dir in enumerate(runs, 1):
            target = out / run_dir.name if sweep else out
            key = _settings_key(args, ds, views, run_dir, device, precision)
            kept = _kept(target, key)
            if kept is None:
                kept = _score(args, ds, items, views, run_dir, target, key, device, precision)
            else:
                print(f"  [{k}/{len(runs)}] {run_dir.name}: kept (already scored with these settings)", flush=True)
            row = kept["table3_row"]
            rows.append(row)
            print(f"  [{k}/{len(runs)}] {run_dir.name}: Dice {_pct(row['dice_all'])} per-video mean, "
                  f"{_pct(row['dice_pooled'])} pooled; 4CH {_pct(row.get('dice_4CH'))}, "
                  f"2CH {_pct(row.get('dice_2CH'))}; EF MAE {_num(row.get('ef_mae'))} %, median "
                  f"{_num(row.get('ef_median_abs_error'))} %", flush=True)
        if sweep:
            from echodfkd.report.camus import write_table3

            write_table3(out, rows, Path(args.student), str(ds.root))
    if args.json:
        import json

        print(json.dumps({"report": str(out / "report.md"), "runs": rows}, indent=2, default=str))
        return 0
    print(f"report: {out / 'report.md'}")
    return 0


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f} %"


def _num(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def _settings_key(args: argparse.Namespace, ds, views, run_dir, device: str, precision: str) -> dict:
    """What a kept report must have been made with (data, views, options, the weights' size and time)."""
    weights = run_dir / "model.safetensors"
    stat = weights.stat() if weights.is_file() else None
    return {"data": str(ds.root.resolve()), "views": list(views), "warmup": args.warmup,
            "largest_component": args.largest_component, "threshold": args.threshold,
            "bootstrap": args.bootstrap, "precision": precision, "framing": args.framing,
            "weights": [stat.st_size, stat.st_mtime_ns] if stat else None}


def _kept(target, key: dict) -> dict | None:
    """A finished report in `target` made with the same settings, else None."""
    from echodfkd.io.records import CamusMetrics, RecordError

    try:
        metrics = CamusMetrics.read(target / CamusMetrics.FILE).to_dict()
    except RecordError:  # absent, unreadable or mistyped: scored again
        return None
    return metrics if metrics.get("request") == key and "table3_row" in metrics else None


def _score(args, ds, items, views, run_dir, target, key, device: str, precision: str) -> dict:
    from echodfkd.evaluate.camus import score_run
    from echodfkd.report.camus import write_camus_report
    from echodfkd.stream import Predictor

    predictor = Predictor(run_dir, device=device, warmup=args.warmup, largest_component=args.largest_component,
                          threshold=args.threshold, precision=precision,
                          log=lambda line: print(line, flush=True))
    metrics, per_view, rows, example = score_run(ds, items, predictor, views, args.bootstrap,
                                                 log=lambda line: print(f"  {line}", flush=True),
                                                 framing=args.framing)
    metrics["request"] = key
    return write_camus_report(target, metrics, per_view, rows, example)
