"""`echodfkd demo`: the whole method end to end on the embedded phantom."""

from __future__ import annotations

import argparse

from echodfkd.commands import _flags

NAME = "demo"
HELP = "run the whole EchoDFKD method on the embedded phantom (about 10 min on 2 CPU cores; --quick ~2 min)"
DESCRIPTION = (
    "Generate a dynamic phantom (stands in for EchoNet-Dynamic) and a synthetic one (for EchoNet-Synthetic), "
    "train a light teacher on the traced frames, label the synthetic clips with it, distil a (4,1) ConvLSTM "
    "student, then evaluate student and teacher on the dynamic TEST split (Dice/IoU, aFD, agreement, alert). "
    "Writes OUT/report.md, OUT/metrics.json and OUT/figures/. A rerun reuses finished steps.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `echodfkd demo`."""
    _flags.add_out(p, "output", note="created; a rerun resumes")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a ~2 minute smoke run")
    _flags.add_workers(p, default=None, help="processes for phantom generation (default: all cores)")
    _flags.add_echoclip(p, help="also run the EchoCLIP step with this open_clip model (e.g. "
                        "hf-hub:mkaichristensen/echo-clip)")
    _flags.add_teacher_arch(p, help="torchvision segmenter for the teacher (default lraspp_mobilenet_v3_large, "
                            "light enough for a CPU)")
    p.add_argument("--seed", type=_flags.nonnegative_int, default=0, help="seed of the phantoms and training")
    p.add_argument("--fresh", action="store_true", help="delete OUT first instead of resuming")
    _flags.add_json(p, help="print the demo's metrics (OUT/metrics.json) as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the demo and print a short summary."""
    from echodfkd.demo import run_demo
    from echodfkd.io.lock import output_lock

    _flags.check_writable_dir(args.out, keep=False)  # every argument is checked by the parser before this
    with output_lock(args.out) as lock, _flags.stdout_for_json(args):
        if args.fresh:
            lock.clear()  # the previous demo's outputs, not the lock
        m = run_demo(args.out, quick=args.quick, workers=args.workers, echoclip=args.echoclip,
                     teacher_arch=args.teacher_arch, seed=args.seed)
    if args.json:
        import json

        print(json.dumps(m, indent=2, default=str))
        return 0
    print(summary_text(m, args.out))
    return 0


def summary_text(m: dict, out: str) -> str:
    """A few lines with the headline figures and the report path."""
    from echodfkd.report.demo import _get, _num, _pct

    seg = _get(m, "student.segmentation.vs_tracings.overall") or _get(m, "student.segmentation.vs_tracings") or {}
    tseg = _get(m, "teacher.segmentation.vs_tracings.overall") or _get(m, "teacher.segmentation.vs_tracings") or {}
    return "\n".join([
        f"demo finished in {m['total_seconds']:.0f} s",
        f"  Dice vs tracings: student {_pct(seg.get('dice_per_video_mean'))} %, "
        f"teacher {_pct(tseg.get('dice_per_video_mean'))} %",
        f"  aFD ED/ES (frames): student {_num(_get(m, 'student.afd.full.aFD_ED'))}/"
        f"{_num(_get(m, 'student.afd.full.aFD_ES'))}, teacher {_num(_get(m, 'teacher.afd.full.aFD_ED'))}/"
        f"{_num(_get(m, 'teacher.afd.full.aFD_ES'))}",
        f"  report: {out}/report.md",
    ])
