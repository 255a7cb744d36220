"""`echodfkd bench`: student vs teacher inference speed and streaming memory, in one run on one clip."""

from __future__ import annotations

import argparse

from echodfkd.commands import _flags

NAME = "bench"
HELP = "benchmark student streaming/batch fps, ONNX Runtime, teacher fps and streaming memory"
DESCRIPTION = (
    "Measures, on the same phantom clip and in interleaved rounds: the student's streaming fps (reference "
    "Student.step, the fast engine and the ahead-of-time compiled engine in fp32, mixed and bf16, ONNX Runtime, "
    "the end-to-end predictor) at the run's infer_size (--model-size), its batch (whole-clip) fps, the fp32 "
    "DeepLabv3-ResNet50 teacher's fps (batched and one frame at a time) and the ratios; the Dice of each reduced "
    "precision's masks vs fp32 on --check-clips (else on the benchmark clip); then the peak-memory growth of "
    "streaming 100 vs 1,000 frames in fresh processes. Goals: >= 400 fps single stream at 112 px on 2 cores and "
    ">= 25x the teacher, judged on the fastest variant whose masks stay within Dice 0.995 of fp32 on every "
    "checked clip (use --student RUN for a trained student: a random one gives a less meaningful Dice).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `echodfkd bench`."""
    _flags.add_student(parser, required=False)
    parser.add_argument("--frames", type=_flags.positive_int, default=48, help="frames per streaming round")
    parser.add_argument("--rounds", type=_flags.positive_int, default=5, help="interleaved measurement rounds")
    parser.add_argument("--teacher-frames", type=_flags.positive_int, default=8, help="frames per teacher round")
    parser.add_argument("--threads", type=_flags.positive_int, default=2,
                        help="CPU threads (the goal is stated for 2 cores)")
    parser.add_argument("--size", type=_flags.frame_size, default=112,
                        help="the clip's frame size (the teacher's input)")
    parser.add_argument("--model-size", type=_flags.frame_size, default=None,
                        help="the size the student runs at, each frame resized to it inside the timed step "
                             "(default: the run's infer_size, as predict runs it, else --size)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the ahead-of-time compiled engine (built once and cached; needs g++)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the reduced precisions (mixed: bf16 convolutions with fp32 state; bf16) "
                             "and check their masks against fp32")
    parser.add_argument("--check-clips", nargs="+", default=(), metavar="PATH", type=_flags.existing_path,
                        help="videos or folders whose clips (a dataset folder: its TEST split; the first 3 of "
                             "each, 128 frames) the reduced precisions' masks are checked on (default: the "
                             "benchmark clip)")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--no-teacher", action="store_true", help="skip the teacher")
    parser.add_argument("--no-memory", action="store_true", help="skip the streaming-memory measurement")
    _flags.add_json(parser, help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table (or JSON)."""
    import json

    from echodfkd.stream.bench import run_benchmark

    student = getattr(args, "student", None)
    blocks = 4 if student is None else _blocks(student)  # the default student has 4 blocks
    _flags.check_size(args.size, blocks)
    _flags.check_size(args.model_size, blocks, "--model-size")
    res = run_benchmark(model=student, frames=args.frames, rounds=args.rounds,
                        teacher_frames=args.teacher_frames, threads=args.threads, onnx=not args.no_onnx,
                        compile=args.compile, bf16=args.bf16, memory=not args.no_memory,
                        teacher=not args.no_teacher, size=args.size, check_clips=[str(p) for p in args.check_clips],
                        model_size=args.model_size)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    _print_table(res)
    return 0


def _blocks(run_dir: str) -> int:
    from echodfkd.errors import ModelError
    from echodfkd.stream.predictor import load_run

    try:
        return int(load_run(run_dir)[0].blocks)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{run_dir}: unusable student config ({exc})") from None


def _print_table(res: dict) -> None:
    print(f"clip: {res['clip']}; model: {res['model']} ({res['params']:,} params) at {res['model_size']} px; "
          f"threads {res['threads']}; "
          f"{res['rounds']} rounds; load average {res['load_average_before']} -> {res['load_average_after']}")
    ratio = res.get("ratio_vs_teacher_median", {})
    single = res.get("ratio_vs_teacher_single_frame_median", {})
    print(f"{'variant':40s} {'fps median':>10s} {'fps best':>9s} {'x teacher batch':>15s} {'x teacher 1-frame':>17s}")
    for k in res["fps_median"]:
        r = f"{ratio[k]:.1f}" if k in ratio else ""
        r1 = f"{single[k]:.1f}" if k in single else ""
        print(f"{k:40s} {res['fps_median'][k]:10.1f} {res['fps_best'][k]:9.1f} {r:>15s} {r1:>17s}")
    check = res.get("precision_check")
    if check:
        print(f"masks vs fp32 (Dice, worst / mean clip) on {len(check['clips'])} clip(s) from "
              f"{', '.join(check['paths'])}:")
        for p, c in check["checks"].items():
            if p != "fp32":
                after = c.get("dice_min_final")
                print(f"  {p:6s} {c['dice_min']:.4f} / {c['dice_mean']:.4f} "
                      f"({'counts' if c['dice_min'] >= check['bar'] else 'below'} the {check['bar']} bar)"
                      + ("" if after is None else f"; worst clip after the largest-component step {after:.4f}"))
        print(f"  choice: {check['reason']}")
    g = res["goals"]
    print(f"goal >= {g['student_fps_goal']:.0f} fps single stream ({g['variant']}): median "
          f"{g['student_fps_median']}, best {g['student_fps_best']} -> "
          f"{'met' if g['fps_goal_met_median'] else 'NOT met'} (median)")
    for which, what in (("batch", "batched, its fastest"), ("single", "one frame at a time")):
        if f"ratio_{which}" in g:
            print(f"goal >= {g['ratio_goal']:.0f}x the fp32 teacher ({what}): {g[f'ratio_{which}']}x -> "
                  f"{'met' if g[f'ratio_{which}_goal_met'] else 'NOT met'}")
    mem = res.get("memory")
    if mem:
        for n in (100, 1000):
            m = mem[n]
            print(f"streaming {n:5d} frames: " + (f"peak RSS {m['peak_rss_kb_after'] / 1024:.1f} MiB, growth "
                                                f"{m['growth_kb']} KiB" if "growth_kb" in m else m.get("error", "")))
        if "growth_difference_kb" in mem:
            print(f"peak-memory growth 1,000 vs 100 frames: {mem['growth_difference_kb']} KiB")
    for note in res["notes"]:
        print(f"note: {note}")
